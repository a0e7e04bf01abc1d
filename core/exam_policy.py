"""An exam's flagging policy: which kinds are flagged, how long an episode must last, how far a candidate may
look away, and what aids the exam allows. Pure dataclasses and their JSON form, no I/O.

It lives in the kernel, not beside the segmenter that applies it (`pipelines.segments`), because three stages
read and write it: the pipelines segment under it, the review UI's officers edit it, and the platform API
sets it. Every way in goes through `ExamPolicy.from_json`, which refuses what it cannot apply with a
`PolicyInvalid` naming the field (`kinds.no_face.min_duration_ms`) and what that field allows.

`sensitivity` scales every minimum duration by 1 / sensitivity. A kind left out of `kinds` keeps its
defaults. `looking_away` holds the exam's tolerances around the calibrated "at the screen" (None: the
detectors' defaults). `allowed_aids` is free text for the reviewer ("one sheet of notes, a calculator"): it
changes no flag, but it tells the reviewer what not to count against the candidate.

`auto_clear` changes no flag either: it lets the review UI's sweep (`review_ui.auto_clear`) finalise as Clean,
with no person deciding, the sessions the detectors found nothing in, and send a share of them (`qc_sample_rate`)
to reviewers instead, to check that this is safe. Off unless an officer or the platform turns it on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

from core.vocabulary import FlagKind

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Config = TypeVar("_Config", bound="DataclassInstance")
_Section = TypeVar("_Section")

MAX_DURATION_MS: Final = 3_600_000  # an hour: no longer minimum, merge gap or unknown stretch is meaningful
MIN_SENSITIVITY: Final = 0.1
MAX_SENSITIVITY: Final = 10.0
MAX_ALLOWED_AIDS: Final = 2000  # characters
DURATION_FIELDS: Final = ("min_duration_ms", "merge_gap_ms", "max_unknown_ms")
TOLERANCE_FIELDS: Final = ("yaw_deg", "pitch_deg", "gaze_h")
AUTO_CLEAR_FIELDS: Final = ("enabled", "max_risk", "qc_sample_rate")
POLICY_FIELDS: Final = ("sensitivity", "kinds", "looking_away", "allowed_aids", "auto_clear")


class PolicyInvalid(ValueError):
    """A policy value that cannot be applied: `field` is its path (``kinds.no_face.min_duration_ms``), the
    message says what the field allows and what was sent."""

    def __init__(self, field: str, allowed: str, got: object = None, *, show_got: bool = True) -> None:
        self.field, self.allowed = field, allowed
        super().__init__(f"{field} {allowed}" + (f", got {got!r}" if show_got else ""))

    def within(self, prefix: str) -> PolicyInvalid:
        """The same refusal with the field's path under `prefix` (a kind's, or ``looking_away``'s)."""
        moved = PolicyInvalid(f"{prefix}.{self.field}", self.allowed, show_got=False)
        moved.args = (f"{prefix}.{self.args[0]}",)
        return moved


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PolicyInvalid(name, f"must be within [{low:g}, {high:g}] (a number)", value)
    return float(value)


def _milliseconds(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise PolicyInvalid(name, f"must be a whole number of milliseconds within [0, {MAX_DURATION_MS}]", value)
    if not 0 <= value <= MAX_DURATION_MS:
        raise PolicyInvalid(name, f"must be >= 0 and <= {MAX_DURATION_MS} (milliseconds)", value)
    return int(value)


@dataclass(frozen=True)
class KindPolicy:
    """How one kind of evidence becomes segments (see `pipelines.segments`)."""

    enabled: bool = True
    enter: float = 0.5
    exit: float = 0.3
    min_duration_ms: int = 2000
    merge_gap_ms: int = 1500
    max_unknown_ms: int = 1000
    weight: float = 1.0  # share in the session's risk score

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PolicyInvalid("enabled", "must be true or false", self.enabled)
        for name in ("enter", "exit", "weight"):
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0, 1.0))
        if self.exit > self.enter:
            raise PolicyInvalid("exit", f"must be <= enter ({self.enter:g}): need 0 <= exit <= enter <= 1", self.exit)
        for name in DURATION_FIELDS:
            object.__setattr__(self, name, _milliseconds(name, getattr(self, name)))


def _defaults() -> dict[FlagKind, KindPolicy]:
    return {
        FlagKind.NO_FACE: KindPolicy(min_duration_ms=3000, weight=0.6),
        FlagKind.MULTIPLE_FACES: KindPolicy(min_duration_ms=1500, weight=0.9),
        FlagKind.LOOKING_AWAY: KindPolicy(min_duration_ms=2000, merge_gap_ms=2000, weight=0.5),
        # A covered lens is deliberate far more often than a face is briefly lost: 2 s of it is a finding.
        FlagKind.CAMERA_BLOCKED: KindPolicy(min_duration_ms=2000, weight=0.8),
        # Two descriptor samples apart at least: one blurred or turned sample is not another person.
        FlagKind.PERSON_CHANGED: KindPolicy(min_duration_ms=5000, merge_gap_ms=3000, max_unknown_ms=4000, weight=0.9),
        FlagKind.IDENTITY_MISMATCH: KindPolicy(
            min_duration_ms=5000, merge_gap_ms=3000, max_unknown_ms=4000, weight=1.0
        ),
    }


def default_kind(kind: FlagKind) -> KindPolicy:
    return _defaults()[kind]


@dataclass(frozen=True)
class AwayTolerances:
    """How far from the calibrated "at the screen" an exam lets a candidate look (None: the detectors'
    default). An open-book exam may allow more pitch (reading notes); see ``detectors.AwayConfig``."""

    yaw_deg: float | None = None
    pitch_deg: float | None = None
    gaze_h: float | None = None

    def __post_init__(self) -> None:
        for name in TOLERANCE_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 180:
                raise PolicyInvalid(f"looking_away.{name}", "must be > 0 (and at most 180), or left out", value)
            object.__setattr__(self, name, float(value))

    def applied_to(self, base: _Config) -> _Config:
        """`base` (the detectors' ``AwayConfig``) with this exam's tolerances in place of its defaults."""
        chosen = {k: v for k, v in asdict(self).items() if v is not None}
        return replace(base, **chosen) if chosen else base


@dataclass(frozen=True)
class AutoClear:
    """Whether sessions the detectors found nothing in are cleared without a reviewer (see the module's docstring).

    Eligible: a risk score at most `max_risk` (it weighs each flag's score and length by its kind's weight; 0: no
    flag that counts) and no flag a reviewer added.
    Of those, a share `qc_sample_rate` goes to reviewers as a quality-control sample instead."""

    enabled: bool = False
    max_risk: float = 0.0
    qc_sample_rate: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PolicyInvalid("auto_clear.enabled", "must be true or false", self.enabled)
        for name in ("max_risk", "qc_sample_rate"):
            object.__setattr__(self, name, _number(f"auto_clear.{name}", getattr(self, name), 0.0, 1.0))


@dataclass(frozen=True)
class ExamPolicy:
    """A per-exam flagging policy, stored with the exam as JSON (see the module's docstring)."""

    sensitivity: float = 1.0
    kinds: Mapping[FlagKind, KindPolicy] = field(default_factory=_defaults)
    looking_away: AwayTolerances = field(default_factory=AwayTolerances)
    allowed_aids: str = ""
    auto_clear: AutoClear = field(default_factory=AutoClear)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sensitivity", _number("sensitivity", self.sensitivity, MIN_SENSITIVITY, MAX_SENSITIVITY)
        )
        if not isinstance(self.allowed_aids, str) or len(self.allowed_aids) > MAX_ALLOWED_AIDS:
            raise PolicyInvalid(
                "allowed_aids", f"must be text of at most {MAX_ALLOWED_AIDS} characters", show_got=False
            )
        object.__setattr__(self, "kinds", {**_defaults(), **{FlagKind(k): v for k, v in self.kinds.items()}})
        object.__setattr__(self, "allowed_aids", self.allowed_aids.strip())

    def for_kind(self, kind: FlagKind) -> KindPolicy:
        base = self.kinds[kind]
        return replace(base, min_duration_ms=round(base.min_duration_ms / self.sensitivity))

    def without(self, kinds: Iterable[FlagKind]) -> ExamPolicy:
        """This policy with `kinds` turned off: a candidate's accommodation (say, looking away for a candidate
        who reads with a magnifier) applied over the exam's policy."""
        off = {kind: replace(self.kinds[kind], enabled=False) for kind in kinds}
        return replace(self, kinds={**self.kinds, **off}) if off else self

    def to_json(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity,
            "kinds": {k.value: asdict(v) for k, v in self.kinds.items()},
            "looking_away": {k: v for k, v in asdict(self.looking_away).items() if v is not None},
            "allowed_aids": self.allowed_aids,
            "auto_clear": asdict(self.auto_clear),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ExamPolicy:
        """Parse a stored or sent policy; anything it cannot apply raises `PolicyInvalid` naming the field."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise PolicyInvalid("policy", f"must be an object with the fields {', '.join(POLICY_FIELDS)}", data)
        unknown = set(data) - set(POLICY_FIELDS)
        if unknown:
            raise PolicyInvalid(
                "policy", f"has unknown policy fields {sorted(unknown)}; allowed: {', '.join(POLICY_FIELDS)}",
                show_got=False,
            )  # fmt: skip
        return cls(
            sensitivity=_number("sensitivity", data.get("sensitivity", 1.0), MIN_SENSITIVITY, MAX_SENSITIVITY),
            kinds=_kinds(data.get("kinds")),
            looking_away=_section("looking_away", data.get("looking_away"), TOLERANCE_FIELDS, AwayTolerances),
            allowed_aids=_text("allowed_aids", data.get("allowed_aids") or ""),
            auto_clear=_section("auto_clear", data.get("auto_clear"), AUTO_CLEAR_FIELDS, AutoClear),
        )


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise PolicyInvalid(name, f"must be text of at most {MAX_ALLOWED_AIDS} characters", value)
    return value


def _kinds(data: object) -> dict[FlagKind, KindPolicy]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PolicyInvalid("kinds", "must be an object of flag kind -> its settings", data)
    allowed = [f.name for f in fields(KindPolicy)]
    kinds: dict[FlagKind, KindPolicy] = {}
    for name, values in data.items():
        try:
            kind = FlagKind(name)
        except ValueError:
            known = ", ".join(k.value for k in FlagKind)
            raise PolicyInvalid(
                "kinds", f"names an unknown flag kind {name!r}; known: {known}", show_got=False
            ) from None
        if not isinstance(values, Mapping):
            raise PolicyInvalid(f"kinds.{name}", f"must be an object with some of {', '.join(allowed)}", values)
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise PolicyInvalid(
                f"kinds.{name}", f"(policy for {name}) has unknown fields {unknown}; allowed: {', '.join(allowed)}",
                show_got=False,
            )  # fmt: skip
        try:
            kinds[kind] = replace(default_kind(kind), **values)
        except PolicyInvalid as invalid:
            raise invalid.within(f"kinds.{name}") from None
    return kinds


def _section(name: str, data: object, fields: Sequence[str], make: Callable[..., _Section]) -> _Section:
    """One of the policy's objects (`looking_away`, `auto_clear`) from its JSON: left out, its defaults."""
    if data is None:
        return make()
    if not isinstance(data, Mapping):
        raise PolicyInvalid(name, f"must be an object with some of {', '.join(fields)}", data)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PolicyInvalid(name, f"has unknown fields {unknown}; allowed: {', '.join(fields)}", show_got=False)
    return make(**data)
