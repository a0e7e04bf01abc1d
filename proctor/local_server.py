"""Run an ASGI app with uvicorn on a background thread (for `proctor demo` and for tests over real HTTP), and
tie resources to an app's shutdown."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


LOCAL_HOST = ("127.0.0.1", "::1")
"""uvicorn's own default proxies: what a test over real HTTP stands in for, sending the headers a proxy would."""


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For and X-Forwarded-Proto (its `ProxyHeadersMiddleware`): believed only
    from a connection whose address is one of `trusted_proxies` (addresses or CIDRs), so that `request.client` is
    the client that proxy saw and the scheme is the one it was reached by; from anyone else they are ignored.
    None trusted: the middleware is off, and uvicorn's own default (the local host, or FORWARDED_ALLOW_IPS from
    the environment) never applies."""
    return {"proxy_headers": bool(trusted_proxies), "forwarded_allow_ips": list(trusted_proxies) or None}


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves `app` on 127.0.0.1 until the block ends, believing the proxy
    headers of `trusted_proxies` (see `proxy_options`)."""

    def __init__(self, app: FastAPI, port: int | None = None, trusted_proxies: Sequence[str] = LOCAL_HOST) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, **proxy_options(trusted_proxies)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on port {self.port}")
            time.sleep(0.02)
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
