"""What the platform API's routes reach through `request.app.state.platform`: built once by `create_api`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from ingest.enrolment import EnrolmentChecks
from ingest.uploads import Uploads
from storage.object_store import ObjectStore


@dataclass(frozen=True)
class PlatformApi:
    db: sessionmaker[Session]
    store: ObjectStore
    uploads: Uploads
    presigned_url_ttl_s: int
    check_ready: Callable[[], None]
    enrolment_checks: EnrolmentChecks | None = None  # the system check's face check; None: it is off


def platform_api(request: Request) -> PlatformApi:
    state: PlatformApi = request.app.state.platform
    return state
