"""Model files converted from the pinned MediaPipe wheel, with their manifest.

The runtime side is only this loader: it resolves a model by name and refuses a file whose
sha256 differs from ``manifest.json``, so a truncated checkout or a hand-edited model fails
loudly at detector construction instead of producing quietly wrong signals. Conversion lives in
``models/export.py`` and needs build-time packages that the runtime never imports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent

__all__ = ["MODELS_DIR", "ModelInfo", "load_manifest", "resolve_model", "sha256_of"]


@dataclass(frozen=True)
class ModelInfo:
    """One manifest entry: what the file is and how to feed it."""

    name: str
    path: Path
    sha256: str
    input_shape: tuple[int, ...]
    normalisation: str
    source_path: str
    source_sha256: str


def load_manifest(directory: Path = MODELS_DIR) -> dict[str, ModelInfo]:
    """Read ``manifest.json`` in ``directory`` into ``ModelInfo`` records keyed by model name."""
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"expected a model manifest at {manifest}; found none (run `python -m models.export`)")
    entries = json.loads(manifest.read_text())["models"]
    out: dict[str, ModelInfo] = {}
    for e in entries:
        shape = tuple(-1 if isinstance(d, str) else int(d) for d in e["inputs"][0]["shape"])
        out[e["name"]] = ModelInfo(
            name=e["name"],
            path=directory / e["file"],
            sha256=e["sha256"],
            input_shape=shape,
            normalisation=e["normalisation"],
            source_path=e["source"]["path"],
            source_sha256=e["source"]["sha256"],
        )
    return out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_model(name: str, directory: Path = MODELS_DIR) -> ModelInfo:
    """Return the manifest entry for ``name`` after checking the file exists and its hash matches."""
    manifest = load_manifest(directory)
    if name not in manifest:
        raise KeyError(f"unknown model {name!r}; expected one of {sorted(manifest)}")
    info = manifest[name]
    if not info.path.is_file():
        raise FileNotFoundError(f"model {name!r}: expected file {info.path}; it is missing")
    actual = sha256_of(info.path)
    if actual != info.sha256:
        raise ValueError(
            f"model {name!r}: expected sha256 {info.sha256}, found {actual} in {info.path}; "
            "re-run `python -m models.export` or restore the file from git"
        )
    return info
