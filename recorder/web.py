"""Serve the candidate's recorder: its page at `/recorder/` and its files at `/recorder/static/`.

The page is static (`static/index.html`): it reads what to record from its own address, `?attempt=<id>` for an
Open edX attempt or `?session=<id>#token=put_...` for a platform that registered the session and issued the
upload token itself, and talks to the `/v1` and `/openedx/recorder` routes of the same origin. This package
imports nothing of the project's: any app can mount it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
PAGE_PATH = "/recorder/"


def mount_recorder(app: FastAPI) -> None:
    """Add the recorder's page and static files to `app`."""

    @app.get(PAGE_PATH, include_in_schema=False)
    def recorder_page() -> FileResponse:
        # no-cache: a candidate who reloads mid-exam gets the current page and module, never a stale mix.
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get(PAGE_PATH.rstrip("/"), include_in_schema=False)
    def recorder_page_slash(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse(PAGE_PATH + (f"?{query}" if query else ""), status_code=308)

    app.mount(PAGE_PATH + "static", StaticFiles(directory=STATIC), name="recorder_static")
