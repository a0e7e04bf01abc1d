"""What Linux's /proc says, for the benchmarks' tables: a process's CPU seconds and peak memory, and the CPU.

The development VMs land on different hosts (an AMD EPYC with AVX2 only ran the face mesh model at ~2.1 ms
where earlier runs saw ~1.0 ms), so every speed benchmark prints the machine first: compare runs of one
machine only."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "machine", "peak_rss_mb"]

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
"""CPU flags that decide which kernels ONNX Runtime, OpenCV and FFmpeg pick."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line: these benchmarks need Linux")


def machine() -> str:
    """One line naming the CPU model, its logical CPUs and vector extensions (from /proc/cpuinfo)."""
    model, flags = "unknown CPU", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    vector = " ".join(f for f in VECTOR_FLAGS if f in flags) or "no AVX2"
    return f"machine: {model}, {os.cpu_count()} logical CPUs, {vector}"
