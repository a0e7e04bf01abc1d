"""A session from frames to signals to segments, as plain functions: what a Ray task runs, minus Ray.

`ChunkAnalyzer` holds the detectors (models loaded once, at construction) and turns one time chunk of a
recording into `Signals`. `segment_session` turns a whole session's signals into flagged segments
(through `pipelines.evidence`), and `analyze_file` runs everything in a loop over chunks: for `proctor analyze`, for
tests, and as the reference the Ray path must match.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from core.vocabulary import FlagKind
from detectors import AwayConfig, DetectorConfigs, FrameBatch, Signals, build_detectors
from models import load_manifest
from pipelines.decode import Chunk, DecodeOptions, decode_chunk, plan_chunks
from pipelines.evidence import explained, flag_evidence
from pipelines.identity import IdentityRule, identity_evidence
from pipelines.segments import ExamPolicy, Segment, risk_score, segment_all

log = logging.getLogger(__name__)

PIPELINE_VERSION = "9"
"""Bumped when the same signals would give other flags: 2 added the placement-following calibration, the
evidence rules (turned away, covered lens, fixtures), identity flags and per-flag explanations; 3 counts two
faces in a dark frame as two, asks a head turning away to continue a face seen just before, and gives an
empty seat no identity evidence; 4 counts an iris read only where its neighbours agree
(``AwayConfig.steady_gaze_ms``); 5 counts a lone face whose head pose cannot be read for a second as looking away
(``pipelines.evidence.UnreadableHead``); 6 lets a picture's re-detections jitter by a few pixels and stay a picture
(``Fixtures.jitter_px``), counts a face lost as a head turned away only where the head scored away (not the eyes),
and reads a lone face too small for anyone at the desk, for this session's camera, as an empty seat
(``pipelines.people.EmptySeat``); 7 also starts a calibration stretch where the face's size changed by more than
1.5x within a second, as a tracker that slid onto a new face after a cut does (``PlacementRule.step_scale``), and
splits a stretch where two successive face descriptors are of different people
(``detectors.placement.person_splits``); 8 never lets a looking-away flag span two placement groups, so evidence
after a cut, a camera move or another person must reach the threshold and last on its own (``pipelines.segments``),
and leaves a face lost after a head turn no face where it comes back in another group (``TurnedAway``); 9 decides
who is on camera only from a face seen alone, so someone beside the candidate is multiple_faces and not also
person_changed (``pipelines.identity.identity_evidence``)."""


@dataclass(frozen=True)
class AnalysisConfig:
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    detectors: DetectorConfigs = field(default_factory=DetectorConfigs)
    away: AwayConfig = field(default_factory=AwayConfig)
    chunk_target_ms: int = 30_000


class ChunkAnalyzer:
    """Detectors built once (per worker); call it on a chunk of a recording to get that chunk's signals.

    ``versions`` names what produced the signals: each detector's version, and each model file by the
    start of its sha256 (``model:<name>``), since a re-exported model changes the numbers too.
    """

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config
        self.detectors = build_detectors(configs=config.detectors)
        self.versions = {d.name: d.version for d in self.detectors} | {
            f"model:{name}": info.sha256[:12] for name, info in sorted(load_manifest().items())
        }

    def __call__(self, source: str | Path | BinaryIO, chunk: Chunk) -> Signals:
        started = time.perf_counter()
        parts: list[Signals] = []
        for frames, stamps in decode_chunk(source, chunk, self.config.decode):
            batch = FrameBatch(frames, stamps)
            parts.append(Signals.merge([detector(batch) for detector in self.detectors]))
        signals = Signals.concat(parts) if parts else Signals(np.zeros(0, dtype=np.int64), {})
        log.info(
            "chunk analysed",
            extra={"chunk": chunk.index, "frames": len(signals), "elapsed_s": round(time.perf_counter() - started, 3)},
        )
        return signals


@dataclass(frozen=True)
class SessionResult:
    duration_ms: int
    signals: Signals
    segments: list[Segment]
    risk: float
    detector_versions: Mapping[str, str]


def segment_session(
    signals: Signals,
    policy: ExamPolicy,
    away: AwayConfig,
    *,
    duration_ms: int,
    enrolment: NDArray[np.float32] | None = None,
    identity: IdentityRule | None = None,
) -> tuple[list[Segment], float]:
    """The pure last step: stored signals and a policy in, segments (with why each fired) and a risk score out
    (no decoding). The exam policy's looking-away tolerances apply over ``away``; ``enrolment`` is the
    candidate's enrolment template, when there is one."""
    away = policy.looking_away.applied_to(away)
    rule = identity or IdentityRule()
    evidence, trace = flag_evidence(signals, away)
    who = identity_evidence(signals, enrolment, rule)
    # An empty seat (no face, a covered lens, or only a picture on the wall left) has no one to identify.
    empty = evidence[FlagKind.NO_FACE] == 1
    evidence[FlagKind.PERSON_CHANGED] = np.where(empty, np.nan, who.person_changed)
    evidence[FlagKind.IDENTITY_MISMATCH] = np.where(empty, np.nan, who.identity_mismatch)
    # Looking away is judged against the calibration of its placement group: a flag never spans two.
    references = {FlagKind.LOOKING_AWAY: trace.calibration.group} if trace is not None else None
    segments = segment_all(signals.timestamps_ms, evidence, policy, video_end_ms=duration_ms, references=references)
    segments = explained(segments, signals.timestamps_ms, trace, away, who, rule, evidence, policy)
    return segments, risk_score(segments, policy, video_end_ms=duration_ms)


def analyze_file(
    path: Path,
    duration_ms: int,
    keyframe_interval_ms: int | None,
    *,
    config: AnalysisConfig | None = None,
    policy: ExamPolicy | None = None,
    analyzer: ChunkAnalyzer | None = None,
) -> SessionResult:
    """Run a local recording through the whole pipeline in a plain loop over its chunks."""
    cfg = config or AnalysisConfig()
    run = analyzer or ChunkAnalyzer(cfg)
    chunks = plan_chunks(duration_ms, keyframe_interval_ms, cfg.chunk_target_ms)
    parts = [part for part in (run(path, chunk) for chunk in chunks) if len(part)]
    if not parts:
        raise ValueError(f"{path.name}: no frame could be sampled from the recording")
    signals = Signals.concat(parts)
    segments, risk = segment_session(signals, policy or ExamPolicy(), cfg.away, duration_ms=duration_ms)
    return SessionResult(duration_ms, signals, segments, risk, run.versions)
