"""Who was on camera, as the reviewer sees it: the enrolment beside a frame that matched, and in words.

The pipeline stores per session how many face samples matched the session's first face and the enrolment
(`sessions.identity`: counts and distances, never a descriptor), and a frame the session's reference face
comes from. The non-matching frames are the evidence of the `person_changed` and `identity_mismatch`
flags themselves. This says what the numbers mean, and what the check cannot prove.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.enrolments import latest_enrolment
from core.tables import CandidateEnrolment, ExamSession
from core.vocabulary import MediaKind

LIMITS = (
    "A face match says whose face it is, not that it is live: a printed photo of the candidate held to the "
    "camera matches. Judge it with the recording."
)


@dataclass(frozen=True)
class IdentityView:
    enrolment: CandidateEnrolment | None
    enrolment_is_photo: bool
    has_reference_frame: bool
    lines: list[str]
    limits: str = LIMITS


def identity_view(db: Session, session: ExamSession) -> IdentityView:
    enrolment = latest_enrolment(db, session.tenant_id, session.candidate_id, session_id=session.id)
    summary: dict[str, Any] = session.identity or {}
    samples = int(summary.get("samples") or 0)
    lines = []
    if enrolment is None:
        lines.append("No enrolment photo or clip for this candidate: only changes of person are checked.")
    if samples == 0:
        lines.append("No face sample was good enough to compare (too small, turned or unsure faces are skipped).")
    else:
        if summary.get("matches_enrolment") is not None:
            median = summary.get("median_distance_to_enrolment")
            lines.append(
                f"{summary['matches_enrolment']} of {samples} face samples match the enrolment "
                f"(median distance {median}; below {summary.get('threshold', 0.55)} is the same person)."
            )
        since = float(summary.get("reference_s") or 0.0)
        lines.append(
            f"{summary.get('matches_reference', 0)} of {samples} match the session's first steady face "
            f"(from {int(since) // 60}:{int(since) % 60:02d})."
        )
    return IdentityView(
        enrolment=enrolment,
        enrolment_is_photo=enrolment is not None and enrolment.kind == MediaKind.ENROLMENT_PHOTO,
        has_reference_frame=bool(summary.get("reference_frame")),
        lines=lines,
    )
