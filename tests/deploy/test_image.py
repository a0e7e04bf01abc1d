"""The image's recipe: runtime dependencies without mediapipe, OpenCV's headless build, every package copied
in, and only settings the application knows. The image itself is not built here (no Docker)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from .manifests import DEPLOY, dockerfile_env, settings_env_names

REPO = DEPLOY.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_mediapipe_is_an_extra_that_dev_pulls_not_a_runtime_dependency() -> None:
    assert not [d for d in PYPROJECT["dependencies"] if d.startswith("mediapipe")]
    extras = PYPROJECT["optional-dependencies"]
    assert "mediapipe==0.10.21" in extras["mediapipe"]  # with the protobuf bounds that keep pip from backtracking
    assert any(re.fullmatch(r"proctor-pipeline\[.*\bmediapipe\b.*\]", d) for d in extras["dev"])


def test_image_requirements_swap_opencv_for_its_headless_build_at_the_same_version() -> None:
    out = subprocess.run(
        [sys.executable, str(DEPLOY / "image_requirements.py"), str(REPO / "pyproject.toml")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    (gui,) = [d for d in PYPROJECT["dependencies"] if d.startswith("opencv-python==")]
    assert out == [d.replace("opencv-python==", "opencv-python-headless==") for d in PYPROJECT["dependencies"]]
    assert gui.replace("opencv-python", "opencv-python-headless") in out
    assert not [d for d in out if d.startswith(("opencv-python==", "mediapipe"))]


def test_image_requirements_refuse_a_pyproject_without_the_pin(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["opencv-python>=4"]\n')
    run = subprocess.run(
        [sys.executable, str(DEPLOY / "image_requirements.py"), str(pyproject)], capture_output=True, text=True
    )
    assert run.returncode != 0 and "opencv-python==" in run.stderr


def test_dockerfile_installs_the_project_without_its_dependencies_after_the_headless_list() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)  # a multi-arch base: amd64 and arm64
    requirements = text.index("pip install --no-cache-dir -r /tmp/requirements.txt")
    assert requirements < text.index("pip install --no-cache-dir --no-deps .")
    assert "HEALTHCHECK" not in text.replace("# No HEALTHCHECK", "")


def test_dockerfile_copies_every_package_the_wheel_includes() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in setuptools["include"]:
        package = pattern.split(".")[0].rstrip("*")  # "proctor.*" and "proctor" are one folder
        assert f"COPY {package} {package}" in text, package


def test_every_proctor_variable_the_dockerfile_sets_is_a_setting() -> None:
    proctor = {name for name in dockerfile_env() if name.startswith("PROCTOR_")}
    assert proctor, "no PROCTOR_ variable found: the loader is broken"
    assert proctor - settings_env_names() == set()
