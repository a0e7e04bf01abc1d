"""Pipelines: from a stored recording to flagged segments.

It owns decoding chunks, running the detectors on them (`analysis`), the Ray fan-out, turning signals into
segments and a risk score (pure functions), publishing a session's results, the job queue's claims,
leases and retries, and the worker loop. It may import `core`, `storage`, `detectors` and `models`; it
knows nothing of review, the HTTP API or the command line.
"""
