"""`/healthz`, `/readyz` and `/metrics` of the job worker, which has no web app: a small HTTP server on a
thread of its own (`PROCTOR_WORKER_METRICS_PORT`), for a supervisor's probes and a Prometheus scraper.

It answers as the API does: JSON for the probes, a problem document (naming what is wrong) with 503 when the
worker is not live or not ready, and the Prometheus text format for the metrics.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipelines.metrics import WorkerMonitor

log = logging.getLogger(__name__)


def problem(status: int, code: str, detail: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document of the shape the API sends."""
    document: dict[str, Any] = {
        "type": f"urn:proctor:error:{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if details is not None:
        document["details"] = details
    return document


def answer(monitor: WorkerMonitor, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for a GET of `path`."""
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest(monitor.registry)
    if path == "/healthz":
        stuck = monitor.not_live()
        if stuck is None:
            return _json(200, {"status": "ok"})
        return _json(503, problem(503, "not_live", f"{stuck}: restart the worker"))
    if path == "/readyz":
        failures = monitor.not_ready()
        if not failures:
            return _json(200, {"status": "ready"})
        failing = [{"dependency": f.dependency, "reason": f.reason} for f in failures]
        named = "; ".join(f"{f.dependency}: {f.reason}" for f in failures)
        return _json(503, problem(503, "not_ready", f"not ready: {named}", {"failing": failing}))
    return _json(404, problem(404, "not_found", f"nothing answers GET {path}: try /healthz, /readyz or /metrics"))


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    content_type = "application/json" if status < 400 else "application/problem+json"
    return status, content_type, json.dumps(body).encode()


class OpsServer:
    """`with OpsServer(host, port, monitor):` serves the endpoints until the block ends (port 0: any free one)."""

    def __init__(self, host: str, port: int, monitor: WorkerMonitor) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = answer(monitor, self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("worker ops request", extra={"request": format % args})

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot serve the worker's health and metrics on {host}:{port}: {exc.strerror}; free the "
                "port or choose another (PROCTOR_WORKER_METRICS_PORT)",
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="worker-ops", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def __enter__(self) -> OpsServer:
        self._thread.start()
        log.info("worker health and metrics served", extra={"port": self.port})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
