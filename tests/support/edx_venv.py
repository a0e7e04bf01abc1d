"""A virtual environment with Open edX's proctoring code, for the tests that run edX's own code against ours.

It holds edx-proctoring and edx-rest-api-client at the versions below plus our `proctor_edx` plugin, and is built
once, then reused, under `$PROCTOR_TEST_CACHE` (default `~/.cache/proctor-pipeline`). Where pip cannot reach an
index the calling test is skipped with the reason, except under `CI`, where it fails. The build holds a file lock,
so parallel test workers (pytest-xdist) wait for one build instead of racing two into the same folder.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINS = ("edx-proctoring==6.1.4", "edx-rest-api-client==7.1.0")
OFFLINE_HINTS = (
    "NewConnectionError",
    "Max retries",
    "Temporary failure in name resolution",
    "No matching distribution",
)


def edx_venv() -> Path:
    """The cached venv with edx's client and our plugin: built once per pins and Python version."""
    cache = Path(os.environ.get("PROCTOR_TEST_CACHE", Path.home() / ".cache" / "proctor-pipeline"))
    where = cache / f"edx-venv-{'-'.join(PINS)}-py{sys.version_info.major}{sys.version_info.minor}"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{where.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _built(where)


def _built(where: Path) -> Path:
    python = where / "bin" / "python"
    ready = where / "proctor-edx-installed-from"
    if ready.exists() and ready.read_text() == str(ROOT / "proctor_edx"):
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    for args in ([*PINS], ["-e", str(ROOT / "proctor_edx")]):
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-2000:]
            if any(hint in output for hint in OFFLINE_HINTS) and not os.environ.get("CI"):
                pytest.skip(f"pip cannot install {args} (no package index reachable?): {output[-400:]}")
            pytest.fail(f"pip install {args} failed:\n{output}")
    ready.write_text(str(ROOT / "proctor_edx"))
    return python
