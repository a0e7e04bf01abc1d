"""Rebuild ``face_descriptor.onnx`` from dlib's ResNet face descriptor and record it in ``manifest.json``.

The source is ``dlib_face_recognition_resnet_model_v1.dat`` from the PyPI package
``face-recognition-models==0.3.0`` (weights by Davis King, CC0 1.0), pinned by its sha256. Like
``models.export`` this is a build-time tool: it needs ``onnx`` (and ``onnxruntime`` for the manifest's
shapes), which the project does not install, and never dlib itself. Run it from the conversion venv
of ``models/README.md``:

    /tmp/convert-venv/bin/pip install "face-recognition-models==0.3.0" "dlib-bin==20.0.1.post1"
    cd <repo root> && /tmp/convert-venv/bin/python -m models.export_face_descriptor [--dat PATH] [--out DIR]

Without ``--dat`` the .dat is taken from the installed ``face_recognition_models`` package.

How: the .dat is dlib's own binary serialisation (``dlib/serialize.h``, ``dlib/dnn/*.h``) of exactly one
network type, the ``anet_type`` of dlib's ``face_recognition.cpp`` (``LAYERS`` below). The parser reads it
byte for byte against that type: every layer's version string, shape, stride and padding is checked
and every byte up to EOF is accounted for, so a different file fails here rather than converting into
something subtly else. The graph takes the 150x150 RGB chip as raw 0..255 float32 NCHW; dlib's input
normalisation ``(pixel - channel mean) / 256`` is its first two nodes (the same float32 operations
dlib does), and its output is dlib's raw 128-d descriptor (dlib does not L2-normalise it either).

The conversion is deterministic (positional names, sorted metadata, no timestamp): onnx 1.16.2 with
numpy 1.26.4 and onnx 1.23 with numpy 2.4 give the same bytes. Where ``dlib`` is importable (``dlib-bin``),
the export compares ONNX Runtime with dlib's ``compute_face_descriptor`` and fails above
``PARITY_TOLERANCE``; without dlib the manifest keeps the parity measured for the same bytes before.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.export import io_shapes, sha256_file, write_manifest

log = logging.getLogger("models.export_face_descriptor")

HERE = Path(__file__).resolve().parent
NAME = "face_descriptor"
PACKAGE = "face-recognition-models"
PACKAGE_VERSION = "0.3.0"
DAT_PATH = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
OPSET = 17
PARITY_TOLERANCE = 1e-4
NORMALISATION = "RGB float32 NCHW, raw 0..255; the graph subtracts dlib's channel means and divides by 256"
DESCRIPTION = (
    "dlib ResNet-29 face descriptor (metric learning), 150x150 RGB face chip aligned to dlib's 5-point "
    "template (padding 0.25) -> 128-d descriptor, not L2-normalised; same person if euclidean distance < 0.6"
)
FloatArray = NDArray[np.float32]


class DlibFormatError(ValueError):
    """The .dat does not hold the network this converter expects."""


class Reader:
    """dlib's serialisation primitives (``dlib/serialize.h``, ``dlib/cuda/tensor.h``) over one byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos} (wanted {n} bytes)")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def integer(self) -> int:
        """Control byte (0x80 if negative | count of magnitude bytes, 1..8), then the magnitude, little-endian."""
        ctrl = self.take(1)[0]
        size = ctrl & 0x0F
        if not 1 <= size <= 8:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self.take(size), "little")
        return -value if ctrl & 0x80 else value

    def unsigned(self) -> int:
        value = self.integer()
        if value < 0:
            raise DlibFormatError(f"negative unsigned integer before byte {self.pos}")
        return value

    def real(self) -> float:
        """``float_details``: int64 mantissa, then int16 exponent (the code's order, not serialize.h's comment)."""
        if self.data[self.pos] & 0x70:
            raise DlibFormatError(f"old text float format at byte {self.pos}")
        mantissa, exponent = self.integer(), self.integer()
        specials = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return specials[exponent] if exponent in specials else math.ldexp(mantissa, exponent)

    def flag(self) -> bool:
        c = self.take(1)
        if c not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {c!r} at byte {self.pos - 1}")
        return c == b"1"

    def text(self, *allowed: str) -> str:
        at = self.pos
        s = self.take(self.unsigned()).decode("latin-1")
        if allowed and s not in allowed:
            raise DlibFormatError(f"expected one of {allowed} at byte {at}, found {s!r}")
        return s

    def tensor(self) -> FloatArray:
        """``resizable_tensor``: version 2, n, k, nr, nc, then n*k*nr*nc little-endian float32."""
        if (version := self.integer()) != 2:
            raise DlibFormatError(f"tensor version {version} at byte {self.pos}; expected 2")
        shape = tuple(self.integer() for _ in range(4))
        count = math.prod(shape)
        return np.frombuffer(self.take(4 * count), "<f4").astype(np.float32).reshape(shape)

    def shape(self) -> tuple[int, ...]:
        """``alias_tensor``: version 1, n, k, nr, nc (a view's shape, no data)."""
        if (version := self.integer()) != 1:
            raise DlibFormatError(f"alias_tensor version {version} at byte {self.pos}; expected 1")
        return tuple(self.integer() for _ in range(4))


@dataclass(frozen=True)
class Layer:
    """One layer of ``anet_type``: ``size`` is filters (con, fc) or the square window (pools; 0 = everything)."""

    kind: str
    size: int = 0
    stride: int = 1
    tag: int = 0

    @property
    def window(self) -> int:
        return {"con": 3, "con7": 7}.get(self.kind, self.size)

    @property
    def pad(self) -> int:
        """dlib's template default: ``window / 2`` at stride 1, else 0 (so the strided convolutions are unpadded)."""
        return self.window // 2 if self.stride == 1 else 0


@dataclass
class Parsed:
    """A layer with what the file stores for it: weights, biases, gamma/beta, fc matrix."""

    layer: Layer
    arrays: dict[str, FloatArray] = field(default_factory=dict)


def _block(n: int, stride: int) -> list[Layer]:
    # block<N,BN,stride,S> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,S>>>>>
    return [Layer("affine"), Layer("con", n), Layer("relu"), Layer("affine"), Layer("con", n, stride)]


def _ares(n: int) -> list[Layer]:
    # relu<add_prev1<block<N,affine,1,tag1<S>>>>
    return [Layer("relu"), Layer("add_prev", tag=1), *_block(n, 1), Layer("tag", tag=1)]


def _ares_down(n: int) -> list[Layer]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<S>>>>>>>
    return [
        *[Layer("relu"), Layer("add_prev", tag=2), Layer("avg_pool", 2, 2)],
        *[Layer("skip", tag=1), Layer("tag", tag=2), *_block(n, 2), Layer("tag", tag=1)],
    ]


LAYERS: tuple[Layer, ...] = (
    *[Layer("fc", 128), Layer("avg_pool", 0)],  # fc_no_bias<128, avg_pool_everything<
    *_ares_down(256),  # alevel0
    *(_ares(256) * 2 + _ares_down(256)),  # alevel1
    *(_ares(128) * 2 + _ares_down(128)),  # alevel2
    *(_ares(64) * 3 + _ares_down(64)),  # alevel3
    *(_ares(32) * 3),  # alevel4
    *[Layer("max_pool", 3, 2), Layer("relu"), Layer("affine"), Layer("con7", 32, 2)],  # con<32,7,7,2,2,input
)
"""``anet_type`` of dlib's face_recognition.cpp, outermost first (``loss_metric`` wraps it)."""


def parse_details(r: Reader, layer: Layer) -> Parsed:
    """One ``add_layer``'s details, in the versions this file uses (the ones ``anet_type`` serialises to)."""
    kind = layer.kind
    if kind in ("con", "con7"):
        r.text("con_4")
        params = r.tensor().reshape(-1)
        k = layer.window
        found = tuple(r.integer() for _ in range(7))  # filters, nr, nc, stride y, x, padding y, x
        expected = (layer.size, k, k, layer.stride, layer.stride, layer.pad, layer.pad)
        if found != expected:
            raise DlibFormatError(f"con_4 {found}; anet_type has {expected}")
        filters, biases = r.shape(), r.shape()
        _ = [r.real() for _ in range(4)]  # learning-rate and weight-decay multipliers
        nw = math.prod(filters)
        nb = math.prod(biases)
        if filters[0] != layer.size or filters[2:] != (k, k) or nb != layer.size or params.size != nw + nb:
            raise DlibFormatError(f"con_4 filters {filters}, biases {biases}, {params.size} parameters")
        return Parsed(layer, {"w": params[:nw].reshape(filters), "b": params[nw:]})
    if kind == "affine":
        r.text("affine_")
        params = r.tensor().reshape(-1)
        gamma, beta = r.shape(), r.shape()
        n = math.prod(gamma)
        if (mode := r.integer()) != 0 or params.size != 2 * n or math.prod(beta) != n:
            raise DlibFormatError(f"affine_ mode {mode} (0 = conv), {params.size} parameters for {n} channels")
        return Parsed(layer, {"gamma": params[:n], "beta": params[n:]})
    if kind in ("max_pool", "avg_pool"):
        r.text(f"{kind}_2")
        window = tuple(r.integer() for _ in range(6))  # window y, x, stride y, x, padding y, x
        wanted = (layer.size, layer.size, layer.stride, layer.stride, layer.pad, layer.pad)
        if window != wanted:
            raise DlibFormatError(f"{kind}_2 {window}; anet_type has {wanted}")
        return Parsed(layer)
    if kind == "fc":
        r.text("fc_2")
        outputs, inputs = r.unsigned(), r.unsigned()
        params = r.tensor().reshape(-1)
        _ = r.shape(), r.shape()
        bias_mode = r.integer()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        _ = [r.real() for _ in range(4)]
        if outputs != layer.size or bias_mode != 1 or params.size != inputs * outputs:
            raise DlibFormatError(f"fc_2 {inputs}x{outputs} bias mode {bias_mode}; anet_type has fc_no_bias<128>")
        return Parsed(layer, {"w": params.reshape(inputs, outputs)})  # output = x . W
    r.text(f"{kind}_")  # relu_, add_prev_: no details
    return Parsed(layer)


def parse_dat(data: bytes) -> tuple[tuple[float, float, float], list[Parsed], tuple[float, float]]:
    """The input layer's channel means, the layers input side first, and the loss's (margin, distance threshold).

    ``add_layer`` writes its version, then its whole subnetwork, then its own details; tags and skips
    write a version and their subnetwork only. So the file holds every version outermost first, then
    the input layer, then each layer's details from the input side out.
    """
    r = Reader(data)
    if r.integer() != 1:
        raise DlibFormatError("add_loss_layer version is not 1")
    r.text("loss_metric_2")
    loss = (r.real(), r.real())
    versions = [r.integer() for _ in LAYERS]
    for i, (layer, version) in enumerate(zip(LAYERS, versions, strict=True)):
        allowed = (1,) if layer.kind in ("tag", "skip") else (2, 3) if i == len(LAYERS) - 1 else (1, 2)
        if version not in allowed:
            raise DlibFormatError(f"layer {i} ({layer.kind}): version {version}, expected one of {allowed}")
    r.text("input_rgb_image_sized")
    means = (r.real(), r.real(), r.real())
    if (size := (r.unsigned(), r.unsigned())) != (150, 150):
        raise DlibFormatError(f"input size {size}; expected 150x150")
    parsed: list[Parsed] = []
    for i in range(len(LAYERS) - 1, -1, -1):
        layer = LAYERS[i]
        if layer.kind in ("tag", "skip"):
            parsed.append(Parsed(layer))
            continue
        parsed.append(parse_details(r, layer))
        _ = r.flag(), r.flag(), r.flag()  # setup called, gradient stale, output/gradient disabled
        state = [r.tensor(), r.tensor()]  # x_grad, cached_output
        if i == len(LAYERS) - 1:
            state.append(r.tensor())  # grad_final
            if versions[i] >= 3:
                r.unsigned()  # sample expansion factor
        elif versions[i] == 2:
            state.append(r.tensor())  # params_grad
        if any(t.size for t in state):
            raise DlibFormatError(f"layer {i} ({layer.kind}) carries training state; expected a bare network")
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} bytes left after the network")
    return means, parsed, loss


class GraphBuilder:
    """Nodes and constants named ``<prefix>_<count>`` in creation order, so two builds give the same bytes."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count: dict[str, int] = {}

    def name(self, prefix: str) -> str:
        i = self.count.get(prefix, 0)
        self.count[prefix] = i + 1
        return f"{prefix}_{i}"

    def const(self, prefix: str, value: NDArray[Any]) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def pooled(n: int, window: int, stride: int, pad: int) -> int:
    return 1 + (n + 2 * pad - window) // stride


def build_onnx(means: tuple[float, float, float], layers: list[Parsed], loss: tuple[float, float], sha: str) -> Any:
    """The ONNX model: ``image`` float32 [batch, 3, 150, 150] RGB 0..255 -> ``descriptor`` float32 [batch, 128]."""
    import onnx
    from onnx import TensorProto, helper

    g = GraphBuilder()
    x = g.node("Sub", ["image", g.const("input_mean_rgb", np.array(means, np.float32).reshape(1, 3, 1, 1))], "sub_mean")
    x = g.node("Mul", [x, g.const("input_scale", np.array(1.0 / 256.0, np.float32))], "div_256")
    shape = (3, 150, 150)  # (C, H, W) of x
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for p in layers:
        layer, a = p.layer, p.arrays
        if layer.kind == "tag":
            tags[layer.tag] = (x, shape)
        elif layer.kind == "skip":
            x, shape = tags[layer.tag]
        elif layer.kind in ("con", "con7"):
            w, s, pad = a["w"], layer.stride, layer.pad
            x = g.node(
                "Conv",
                [x, g.const("conv_w", w), g.const("conv_b", a["b"])],
                "conv",
                kernel_shape=list(w.shape[2:]),
                strides=[s, s],
                pads=[pad] * 4,
                dilations=[1, 1],
                group=1,
            )
            shape = (w.shape[0], pooled(shape[1], w.shape[2], s, pad), pooled(shape[2], w.shape[3], s, pad))
        elif layer.kind == "affine":  # kept as Mul + Add: ORT folds both into the convolution before it
            c = a["gamma"].size
            x = g.node("Mul", [x, g.const("affine_gamma", a["gamma"].reshape(1, c, 1, 1))], "affine_mul")
            x = g.node("Add", [x, g.const("affine_beta", a["beta"].reshape(1, c, 1, 1))], "affine_add")
        elif layer.kind == "relu":
            x = g.node("Relu", [x], "relu")
        elif layer.kind in ("max_pool", "avg_pool") and layer.size == 0:
            x, shape = g.node("GlobalAveragePool", [x], layer.kind), (shape[0], 1, 1)
        elif layer.kind in ("max_pool", "avg_pool"):
            w_, s, pad = layer.size, layer.stride, layer.pad
            op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
            x = g.node(op, [x], layer.kind, kernel_shape=[w_, w_], strides=[s, s], pads=[pad] * 4)
            shape = (shape[0], pooled(shape[1], w_, s, pad), pooled(shape[2], w_, s, pad))
        elif layer.kind == "add_prev":
            # dlib's add_prev_ (tt::add): the output has the larger of each dimension and the smaller operand
            # is zero-extended at the end of that axis: new channels on the pooled shortcut, and the bottom
            # row and right column of an unpadded 3x3/2 convolution at 8x8 -> 4x4 and 4x4 -> 2x2.
            y, yshape = tags[layer.tag]
            out = (max(shape[0], yshape[0]), max(shape[1], yshape[1]), max(shape[2], yshape[2]))

            def extend(t: str, s: tuple[int, int, int], out: tuple[int, int, int] = out) -> str:
                if s == out:
                    return t
                pads = np.array([0, 0, 0, 0, 0, *(o - d for o, d in zip(out, s, strict=True))], np.int64)
                return g.node("Pad", [t, g.const("pad_widths", pads)], "zero_extend", mode="constant")

            x = g.node("Add", [extend(x, shape), extend(y, yshape)], "add_prev")
            shape = out
        elif layer.kind == "fc":
            x = g.node("Flatten", [x], "flatten", axis=1)
            x = g.node("MatMul", [x, g.const("fc_w", a["w"])], "fc")
            shape = (a["w"].shape[1], 1, 1)
    g.nodes[-1].output[0] = g.nodes[-1].name = "descriptor"
    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 150, 150])
    out = helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", shape[0]])
    graph = helper.make_graph(g.nodes, "dlib_face_recognition_resnet_model_v1", [inp], [out], g.inits)
    # The producer name is the research converter's: keeping it keeps the file's bytes (and sha256) as measured.
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="convert_dlib_resnet.py",
        producer_version="1",
    )
    model.ir_version = 8
    meta = {
        "source": "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models 0.3.0; Davis King, CC0 1.0)",
        "source_sha256": sha,
        "input": "image: float32 [batch,3,150,150] RGB pixel values 0..255 of a dlib face chip "
        "(get_face_chip_details(shape, 150, 0.25)); normalisation is inside the graph",
        "input_normalisation": f"(pixel - ({means[0]!r}, {means[1]!r}, {means[2]!r})) / 256 (R, G, B; float32)",
        "output": "descriptor: float32 [batch,128], same as dlib compute_face_descriptor; "
        "same person if euclidean distance < 0.6",
        "loss_metric": f"margin={loss[0]!r} dist_thresh={loss[1]!r}",
    }
    for key in sorted(meta):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, meta[key]
    onnx.checker.check_model(model, full_check=True)
    return model


def installed_dat() -> Path:
    """The .dat inside the installed ``face_recognition_models`` (found without importing it: its ``__init__``
    needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise SystemExit(f"{PACKAGE}=={PACKAGE_VERSION} is not installed; `pip install` it or pass --dat PATH")
    return Path(spec.origin).parent.parent / DAT_PATH


def reference_chips(dat: Path) -> list[tuple[str, NDArray[np.uint8]]]:
    """Chips to compare on: real faces aligned by dlib itself where it can find them, and synthetic extremes."""
    import dlib

    rng = np.random.default_rng(0)
    chips = [(f"noise_{i}", rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)) for i in range(3)]
    chips += [(f"flat_{v}", np.full((150, 150, 3), v, np.uint8)) for v in (0, 128, 255)]
    predictor = dat.parent / "shape_predictor_5_face_landmarks.dat"  # same package, CC0
    images = []
    if predictor.is_file() and importlib.util.find_spec("skimage") is not None:
        from skimage import data

        images.append(("astronaut", np.ascontiguousarray(data.astronaut())))  # type: ignore[no-untyped-call]
    if not images:
        log.warning("parity on synthetic chips only (no skimage, or no %s next to the .dat)", predictor.name)
        return chips
    detector, shapes = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor))
    for name, img in images:
        for k, rect in enumerate(detector(img, 1)):
            chips.append((f"{name}#{k}", np.asarray(dlib.get_face_chip(img, shapes(img, rect), 150, 0.25))))
    return chips


def parity_vs_dlib(dat: Path, onnx_path: Path) -> tuple[float, str] | None:
    """Max abs difference of the ONNX descriptors from dlib's on ``reference_chips`` (batched and one by one)."""
    if importlib.util.find_spec("dlib") is None:
        return None
    import dlib
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    facerec = dlib.face_recognition_model_v1(str(dat))
    names, chips = zip(*reference_chips(dat), strict=True)
    x = np.ascontiguousarray(np.stack(chips).transpose(0, 3, 1, 2), dtype=np.float32)
    batched = session.run(None, {"image": x})[0]
    singles = np.concatenate([session.run(None, {"image": x[i : i + 1]})[0] for i in range(len(x))])
    ref = np.array([np.asarray(facerec.compute_face_descriptor(c)) for c in chips], np.float64)
    worst = max(float(np.abs(batched - ref).max()), float(np.abs(singles - ref).max()))
    log.info("parity vs dlib %s on %d chips (%s): max abs diff %.3g", dlib.__version__, len(x), ", ".join(names), worst)
    return worst, f"dlib {dlib.__version__} compute_face_descriptor, {len(x)} chips ({', '.join(names)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dat", type=Path, help=f"the .dat (default: the installed {PACKAGE}'s)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for face_descriptor.onnx and manifest.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    dat: Path = args.dat or installed_dat()
    if not dat.is_file():
        raise SystemExit(f"expected the dlib model at {dat}; found no file")
    if (sha := sha256_file(dat)) != DAT_SHA256:
        raise SystemExit(f"{dat}: sha256 {sha}, expected {DAT_SHA256} ({PACKAGE} {PACKAGE_VERSION}); refusing it")
    means, layers, loss = parse_dat(dat.read_bytes())
    import onnx

    out = args.out / f"{NAME}.onnx"
    onnx.save(build_onnx(means, layers, loss, sha), str(out))
    digest = sha256_file(out)
    log.info("wrote %s: sha256 %s, %d bytes", out, digest, out.stat().st_size)

    measured = parity_vs_dlib(dat, out)
    manifest = args.out / "manifest.json"
    previous = next(
        (e for e in (json.loads(manifest.read_text())["models"] if manifest.is_file() else []) if e["name"] == NAME),
        None,
    )
    conversion: dict[str, Any] = {"tool": f"models.export_face_descriptor, onnx {onnx.__version__}", "opset": OPSET}
    if measured is not None:
        if measured[0] > PARITY_TOLERANCE:
            raise SystemExit(f"{NAME}: max abs diff vs dlib {measured[0]:.2e} > {PARITY_TOLERANCE:.0e}")
        conversion |= {"parity_max_abs_diff_vs_dlib": float(f"{measured[0]:.3g}"), "parity_reference": measured[1]}
    elif previous is not None and previous["sha256"] == digest:
        log.info("dlib not importable: keeping the parity measured on these same bytes before")
        conversion |= {k: v for k, v in previous["conversion"].items() if k.startswith("parity")}
    else:
        log.warning("dlib not importable (pip install dlib-bin): parity not measured")
        conversion["parity_max_abs_diff_vs_dlib"] = None
    entry = {
        "name": NAME,
        "file": out.name,
        "version": f"dlib face_recognition_resnet_model_v1 ({PACKAGE}-{PACKAGE_VERSION})",
        "description": DESCRIPTION,
        "source": {"package": f"{PACKAGE} {PACKAGE_VERSION} (PyPI)", "path": DAT_PATH, "sha256": DAT_SHA256},
        "licence": "CC0-1.0",
        "sha256": digest,
        "bytes": out.stat().st_size,
        "normalisation": NORMALISATION,
        "layout": "NCHW",
        **io_shapes(out),
        "conversion": conversion,
    }
    write_manifest(args.out, [entry], "python -m models.export_face_descriptor")


if __name__ == "__main__":
    main()
