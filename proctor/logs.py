"""Structured logging for the processes we own (API server, worker, CLI): one JSON object per line.

Library modules only call `logging.getLogger(__name__)` and pass fields in `extra`; this formatter keeps
those fields, so a log line for a session carries its `session_id` as a field, not as text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

LogLevel = Annotated[str, typer.Option(envvar="PROCTOR_LOG_LEVEL", help="debug, info, warning, error")]

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: the CLI's stderr would get a line per part. Its warnings still show.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
