"""The dlib face descriptor: its manifest entry, file, graph and batching, and the exporter's guards."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from models import MODELS_DIR, load_manifest, resolve_model, sha256_of
from models.export import write_manifest
from models.export_face_descriptor import DAT_SHA256, PARITY_TOLERANCE, Reader, main

SHA256 = "3ce56699438ccc2f6eb3b56d46a4c638ea3798c4a4cad1dd7379330f411bd3ac"
MANIFEST = json.loads((MODELS_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(resolve_model("face_descriptor").path), providers=["CPUExecutionProvider"])


def test_manifest_entry_describes_the_file() -> None:
    (entry,) = [e for e in MANIFEST["models"] if e["name"] == "face_descriptor"]
    assert entry["file"] == "face_descriptor.onnx"
    assert entry["licence"] == "CC0-1.0"
    assert entry["source"]["package"] == "face-recognition-models 0.3.0 (PyPI)"
    assert entry["source"]["sha256"] == DAT_SHA256
    assert entry["sha256"] == SHA256
    assert entry["bytes"] == (MODELS_DIR / "face_descriptor.onnx").stat().st_size
    assert entry["layout"] == "NCHW"
    assert entry["inputs"] == [{"name": "image", "shape": ["batch", 3, 150, 150], "dtype": "float32"}]
    assert entry["outputs"] == [{"name": "descriptor", "shape": ["batch", 128], "dtype": "float32"}]
    assert entry["conversion"]["opset"] == 17
    assert 0 <= entry["conversion"]["parity_max_abs_diff_vs_dlib"] < PARITY_TOLERANCE
    assert load_manifest()["face_descriptor"].input_shape == (-1, 3, 150, 150)


def test_file_hash_matches_manifest() -> None:
    info = resolve_model("face_descriptor")
    assert sha256_of(info.path) == info.sha256 == SHA256


def test_graph_takes_raw_rgb_chips_and_names_its_source(session: ort.InferenceSession) -> None:
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("image", ["batch", 3, 150, 150], "tensor(float)")
    assert (out.name, out.shape) == ("descriptor", ["batch", 128])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["source_sha256"] == DAT_SHA256
    assert "/ 256" in meta["input_normalisation"]


def test_a_batch_equals_its_rows_one_by_one(session: ort.InferenceSession) -> None:
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 150, 150)).astype(np.float32)
    (batch,) = session.run(None, {"image": x})
    assert batch.shape == (4, 128) and batch.dtype == np.float32
    singles = np.concatenate([session.run(None, {"image": x[i : i + 1]})[0] for i in range(4)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert np.all(np.linalg.norm(batch, axis=1) > 0.1)  # raw descriptors, not zeros


def test_reader_decodes_dlib_primitives() -> None:
    """dlib's integers: a control byte (0x80 if negative | byte count), then the magnitude little-endian."""
    blob = bytes([0x01, 0x05, 0x81, 0x05, 0x02, 0x00, 0x01])  # 5, -5, 256
    blob += bytes([0x01, 0x03, 0x81, 0x01])  # real: mantissa 3, exponent -1 -> 1.5
    blob += b"1" + bytes([0x01, 0x03]) + b"abc"  # bool, string
    blob += bytes([0x01, 0x02]) + b"".join(bytes([0x01, n]) for n in (1, 1, 1, 2)) + struct.pack("<2f", 0.5, -2.0)
    r = Reader(blob)
    assert (r.integer(), r.integer(), r.integer(), r.real(), r.flag(), r.text("abc")) == (5, -5, 256, 1.5, True, "abc")
    np.testing.assert_array_equal(r.tensor(), np.array([0.5, -2.0], np.float32).reshape(1, 1, 1, 2))
    assert r.pos == len(blob)


def test_exporter_refuses_another_dat(tmp_path: Path) -> None:
    dat = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    dat.write_bytes(b"not the pinned model")
    with pytest.raises(SystemExit, match="expected 55533b28"):
        main(["--dat", str(dat), "--out", str(tmp_path)])
    assert not (tmp_path / "face_descriptor.onnx").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("face_recognition_models") is None,
    reason="needs the conversion venv (onnx and face-recognition-models==0.3.0; models/README.md)",
)
def test_exporter_reproduces_the_committed_file(tmp_path: Path) -> None:
    main(["--out", str(tmp_path)])
    assert sha256_of(tmp_path / "face_descriptor.onnx") == SHA256


def test_write_manifest_keeps_the_entries_it_does_not_produce(tmp_path: Path) -> None:
    shutil.copy(MODELS_DIR / "manifest.json", tmp_path / "manifest.json")
    before = json.loads((tmp_path / "manifest.json").read_text())
    names = [e["name"] for e in before["models"]]
    changed: dict[str, Any] = {**before["models"][0], "bytes": 1}
    write_manifest(tmp_path, [changed, {"name": "new_model"}], "python -m models.export")
    after = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["name"] for e in after["models"]] == [*names, "new_model"]
    assert after["models"][0] == changed
    assert after["models"][1:-1] == before["models"][1:]
    assert after["generated_by"].split("; ").count("python -m models.export") == 1
    write_manifest(tmp_path, [], "python -m models.export")  # writes the same file back
    again = (tmp_path / "manifest.json").read_text()
    assert again == json.dumps(after, indent=2) + "\n"
