"""ONNX Runtime session creation: the one place that chooses execution providers.

CUDA is an optional extra (``pip install proctor-pipeline[cuda]`` brings ``onnxruntime-gpu``).
``auto`` uses it when the installed onnxruntime offers ``CUDAExecutionProvider``; ``cuda`` demands
it and fails with instructions otherwise, so a GPU worker that silently ran on CPU cannot hide in
a deployment. Every session is warmed up on construction, because the first ``run`` pays for
memory planning and kernel selection and would otherwise land in the first chunk's timing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

__all__ = ["Device", "RuntimeConfig", "create_session", "select_providers"]

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda", "auto"]
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class RuntimeConfig:
    """How detectors run their models.

    ``intra_op_threads`` defaults to 1: the pipeline parallelises over chunks (one worker per
    core), and measured batching gave nothing on CPU, so each session should use one core well.
    """

    device: Device = "auto"
    intra_op_threads: int = 1
    cuda_device_id: int = 0

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"RuntimeConfig.device: expected 'cpu', 'cuda' or 'auto', found {self.device!r}")
        if self.intra_op_threads < 1:
            raise ValueError(f"RuntimeConfig.intra_op_threads: expected >= 1, found {self.intra_op_threads}")
        if self.cuda_device_id < 0:
            raise ValueError(f"RuntimeConfig.cuda_device_id: expected >= 0, found {self.cuda_device_id}")


def select_providers(device: Device, available: Sequence[str] | None = None) -> list[str]:
    """Return the provider list for ``device`` given what this onnxruntime build offers."""
    have = list(ort.get_available_providers() if available is None else available)
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in have:
            raise RuntimeError(
                f"device='cuda' needs onnxruntime's {CUDA}, but this onnxruntime offers {have}. "
                "Install the GPU build (pip install 'proctor-pipeline[cuda]', which brings onnxruntime-gpu, "
                "and uninstall the CPU-only onnxruntime), or set device='auto' or 'cpu'."
            )
        return [CUDA, CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in have else [CPU]
    raise ValueError(f"device: expected 'cpu', 'cuda' or 'auto', found {device!r}")


def create_session(model_path: Path, config: RuntimeConfig, *, model_name: str) -> ort.InferenceSession:
    """Build, warm up and log one inference session for ``model_path``."""
    providers = select_providers(config.device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    provider_options: list[dict[str, str]] = [
        {"device_id": str(config.cuda_device_id)} if p == CUDA else {} for p in providers
    ]
    session = ort.InferenceSession(
        str(model_path), sess_options=options, providers=providers, provider_options=provider_options
    )
    used = session.get_providers()
    if config.device == "cuda" and used[0] != CUDA:
        raise RuntimeError(
            f"device='cuda': onnxruntime offers {CUDA} but the session for {model_name} fell back to {used}; "
            "check the CUDA/cuDNN libraries that onnxruntime-gpu needs and that a GPU is visible"
        )
    inp = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    start = time.perf_counter()
    session.run(None, {inp.name: np.zeros(shape, np.float32)})
    warmup_ms = (time.perf_counter() - start) * 1000.0
    log.info(
        "onnx session ready: %s on %s",
        model_name,
        used[0],
        extra={
            "event": "onnx_session_ready",
            "model": model_name,
            "provider": used[0],
            "providers": used,
            "device_requested": config.device,
            "intra_op_threads": config.intra_op_threads,
            "warmup_ms": round(warmup_ms, 2),
        },
    )
    return session
