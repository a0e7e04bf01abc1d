"""Enrolment files on the ingest side (no face models): reading a photo's size from its header before decoding
it, decoding photos and clips upright, and the upload service without an enrolment check."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.context import AppContext
from core.probes import VideoProbe
from core.tenants import add_tenant
from ingest.enrolment import UNREADABLE, EnrolmentLimits, decode_clip, decode_photo, image_size
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.schemas import IngestError, SessionCreate
from ingest.uploads import Uploads
from proctor.wiring import upload_limits
from tests.support import media as mf
from tests.support.platform import declare, session_body


def encoded(suffix: str, width: int = 64, height: int = 48) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)  # BGR: the left half red
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_photos_size_is_read_from_its_header(suffix: str) -> None:
    assert image_size(encoded(suffix, 640, 360)) == (640, 360)


def test_a_progressive_jpeg_with_leading_segments_is_sized_too() -> None:
    ok, data = cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and image_size(data.tobytes()) == (50, 30)


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a....", b"\xff\xd8\xff\xe0\x00", np.random.default_rng(3).bytes(5000), b"\x89PNG\r\n\x1a\n"]
)
def test_anything_else_has_no_size(data: bytes) -> None:
    assert image_size(data) is None


def test_decoding_gives_rgb_shrunk_to_the_long_side_limit() -> None:
    rgb = decode_photo(encoded(".png", 400, 200), EnrolmentLimits(max_side_px=100))
    assert rgb.shape == (50, 100, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[25, 10]) == (255, 0, 0)  # red stays red: RGB, not OpenCV's BGR


def test_unreadable_and_oversized_photos_are_refused_before_any_decoding() -> None:
    with pytest.raises(MediaRejected) as garbage:
        decode_photo(np.random.default_rng(1).bytes(20_000), EnrolmentLimits())
    assert garbage.value.code == UNREADABLE and "JPEG or PNG" in garbage.value.message
    # A PNG header that claims 100,000 x 100,000 pixels: refused from its header, nothing is unpacked.
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 100_000, 100_000) + b"\x08\x02"
    with pytest.raises(MediaRejected) as huge:
        decode_photo(bomb + bytes(100), EnrolmentLimits())
    assert huge.value.code == "unsupported_dimensions"
    # A real header with its picture data cut off.
    with pytest.raises(MediaRejected) as cut:
        decode_photo(encoded(".jpg", 640, 480)[:300], EnrolmentLimits())
    assert cut.value.code == UNREADABLE


def test_a_clip_is_sampled_evenly_and_turned_upright(tmp_path: Path) -> None:
    video = mf.write_video(tmp_path / "phone.mp4", size=(160, 120), frames=45, rotation_ccw=-90.0)
    probe = probe_video(video, ProbeLimits())
    assert probe.rotation_deg == 90
    with video.open("rb") as source:
        frames = decode_clip(source, probe, EnrolmentLimits(clip_frames=5))
    assert len(frames) == 5 and all(f.shape == (160, 120, 3) for f in frames)  # portrait, as displayed
    assert len({f.tobytes() for f in frames}) == 5  # five different moments


def test_a_clip_that_does_not_decode_is_unreadable(tmp_path: Path) -> None:
    probe = VideoProbe("mp4", "h264", 2.0, 15.0, 160, 120, 0, False, None)
    with pytest.raises(MediaRejected) as refused, (tmp_path / "x").open("w+b") as source:
        source.write(b"not a video at all" * 100)
        source.seek(0)
        decode_clip(source, probe, EnrolmentLimits())
    assert refused.value.code == UNREADABLE


def test_a_service_without_the_enrolment_check_refuses_enrolment_media(
    context: AppContext, small_video: Path, tmp_path: Path
) -> None:
    uploads = Uploads(context.db, context.store, upload_limits(context.settings))  # no `enrolments`
    with context.db() as db:
        tenant_id = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "no enrolment").id
        db.commit()
    photo = tmp_path / "me.jpg"
    photo.write_bytes(encoded(".jpg"))
    body = SessionCreate.model_validate(
        session_body(declare("webcam", small_video), declare("enrolment_photo", photo, "image/jpeg"))
    )
    with pytest.raises(IngestError) as refused:
        uploads.register(tenant_id, body, None)
    assert (refused.value.status, refused.value.code) == (422, "enrolment_unavailable")
    # Without enrolment media it works as before.
    plain = SessionCreate.model_validate(session_body(declare("webcam", small_video)))
    assert uploads.register(tenant_id, plain, None)[1] is True
