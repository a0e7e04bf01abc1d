"""What edX shows learners and course teams about our backend, in English, French and Spanish.

edX asks for the config and for an attempt with `Accept-Language`: a standard header (`fr-CA, fr;q=0.8,
en;q=0.5`) or edX's own `<current>;<default>` form (`es;en`). `negotiate` picks the best language we have,
English when none fits.
"""

from __future__ import annotations

from typing import Final

from openedx.rules import ALLOW_MULTIPLE_MONITORS, ALLOW_NOTES, ALLOW_OTHER_PEOPLE, RECORD_SCREEN

LANGUAGES: Final = ("en", "fr", "es")
FALLBACK: Final = "en"

BACKEND_NAME: Final = "Proctor Pipeline"

RULE_TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        ALLOW_NOTES: "Paper notes are allowed",
        ALLOW_MULTIPLE_MONITORS: "A second monitor is allowed",
        ALLOW_OTHER_PEOPLE: "Other people may be in the room",
        RECORD_SCREEN: "The screen is recorded as well as the webcam",
    },
    "fr": {
        ALLOW_NOTES: "Les notes sur papier sont autorisées",
        ALLOW_MULTIPLE_MONITORS: "Un second écran est autorisé",
        ALLOW_OTHER_PEOPLE: "D'autres personnes peuvent être présentes dans la pièce",
        RECORD_SCREEN: "L'écran est enregistré en plus de la webcam",
    },
    "es": {
        ALLOW_NOTES: "Se permiten apuntes en papel",
        ALLOW_MULTIPLE_MONITORS: "Se permite un segundo monitor",
        ALLOW_OTHER_PEOPLE: "Puede haber otras personas en la sala",
        RECORD_SCREEN: "Se graba la pantalla además de la cámara web",
    },
}

INSTRUCTIONS: Final[dict[str, list[str]]] = {
    "en": [
        "Open the recorder page with the link below and keep it open for the whole exam.",
        "Allow the page to use your webcam (and to share your screen if asked), then wait until it says ready.",
        "Sit facing the camera in good light; do not cover the camera.",
        "Go back to the exam and start it. When you submit it, the recording ends by itself.",
    ],
    "fr": [
        "Ouvrez la page d'enregistrement avec le lien ci-dessous et laissez-la ouverte pendant tout l'examen.",
        "Autorisez la page à utiliser votre webcam (et à partager votre écran si demandé), puis attendez "
        "qu'elle indique être prête.",
        "Placez-vous face à la caméra, dans un endroit bien éclairé ; ne couvrez pas la caméra.",
        "Revenez à l'examen et commencez-le. Quand vous le soumettez, l'enregistrement s'arrête tout seul.",
    ],
    "es": [
        "Abra la página de grabación con el enlace de abajo y manténgala abierta durante todo el examen.",
        "Permita que la página use su cámara web (y que comparta su pantalla si se le pide), y espere hasta "
        "que indique que está lista.",
        "Siéntese frente a la cámara con buena luz; no tape la cámara.",
        "Vuelva al examen y comiéncelo. Cuando lo envíe, la grabación termina sola.",
    ],
}


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def negotiate(accept_language: str | None) -> str:
    """The language to answer in: the highest-q one we have (a region falls back to its language), else English.

    Parameters that are not `q=` are read as further languages at a lower preference, so edX's `fr;en`
    means French, then English.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, *params = item.split(";")
        quality = _quality(params)
        ranked.append((quality, -position * 2, tag))
        extra = [p for p in params if "=" not in p]
        ranked += [(quality * 0.9, -position * 2 - 1, p) for p in extra]
    for quality, _, tag in sorted(ranked, reverse=True):
        language = tag.strip().lower().replace("_", "-").split("-")[0]
        if quality > 0 and language in LANGUAGES:
            return language
    return FALLBACK


def rule_texts(language: str) -> dict[str, str]:
    return dict(RULE_TEXTS.get(language, RULE_TEXTS[FALLBACK]))


def instructions(language: str) -> list[str]:
    return list(INSTRUCTIONS.get(language, INSTRUCTIONS[FALLBACK]))
