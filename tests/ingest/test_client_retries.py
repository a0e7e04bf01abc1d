"""The upload client's retry rules, and what `proctor ingest` shows while it waits: pure functions, tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.client import IngestRequestError, RetryPolicy, ServerUnavailable, Waiting, retry_after_s, retryable
from proctor.upload_cli import EXIT_REFUSED, EXIT_UNAVAILABLE, TransferMeter, describe_request, exit_code, status_line

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MB = 1_000_000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("5", 5.0),
        (" 120 ", 120.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # a date in the past: retry now
        ("soon", None),
        ("-3", None),
    ],
)
def test_retry_after_header(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header, NOW) == expected


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "internal_error", True),
        (502, "http_error", True),
        (503, "storage_unavailable", True),
        (504, "http_error", True),
        (429, "too_many_requests", True),
        (409, "complete_in_progress", True),  # the protocol says: another request verifies it, retry shortly
        (400, "bad_request", False),
        (404, "session_not_found", False),
        (408, "http_error", False),
        (409, "attempt_already_registered", False),
        (413, "body_too_large", False),
        (422, "not_a_video", False),
        (501, "http_error", False),
    ],
)
def test_only_server_faults_and_throttling_are_retried(status: int, code: str, expected: bool) -> None:
    assert retryable(status, code) is expected
    assert IngestRequestError(status, code, "m").refused is not expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "jitter", "expected"),
    [
        (1, None, 0.5, 1.0),
        (2, None, 0.5, 2.0),
        (4, None, 0.5, 8.0),
        (9, None, 0.99, 30.0),  # capped
        (1, None, 0.0, 0.5),  # jitter spreads between half and one and a half times the step
        (1, 5.0, 0.5, 5.0),  # never sooner than Retry-After
        (6, 5.0, 0.5, 30.0),  # backoff already longer than Retry-After
        (1, 90.0, 0.5, 90.0),  # a longer Retry-After is honoured, not capped
    ],
)
def test_backoff_is_exponential_capped_and_honours_retry_after(
    attempt: int, retry_after: float | None, jitter: float, expected: float
) -> None:
    assert RetryPolicy(first_delay_s=1.0, max_delay_s=30.0).delay(attempt, retry_after, jitter) == expected


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="first_delay_s <= max_delay_s"):
        RetryPolicy(first_delay_s=60.0, max_delay_s=30.0)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (IngestRequestError(422, "not_a_video", "m"), EXIT_REFUSED),
        (IngestRequestError(404, "session_not_found", "m"), EXIT_REFUSED),
        (IngestRequestError(503, "storage_unavailable", "m"), EXIT_UNAVAILABLE),
        (IngestRequestError(500, "internal_error", "m"), EXIT_UNAVAILABLE),
        (IngestRequestError(429, "too_many_requests", "m"), EXIT_UNAVAILABLE),
        (ServerUnavailable("no answer"), EXIT_UNAVAILABLE),
    ],
)
def test_exit_codes_tell_refusals_from_outages(error: IngestRequestError | ServerUnavailable, code: int) -> None:
    assert exit_code(error) == code
    assert code not in (0, 1, 2), "0 is success, 1 an unexpected crash, 2 typer's usage error"


@pytest.mark.parametrize(
    ("request_line", "text"),
    [
        ("PUT /v1/sessions/abc/media/webcam/parts/7", "sending part 7 of the webcam"),
        ("GET /v1/sessions/abc/media/screen/parts", "asking which parts of the screen arrived"),
        ("POST /v1/sessions/abc/media/events/complete", "completing the events"),
        ("POST /v1/sessions", "registering the session"),
        ("GET /v1/sessions/abc", "reading the session"),
        ("DELETE /v1/x", "DELETE /v1/x"),
    ],
)
def test_requests_are_described_as_a_person_reads_them(request_line: str, text: str) -> None:
    assert describe_request(request_line) == text


def test_one_status_line_for_all_waiting_requests() -> None:
    assert status_line([], 100.0) == ""
    waits = [
        Waiting("PUT /v1/sessions/s/media/webcam/parts/3", "503 storage_unavailable", 2, 5.0, 104.2),
        Waiting("PUT /v1/sessions/s/media/webcam/parts/2", "503 storage_unavailable", 1, 5.0, 103.0),
        Waiting("PUT /v1/sessions/s/media/webcam/parts/4", "no answer (connection refused)", 1, 1.0, 108.0),
    ]
    assert status_line(waits, 100.0) == (
        "waiting: 503 storage_unavailable while sending part 2 of the webcam; retry 2 in 3 s; 2 more requests wait"
    )


def test_the_rate_counts_only_bytes_sent_by_this_run() -> None:
    meter = TransferMeter(window_s=10.0)
    meter.begin(0.0)  # the server already had 300 MB: not part of the rate
    assert meter.rate(0.5) is None, "no rate before a second has passed"
    for second in range(1, 5):
        meter.sent(8 * MB, float(second))
    assert meter.rate(4.0) == pytest.approx(8 * MB)


def test_parts_finishing_together_do_not_make_an_absurd_rate() -> None:
    meter = TransferMeter(window_s=10.0)
    meter.begin(0.0)
    for n in range(4):  # four parallel 8 MB parts land within a few milliseconds after 4 s
        meter.sent(8 * MB, 4.0 + n * 0.002)
    assert meter.rate(4.01) == pytest.approx(32 * MB / 4.01)


def test_the_rate_falls_to_zero_while_requests_wait() -> None:
    meter = TransferMeter(window_s=10.0)
    meter.begin(0.0)
    meter.sent(50 * MB, 5.0)
    assert meter.rate(6.0) == pytest.approx(50 * MB / 6.0)
    assert meter.rate(30.0) == 0.0, "nothing sent for the last 10 s"
