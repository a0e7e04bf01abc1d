"""Provider choice: one function, tables of cases, and the real fallback on this machine."""

from __future__ import annotations

import logging
from typing import Any

import onnxruntime as ort
import pytest

from detectors import RuntimeConfig, create_session, select_providers
from models import resolve_model

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("cpu", [CPU], [CPU]),
        ("cpu", [CUDA, CPU], [CPU]),
        ("auto", [CPU], [CPU]),
        ("auto", ["AzureExecutionProvider", CPU], [CPU]),
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
        ("cuda", [CPU], RuntimeError),
        ("tpu", [CPU], ValueError),
    ],
)
def test_select_providers(device: Any, available: list[str], expected: Any) -> None:
    if isinstance(expected, list):
        assert select_providers(device, available) == expected
    else:
        with pytest.raises(expected):
            select_providers(device, available)


def test_cuda_without_gpu_build_fails_with_instructions() -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the failure path cannot be shown here")
    with pytest.raises(RuntimeError, match=r"onnxruntime-gpu.*device='auto' or 'cpu'"):
        create_session(resolve_model("face_detection_short_range").path, RuntimeConfig(device="cuda"), model_name="x")


def test_auto_falls_back_to_cpu_and_logs_the_provider(caplog: pytest.LogCaptureFixture) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; auto would pick it")
    with caplog.at_level(logging.INFO, logger="detectors.runtime"):
        session = create_session(
            resolve_model("face_detection_short_range").path, RuntimeConfig(device="auto"), model_name="short"
        )
    assert session.get_providers()[0] == CPU
    records = [r for r in caplog.records if getattr(r, "event", None) == "onnx_session_ready"]
    assert len(records) == 1
    assert records[0].provider == CPU  # type: ignore[attr-defined]
    assert records[0].model == "short"  # type: ignore[attr-defined]
    assert records[0].warmup_ms >= 0  # type: ignore[attr-defined]
    assert CPU in records[0].getMessage()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, None),
        ({"device": "gpu"}, "expected 'cpu', 'cuda' or 'auto'"),
        ({"intra_op_threads": 0}, "intra_op_threads"),
        ({"cuda_device_id": -1}, "cuda_device_id"),
    ],
)
def test_runtime_config_validation(kwargs: dict[str, Any], error: str | None) -> None:
    if error is None:
        assert RuntimeConfig(**kwargs).device == "auto"
    else:
        with pytest.raises(ValueError, match=error):
            RuntimeConfig(**kwargs)
