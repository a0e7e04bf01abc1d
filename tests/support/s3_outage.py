"""A real embedded S3 server that a test can stop and start again behind one fixed address.

`EmbeddedS3` picks free ports on every start, so a restarted server has a new endpoint; the app under test
keeps the address it was built with. A plain TCP forwarder in front of it keeps that address stable: while
the server is down, every connection to it is closed at once, as a crashed server's would be, and after a
restart on the same data directory (same objects, same credentials) connections reach the new server.
Nothing in between reads or answers S3 requests: the S3 server is the real one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from core.context import build_context
from core.settings import Settings
from proctor.local_server import BackgroundServer
from proctor.wiring import platform_app, uploads
from storage.embedded_s3 import EmbeddedS3
from storage.object_store import ObjectStore, S3Location
from tests.support.platform import MIB, Api


class _Forwarder:
    """Forwards each connection to `target` (host, port); with no target, closes connections at once."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.target: tuple[str, int] | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="s3-forwarder", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            target = self.target
            try:
                if target is None:
                    raise ConnectionRefusedError("storage is down")
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(256 * 1024):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.drop_connections()


class RestartableS3:
    """`with RestartableS3(data_dir, bucket) as s3:` then `s3.location`, `s3.stop()`, `s3.start()`."""

    def __init__(self, data_dir: Path, bucket: str) -> None:
        self._data_dir, self._bucket = data_dir, bucket
        self._forwarder = _Forwarder()
        self._server: EmbeddedS3 | None = None
        self.location: S3Location | None = None

    def start(self) -> S3Location:
        """Start the server and wait until it stores objects again.

        A restarted SeaweedFS answers its health check before its volume server has rejoined the master (up to
        a minute later, "Not enough data nodes found!"), and writes stall until then; a test that restarts
        storage wants the restart over, so this waits for one write to go through."""
        self._server = EmbeddedS3(self._data_dir, self._bucket)
        real = self._server.start()
        host, port = real.endpoint.rsplit(":", 1)
        self._forwarder.target = (host, int(port))
        self.location = dataclasses.replace(real, endpoint=f"127.0.0.1:{self._forwarder.port}")
        store = ObjectStore(real, retries=10, backoff_s=0.5)
        store.ensure_bucket()
        store.put_bytes("restartable-s3/ready", b"ready", overwrite=True)
        return self.location

    def stop(self) -> None:
        """Stop the server as a crash would look to its clients: connections drop, new ones are closed."""
        self._forwarder.target = None
        self._forwarder.drop_connections()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> RestartableS3:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self._forwarder.close()


@contextlib.contextmanager
def platform_on_restartable_s3(work: Path) -> Iterator[tuple[RestartableS3, Api]]:
    """The platform API over real HTTP (SQLite, 5 MiB parts) on a `RestartableS3` under `work`."""
    with RestartableS3(work / "s3", bucket="outage") as s3:
        assert s3.location is not None
        settings = Settings(
            data_dir=work / "data",
            database_url=f"sqlite:///{work / 'proctor.db'}",
            part_size_bytes=5 * MIB,
            s3_retries=1,  # the store's own retries, ~0.3 s: an outage reaches the API's answer quickly
            _env_file=None,
        )  # type: ignore[call-arg]
        context = build_context(settings, s3.location)
        try:
            service = uploads(context)
            with BackgroundServer(platform_app(context, service)) as url:
                yield s3, Api(url, context, service)
        finally:
            context.close()
