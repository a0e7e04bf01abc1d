"""HTTP requests that httpx refuses to send: headers that declare a body, followed by only its first bytes."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import httpx


def declared_body(
    url: str, method: str, path: str, length: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Send the headers of a `length`-byte body and its first KiB, then read the answer: a server that limits
    bodies must answer without waiting for the rest (httpx cannot send less than its Content-Length)."""
    base = urlsplit(url)
    connection = http.client.HTTPConnection(base.hostname or "", base.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {"Content-Length": str(length), **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders(b"{" * min(length, 1024))
        raw = connection.getresponse()
        return httpx.Response(
            raw.status, headers=raw.getheaders(), content=raw.read(), request=httpx.Request(method, url + path)
        )
    finally:
        connection.close()
