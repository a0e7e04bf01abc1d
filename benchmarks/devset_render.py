"""Rendering for ``benchmarks/devset.py``: the output format, the staged media loaded from a media root
(``cache/media``, passed in explicitly), the crop of each framing, the lighting transforms, and ``Seg``, a
stretch of the session between two cuts that renders its frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.devset_media import MEDIA, PACKAGES, Box
from benchmarks.devset_people import BACKGROUNDS, POSTERS, VIDEO_TIMELINES, VIEWS, View

FPS, W, H = 15, 640, 480
BLOCK = 3  # labels change only on a 0.2 s grid (3 frames)
# framing: (face width / crop width, face centre x, y as fractions of the crop); None = the whole picture
FRAMINGS: dict[str, tuple[float, float, float] | None] = {
    "full": None,
    "large": (0.34, 0.5, 0.45),
    "medium": (0.26, 0.5, 0.45),
    "small_left": (0.22, 0.3, 0.35),
    "small_right": (0.22, 0.7, 0.35),
    "v_tight": (0.4, 0.5, 0.5),
    "v_closer": (0.62, 0.5, 0.5),
    "v_wide_off": (0.3, 0.7, 0.5),
    "v_tight_off": (0.34, 0.32, 0.5),
    "half": (0.42, 0.5, 0.42),
}
Image = npt.NDArray[np.uint8]


# ------------------------------------------------------------------------------------------------- loading
def ref(key: str) -> str:
    m = MEDIA[key]
    pkg = PACKAGES[m.package]
    reg = {"sdist": "pypi", "wheel": "pypi", "npm": "npm", "deb": "debian", "installed": "pypi (installed)"}
    return f"{reg[pkg.registry]}:{pkg.spec}:{m.path}"


@lru_cache(maxsize=64)
def image(root: Path, key: str) -> Image:
    """The staged picture ``key`` under the media root ``root`` (``cache/media``)."""
    im = cv2.imread(str(root / MEDIA[key].package / Path(MEDIA[key].path).name), cv2.IMREAD_COLOR)
    if im is None:
        raise FileNotFoundError(key)
    return np.ascontiguousarray(im)


@lru_cache(maxsize=3)
def video(root: Path, key: str) -> tuple[Image, ...]:
    """The staged video ``key`` under ``root``, resampled to 15 fps: item k is the last source frame shown at or
    before k/15 s."""
    with av.open(str(root / MEDIA[key].package / Path(MEDIA[key].path).name)) as c:
        st = c.streams.video[0]
        dec = sorted(
            ((f.time or 0.0, np.asarray(f.to_ndarray(format="bgr24"), dtype=np.uint8)) for f in c.decode(st)),
            key=lambda x: x[0],
        )
    t0, out, j = dec[0][0], [], 0
    for k in range(int((dec[-1][0] - t0) * FPS + 1e-6) + 1):
        while j + 1 < len(dec) and dec[j + 1][0] <= t0 + k / FPS + 1e-6:
            j += 1
        out.append(dec[j][1])
    return tuple(out)


def picture_size(root: Path, view: View) -> tuple[int, int]:
    im = video(root, view.media)[0] if view.media in VIDEO_TIMELINES else image(root, view.media)
    return im.shape[1], im.shape[0]


def crop_rect(root: Path, view: View, framing: str, aspect: float) -> tuple[float, float, float, float]:
    """Crop x, y, w, h that puts the face where the framing asks, kept inside the view's bounds."""
    iw, ih = picture_size(root, view)
    x0, y0, x1, y1 = view.bounds or (0, 0, iw, ih)
    if view.crop:
        return view.crop
    f = FRAMINGS[framing]
    if view.face is None:
        return x0, y0, x1 - x0, y1 - y0
    frac, px, py = f or (0.01, 0.5, 0.45)  # full: the largest crop of this aspect, centred on the face
    fx, fy, fw, fh = view.face
    w = fw / frac
    h = w / aspect
    s = min(1.0, (x1 - x0) / w, (y1 - y0) / h)
    w, h = w * s, h * s
    x = min(max(fx + fw / 2 - px * w, x0), x1 - w)
    y = min(max(fy + fh / 2 - py * h, y0), y1 - h)
    return x, y, w, h


# ----------------------------------------------------------------------------------------------- rendering
def poster_box(root: Path, view_key: str) -> Box:
    """Where the view's poster is pasted on its picture (source pixels): its slot, less the poster's own aspect."""
    poster, (x, y, w, h) = POSTERS[view_key]
    p = image(root, poster)
    s = min(w / p.shape[1], h / p.shape[0])
    return x, y, int(p.shape[1] * s), int(p.shape[0] * s)


def paste_poster(root: Path, im: Image, poster: str, box: Box) -> Image:
    """``im`` with the framed poster (a light mount and a thin dark edge) pasted at ``box``."""
    x, y, pw, ph = box
    out = im.copy()
    cv2.rectangle(out, (x - 3, y - 3), (x + pw + 2, y + ph + 2), (236, 236, 236), -1)
    cv2.rectangle(out, (x - 4, y - 4), (x + pw + 3, y + ph + 3), (60, 60, 60), 1)
    out[y : y + ph, x : x + pw] = cv2.resize(image(root, poster), (pw, ph), interpolation=cv2.INTER_AREA)
    return out


def with_poster(root: Path, im: Image, view_key: str) -> Image:
    return paste_poster(root, im, POSTERS[view_key][0], poster_box(root, view_key))


def poster_in_view(root: Path, view_key: str, framing: str, w_out: int = W, h_out: int = H) -> Box:
    """Where the view's poster lands in an output frame of that framing (zoom 1), output pixels."""
    px, py, pw, ph = poster_box(root, view_key)
    x, y, w, h = crop_rect(root, VIEWS[view_key], framing, w_out / h_out)
    s = min(w_out / w, h_out / h)
    ox, oy = (w_out - round(w * s)) // 2, (h_out - round(h * s)) // 2
    return round(ox + (px - x) * s), round(oy + (py - y) * s), max(1, round(pw * s)), max(1, round(ph * s))


def relight(
    pic: Image, light: str, face_xy: tuple[float, float] | None, radius: float, seed: int | None = None
) -> Image:
    """``pic`` under a lighting condition; ``seed`` draws the dim room's sensor noise and is required for it (give
    every frame its own, as a camera's noise is new on every frame)."""
    if light in ("gamma0.4", "gamma0.25"):
        g = 0.4 if light == "gamma0.4" else 0.25
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / g), 0, 255).astype(np.uint8)
        return np.asarray(lut[pic])
    if light == "lowcontrast":
        return np.clip(118.0 + (pic.astype(np.float32) - 128.0) * 0.3, 0, 255).astype(np.uint8)
    if light == "backlit":  # a bright window behind: the person (face and body below it) in shadow
        h, w = pic.shape[:2]
        cx, cy = face_xy or (w / 2, h * 0.45)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dy = np.where(yy < cy, (yy - cy) / (radius * 1.9), (yy - cy) / (radius * 8.0))
        d = np.sqrt(((xx - cx) / (radius * 1.7)) ** 2 + dy**2)
        m = np.clip((d - 1.0) / 1.2, 0, 1)
        m = (m * m * (3 - 2 * m))[..., None]  # smoothstep: 0 on the person, 1 on the background
        f = pic.astype(np.float32) / 255.0
        dark = f**2.0 * 0.6
        bright = 1.0 - (1.0 - f) * 0.3
        return np.asarray(np.clip((dark * (1 - m) + bright * m) * 255.0, 0, 255), dtype=np.uint8)
    if light == "dim":
        if seed is None:
            raise ValueError("relight: the dim room needs a seed for its noise; pass one per frame (seed=...)")
        return dim_room(pic, seed)
    return pic


DIM_LIGHT = 0.03
"""The dim room's light, as a share of a normally lit scene's (``dim_room``)."""
DIM_FULL_WELL = 4000.0
"""Photo-electrons a pixel collects at full scale in normal light: a small webcam sensor's order of magnitude."""
DIM_READ_NOISE = 0.002
"""Read noise, as a share of full scale."""
DIM_JPEG_QUALITY = 60
"""The webcam's JPEG quality: its compression smears the grain into blocks, as a real webcam's does."""


def dim_room(pic: Image, seed: int) -> Image:
    """The scene at ``DIM_LIGHT`` of its light, with the camera's auto-gain turning it back up: the picture is
    as bright as before but carries the dim scene's shot noise (Poisson, ``DIM_FULL_WELL``) and read noise,
    then a webcam's JPEG. Unlike a gamma curve, which darkens a clean picture, this is the grain that a dim room
    puts on every frame, in which a detector can find faces that are not there. ``seed`` draws the noise. Light
    is taken as gamma 2.2 (close to sRGB). There is no black level and no denoising, so shadows turn into grey
    speckle: harsher than many webcams, which denoise before they encode."""
    rng = np.random.default_rng(seed)
    linear = (pic.astype(np.float32) / 255.0) ** 2.2
    electrons = rng.poisson(linear * DIM_LIGHT * DIM_FULL_WELL).astype(np.float32)
    signal = electrons / (DIM_LIGHT * DIM_FULL_WELL) + rng.normal(0, DIM_READ_NOISE / DIM_LIGHT, pic.shape)
    noisy = (np.clip(signal, 0, 1) ** (1 / 2.2) * 255.0).round().astype(np.uint8)
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, DIM_JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("dim_room: OpenCV could not encode a JPEG")
    return np.asarray(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), dtype=np.uint8)


def fit(
    src: Image,
    rect: tuple[float, float, float, float],
    w_out: int,
    h_out: int,
    zoom: float,
    light: str,
    face: Box | None,
) -> Image:
    """Letterbox the crop into w_out x h_out (aspect kept, black bars), zoomed about its centre, relit."""
    x, y, w, h = rect
    s = min(w_out / w, h_out / h)
    nw, nh = round(w * s), round(h * s)
    k = min(1.0, 1.5 * s * zoom)  # downscale with INTER_AREA first, then a small warp
    if k < 1.0:
        size = (max(1, round(src.shape[1] * k)), max(1, round(src.shape[0] * k)))
        src = np.asarray(cv2.resize(src, size, interpolation=cv2.INTER_AREA))
        x, y, w, h = x * k, y * k, w * k, h * k
    z = nw / w * zoom
    m = np.array([[z, 0, nw / 2 - z * (x + w / 2)], [0, z, nh / 2 - z * (y + h / 2)]], dtype=np.float32)
    pic = np.asarray(cv2.warpAffine(src, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), np.uint8)
    face_xy, radius = None, nh / 3
    if face is not None:
        fx, fy, fw, fh = (v * k for v in face) if k < 1.0 else face
        face_xy = (z * (fx + fw / 2) + m[0, 2], z * (fy + fh / 2) + m[1, 2])
        radius = fw * z / 2
    out = np.zeros((h_out, w_out, 3), np.uint8)
    oy, ox = (h_out - nh) // 2, (w_out - nw) // 2
    out[oy : oy + nh, ox : ox + nw] = relight(pic, light, face_xy, radius)
    return out


@dataclass(frozen=True)
class Cover:
    """Something over the lens, rendered as a camera sees it: far out of focus, so only its colour and a smooth
    shading are left, plus the sensor's noise. ``rgb`` is the colour at full shading, times ``level``; the shading
    falls off as ``1 - falloff * r**2`` from ``centre`` (fractions of the frame; r is 1 at the farthest corner) and,
    with ``tilt``, from top to bottom (light from above)."""

    note: str
    rgb: tuple[float, float, float]
    level: float
    centre: tuple[float, float] = (0.5, 0.5)
    falloff: float = 0.0
    tilt: float = 0.0
    flicker: float = 0.03
    noise: float = 2.0

    def render(self, j: int, w_out: int, h_out: int) -> Image:
        rng = np.random.default_rng(j)
        ys, xs = np.mgrid[0:h_out, 0:w_out].astype(np.float64)
        cx, cy = self.centre[0] * w_out, self.centre[1] * h_out
        far = max(np.hypot(x - cx, y - cy) for x in (0, w_out) for y in (0, h_out))
        shade = 1.0 - self.falloff * (np.hypot(xs - cx, ys - cy) / far) ** 2
        shade *= 1.0 + self.tilt * (0.5 - ys / (h_out - 1))
        bgr = np.array(self.rgb[::-1]) * self.level * (1.0 + self.flicker * np.sin(j / 4.0))
        # The shading in single precision, as the dark cover was first rendered (its frames stay byte for byte).
        picture = bgr * shade.astype(np.float32)[:, :, None] + rng.normal(0, self.noise, (h_out, w_out, 3))
        return np.asarray(np.clip(picture, 0, 255), dtype=np.uint8)


# What a candidate puts over a webcam. Only the dark cover is uniform enough for a plain contrast threshold; a
# finger, a palm or a sticky note in a lit room is shaded across the frame, though no detail is left in it.
# fmt: off
COVERS = {
    "dark": Cover("a hand over the lens, a nearly black, noisy frame",
                  (1.0, 8.0 / 15.0, 6.0 / 15.0), 15.0, tilt=0.5, flicker=0.08),
    "finger": Cover("a fingertip on the lens in a lit room: light through the skin, a red-orange glow darker toward "
                    "the edges", (1.0, 0.42, 0.28), 95.0, centre=(0.58, 0.45), falloff=0.55, noise=4.0),
    "palm": Cover("a palm held just in front of the lens, lit from the room above: skin colour, brighter at the top",
                  (0.85, 0.62, 0.5), 150.0, falloff=0.15, tilt=0.45, noise=3.0),
    "note": Cover("a sticky note over the lens: pale yellow paper lit through from the room, shaded toward its edges",
                  (1.0, 0.95, 0.62), 215.0, falloff=0.25, noise=2.0),
}
# fmt: on


@dataclass
class Seg:
    """A stretch between two cuts: one view (still or clip), a composite pair, or a covered lens."""

    kind: str  # still, clip, pair, covered
    n: int
    view: str = ""
    framing: str = "full"
    idx: list[int] = field(default_factory=list)  # clip: 15 fps frame index per output frame
    zoom: float = 0.0
    light: str = ""
    poster: bool = False
    category: str = ""
    right: Seg | None = None  # pair: the right half (self is the left half)
    picture: tuple[str, str] | None = None  # the candidate's (view, framing) whose poster stays once they left
    cover: str = "dark"  # covered: what is over the lens (``COVERS``)

    def source_frame(self, root: Path, j: int) -> Image:
        v = VIEWS[self.view]
        im = video(root, v.media)[self.idx[j]] if self.idx else image(root, v.media)
        return with_poster(root, im, self.view) if self.poster else im

    def render(self, root: Path, j: int, w_out: int = W, h_out: int = H) -> Image:
        """Frame j of the stretch, w_out x h_out, from the media under ``root``."""
        if self.kind == "covered":
            return COVERS[self.cover].render(j, w_out, h_out)
        if self.kind == "pair" and self.right is not None:
            half = w_out // 2
            return np.hstack(
                [
                    replace(self, kind="view").render(root, j, half, h_out),
                    self.right.render(root, j, w_out - half, h_out),
                ]
            )
        v = VIEWS[self.view]
        rect = BACKGROUNDS[self.view] if self.category == "bg" else crop_rect(root, v, self.framing, w_out / h_out)
        z = 1.0 + self.zoom * j / max(1, self.n - 1)
        out = fit(self.source_frame(root, j), rect, w_out, h_out, z, self.light, v.face)
        if self.picture is None:
            return out
        view, framing = self.picture
        return paste_poster(root, out, POSTERS[view][0], poster_in_view(root, view, framing, w_out, h_out))
