"""The detectors' answers on a labelled session, computed once and cached: what the accuracy benchmarks score.

A session is decoded at the pipeline's 5 fps with its decoder settings, fed to the pipeline's detectors
(face analysis and frame quality) in the pipeline's batch size, and MediaPipe's legacy face detector (the
baseline to beat) counts faces on the same frames. With ``lighting=True`` every fifth sampled frame that is labelled
with a face is also darkened, washed out and made noisy, and the face-presence pass is asked again.

Results are cached under ``<cache>/signals/`` by the video's md5 and the detector versions, so tuning and
re-scoring runs do not decode again; a new detector version or a new video recomputes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import mediapipe as mp
import numpy as np

from detectors import FaceAnalysisDetector, FrameBatch, FrameQualityDetector, Signals
from pipelines.decode import DecodeOptions

CHUNK = DecodeOptions().batch_size
LIGHT_EVERY = 5  # every fifth sampled frame (1 fps), where it is labelled with a face, for the lighting table


def gamma(img: np.ndarray, g: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / g), 0, 255).astype(np.uint8)
    return lut[img]


def lighting_variants() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "original": lambda x: x,
        "gamma 0.4": lambda x: gamma(x, 0.4),
        "gamma 0.25": lambda x: gamma(x, 0.25),
        "washed out": lambda x: (x.astype(np.float32) * 0.35 + 160).clip(0, 255).astype(np.uint8),
        "sensor noise": lambda x: (x + rng.normal(0, 20, x.shape)).clip(0, 255).astype(np.uint8),
    }


class Baseline:
    """MediaPipe's legacy face detector, model 0, threshold 0.5: the baseline to beat."""

    def __init__(self) -> None:
        self.fd = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)

    def count(self, frame: np.ndarray) -> int:
        result = self.fd.process(frame)
        return len(result.detections or [])


@dataclass(frozen=True)
class Measured:
    """One session's per-sampled-frame answers."""

    signals: Signals
    baseline_count: np.ndarray
    light: dict[str, np.ndarray]  # variant -> (ours found, baseline found) per frame, -1 where not measured


def sampled_frames(path: Path, sample_fps: float) -> Iterator[tuple[int, np.ndarray]]:
    """(time ms, RGB frame) at ``sample_fps``, with the pipeline's decoder settings that change pixels."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if DecodeOptions().skip_loop_filter:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        fps = float(stream.average_rate or 15)
        every = max(1, round(fps / sample_fps))
        for k, frame in enumerate(container.decode(video=0)):
            if k % every == 0:
                yield round(k * 1000 / fps), frame.to_ndarray(format="rgb24")


def label_faces(truth: dict[str, Any], t_ms: int) -> int:
    t = t_ms / 1000
    interval = next((i for i in truth["intervals"] if i["start_s"] <= t < i["end_s"]), truth["intervals"][-1])
    return int(interval["faces"])


def ignored(truth: dict[str, Any], t_ms: int) -> bool:
    """Within half a second of a cut: every label skips these frames."""
    return any(a <= t_ms / 1000 <= b for a, b in truth.get("ignore", []))


class Detectors:
    def __init__(self) -> None:
        self.analysis = FaceAnalysisDetector()
        self.quality = FrameQualityDetector()
        self.baseline = Baseline()
        self.variants = lighting_variants()

    @property
    def versions(self) -> str:
        return f"{self.analysis.name}{self.analysis.version}+{self.quality.name}{self.quality.version}"

    def signals(self, batch: FrameBatch) -> Signals:
        """The pipeline's detectors on one batch (at most ``CHUNK`` frames, as the pipeline sends them)."""
        return Signals.merge([self.analysis(batch), self.quality(batch)])

    def measure(self, path: Path, truth: dict[str, Any], *, lighting: bool) -> Measured:
        frames: list[np.ndarray] = []
        stamps: list[int] = []
        parts: list[Signals] = []
        baseline: list[int] = []
        light: dict[str, list[tuple[int, int]]] = {name: [] for name in self.variants}

        def flush() -> None:
            if frames:
                parts.append(self.signals(FrameBatch(np.stack(frames), np.array(stamps, np.int64))))
                frames.clear()
                stamps.clear()

        for index, (t_ms, img) in enumerate(sampled_frames(path, DecodeOptions().sample_fps)):
            frames.append(img)
            stamps.append(t_ms)
            baseline.append(self.baseline.count(img))
            due = lighting and index % LIGHT_EVERY == 0 and not ignored(truth, t_ms)
            if due and label_faces(truth, t_ms) >= 1:
                for name, change in self.variants.items():
                    changed = np.ascontiguousarray(change(img))
                    found = len(self.analysis.presence.faces(changed)) >= 1
                    light[name].append((int(found), int(self.baseline.count(changed) >= 1)))
            else:
                for name in light:
                    light[name].append((-1, -1))
            if len(frames) == CHUNK:
                flush()
        flush()
        return Measured(Signals.concat(parts), np.array(baseline), {k: np.array(v) for k, v in light.items()})


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def save_signals(stored: Path, signals: Signals, **extra: np.ndarray) -> None:
    """``signals`` and ``extra`` arrays in one ``.npz``, written whole and then renamed: another benchmark reading
    the cache at the same time never sees half a file."""
    stored.parent.mkdir(parents=True, exist_ok=True)
    partial = stored.with_suffix(f".{os.getpid()}.partial.npz")
    np.savez_compressed(
        partial,
        timestamps_ms=signals.timestamps_ms,
        columns=np.array(json.dumps(list(signals.columns))),
        **{f"col_{c}": v for c, v in signals.columns.items()},
        **extra,
    )
    os.replace(partial, stored)


def load_signals(stored: Path, *extra: str) -> tuple[Signals, list[np.ndarray]]:
    """What ``save_signals`` wrote: the signals, and the ``extra`` arrays named."""
    with np.load(stored) as archive:
        columns = json.loads(str(archive["columns"]))
        signals = Signals(archive["timestamps_ms"], {c: archive[f"col_{c}"] for c in columns})
        return signals, [archive[name] for name in extra]


def measured(detectors: Detectors, path: Path, truth: dict[str, Any], cache: Path, *, lighting: bool) -> Measured:
    """The session's answers, from the cache when this video was measured by these detector versions."""
    key = hashlib.sha256(f"{md5_of(path)} {detectors.versions} lighting={lighting}".encode()).hexdigest()[:16]
    stored = cache / "signals" / f"{path.stem}-{key}.npz"
    lights = [f"light_{i}" for i in range(len(detectors.variants))]
    if stored.is_file():
        signals, (baseline, *light) = load_signals(stored, "baseline_count", *lights)
        return Measured(signals, baseline, dict(zip(detectors.variants, light, strict=True)))
    result = detectors.measure(path, truth, lighting=lighting)
    light_arrays = {key: result.light[name] for key, name in zip(lights, detectors.variants, strict=True)}
    save_signals(stored, result.signals, baseline_count=result.baseline_count, **light_arrays)
    return result
