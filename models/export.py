"""Rebuild the ONNX models in this folder from the pinned MediaPipe wheel's TFLite files.

This is a build-time tool, not a runtime dependency: it needs TensorFlow (for the TFLite
interpreter used as the parity reference and for the flatbuffer schema), tf2onnx and onnx,
which the project does not install. Run it from a throwaway virtual environment:

    python3.11 -m venv /tmp/convert-venv
    /tmp/convert-venv/bin/pip install "tensorflow-cpu==2.15.1" "tf2onnx==1.17.0" "onnx==1.16.2" \
        "numpy<2" onnxruntime
    /tmp/convert-venv/bin/pip install --no-deps "mediapipe==0.10.21"
    cd <repo root> && /tmp/convert-venv/bin/python -m models.export

Newer onnx releases break tf2onnx 1.17's TFLite path, hence the pins.

What it does to each model, and why:
- ``face_detection_full_range_sparse`` stores its weights block-sparse behind 46 DENSIFY ops that
  no converter handles. The weights are constants, so we run the TFLite interpreter once, read
  each DENSIFY output, and write it back into the flatbuffer as an ordinary dense constant. The
  model is numerically unchanged; only its storage changes.
- Outputs the detectors do not read are dropped with the nodes only they need (``ModelSpec.outputs``,
  ``keep_outputs``): the iris model's eye contour head, which ONNX Runtime would otherwise run on every
  eye crop.
- tf2onnx converts with the batch dimension pinned to 1; we rename it to a symbolic ``batch``
  and turn the leading 1 of every Reshape target into -1, so the GPU path can batch.
- ``PRelu`` is rewritten as ``x + (1 - a) * Relu(-x)`` (see ``rewrite_prelu`` for why this form
  and not ``Relu(x) - a * Relu(-x)``): the landmark and iris models are mostly PReLU.
- A ``Pad`` that appends zero channels (the residual shortcut where a block widens) becomes a 1x1
  ``Conv`` with identity weights, the same numbers, so the whole net stays in ONNX Runtime's blocked
  layout (see ``rewrite_channel_pad``).
- Parity against the TFLite interpreter is checked on a real face crop at batch 1 and on random
  inputs at batch 3; the export fails if any output differs by more than ``PARITY_TOLERANCE``.

``face_landmark_with_attention`` is not exported: its 11 custom ops (Landmarks2TransformMatrix,
TransformTensorBilinear, TransformLandmarks) have no ONNX counterpart, and the plain
``face_landmark`` mesh plus ``iris_landmark`` covers what the detectors need.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger("models.export")

HERE = Path(__file__).resolve().parent
MEDIAPIPE_VERSION = "0.10.21"
OPSET = 13
PARITY_TOLERANCE = 2e-3


@dataclass(frozen=True)
class ModelSpec:
    """One model to export: where it lives in the wheel and how its input is normalised."""

    name: str
    wheel_path: str
    normalisation: str
    description: str
    densify: bool = False
    outputs: tuple[str, ...] = ()
    """The model outputs to export (empty: all of them); the nodes only a dropped output needs go too."""


SPECS = (
    ModelSpec(
        name="face_detection_short_range",
        wheel_path="mediapipe/modules/face_detection/face_detection_short_range.tflite",
        normalisation="RGB float32 NHWC, x / 127.5 - 1 (range [-1, 1])",
        description="BlazeFace short range, 128x128, 896 anchors; 16 regressors (box + 6 keypoints)",
    ),
    ModelSpec(
        name="face_detection_full_range",
        wheel_path="mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        normalisation="RGB float32 NHWC, x / 127.5 - 1 (range [-1, 1])",
        description="BlazeFace full range, 192x192, 2304 anchors; DENSIFY ops folded into constants",
        densify=True,
    ),
    ModelSpec(
        name="face_landmark",
        wheel_path="mediapipe/modules/face_landmark/face_landmark.tflite",
        normalisation="RGB float32 NHWC, x / 255 (range [0, 1])",
        description="Face mesh, 192x192 crop, 468 landmarks (x, y, z in crop pixels) and a face score logit",
    ),
    ModelSpec(
        name="iris_landmark",
        wheel_path="mediapipe/modules/iris_landmark/iris_landmark.tflite",
        normalisation="RGB float32 NHWC, x / 255 (range [0, 1]); a left eye is fed mirrored",
        description="Iris, 64x64 eye crop, 5 iris points (x, y, z in crop pixels); the 71-point eye contour "
        "head is not exported",
        # The detectors read only the iris; the contour head is 100 of the 329 nodes of the exported graph.
        outputs=("output_iris",),
    ),
)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mediapipe_root() -> Path:
    """Find the installed mediapipe package without importing it (importing pulls in protobuf graphs)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise SystemExit(
            f"mediapipe=={MEDIAPIPE_VERSION} is not installed in this environment; "
            f"run `pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}` first"
        )
    return Path(spec.origin).parent.parent


def wheel_info(site: Path) -> tuple[str, dict[str, str]]:
    """Return the wheel's file name and the sha256 of each file as its RECORD states it."""
    dist = site / f"mediapipe-{MEDIAPIPE_VERSION}.dist-info"
    if not dist.is_dir():
        raise SystemExit(f"expected {dist}; found another mediapipe version. Install {MEDIAPIPE_VERSION}.")
    lines = (dist / "WHEEL").read_text().splitlines()
    tags = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Tag:")]
    wheel = f"mediapipe-{MEDIAPIPE_VERSION}-{tags[0]}.whl"
    record: dict[str, str] = {}
    with (dist / "RECORD").open() as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[1].startswith("sha256="):
                digest = base64.urlsafe_b64decode(row[1][7:] + "==")
                record[row[0]] = digest.hex()
    return wheel, record


def densified_tflite(src: Path, dst: Path) -> None:
    """Replace every DENSIFY op by its (constant) output so tf2onnx sees ordinary dense weights."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    interp = tf.lite.Interpreter(str(src), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], np.float32))
    interp.invoke()

    model = flatbuffer_utils.read_model(str(src))
    graph = model.subgraphs[0]
    densify_codes = {
        i
        for i, oc in enumerate(model.operatorCodes)
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == schema.BuiltinOperator.DENSIFY
    }
    kept = []
    for op in graph.operators:
        if op.opcodeIndex not in densify_codes:
            kept.append(op)
            continue
        out = op.outputs[0]
        value = interp.get_tensor(out)
        buf = schema.BufferT()
        buf.data = np.frombuffer(value.tobytes(), np.uint8).tolist()
        model.buffers.append(buf)
        graph.tensors[out].buffer = len(model.buffers) - 1
        # The sparse source tensor is now orphaned; drop its sparsity block so tools that list
        # every tensor (tf2onnx does) do not trip over a sparse tensor without a consumer.
        orphan = graph.tensors[op.inputs[0]]
        orphan.sparsity = None
        orphan.buffer = graph.tensors[out].buffer
    graph.operators = kept
    flatbuffer_utils.write_model(model, str(dst))


def tflite_run(path: Path, x: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """Reference outputs by name from the TFLite interpreter, one sample at a time (the graph is batch 1)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(str(path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    results: list[list[NDArray[np.float32]]] = [[] for _ in outs]
    for sample in x:
        interp.set_tensor(inp["index"], sample[None].astype(np.float32))
        interp.invoke()
        for i, o in enumerate(outs):
            results[i].append(interp.get_tensor(o["index"]).copy())
    return {o["name"]: np.concatenate(r, axis=0) for o, r in zip(outs, results, strict=True)}


def make_batch_dynamic(model: Any) -> None:
    """Name the batch dim symbolically and let every batch-leading Reshape copy it (0 = copy in ONNX)."""
    from onnx import numpy_helper

    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]
    inits = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        shape = numpy_helper.to_array(init).copy()
        if shape.size and shape[0] == 1:
            shape[0] = 0
            init.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), init.name))


def keep_outputs(model: Any, names: tuple[str, ...]) -> int:
    """Drop the graph outputs not in ``names`` and every node that only they need; return how many nodes went.

    ONNX Runtime runs the whole graph whatever outputs a caller asks for, so an output nobody reads
    still costs its nodes on every call. The iris model's eye contour head (71 points, which the
    detectors do not use: eye openness comes from the face mesh) is a separate branch from the shared
    backbone on; without it the model takes ~0.87x the time, with the iris output unchanged bit for bit.
    """
    if not names:
        return 0
    missing = set(names) - {v.name for v in model.graph.output}
    if missing:
        raise SystemExit(f"keep_outputs: the model has no output {sorted(missing)}")
    producer = {out: node for node in model.graph.node for out in node.output}
    needed: set[int] = set()
    pending = list(names)
    while pending:
        node = producer.get(pending.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            pending.extend(node.input)
    kept = [node for node in model.graph.node if id(node) in needed]
    dropped = len(model.graph.node) - len(kept)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    outputs = [v for v in model.graph.output if v.name in names]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    return dropped


def rewrite_prelu(model: Any) -> int:
    """PRelu(x, a) -> x + (1 - a) * Relu(-x), which is the same function.

    ONNX Runtime's CPU PRelu kernel runs outside its blocked (NCHWc) conv layout, so every PRelu
    costs two layout reorders. Its NCHWc transformer turns a Mul by a per-channel constant into a
    depthwise 1x1 convolution, fuses a following Relu into that convolution and an Add into the
    next one, so this form costs two passes over the tensor: ``Relu(-x)``, then ``(1 - a) * . + x``.
    Both x > 0 (x + 0) and x < 0 (x - (1 - a) x = a x) hold for any slope; the slopes of the mesh
    and iris nets lie in [-1.6, 2.6], so forms that assume 0 <= a <= 1 (``Max(x, a * x)``) do not.
    Measured on face_landmark at batch 1, one thread, 2-core AMD EPYC (AVX2), noisy shared host:
    PRelu ~4.8 ms; ``Relu(x) - a * Relu(-x)`` ~2.5 ms (Neg and Sub are not blocked ops);
    ``a * x + (1 - a) * Relu(x)`` (three passes: its Relu does not fuse) about 1.1x this form.
    """
    from onnx import helper, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    nodes = []
    count = 0
    for node in model.graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        count += 1
        x, slope = node.input
        minus_one, one_minus = f"{slope}/minus_one", f"{slope}/one_minus"
        if one_minus not in inits:
            a = numpy_helper.to_array(inits[slope]).astype(np.float32)
            # Per-channel constants (not a scalar -1): ONNX Runtime only turns a per-channel Mul into
            # the depthwise convolution that the Relu fuses into.
            for name, value in ((minus_one, np.full_like(a, -1.0)), (one_minus, 1.0 - a)):
                inits[name] = numpy_helper.from_array(value, name)
                model.graph.initializer.append(inits[name])
        base = node.name or f"prelu_{count}"
        neg, neg_pos, scaled = (f"{base}/{s}" for s in ("neg", "neg_pos", "scaled"))
        nodes += [
            helper.make_node("Mul", [x, minus_one], [neg], name=neg),
            helper.make_node("Relu", [neg], [neg_pos], name=neg_pos),
            helper.make_node("Mul", [neg_pos, one_minus], [scaled], name=scaled),
            helper.make_node("Add", [scaled, x], [node.output[0]], name=f"{base}/out"),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def rewrite_channel_pad(model: Any) -> int:
    """Pad(x, zeros appended to the channel axis) -> Conv(x, W) with W = [I; 0] (1x1), the same numbers.

    The face mesh and iris nets widen their residual shortcut by padding channels with zeros. Pad is
    not one of ONNX Runtime's blocked (NCHWc) CPU ops, so from the first such Pad on every block ran
    its residual Add and PReLU in plain NCHW between two layout reorders; as a convolution the net
    stays blocked and the Adds fuse into the convolutions. A 1x1 convolution with 0/1 weights copies
    each channel exactly (x * 1 plus zeros). Measured at batch 1, one thread, in one paired run on
    a 2-core AMD EPYC (AVX2): face_landmark 3.20 -> 2.73 ms (median of 15), iris_landmark unchanged
    in the median (one Pad, late in the net) and 4.12 -> 3.83 ms at best; outputs within 3e-5.
    """
    from onnx import helper, numpy_helper, shape_inference

    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    inferred = shape_inference.infer_shapes(model)
    channels = {
        v.name: v.type.tensor_type.shape.dim[1].dim_value
        for v in inferred.graph.value_info
        if len(v.type.tensor_type.shape.dim) == 4
    }
    nodes = []
    count = 0
    for node in model.graph.node:
        pads = inits.get(node.input[1]) if node.op_type == "Pad" and len(node.input) > 1 else None
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
        appends_channels = (
            pads is not None
            and pads.shape == (8,)
            and not np.any(np.delete(pads, 5))
            and mode == b"constant"
            and (len(node.input) < 3 or not node.input[2] or not np.any(inits.get(node.input[2], 1)))
            and channels.get(node.input[0], 0) > 0
        )
        if not appends_channels:
            nodes.append(node)
            continue
        count += 1
        assert pads is not None
        c_in = channels[node.input[0]]
        weights = np.zeros((c_in + int(pads[5]), c_in, 1, 1), np.float32)
        weights[np.arange(c_in), np.arange(c_in)] = 1.0
        name = f"{node.name or f'pad_{count}'}/identity"
        model.graph.initializer.append(numpy_helper.from_array(weights, name))
        nodes.append(helper.make_node("Conv", [node.input[0], name], [node.output[0]], kernel_shape=[1, 1]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def drop_unused_constants(model: Any) -> None:
    """Remove constants that no node reads any more (the pad widths of rewritten channel Pads).

    Left in, they would keep tf2onnx's counter names, which ``canonical_names`` cannot reach (it
    names constants by the nodes that read them), and the file would differ from export to export.
    """
    used = {name for node in model.graph.node for name in node.input}
    for init in [init for init in model.graph.initializer if init.name not in used]:
        model.graph.initializer.remove(init)


def canonical_names(model: Any) -> None:
    """Name every node, intermediate tensor and constant by graph position.

    tf2onnx's names are not reproducible: it suffixes what it creates with a process-wide
    counter, and when it merges duplicate nodes the surviving name is arbitrary. Positional
    names make two exports of the same model byte-identical, so the sha256 in the manifest means
    something. Graph inputs and outputs keep their names.
    """
    keep = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    inits = {init.name: init for init in model.graph.initializer}
    renamed: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
        for k, name in enumerate(node.output):
            if name not in keep:
                renamed[name] = f"{node.name}_out{k}"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in inits and name not in renamed:
                renamed[name] = f"const_{sum(n.startswith('const_') for n in renamed.values()):04d}"
            node.input[i] = renamed.get(name, name)
        node.output[:] = [renamed.get(n, n) for n in node.output]
    for old, init in inits.items():
        init.name = renamed.get(old, old)
    ordered = sorted(model.graph.initializer, key=lambda t: t.name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(ordered)


def convert(tflite: Path, out: Path, outputs: tuple[str, ...]) -> dict[str, Any]:
    import onnx
    import tf2onnx

    proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=OPSET)
    dropped = keep_outputs(proto, outputs)
    make_batch_dynamic(proto)
    prelus = rewrite_prelu(proto)
    pads = rewrite_channel_pad(proto)
    drop_unused_constants(proto)
    canonical_names(proto)
    proto.producer_name = "proctor-pipeline models.export"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    extra: dict[str, Any] = {"prelu_rewritten": prelus, "channel_pads_as_conv": pads}
    if outputs:
        extra["outputs_kept"] = list(outputs)
        extra["nodes_dropped_with_other_outputs"] = dropped
    return extra


def real_face_input(shape: tuple[int, int, int], normalisation: str) -> NDArray[np.float32]:
    """A real face (skimage's astronaut), cropped around the face and resized to the model input."""
    import cv2
    from skimage import data

    h, w, _ = shape
    face = np.asarray(data.astronaut())[20:230, 130:320]  # type: ignore[no-untyped-call]
    img = cv2.resize(face, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    out: NDArray[np.float32] = img / 127.5 - 1.0 if "127.5" in normalisation else img / 255.0
    return out


def io_shapes(path: Path) -> dict[str, Any]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def dims(v: Any) -> list[Any]:
        return [d if isinstance(d, int) else "batch" for d in v.shape]

    return {
        "inputs": [{"name": v.name, "shape": dims(v), "dtype": "float32"} for v in sess.get_inputs()],
        "outputs": [{"name": v.name, "shape": dims(v), "dtype": "float32"} for v in sess.get_outputs()],
    }


def parity(tflite: Path, onnx_path: Path, normalisation: str) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = tuple(int(d) for d in sess.get_inputs()[0].shape[1:])
    rng = np.random.default_rng(0)
    lo = -1.0 if "127.5" in normalisation else 0.0
    batches = [
        real_face_input(shape, normalisation)[None],  # type: ignore[arg-type]
        rng.uniform(lo, 1.0, size=(3, *shape)).astype(np.float32),
    ]
    worst = 0.0
    for x in batches:
        ref = tflite_run(tflite, x)
        names = [o.name for o in sess.get_outputs()]
        got = sess.run(names, {sess.get_inputs()[0].name: x.astype(np.float32)})
        for name, g in zip(names, got, strict=True):
            worst = max(worst, float(np.max(np.abs(ref[name].reshape(g.shape) - g))))
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the .onnx files and manifest.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    site = mediapipe_root()
    wheel, record = wheel_info(site)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in SPECS:
            src = site / spec.wheel_path
            src_sha = sha256_file(src)
            if record.get(spec.wheel_path) != src_sha:
                raise SystemExit(
                    f"{src}: sha256 {src_sha} does not match the wheel RECORD {record.get(spec.wheel_path)}"
                )
            tflite = src
            if spec.densify:
                tflite = Path(tmp) / f"{spec.name}.tflite"
                densified_tflite(src, tflite)
            out = args.out / f"{spec.name}.onnx"
            extra = convert(tflite, out, spec.outputs)
            diff = parity(src, out, spec.normalisation)
            if diff > PARITY_TOLERANCE:
                raise SystemExit(f"{spec.name}: max abs diff vs TFLite {diff:.2e} > {PARITY_TOLERANCE:.0e}")
            log.info("exported %s: parity max abs diff %.2e, %s", spec.name, diff, extra)
            entries.append(
                {
                    "name": spec.name,
                    "file": out.name,
                    "version": f"mediapipe-{MEDIAPIPE_VERSION}",
                    "description": spec.description,
                    "source": {"wheel": wheel, "path": spec.wheel_path, "sha256": src_sha},
                    "licence": "Apache-2.0",
                    "sha256": sha256_file(out),
                    "bytes": out.stat().st_size,
                    "normalisation": spec.normalisation,
                    "layout": "NHWC",
                    **io_shapes(out),
                    "conversion": {
                        "tool": "tf2onnx 1.17.0 (from_tflite), onnx 1.16.2, tensorflow-cpu 2.15.1",
                        "opset": OPSET,
                        "densified": spec.densify,
                        **extra,
                        "parity_max_abs_diff_vs_tflite": float(f"{diff:.3g}"),
                    },
                }
            )
    write_manifest(args.out, entries, "python -m models.export")


def write_manifest(directory: Path, entries: list[dict[str, Any]], generated_by: str) -> None:
    """Put ``entries`` into ``directory``'s manifest.json, keeping the entries other exporters made, in their order.

    Each exporter owns its models (``models.export_face_descriptor`` the dlib one); rewriting the whole file
    dropped the others'. A model's entry keeps its place; a new model goes last.
    """
    path = directory / "manifest.json"
    old = json.loads(path.read_text()) if path.is_file() else {"models": []}
    fresh = {e["name"]: e for e in entries}
    models = [fresh.pop(e["name"], e) for e in old["models"]] + list(fresh.values())
    tools = [t for t in old.get("generated_by", "").split("; ") if t]
    tools += [] if generated_by in tools else [generated_by]
    path.write_text(json.dumps({"generated_by": "; ".join(tools), "models": models}, indent=2) + "\n")


if __name__ == "__main__":
    main()
