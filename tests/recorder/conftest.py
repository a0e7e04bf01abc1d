"""Camera frames for the recorder's tests: decoded from a `proctor.samples` recording, with what each shows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from playwright.sync_api import Browser, sync_playwright

from core.context import AppContext
from core.lms_tables import EdxAttempt, EdxClient, EdxExam
from core.tables import Exam
from core.tenants import add_tenant
from proctor.samples import build_sample_session
from tests.review_ui.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CLOSE_WITHIN_S,
    killed_if_stuck,
    normal_scheduling,
    process_children,
)

Image = NDArray[np.uint8]
FPS = 10


@dataclass(frozen=True)
class SampleFrames:
    """RGB frames of a sample recording and the scene each interval shows ("candidate", "cup", ...)."""

    frames: list[Image]
    scenes: list[tuple[int, int, str]]  # (first frame, end frame, scene)

    def of(self, scene: str) -> list[Image]:
        return [f for a, b, s in self.scenes if s == scene for f in self.frames[a:b]]

    def middle(self, scene: str) -> Image:
        shown = self.of(scene)
        return shown[len(shown) // 2]


def scene_name(what: str, faces: int) -> str:
    if faces == 2:
        return "two people"
    if "coffee" in what:
        return "cup"
    if "cat" in what:
        return "cat"
    return "candidate" if "candidate" in what else "other"


@pytest.fixture(scope="session")
def sample_frames(tmp_path_factory: pytest.TempPathFactory) -> SampleFrames:
    sample = build_sample_session(tmp_path_factory.mktemp("recorder-sample"), duration_s=12, fps=FPS, codec="vp8")
    with av.open(str(sample.video_path)) as container:
        frames = [np.ascontiguousarray(f.to_ndarray(format="rgb24"), np.uint8) for f in container.decode(video=0)]
    scenes = [
        (round(iv.start_s * FPS), round(iv.end_s * FPS), scene_name(iv.what, iv.faces)) for iv in sample.intervals
    ]
    return SampleFrames(frames, scenes)


def jpeg(image: Image, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def write_y4m(path: Path, frames: list[Image], fps: int) -> Path:
    """A YUV4MPEG2 file (4:2:0) that Chromium's fake camera plays in a loop."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def edx_attempt(context: AppContext, status: str, rules: dict[str, bool] | None = None) -> str:
    """An Open edX attempt in `status`, of a new client and an exam with these rules (default: none)."""
    with context.db() as db:
        tenant = add_tenant(db, f"edx-{uuid.uuid4().hex[:8]}", "edx test")
        exam = Exam(tenant_id=tenant.id, external_id=f"edx-{uuid.uuid4().hex[:6]}")
        client = EdxClient(
            tenant_id=tenant.id, client_id=uuid.uuid4().hex, secret_sealed="x", lms_url="https://lms.example"
        )
        db.add_all([exam, client])
        db.flush()
        edx_exam = EdxExam(
            client_pk=client.id, lms_exam_id=1, course_id="course-v1:x+y+z", exam_id=exam.id, rules=rules or {}
        )
        db.add(edx_exam)
        db.flush()
        attempt = EdxAttempt(edx_exam_pk=edx_exam.id, user_id="learner-1", status=status)
        db.add(attempt)
        db.commit()
        return attempt.id


@contextmanager
def chromium_with_camera(camera: Path) -> Iterator[Browser]:
    """Debian's Chromium (headless) whose camera plays `camera` (a .y4m) and whose capture prompts (camera,
    screen) are accepted: the screen is Chromium's fake one."""
    normal_scheduling()
    before = set(process_children().get(os.getpid(), []))
    playwright = sync_playwright().start()
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
    driver = set(process_children().get(os.getpid(), [])) - before
    try:
        yield launched
    finally:
        with killed_if_stuck(CLOSE_WITHIN_S, driver):
            launched.close()
            playwright.stop()
