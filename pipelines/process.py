"""Process one stored session: fan its chunks out, segment, and persist results so a re-run replaces them.

Results of a run go under a fresh prefix (`.../results/v<pipeline>/<run>/`): the signals as a compressed
NumPy archive, the segments as JSON, and a JPEG at each segment's peak. Only then does one database
transaction swap the session's segment rows and point the session at the new prefix. Every other run's
objects are deleted afterwards: the previous run's, and any that a worker killed mid-write left behind
(its job is re-run, and the database never referenced its prefix). Readers see the old results or the
new, never a mix, and re-running a session never duplicates its segments. Under the job queue, the
publishing transaction first checks that the worker still holds the job's lease and marks the job done
(`on_publish`), so a worker that was taken over while slow cannot replace the results of the one that
took its job, and the results and the job's state commit together.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import cv2
import numpy as np
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from core.db import new_id, utcnow
from core.enrolments import latest_enrolment
from core.rescoring import policy_for_session
from core.tables import ExamSession, FlagSegment
from core.vocabulary import VIDEO_KINDS, FlagSource, MediaKind, MediaState, ReviewPriority
from detectors import AwayConfig, Signals
from detectors.face_analysis import DESCRIPTOR_COLUMNS
from pipelines.analysis import PIPELINE_VERSION, segment_session
from pipelines.decode import Chunk, DecodeOptions, decode_chunk, plan_chunks
from pipelines.fanout import Fanout
from pipelines.identity import IdentityRule, identity_evidence
from pipelines.remux import store_seekable_copy
from pipelines.segments import Segment
from pipelines.thumbnails import keyframe_thumbnails
from storage.keys import SessionPrefix
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)
EVIDENCE_EDGE_MS = 1000  # evidence frames of one flag are at least this far apart


class NotProcessable(ValueError):
    """The session is not in a state, or lacks the media, that processing needs."""


@dataclass(frozen=True)
class ProcessOutcome:
    session_id: str
    segments: list[Segment]
    risk: float
    priority: ReviewPriority
    results_prefix: str


def review_priority(risk: float) -> ReviewPriority:
    """Buckets for the review queue: reviewers see `high` first; the risk orders within a bucket."""
    if risk >= 0.6:
        return ReviewPriority.HIGH
    return ReviewPriority.MEDIUM if risk >= 0.25 else ReviewPriority.LOW


def process_session(
    db: sessionmaker[Session],
    store: ObjectStore,
    fanout: Fanout,
    session_id: str,
    *,
    chunk_target_ms: int = 30_000,
    away: AwayConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_publish: Callable[[Session], None] | None = None,
) -> ProcessOutcome:
    """Analyse, segment and store one session. ``on_publish`` runs first in the transaction that publishes the
    results, and commits with it; raising refuses the publication: a worker whose job lease lapsed must not
    replace the results of the worker that took the job over (``JobQueue.complete``, which also marks the
    job done). A refused run deletes what it wrote."""
    with db() as s:
        session = s.get(ExamSession, session_id)
        if session is None:
            raise NotProcessable(f"no session {session_id!r}")
        webcam = next((m for m in session.media if m.kind == MediaKind.WEBCAM and m.state == MediaState.COMPLETE), None)
        probe = webcam.video_probe if webcam is not None else None
        if webcam is None or probe is None:
            raise NotProcessable(f"session {session_id} has no validated webcam recording (state {session.state})")
        key = webcam.object_key
        recordings = [
            (m.kind, m.object_key, found)
            for m in session.media
            if m.kind in VIDEO_KINDS and m.state == MediaState.COMPLETE and (found := m.video_probe) is not None
        ]
        duration_ms = round(probe.duration_s * 1000)
        keyframes = probe.keyframe_interval_s
        policy = policy_for_session(s, session)  # the exam's policy, with this attempt's accommodation
        enrolled = latest_enrolment(s, session.tenant_id, session.candidate_id, session_id=session.id)
        enrolment = None if enrolled is None else np.asarray(enrolled.descriptor, np.float32)
        prefix = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id)
        chunks = plan_chunks(duration_ms, round(keyframes * 1000) if keyframes else None, chunk_target_ms)
        session.chunks_total, session.chunks_done = len(chunks), 0
        s.commit()

    def progress(done: int, total: int) -> None:
        try:  # for the reviewers' progress bar only: a long job must not die of a database hiccup here
            with db() as s:
                row = s.get(ExamSession, session_id)
                if row is not None:
                    row.chunks_done = done
                    s.commit()
        except Exception:
            log.warning("progress not recorded", extra={"session_id": session_id, "done": done}, exc_info=True)
        if on_progress is not None:
            on_progress(done, total)

    results = prefix.key("results", f"v{PIPELINE_VERSION}", new_id()) + "/"
    try:  # from the first write to the publication: a run that fails anywhere leaves nothing behind
        # A browser's recording (MediaRecorder WebM) has no duration and no seek index: a seekable copy beside the
        # upload serves the reviewer's player, and the analysis too, whose every chunk seeks into the recording.
        seekable = {
            kind: store_seekable_copy(store, source, prefix.seekable_key(kind), probed, kind=kind)
            for kind, source, probed in recordings
        }
        key = seekable.get(MediaKind.WEBCAM) or key
        parts = fanout.analyze(key, chunks, on_progress=progress)
        if not parts:
            raise NotProcessable(f"session {session_id}: no frame could be sampled from the recording")
        signals = Signals.concat(parts)
        rule = IdentityRule()
        segments, risk = segment_session(
            signals, policy, away or AwayConfig(), duration_ms=duration_ms, enrolment=enrolment, identity=rule
        )
        versions = fanout.versions()
        who = identity_evidence(signals, enrolment, rule)
        identity: dict[str, Any] = {**who.summary(rule), "enrolled": enrolment is not None}
        # One reader for every frame taken from the recording: its block cache keeps the container's index
        # (an MP4's sits at one end) across the evidence frames, the reference frame and the thumbnail strip.
        with store.open(key) as recording:
            evidence = _write_evidence(store, recording, results, segments)
            if who.reference_ms is not None:  # the frame the session's reference face comes from: a matching example
                frame_key = f"{results}evidence/identity-reference-{who.reference_ms}.jpg"
                identity["reference_frame"] = _write_frame(store, recording, frame_key, who.reference_ms)
            thumbnails = _write_thumbnails(store, recording, results, duration_ms / 1000)
        plain, faces = _without_descriptors(signals)
        store.put_bytes(results + "signals.npz", _signals_npz(plain), content_type="application/octet-stream")
        if faces is not None:  # biometric: its own object, so it can be erased or withheld on its own
            store.put_bytes(results + "descriptors.npz", _signals_npz(faces), content_type="application/octet-stream")
        store.put_bytes(
            results + "segments.json",
            json.dumps(
                {
                    "pipeline_version": PIPELINE_VERSION,
                    "detectors": versions,
                    "risk": risk,
                    "identity": identity,
                    "segments": [_segment_json(seg, evidence[i]) for i, seg in enumerate(segments)],
                },
                indent=1,
            ).encode(),
            content_type="application/json",
        )
        priority = review_priority(risk)
        run = Run(segments, evidence, versions, risk, priority, results, len(chunks), identity, thumbnails)
        publish_results(db, session_id, run, on_publish)
    except BaseException:
        _discard_unpublished(db, store, session_id, prefix, results)
        raise
    for stale in _other_runs(store, prefix.key("results") + "/", keep=results):
        # The previous run's, and any that a killed worker left half-written. Nothing references them any
        # more, so a failure here only leaves garbage that the session's next run deletes; the run succeeded.
        try:
            store.delete_prefix(stale)
        except Exception:
            log.warning(
                "could not delete a stale run", extra={"session_id": session_id, "prefix": stale}, exc_info=True
            )
    log.info(
        "session processed",
        extra={"session_id": session_id, "segments": len(segments), "risk": risk, "chunks": len(chunks)},
    )
    return ProcessOutcome(session_id, segments, risk, priority, results)


@dataclass(frozen=True)
class Run:
    """What one processing run publishes."""

    segments: list[Segment]
    evidence: list[list[str]]  # per segment, its evidence frames' keys
    versions: dict[str, str]
    risk: float
    priority: ReviewPriority
    results_prefix: str
    chunk_count: int
    identity: dict[str, Any]
    thumbnails: dict[str, Any] | None = None  # the timeline's strip: sprite key and index


def publish_results(
    db: sessionmaker[Session], session_id: str, run: Run, on_publish: Callable[[Session], None] | None
) -> None:
    """One transaction: swap the session's detector flags and point it at the new results."""
    with db() as s:
        if on_publish is not None:
            on_publish(s)  # first, so on PostgreSQL the job row stays locked until this commits
        # Flags a reviewer added are theirs, not the detectors': re-processing replaces only detector flags.
        s.execute(
            delete(FlagSegment).where(
                FlagSegment.session_id == session_id, FlagSegment.source == FlagSource.DETECTOR.value
            )
        )
        s.add_all(
            FlagSegment(
                session_id=session_id,
                kind=seg.kind.value,
                start_ms=seg.start_ms,
                end_ms=seg.end_ms,
                score=seg.score,
                peak_ms=seg.peak_ms,
                evidence_keys=run.evidence[i],
                detector_versions=run.versions,
                pipeline_version=PIPELINE_VERSION,
                details=dict(seg.details) or None,
            )
            for i, seg in enumerate(run.segments)
        )
        row = s.get(ExamSession, session_id)
        assert row is not None
        row.risk_score, row.review_priority, row.results_prefix = run.risk, run.priority.value, run.results_prefix
        row.pipeline_version, row.processed_at, row.chunks_done = PIPELINE_VERSION, utcnow(), run.chunk_count
        row.identity, row.thumbnails = run.identity, run.thumbnails
        s.commit()


def _discard_unpublished(
    db: sessionmaker[Session], store: ObjectStore, session_id: str, prefix: SessionPrefix, results: str
) -> None:
    """After a run failed or was refused: delete what it wrote under its results prefix (nothing references it),
    and everything under the session if it was erased meanwhile: the seekable copies this run made, and any
    object that landed after the erasure listed the prefix. A live session's seekable copies stay: they serve
    the reviewer's player and the next run. What this cannot delete, `core.erasure_sweep` does."""
    try:
        store.delete_prefix(results)
        if _erased(db, session_id):
            store.delete_prefix(prefix.prefix)
    except Exception:
        log.warning(
            "could not delete an unpublished run", extra={"session_id": session_id, "prefix": results}, exc_info=True
        )


def _erased(db: sessionmaker[Session], session_id: str) -> bool:
    with db() as s:
        row = s.get(ExamSession, session_id)
        return row is None or row.deleted_at is not None


def _other_runs(store: ObjectStore, results_root: str, *, keep: str) -> set[str]:
    """Run prefixes (`<root>v<pipeline>/<run>/`) under a session's results, except `keep`."""
    runs = set()
    for info in store.list_objects(results_root):
        version_and_run = info.key[len(results_root) :].split("/")[:2]
        if len(version_and_run) == 2:
            runs.add(results_root + "/".join(version_and_run) + "/")
    runs.discard(keep)
    return runs


def _without_descriptors(signals: Signals) -> tuple[Signals, Signals | None]:
    """(every column but the face descriptors, the descriptors on the frames that have one), the latter None
    when the signals carry none."""
    names = [c for c in DESCRIPTOR_COLUMNS if c in signals.columns]
    plain = Signals(signals.timestamps_ms, {c: v for c, v in signals.columns.items() if c not in names})
    if not names:
        return plain, None
    rows = np.flatnonzero(np.isfinite(signals[names[0]]))
    return plain, Signals(signals.timestamps_ms[rows], {c: signals[c][rows] for c in names})


def _signals_npz(signals: Signals) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, timestamps_ms=signals.timestamps_ms, **dict(signals.columns))
    return buffer.getvalue()


def _read_npz(store: ObjectStore, key: str) -> Signals:
    with np.load(io.BytesIO(b"".join(store.iter_chunks(key)))) as archive:
        columns = {name: archive[name] for name in archive.files if name != "timestamps_ms"}
        return Signals(archive["timestamps_ms"], columns)


def load_signals(store: ObjectStore, results_prefix: str) -> Signals:
    """The stored signals of a processed session, for re-scoring without decoding (the face descriptors put
    back on their frames, where they were stored)."""
    signals = _read_npz(store, results_prefix + "signals.npz")
    if store.stat(results_prefix + "descriptors.npz") is None:
        return signals
    faces = _read_npz(store, results_prefix + "descriptors.npz")
    at = np.searchsorted(signals.timestamps_ms, faces.timestamps_ms)
    columns = dict(signals.columns)
    for name, values in faces.columns.items():
        column = np.full(len(signals), np.nan)
        column[at] = values
        columns[name] = column
    return Signals(signals.timestamps_ms, columns)


def _write_frame(store: ObjectStore, recording: BinaryIO, frame_key: str, at_ms: int) -> str | None:
    """A JPEG of the recording's frame at ``at_ms``, read from storage around that moment only; its key."""
    options = DecodeOptions(sample_fps=1, batch_size=1)
    recording.seek(0)  # the reader is shared: the demuxer starts from the container's header
    frames = next(decode_chunk(recording, Chunk(0, at_ms, at_ms + 1000), options), None)
    if frames is None:
        return None
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frames[0][0], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return None
    store.put_bytes(frame_key, jpeg.tobytes(), content_type="image/jpeg")
    return frame_key


def evidence_moments(seg: Segment, edge_ms: int = EVIDENCE_EDGE_MS) -> list[int]:
    """When to show a flag: its peak first, then just after it starts and just before it ends when those are
    at least `edge_ms` from the peak and from each other (a short flag shows its peak only)."""
    moments = [seg.peak_ms]
    for at in (seg.start_ms + edge_ms // 2, seg.end_ms - edge_ms // 2):
        if seg.start_ms <= at <= seg.end_ms and all(abs(at - other) >= edge_ms for other in moments):
            moments.append(at)
    return moments


def _write_thumbnails(
    store: ObjectStore, recording: BinaryIO, results: str, duration_s: float
) -> dict[str, Any] | None:
    """The recording's thumbnail strip (keyframes only) as one JPEG sprite; its key and index, or None."""
    recording.seek(0)
    made = keyframe_thumbnails(recording, duration_s)
    if made is None:
        return None
    sprite, index = made
    store.put_bytes(results + "thumbnails.jpg", sprite, content_type="image/jpeg")
    return {"key": results + "thumbnails.jpg", **index.to_json()}


def _write_evidence(store: ObjectStore, recording: BinaryIO, results: str, segments: list[Segment]) -> list[list[str]]:
    """JPEGs of each segment's frames at `evidence_moments`: the peak, then the start and the end."""
    keys: list[list[str]] = []
    for seg in segments:
        frames = (
            _write_frame(store, recording, f"{results}evidence/{seg.kind.value}-{at}.jpg", at)
            for at in evidence_moments(seg)
        )
        keys.append([written for written in frames if written])
    return keys


def _segment_json(seg: Segment, evidence: list[str]) -> dict[str, Any]:
    return {
        "kind": seg.kind.value,
        "start_s": seg.start_ms / 1000,
        "end_s": seg.end_ms / 1000,
        "score": seg.score,
        "peak_s": seg.peak_ms / 1000,
        "evidence": evidence,
        "details": dict(seg.details),
    }
