"""Print the image's runtime requirements: pyproject's dependencies, with OpenCV's headless build in place of
`opencv-python` at the same version.

The GUI build links libGL and X11, which a server image has no use for; the headless wheel has the same `cv2`
module without them. pip cannot replace a dependency of the package it installs, so deploy/Dockerfile installs
this list and then the project itself with `--no-deps`. Usage: `python deploy/image_requirements.py pyproject.toml`.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

GUI = "opencv-python=="
HEADLESS = "opencv-python-headless=="


def image_requirements(pyproject: Path) -> list[str]:
    dependencies: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pinned = [d for d in dependencies if d.startswith(GUI)]
    if len(pinned) != 1:
        raise SystemExit(
            f"expected exactly one `{GUI}<version>` in {pyproject}'s dependencies, found {pinned}; "
            "update deploy/image_requirements.py to match"
        )
    return [HEADLESS + d.removeprefix(GUI) if d.startswith(GUI) else d for d in dependencies]


if __name__ == "__main__":
    sys.stdout.write("\n".join(image_requirements(Path(sys.argv[1]))) + "\n")
