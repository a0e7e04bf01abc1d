"""Tables for ``benchmarks/devset.py``: the plan of every development session, and (re-exported from
``devset_media`` and ``devset_people``) the pinned packages, the media files taken from them, and the people
and views cut from those files.

Apart from ``stage`` (download, verify, unpack: ``devset_staging``) this is data. Face boxes (``face``,
x/y/w/h in source pixels) were located once with MediaPipe's full-range detector and checked by eye; they
only steer the framing and the backlight mask.
Skin-tone bands are the author's visual estimate from the photos (not a measurement: the fairness
benchmark measures ITA itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.devset_media import MEDIA, PACKAGES, PRESS, UNCREDITED, Box, Media, Package
from benchmarks.devset_people import AT, BACKGROUNDS, IDENTITIES, POSTERS, VIDEO_TIMELINES, VIEWS, View
from benchmarks.devset_staging import StagingError, stage_media, staged_path

__all__ = [
    "AT",
    "BACKGROUNDS",
    "IDENTITIES",
    "LIGHTS",
    "MEDIA",
    "PACKAGES",
    "POSTERS",
    "PRESS",
    "SESSIONS",
    "UNCREDITED",
    "VIDEO_TIMELINES",
    "VIEWS",
    "Box",
    "Media",
    "Package",
    "SessionSpec",
    "StagingError",
    "View",
    "stage",
    "staged_path",
    "used_media",
]


@dataclass(frozen=True)
class SessionSpec:
    """One development session.

    ``phases``: (view, framing) of the candidate before and, if there is a second entry, after the switch
    (the camera is moved, or another person takes over). ``required`` interludes all appear once;
    ``extras`` are drawn to fill the target length. Interlude tokens: ``noface:<view>``, ``bg`` (the
    candidate's own background), ``neg:<view>``, ``pair:<view>`` (side by side with the candidate),
    ``group:<view>``, ``covered`` or ``covered:<cover>`` (what is over the lens, ``devset_render.COVERS``; dark by
    default), ``light:<variant>`` (a candidate stretch under that lighting) and
    ``gone:<view>`` (the candidate has left: the empty ``<view>`` with the candidate's framed poster where their
    own view shows it).
    """

    family: str
    phases: tuple[tuple[str, str], ...]
    required: tuple[str, ...]
    extras: tuple[str, ...]
    seconds: tuple[float, float] = (55.0, 80.0)
    poster: bool = False


# fmt: off
LIGHTS = ("light:gamma0.4", "light:gamma0.25", "light:backlit", "light:lowcontrast")
SESSIONS: dict[str, SessionSpec] = {
    "dev01": SessionSpec("camera_moved", (("cap12", "v_tight"), ("cap13", "v_wide_off")),
                         ("noface:n_office", "pair:p_hopper", "covered", "neg:x_dog"),
                         ("noface:n_office", "group:g_couple", "neg:x_bbb", "light:gamma0.4")),
    "dev02": SessionSpec("camera_moved", (("franck", "v_closer"), ("franck", "full")),
                         ("noface:n_backview", "pair:p_audrey", "covered:finger", "group:g_s3"),
                         ("neg:x_chelsea", "light:lowcontrast", "noface:n_office")),
    "dev03": SessionSpec("camera_moved", (("obama", "large"), ("obama3", "small_right")),
                         ("bg", "pair:p_bieber", "group:g_zidane", "covered:palm"),
                         ("light:gamma0.4", "neg:x_quokka", "noface:n_office")),
    "dev04": SessionSpec("camera_moved", (("afro", "large"), ("afro", "small_left")),
                         ("bg", "pair:p_connery", "neg:x_cat", "light:backlit"),
                         ("group:g_city", "light:gamma0.25", "noface:n_backview")),
    "dev05": SessionSpec("camera_moved", (("cap13", "full"), ("cap12", "v_tight_off")),
                         ("noface:n_backview", "group:g_svcast", "light:gamma0.25", "light:backlit"),
                         ("neg:x_owl", "light:lowcontrast", "pair:p_cage")),
    "dev06": SessionSpec("person_change", (("obama2", "large"), ("biden", "large")),
                         ("noface:n_office", "group:g_graypair", "covered", "pair:p_cage"),
                         ("neg:x_baboon", "light:gamma0.4", "noface:n_backview")),
    "dev07": SessionSpec("person_change", (("cap13", "full"), ("franck", "full")),
                         ("noface:n_office", "pair:p_connery", "neg:x_owl"),
                         ("group:g_bus", "light:lowcontrast", "noface:n_backview")),
    "dev08": SessionSpec("person_change", (("kumail", "full"), ("glasses_man", "full")),
                         ("noface:n_backview", "group:g_svcast", "covered"),
                         ("neg:x_suzanne", "light:gamma0.4", "pair:p_hopper")),
    "dev09": SessionSpec("person_change", (("s6_left", "full"), ("s6_pout", "full")),
                         ("noface:n_office", "group:g_s5", "neg:x_wolf"),
                         ("pair:p_audrey", "light:backlit", "covered")),
    "dev10": SessionSpec("person_change", (("rihanna", "full"), ("kim", "full")),
                         ("noface:n_backview", "pair:p_audrey", "covered:palm", "light:gamma0.4"),
                         ("group:g_zidane", "neg:x_ironman", "light:lowcontrast")),
    "dev11": SessionSpec("person_change", (("s4_woman", "full"), ("obama4", "full")),
                         ("noface:n_office", "group:g_bus", "neg:x_fish"),
                         ("pair:p_bieber", "light:gamma0.25", "covered")),
    "dev12": SessionSpec("posters_pets", (("cap12", "full"),),
                         ("neg:x_dog", "neg:x_bbb", "neg:x_suzanne", "noface:n_office", "pair:p_connery", "covered",
                          "gone:n_office"),
                         ("neg:x_baboon", "neg:x_cat"), poster=True),
    "dev13": SessionSpec("posters_pets", (("family_man", "full"),),
                         ("neg:x_owl", "neg:x_baboon", "neg:x_vendetta", "noface:n_backview", "group:g_s3",
                          "gone:n_office"),
                         ("neg:x_toon_cat", "neg:x_quokka"), poster=True),
    "dev14": SessionSpec("posters_pets", (("afro", "full"),),
                         ("neg:x_chelsea", "neg:x_ironman", "neg:x_suzanne", "bg", "group:g_couple", "covered:note",
                          "gone:n_office"),
                         ("neg:x_fish", "neg:x_wolf"), poster=True),
    "dev15": SessionSpec("lighting_glasses", (("walter", "full"),),
                         (*LIGHTS, "noface:n_office", "group:g_zidane", "covered"), ("neg:x_dog",)),
    "dev16": SessionSpec("lighting_glasses", (("terminator", "full"),),
                         ("light:backlit", "light:gamma0.4", "light:lowcontrast", "noface:n_backview", "pair:p_bieber"),
                         ("light:gamma0.25", "covered")),
    "dev17": SessionSpec("lighting_glasses", (("elder", "full"),),
                         ("light:lowcontrast", "light:backlit", "light:gamma0.25", "noface:n_office",
                          "group:g_graypair", "neg:x_wolf"), ("light:gamma0.4",)),
    "dev18": SessionSpec("lighting_glasses", (("obama4", "full"),),
                         (*LIGHTS, "noface:n_office", "pair:p_cage", "covered:finger"), ("neg:x_quokka",)),
    "dev19": SessionSpec("lighting_glasses", (("family_man", "full"),),
                         ("light:gamma0.4", "light:gamma0.25", "light:backlit", "noface:n_office", "group:g_s5",
                          "neg:x_dog"), ("light:lowcontrast",)),
    "dev20": SessionSpec("lighting_glasses", (("s6_pout", "full"),),
                         ("light:gamma0.25", "light:backlit", "light:lowcontrast", "covered", "noface:n_backview",
                          "group:g_city"), ("light:gamma0.4",)),
}
# fmt: on


def used_media() -> list[str]:
    keys = {VIEWS[v].media for s in SESSIONS.values() for v, _ in s.phases}
    for s in SESSIONS.values():
        keys |= {
            VIEWS[t.split(":")[1]].media
            for t in (*s.required, *s.extras)
            if t.split(":")[0] in ("noface", "neg", "pair", "group")
        }
        if s.poster:
            keys |= {POSTERS[v][0] for v, _ in s.phases}
    return sorted(keys)


def stage(cache: Path) -> Path:
    """Download, verify and unpack the media the sessions use into ``cache/media``; returns that folder.
    Files already staged with the right md5 are kept; nothing else is downloaded for them."""
    return stage_media(cache, used_media())
