"""Work an app does when it stops: `close_on_shutdown`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI


def close_on_shutdown(app: FastAPI, close: Callable[[], None]) -> None:
    """Run `close` when the app's lifespan ends, after the app's own shutdown and after what was registered
    before it (so what is registered last, the resources the app runs on, is closed last).

    uvicorn re-raises a stopping signal (SIGTERM from systemd or `docker stop`) once the server has shut
    down, and the default handler ends the process there: code after `uvicorn.run` never runs, and what it
    would have closed (an embedded S3 server, say) outlives the process. The lifespan's end does run.
    """
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        try:
            async with inner(asgi_app) as state:
                yield state
        finally:
            close()

    app.router.lifespan_context = lifespan
