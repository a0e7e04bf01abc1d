"""The platform side of the upload protocol on the command line: `proctor ingest` and `proctor status`.

While requests wait to be retried, one status line under the progress bar says what waits, why and for how
long; the transfer rate counts only the bytes sent by this run, over the last few seconds, so a resumed
upload or a burst of parts finishing together does not show an absurd rate. Exit codes tell a script what
to do next: see `EXIT_REFUSED` and `EXIT_UNAVAILABLE`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import filesize
from rich.console import Console, RenderableType
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, Task, TaskID
from rich.table import Table
from rich.text import Text

from core.settings import Settings
from ingest.client import IngestClient, IngestRequestError, RetryPolicy, ServerUnavailable, Waiting, upload_session

console = Console()

EXIT_REFUSED = 3  # the server refused a request (a 4xx): sending it again will not help, the message says why
EXIT_UNAVAILABLE = 4  # the server failed (a 5xx) or could not be reached, through every retry: run it again later

ApiUrl = Annotated[str | None, typer.Option(envvar="PROCTOR_API_URL", help="default: this machine's API")]
ApiKey = Annotated[str, typer.Option(envvar="PROCTOR_API_KEY", help="the tenant's key (pp_...)")]
RetryFor = Annotated[
    float,
    typer.Option(
        min=0,
        help="seconds one request may spend waiting to be retried (server errors, no answer, Retry-After) "
        f"before the command gives up with exit code {EXIT_UNAVAILABLE}",
    ),
]


def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the webcam recording")],
    exam: Annotated[str, typer.Option(help="the platform's exam id")],
    candidate: Annotated[str, typer.Option(help="pseudonymous candidate id")],
    api_key: ApiKey,
    attempt: Annotated[str | None, typer.Option(help="attempt id (default: derived from the file)")] = None,
    screen: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    events: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="exam event log, JSON lines")] = None,
    enrolment_photo: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="the candidate's reference photo (JPEG or PNG)")
    ] = None,
    enrolment_clip: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="a short clip of the candidate's face")
    ] = None,
    api_url: ApiUrl = None,
    parallel: Annotated[int, typer.Option(min=1, max=16, help="parts in flight")] = 4,
    retry_for: RetryFor = 300.0,
) -> None:
    """Upload a recorded session through the HTTP API. Re-run the same command to resume after a failure.

    Server errors (5xx), 429s and lost connections are retried with capped exponential backoff, never sooner
    than the server's Retry-After; a status line says what waits and for how long. A refusal (4xx) is not
    retried.

    Exit codes: 0 uploaded; 2 usage error (an option or a file is wrong); 3 refused by the server (a 4xx: the
    message says why, and sending it again will not help); 4 the server failed or could not be reached
    through every retry (a 5xx or no answer: run the same command again later, it resumes the upload).
    """
    url = api_url or Settings().resolved_public_api_url
    files = (file, screen, events, enrolment_photo, enrolment_clip)
    total = sum(p.stat().st_size for p in files if p is not None)
    with upload_progress() as progress:
        task = progress.add_task("upload", total=total)
        with IngestClient(
            url, api_key, retry=RetryPolicy(give_up_after_s=retry_for), on_wait=progress.waiting
        ) as client:
            try:
                session = upload_session(
                    client,
                    webcam=file,
                    exam_id=exam,
                    candidate_id=candidate,
                    attempt_id=attempt,
                    screen=screen,
                    events=events,
                    enrolment_photo=enrolment_photo,
                    enrolment_clip=enrolment_clip,
                    on_bytes=lambda n: progress.advance(task, n),
                    on_resumed=lambda n: progress.resumed(task, n),
                    parallel=parallel,
                )
            except (IngestRequestError, ServerUnavailable) as exc:
                progress.stop()
                raise _failed(exc) from None
    print_session(session)


def status(
    session_id: str,
    api_key: ApiKey,
    api_url: ApiUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
    retry_for: RetryFor = 60.0,
) -> None:
    """Show a session's state, media and probe results.

    Exit codes: 0 shown; 2 usage error; 3 refused by the server (a 4xx, e.g. no such session for this key);
    4 the server failed or could not be reached through every retry.
    """
    url = api_url or Settings().resolved_public_api_url
    with IngestClient(url, api_key, retry=RetryPolicy(give_up_after_s=retry_for)) as client:
        try:
            session = client.session(session_id)
        except (IngestRequestError, ServerUnavailable) as exc:
            raise _failed(exc) from None
    if as_json:
        typer.echo(json.dumps(session, indent=2))
    else:
        print_session(session)


def exit_code(error: IngestRequestError | ServerUnavailable) -> int:
    """`EXIT_REFUSED` for a refusal, `EXIT_UNAVAILABLE` for a server fault or an outage outlasting the retries."""
    return EXIT_REFUSED if isinstance(error, IngestRequestError) and error.refused else EXIT_UNAVAILABLE


def _failed(error: IngestRequestError | ServerUnavailable) -> typer.Exit:
    code = exit_code(error)
    if isinstance(error, ServerUnavailable):
        console.print(f"[red]unavailable[/]: {error}")
    elif code == EXIT_REFUSED:
        console.print(f"[red]refused[/] ({error.status} {error.code}): {error.message}")
    else:
        console.print(
            f"[red]server failure[/] ({error.status} {error.code}): {error.message}\n"
            "run the same command again later: it resumes the upload"
        )
    return typer.Exit(code)


_PATHS = (
    (re.compile(r"PUT /v1/sessions/[^/]+/media/([^/]+)/parts/(\d+)$"), "sending part {1} of the {0}"),
    (re.compile(r"GET /v1/sessions/[^/]+/media/([^/]+)/parts$"), "asking which parts of the {0} arrived"),
    (re.compile(r"POST /v1/sessions/[^/]+/media/([^/]+)/complete$"), "completing the {0}"),
    (re.compile(r"POST /v1/sessions$"), "registering the session"),
    (re.compile(r"GET /v1/sessions/[^/]+$"), "reading the session"),
)


def describe_request(request: str) -> str:
    """A client request ("PUT /v1/sessions/<id>/media/webcam/parts/7") as a person reads it."""
    for pattern, text in _PATHS:
        found = pattern.match(request)
        if found is not None:
            return text.format(*found.groups())
    return request


def status_line(waits: Iterable[Waiting], now: float) -> str:
    """One line for every request waiting to be retried: the next retry's, and how many others wait."""
    pending = sorted(waits, key=lambda w: w.until)
    if not pending:
        return ""
    first = pending[0]
    others = f"; {len(pending) - 1} more requests wait" if len(pending) > 1 else ""
    return (
        f"waiting: {first.reason} while {describe_request(first.request)}; "
        f"retry {first.attempt + 1} in {max(0.0, first.until - now):.0f} s{others}"
    )


class TransferMeter:
    """Bytes sent per second over the last `window_s`, from when the transfer began (thread-safe).

    Only bytes this run sent count: the ones the server already had (a resumed upload) are not a transfer."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._began: float | None = None
        self._lock = threading.Lock()

    def begin(self, now: float) -> None:
        with self._lock:
            if self._began is None:
                self._began = now

    def sent(self, count: int, now: float) -> None:
        with self._lock:
            if self._began is None:
                self._began = now
            self._samples.append((now, count))
            while self._samples and self._samples[0][0] <= now - self._window_s:
                self._samples.popleft()

    def rate(self, now: float) -> float | None:
        """Bytes per second, None before a second of transfer has passed."""
        with self._lock:
            if self._began is None or now - self._began < 1.0:
                return None
            recent = sum(count for at, count in self._samples if at > now - self._window_s)
            return recent / min(self._window_s, now - self._began)


class UploadProgress(Progress):
    """The upload's progress bar, its rate and time left from a `TransferMeter`, and the status line.

    `advance` counts bytes sent, `resumed` the bytes the server already had, `waiting` is the client's
    `on_wait`."""

    def __init__(self, console: Console) -> None:
        self.meter = TransferMeter()
        self._waits: dict[str, Waiting] = {}
        self._waits_lock = threading.Lock()
        super().__init__(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            _RateColumn(self.meter),
            _TimeLeftColumn(self.meter),
            console=console,
        )

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.meter.sent(int(advance), time.monotonic())
        super().advance(task_id, advance)

    def resumed(self, task_id: TaskID, count: int) -> None:
        self.meter.begin(time.monotonic())
        super().advance(task_id, count)

    def waiting(self, request: str, waiting: Waiting | None) -> None:
        with self._waits_lock:
            if waiting is None:
                self._waits.pop(request, None)
            else:
                self._waits[request] = waiting

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        with self._waits_lock:
            line = status_line(list(self._waits.values()), time.monotonic())
        if line:
            yield Text(line, style="yellow")


class _RateColumn(ProgressColumn):
    def __init__(self, meter: TransferMeter) -> None:
        super().__init__()
        self._meter = meter

    def render(self, task: Task) -> Text:
        rate = self._meter.rate(time.monotonic())
        return Text("?" if rate is None else f"{filesize.decimal(int(rate))}/s", style="progress.data.speed")


class _TimeLeftColumn(ProgressColumn):
    def __init__(self, meter: TransferMeter) -> None:
        super().__init__()
        self._meter = meter

    def render(self, task: Task) -> Text:
        rate = self._meter.rate(time.monotonic())
        left = task.remaining
        if rate is None or left is None or rate <= 0:
            return Text("-:--:--", style="progress.remaining")
        seconds = int(left / rate)
        return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}", style="progress.remaining")


def upload_progress() -> UploadProgress:
    return UploadProgress(console)


def print_session(session: dict[str, Any]) -> None:
    console.print(
        f"session [bold]{session['id']}[/]  exam {session['exam_id']}  candidate {session['candidate_id']}  "
        f"state [bold]{session['state']}[/]"
    )
    if session.get("reason"):
        console.print(f"  reason: {session['reason']['code']}: {session['reason']['message']}")
    table = Table("media", "state", "MB", "what arrived")
    for m in session["media"]:
        probe = m.get("probe")
        if probe:
            what = (
                f"{probe['container']} {probe['codec']} {probe['width']}x{probe['height']} "
                f"{probe['frame_rate']:.1f} fps {probe['duration_s']:.1f} s rot {probe['rotation_deg']}"
            )
        elif m.get("events_count") is not None:
            what = f"{m['events_count']} exam events"
        elif m.get("reason"):  # a refused enrolment: the exam goes on without it
            what = f"{m['reason']['code']}: {m['reason']['message']}"
        else:
            what = ""
        table.add_row(m["kind"], m["state"], f"{m['size_bytes'] / 1e6:.1f}", what)
    console.print(table)
