"""The rules an upload is checked against, shared by the probe (`ingest.probe`) and its packet scan
(`ingest.probe_scan`): the limits (`ProbeLimits`), the refusal (`MediaRejected`) and the refusals that both raise
when a limit is passed. `ingest.probe` re-exports `ProbeLimits` and `MediaRejected`; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.probe_process import Sandbox

AV_TIME_BASE = 1_000_000  # FFmpeg's unit for container durations and start times: microseconds


@dataclass(frozen=True)
class ProbeLimits:
    """What an upload must satisfy. Defaults cover webcam recordings from browsers and desktop apps."""

    min_side_px: int = 120
    max_side_px: int = 4096
    min_fps: float = 1.0
    max_fps: float = 120.0
    max_duration_s: float = 6 * 3600
    supported_codecs: frozenset[str] = frozenset({"h264", "hevc", "vp8", "vp9", "av1"})
    # frames x width x height: what decoding the whole recording costs. 3e12 takes 6 h of 1080p at 60 fps or 3 h
    # of 4K at 30 fps, and refuses 6 h of 4096x4096 at 120 fps (4.3e13), a day of one worker's CPU.
    max_pixels: int = 3_000_000_000_000
    sandbox: Sandbox = field(default_factory=Sandbox)

    def __post_init__(self) -> None:
        if not 1 <= self.min_side_px <= self.max_side_px:
            raise ValueError(f"need 1 <= min_side_px <= max_side_px, got {self.min_side_px} and {self.max_side_px}")
        if not 0 < self.min_fps <= self.max_fps:
            raise ValueError(f"need 0 < min_fps <= max_fps, got {self.min_fps} and {self.max_fps}")
        if self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {self.max_duration_s}")
        if not self.supported_codecs:
            raise ValueError("supported_codecs is empty: no video could ever be accepted")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")


class MediaRejected(Exception):
    """An upload that cannot be accepted. `code` is for machines, `message` tells a person what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def too_long(duration_s: float, limits: ProbeLimits) -> MediaRejected:
    return MediaRejected(
        "duration_too_long",
        f"the recording lasts {duration_s / 3600:.2f} h; at most {limits.max_duration_s / 3600:.2f} h is "
        "accepted: split the exam into several sessions",
    )


def too_many_pixels(frames: int, width: int, height: int, limits: ProbeLimits) -> MediaRejected:
    return MediaRejected(
        "pixel_budget_exceeded",
        f"the recording holds {'at least ' if frames else ''}{frames} frames of {width}x{height}, "
        f"{frames * width * height / 1e12:.2f} trillion pixels to analyse; at most {limits.max_pixels / 1e12:.2f} "
        "trillion are accepted: record at a lower resolution or frame rate (1280x720 at 30 fps is plenty), or split "
        "the exam into several sessions",
    )
