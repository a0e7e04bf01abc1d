"""What ingest's media probe learned about an accepted recording: the seam between ingest and processing.

Ingest writes it when an upload completes (`media.probe`, JSON); the pipeline reads it back to plan
chunks, and the API shows it to the platform. One typed record, so both sides agree on its fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class VideoProbe:
    """What the pipeline needs to know about an accepted recording.

    `duration_s` and `frame_rate` come from the packets, not the header. `width` and `height` are the
    stored size; `rotation_deg` is the clockwise turn a player applies for display (90 for a phone held
    upright, like the legacy `rotate` tag). `keyframe_interval_s` is the median keyframe spacing, None
    when the file has a single keyframe; the pipeline cuts chunks near keyframes.
    """

    container: str
    codec: str
    duration_s: float
    frame_rate: float
    width: int
    height: int
    rotation_deg: int
    has_audio: bool
    keyframe_interval_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> VideoProbe:
        """The probe as `to_dict` stored it; raises `ValueError` naming the missing fields otherwise."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in stored]
        if missing:
            raise ValueError(f"a stored video probe lacks {missing}: the media row was not written by the probe")
        return cls(**{n: stored[n] for n in names})
