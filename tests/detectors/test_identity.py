"""Face identity: chips cut like dlib's from the face mesh, and descriptors that tell people apart."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from detectors.blazeface import SHORT_RANGE, BlazeFace
from detectors.identity import (
    CHIP_TEMPLATE,
    MESH_TO_DLIB5,
    FaceEmbedder,
    IdentityConfig,
    chip_to_image,
    descriptor_distance,
    similarity_fit,
    template,
)
from detectors.mesh import FaceMesh, roi_from_box
from detectors.runtime import RuntimeConfig

Image = NDArray[np.uint8]
RUNTIME = RuntimeConfig(device="cpu")


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return FaceEmbedder(runtime=RUNTIME)


@pytest.fixture(scope="module")
def landmarks_of() -> Any:
    """The main face's mesh landmarks (468, 3) in frame pixels, found the way the gaze detector finds them."""
    detector, mesh = BlazeFace(SHORT_RANGE, RUNTIME), FaceMesh(RUNTIME)

    def find(image: Image) -> NDArray[np.float64]:
        faces = detector.detect([image], 0.5, 0.3)[0]
        assert len(faces.scores), "no face found"
        i = int(np.argmax(faces.scores))
        result = mesh(image, roi_from_box(faces.boxes[i], faces.keypoints[i, :2]))
        assert result.score > 0.9
        return result.landmarks

    return find


def variants(image: Image) -> dict[str, Image]:
    """The same face mirrored, shifted and rescaled (down, and up far enough to take the shrinking path)."""
    h, w = image.shape[:2]
    return {
        "flipped": np.ascontiguousarray(image[:, ::-1]),
        "shifted": np.ascontiguousarray(np.pad(image, ((37, 0), (53, 0), (0, 0)))[:h, :w]),
        "smaller": cv2.resize(image, (w * 3 // 5, h * 3 // 5), interpolation=cv2.INTER_AREA),
        "larger": cv2.resize(image, (w * 3, h * 3), interpolation=cv2.INTER_LINEAR),
    }


def test_chip_is_dlibs_150_square_with_the_eyes_on_the_template(
    embedder: FaceEmbedder, landmarks_of: Any, astronaut: Image
) -> None:
    lm = landmarks_of(astronaut)
    chip = embedder.chip(astronaut, lm)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    to_chip = cv2.invertAffineTransform(chip_to_image(lm[list(MESH_TO_DLIB5), :2]))
    points = lm[list(MESH_TO_DLIB5), :2] @ to_chip[:, :2].T + to_chip[:, 2]
    # Eye corners and nose land within a few chip pixels of dlib's template (a similarity cannot fit 5 points exactly).
    assert np.all(np.linalg.norm(points - CHIP_TEMPLATE, axis=1) < 3.5)
    assert 15 < chip.mean() < 240  # a face, not a black border


def test_same_face_mirrored_shifted_rescaled_stays_within_dlibs_threshold(
    embedder: FaceEmbedder, landmarks_of: Any, astronaut: Image
) -> None:
    images = {"original": astronaut, **variants(astronaut)}
    chips = np.stack([embedder.chip(img, landmarks_of(img)) for img in images.values()])
    descriptors = embedder.embed(chips)
    distances = descriptor_distance(descriptors[1:], descriptors[0])
    assert distances.shape == (len(images) - 1,)
    assert np.all(distances < 0.6), dict(zip(list(images)[1:], distances.round(3).tolist(), strict=True))
    assert embedder.matches(descriptors, template(descriptors)).all()


def test_different_people_are_beyond_the_threshold(
    embedder: FaceEmbedder, landmarks_of: Any, astronaut: Image, grace: Image
) -> None:
    chips = np.stack([embedder.chip(img, landmarks_of(img)) for img in (astronaut, grace)])
    a, g = embedder.embed(chips)
    assert float(descriptor_distance(a, g)) > 0.6
    assert not embedder.matches(a[None], g)[0]


def test_a_batch_of_n_gives_n_rows_equal_to_one_at_a_time(
    embedder: FaceEmbedder, landmarks_of: Any, astronaut: Image, grace: Image
) -> None:
    chips = np.stack([embedder.chip(img, landmarks_of(img)) for img in (astronaut, grace, astronaut[:, ::-1])])
    batch = embedder.embed(chips)
    assert batch.shape == (3, 128) and batch.dtype == np.float32
    singles = np.concatenate([embedder.embed(c[None]) for c in chips])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert embedder.embed(chips[:0]).shape == (0, 128)


def test_chip_to_image_keeps_dlibs_half_pixel_quirk() -> None:
    """Points exactly on the template fit the identity, but dlib samples half a pixel off it (centered_drect)."""
    np.testing.assert_allclose(chip_to_image(CHIP_TEMPLATE), [[1, 0, 0.5], [0, 1, 0.5]], atol=1e-9)
    # Scaled by 2: the chip spans 2 * 150 - 1 frame pixels from corner to corner.
    affine = chip_to_image(CHIP_TEMPLATE * 2 + (10, 20))
    assert affine[0, 0] * 149 == pytest.approx(299)


def test_similarity_fit_recovers_a_rotation_scale_and_shift() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = CHIP_TEMPLATE @ (scale * rotation).T + shift
    np.testing.assert_allclose(similarity_fit(CHIP_TEMPLATE, dst), np.hstack([scale * rotation, shift[:, None]]))


def test_distance_and_template_are_dlibs_euclidean_and_a_mean() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(size=(3, 128)).astype(np.float32)
    assert float(descriptor_distance(d[0], d[0])) == 0.0
    assert float(descriptor_distance(d[0], d[1])) == pytest.approx(float(np.linalg.norm(d[0] - d[1])), rel=1e-6)
    assert descriptor_distance(d, d[2]).shape == (3,)
    np.testing.assert_allclose(template(d), d.mean(axis=0))
    with pytest.raises(ValueError, match="template"):
        template(d[:0])
    with pytest.raises(ValueError, match="descriptor_distance"):
        descriptor_distance(d[:, :64], d[0])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"match_distance": 0.0}, "match_distance"),
        ({"match_distance": float("nan")}, "match_distance"),
        ({"shrink_above": 0.5}, "shrink_above"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"IdentityConfig.{field}"):
        IdentityConfig(**kwargs)


def test_bad_inputs_are_refused_with_what_was_expected(embedder: FaceEmbedder, astronaut: Image) -> None:
    with pytest.raises(ValueError, match=r"embed: expected \(N, 150, 150, 3\) uint8"):
        embedder.embed(np.zeros((150, 150, 3), np.uint8))
    with pytest.raises(ValueError, match="468"):
        embedder.chip(astronaut, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="RGB uint8"):
        embedder.chip(astronaut.astype(np.float32), np.zeros((468, 3)))  # type: ignore[arg-type]
