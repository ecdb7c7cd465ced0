"""Session configuration: the ``StartRecognition`` and ``SetRecognitionConfig`` payloads as data.

Every class here is a frozen, slotted dataclass that validates itself when it is built, so an
invalid configuration cannot exist: a value that is out of range, of the wrong type, or that
contradicts another raises :class:`~smproto.errors.ConfigError`, whose ``field`` is the dotted
path of the offending field (``"max_delay"``, ``"speakers[2].label"``, or, when parsed from a
whole message, ``"transcription_config.speaker_diarization_config.max_speakers"``).

Conventions shared by every class:

* ``None`` means *unset*: the field is left out of the wire message and the server uses its
  default. ``to_dict()`` omits unset fields and returns plain JSON-able ``dict``/``list`` values
  in exactly the wire shape of the Speechmatics RT API v2 AsyncAPI spec.
* ``from_dict(d)`` parses that wire shape back (lists or tuples), and
  ``X.from_dict(x.to_dict()) == x`` for every valid ``x``. Unknown keys are an error unless
  ``allow_unknown=True`` is passed: :class:`TranscriptionConfig` then keeps its unknown keys in
  :attr:`TranscriptionConfig.extra`; every other class drops them (it has nowhere to keep them).
* Lists given by the caller are stored as tuples, so configs are immutable and hashable.
* ``bool`` is never accepted as a number (``max_delay=True`` is an error); an ``int`` is fine
  where a ``float`` is expected and is stored as a ``float``. Numbers must be finite.
* Strings must be ``str``; a ``str`` subclass (such as a ``str`` enum member) is stored as a
  plain ``str``.

The server role parses a client's message with :func:`parse_start_recognition` and a mid-session
change with :meth:`TranscriptionConfig.mid_session_from_dict`; the client role builds messages
with :func:`start_recognition_message` and :meth:`TranscriptionConfig.mid_session_dict`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar, get_args

from .errors import ConfigError

__all__ = [
    "MAX_SAMPLE_RATE",
    "MAX_SPEAKER_IDENTIFIERS",
    "MID_SESSION_FIELDS",
    "AudioEncoding",
    "AudioEventsConfig",
    "AudioFilteringConfig",
    "AudioFormat",
    "AudioType",
    "ConversationConfig",
    "DiarizationMode",
    "KnownSpeaker",
    "MaxDelayMode",
    "ModelName",
    "PunctuationOverrides",
    "SpeakerDiarizationConfig",
    "StartRecognitionConfig",
    "TranscriptFilteringConfig",
    "TranscriptionConfig",
    "TranslationConfig",
    "VocabEntry",
    "WordReplacement",
    "parse_start_recognition",
    "start_recognition_message",
]

#: ``transcription_config.diarization`` (spec: ``DiarizationConfig``).
DiarizationMode: TypeAlias = Literal["none", "speaker", "channel", "channel_and_speaker"]
#: ``transcription_config.max_delay_mode`` (spec: ``MaxDelayModeConfig``).
MaxDelayMode: TypeAlias = Literal["flexible", "fixed"]
#: ``transcription_config.model`` and the deprecated ``operating_point`` (spec: ``Model``).
ModelName: TypeAlias = Literal["standard", "enhanced", "melia-1"]
#: ``audio_format.encoding`` for raw audio (spec: ``RawAudioEncodingEnum``).
AudioEncoding: TypeAlias = Literal["pcm_s16le", "pcm_f32le", "mulaw"]
#: ``audio_format.type``: raw samples, or a whole encoded file (wav, mp3, ...).
AudioType: TypeAlias = Literal["raw", "file"]

#: The most speaker identifiers a session may be given, summed over all known speakers.
MAX_SPEAKER_IDENTIFIERS: Final = 50
#: The highest raw-audio sample rate accepted, in Hz (the spec sets none; this is generous).
MAX_SAMPLE_RATE: Final = 384_000

#: The ``transcription_config`` fields that ``SetRecognitionConfig`` may carry
#: (spec: ``MidSessionTranscriptionConfig``). ``language`` may be present but must not change.
MID_SESSION_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "language",
        "max_delay",
        "max_delay_mode",
        "audio_filtering_config",
        "enable_partials",
        "conversation_config",
    }
)

_DIARIZATION_MODES: Final[tuple[str, ...]] = get_args(DiarizationMode)
_MAX_DELAY_MODES: Final[tuple[str, ...]] = get_args(MaxDelayMode)
_MODEL_NAMES: Final[tuple[str, ...]] = get_args(ModelName)
_AUDIO_ENCODINGS: Final[tuple[str, ...]] = get_args(AudioEncoding)
_AUDIO_TYPES: Final[tuple[str, ...]] = get_args(AudioType)
_BYTES_PER_SAMPLE: Final[Mapping[str, int]] = MappingProxyType(
    {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}
)

# SpeakersInputItem.label must NOT match this (the spec's pattern, verbatim: labels the server
# uses itself, S1, S2, ..., UU, and labels with leading or trailing whitespace).
_RESERVED_LABEL: Final = re.compile(r"^(S\d+|UU|\s+.*|\S+.*\s+)$")
# PunctuationOverrides.permitted_marks items must match the spec's ``^(.|all)$``; fullmatch
# gives the ECMA-262 meaning (Python's ``$`` would also match before a trailing newline).
_PERMITTED_MARK: Final = re.compile(r"(?:.|all)")

_set = object.__setattr__
_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class _Parser(Protocol[_T_co]):
    """The shape of every ``from_dict`` classmethod."""

    def __call__(self, d: Mapping[str, Any], *, allow_unknown: bool = ...) -> _T_co: ...


# --------------------------------------------------------------------------------------------
# Validation helpers. Each takes the field path first and raises ConfigError naming it.
# --------------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    """``5 (int)``: a short description of a rejected value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _fmt(number: float) -> str:
    """``4.0`` -> ``4``, ``0.7`` -> ``0.7``: a range bound as a person would write it."""
    return f"{number:g}"


def _str(path: str, value: object, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_describe(value)}")
    if type(value) is not str:
        value = str.__str__(value)
    if not value and not empty_ok:
        raise ConfigError(path, "must be a non-empty string")
    return value


def _bool(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_describe(value)}")
    return value


def _number(path: str, value: object, low: float, high: float, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"must be a finite number, got {value!r}")
    if not low <= value <= high:
        units = f" {unit}" if unit else ""
        raise ConfigError(
            path, f"must be between {_fmt(low)} and {_fmt(high)}{units}, got {value!r}"
        )
    return float(value)


def _int(path: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {_describe(value)}")
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(path, f"must be {allowed}, got {value!r}")
    return int(value)


def _choice(path: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(path, f"must be one of {allowed}; got {_describe(value)}")
    return str.__str__(value)


def _seq(path: str, value: object) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(path, f"must be a list or tuple, got {_describe(value)}")
    return tuple(value)


def _str_seq(path: str, value: object, *, unique: bool, non_empty: bool) -> tuple[str, ...]:
    """A list/tuple of non-empty strings, as a tuple; ``non_empty``: the list itself too."""
    items = tuple(_str(f"{path}[{i}]", item) for i, item in enumerate(_seq(path, value)))
    if non_empty and not items:
        raise ConfigError(path, "must contain at least one string")
    if unique and len(set(items)) != len(items):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item in seen:
                raise ConfigError(f"{path}[{i}]", f"duplicate value {item!r}; must be unique")
            seen.add(item)
    return items


def _instance(path: str, value: object, cls: type[_T]) -> _T:
    if not isinstance(value, cls):
        hint = (
            f" (use {cls.__name__}.from_dict() for a wire dict)"
            if isinstance(value, Mapping)
            else ""
        )
        raise ConfigError(path, f"must be a {cls.__name__}, got {_describe(value)}{hint}")
    return value


def _instances(path: str, value: object, cls: type[_T]) -> tuple[_T, ...]:
    return tuple(_instance(f"{path}[{i}]", v, cls) for i, v in enumerate(_seq(path, value)))


# ----- wire parsing helpers -----------------------------------------------------------------


def _mapping(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a JSON object (a dict), got {_describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"field names must be strings, got {_describe(key)}")
    return value


def _known_fields(
    path: str, value: object, allowed: tuple[str, ...], allow_unknown: bool
) -> dict[str, Any]:
    """The entries of a wire object whose key is allowed and whose value is not null."""
    mapping = _mapping(path, value)
    out: dict[str, Any] = {}
    for key, item in mapping.items():
        if key not in allowed:
            if allow_unknown:
                continue
            expected = ", ".join(allowed)
            raise ConfigError(key, f"is not a known {path} field (expected: {expected})")
        if item is not None:
            out[key] = item
    return out


def _parse_nested(path: str, value: object, parse: _Parser[_T], allow_unknown: bool) -> _T:
    """Parse a nested wire object, prefixing ``path`` to the field of any error."""
    mapping = _mapping(path, value)
    try:
        return parse(mapping, allow_unknown=allow_unknown)
    except ConfigError as exc:
        raise exc.nested(path) from None


def _parse_list(
    path: str, value: object, parse: _Parser[_T], allow_unknown: bool
) -> tuple[_T, ...]:
    return tuple(
        _parse_nested(f"{path}[{i}]", item, parse, allow_unknown)
        for i, item in enumerate(_seq(path, value))
    )


def _freeze_json(path: str, value: object) -> object:
    """Validate a JSON value and make it immutable (lists -> tuples, dicts -> mappingproxy)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(path, f"must be a finite number, got {value!r}")
        return value
    if isinstance(value, list | tuple):
        return tuple(_freeze_json(f"{path}[{i}]", v) for i, v in enumerate(value))
    if isinstance(value, Mapping):
        frozen: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(path, f"object keys must be strings, got {_describe(key)}")
            frozen[str.__str__(key)] = _freeze_json(f"{path}.{key}", item)
        return MappingProxyType(frozen)
    raise ConfigError(path, f"must be a JSON value, got {_describe(value)}")


def _compact_repr(obj: Any) -> str:
    """``Name(a=1, c=3)``: a dataclass repr that leaves out unset (``None``) fields."""
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is not None:
            shown = _thaw_json(value) if isinstance(value, MappingProxyType) else value
            parts.append(f"{f.name}={shown!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _thaw_json(value: object) -> Any:
    """The inverse of :func:`_freeze_json`: plain lists and dicts again."""
    if isinstance(value, tuple):
        return [_thaw_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw_json(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# Small building blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VocabEntry:
    """A custom-dictionary word with the words it sounds like (spec: ``AdditionalVocabObject``).

    ``VocabEntry("gnocchi", ("nyohki", "nokey"))`` is sent as
    ``{"content": "gnocchi", "sounds_like": ["nyohki", "nokey"]}``. A word that needs no
    ``sounds_like`` can be given to :attr:`TranscriptionConfig.additional_vocab` as a plain
    string.
    """

    #: The word or phrase, as it should be written in the transcript (non-empty).
    content: str
    #: How it is pronounced, written as ordinary words; at least one non-empty string if set.
    sounds_like: Sequence[str] | None = None

    def __post_init__(self) -> None:
        _set(self, "content", _str("content", self.content))
        if self.sounds_like is not None:
            _set(
                self,
                "sounds_like",
                _str_seq("sounds_like", self.sounds_like, unique=False, non_empty=True),
            )

    def to_dict(self) -> dict[str, Any]:
        """The wire object ``{"content": ..., "sounds_like": [...]}``."""
        out: dict[str, Any] = {"content": self.content}
        if self.sounds_like is not None:
            out["sounds_like"] = list(self.sounds_like)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> VocabEntry:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        known = _known_fields("vocab_entry", d, ("content", "sounds_like"), allow_unknown)
        if "content" not in known:
            raise ConfigError("content", "is required")
        return cls(**known)


@dataclass(frozen=True, slots=True)
class KnownSpeaker:
    """A speaker the server should recognise by voice (spec: ``SpeakersInputItem``).

    The identifiers come from an earlier session's ``SpeakersResult`` (``get_speakers``).
    """

    #: The label to put on this speaker's words. Must not look like a label the server uses
    #: itself (``S1``, ``S2``, ..., ``UU``) and must not start or end with whitespace.
    label: str
    #: The speaker's opaque identifiers: at least one, unique, non-empty strings.
    speaker_identifiers: Sequence[str]

    def __post_init__(self) -> None:
        label = _str("label", self.label)
        if label.strip() != label or _RESERVED_LABEL.search(label):
            raise ConfigError(
                "label",
                f"{label!r} is reserved or malformed: labels must not have the server's own "
                "form (S1, S2, ..., UU) nor leading or trailing whitespace",
            )
        _set(self, "label", label)
        _set(
            self,
            "speaker_identifiers",
            _str_seq("speaker_identifiers", self.speaker_identifiers, unique=True, non_empty=True),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire object ``{"label": ..., "speaker_identifiers": [...]}``."""
        return {"label": self.label, "speaker_identifiers": list(self.speaker_identifiers)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> KnownSpeaker:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        known = _known_fields("known_speaker", d, ("label", "speaker_identifiers"), allow_unknown)
        for name in ("label", "speaker_identifiers"):
            if name not in known:
                raise ConfigError(name, "is required")
        return cls(**known)


@dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class SpeakerDiarizationConfig:
    """Tuning for ``diarization="speaker"`` (spec: ``SpeakerDiarizationConfig``).

    It is not an error to set this without enabling speaker diarization: real clients do, and the
    server ignores it.
    """

    #: The most speakers to tell apart; at least 2.
    max_speakers: int | None = None
    #: 0 to 1: higher values make the server more eager to detect a new speaker.
    speaker_sensitivity: float | None = None
    #: Reduce switching between similar-sounding speakers.
    prefer_current_speaker: bool | None = None
    #: Return the speakers' identifiers (``SpeakersResult``) at the end of the session.
    get_speakers: bool | None = None
    #: Speakers to recognise by voice; at most :data:`MAX_SPEAKER_IDENTIFIERS` identifiers in
    #: total, and no identifier under two labels.
    speakers: Sequence[KnownSpeaker] | None = None

    def __post_init__(self) -> None:
        if self.max_speakers is not None:
            _set(self, "max_speakers", _int("max_speakers", self.max_speakers, 2))
        if self.speaker_sensitivity is not None:
            _set(
                self,
                "speaker_sensitivity",
                _number("speaker_sensitivity", self.speaker_sensitivity, 0, 1),
            )
        if self.prefer_current_speaker is not None:
            _bool("prefer_current_speaker", self.prefer_current_speaker)
        if self.get_speakers is not None:
            _bool("get_speakers", self.get_speakers)
        if self.speakers is not None:
            speakers = _instances("speakers", self.speakers, KnownSpeaker)
            total = sum(len(s.speaker_identifiers) for s in speakers)
            if total > MAX_SPEAKER_IDENTIFIERS:
                raise ConfigError(
                    "speakers",
                    f"at most {MAX_SPEAKER_IDENTIFIERS} speaker identifiers may be given across "
                    f"all speakers, got {total}",
                )
            owner: dict[str, int] = {}
            for i, speaker in enumerate(speakers):
                for identifier in speaker.speaker_identifiers:
                    first = owner.setdefault(identifier, i)
                    if first != i:
                        raise ConfigError(
                            f"speakers[{i}].speaker_identifiers",
                            f"identifier {identifier!r} is already given for speakers[{first}] "
                            f"({speakers[first].label!r}); an identifier may name one speaker",
                        )
            _set(self, "speakers", speakers)

    def __repr__(self) -> str:
        return _compact_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        out: dict[str, Any] = {}
        if self.max_speakers is not None:
            out["max_speakers"] = self.max_speakers
        if self.speaker_sensitivity is not None:
            out["speaker_sensitivity"] = self.speaker_sensitivity
        if self.prefer_current_speaker is not None:
            out["prefer_current_speaker"] = self.prefer_current_speaker
        if self.get_speakers is not None:
            out["get_speakers"] = self.get_speakers
        if self.speakers is not None:
            out["speakers"] = [s.to_dict() for s in self.speakers]
        return out

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, allow_unknown: bool = False
    ) -> SpeakerDiarizationConfig:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        known = _known_fields("speaker_diarization_config", d, _SDC_FIELDS, allow_unknown)
        if "speakers" in known:
            known["speakers"] = _parse_list(
                "speakers", known["speakers"], KnownSpeaker.from_dict, allow_unknown
            )
        return cls(**known)


_SDC_FIELDS: Final = (
    "max_speakers",
    "speaker_sensitivity",
    "prefer_current_speaker",
    "get_speakers",
    "speakers",
)


@dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class AudioFilteringConfig:
    """Ignore quiet audio (spec: ``AudioFilteringConfig``); may change mid-session."""

    #: 0 to 100: audio quieter than this is not transcribed.
    volume_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.volume_threshold is not None:
            _set(
                self,
                "volume_threshold",
                _number("volume_threshold", self.volume_threshold, 0, 100),
            )

    def __repr__(self) -> str:
        return _compact_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        if self.volume_threshold is None:
            return {}
        return {"volume_threshold": self.volume_threshold}

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, allow_unknown: bool = False
    ) -> AudioFilteringConfig:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        return cls(
            **_known_fields("audio_filtering_config", d, ("volume_threshold",), allow_unknown)
        )


@dataclass(frozen=True, slots=True)
class WordReplacement:
    """Replace a word in the transcript (spec: ``WordReplacementItem``).

    ``WordReplacement("hello", "hi")`` is sent as ``{"from": "hello", "to": "hi"}`` (``from`` is
    a Python keyword, hence ``from_``).
    """

    #: What to replace (non-empty).
    from_: str
    #: What to put instead (may be empty, to delete the word).
    to: str

    def __post_init__(self) -> None:
        _set(self, "from_", _str("from", self.from_))
        _set(self, "to", _str("to", self.to, empty_ok=True))

    def to_dict(self) -> dict[str, Any]:
        """The wire object ``{"from": ..., "to": ...}``."""
        return {"from": self.from_, "to": self.to}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> WordReplacement:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        known = _known_fields("word_replacement", d, ("from", "to"), allow_unknown)
        for name in ("from", "to"):
            if name not in known:
                raise ConfigError(name, "is required")
        return cls(known["from"], known["to"])


@dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class TranscriptFilteringConfig:
    """Clean up the transcript (spec: ``TranscriptFilteringConfig``)."""

    #: Remove disfluencies ("um", "er", ...) from the transcript.
    remove_disfluencies: bool | None = None
    #: Replacement rules, applied to the transcript.
    replacements: Sequence[WordReplacement] | None = None

    def __post_init__(self) -> None:
        if self.remove_disfluencies is not None:
            _bool("remove_disfluencies", self.remove_disfluencies)
        if self.replacements is not None:
            _set(
                self,
                "replacements",
                _instances("replacements", self.replacements, WordReplacement),
            )

    def __repr__(self) -> str:
        return _compact_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        out: dict[str, Any] = {}
        if self.remove_disfluencies is not None:
            out["remove_disfluencies"] = self.remove_disfluencies
        if self.replacements is not None:
            out["replacements"] = [r.to_dict() for r in self.replacements]
        return out

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, allow_unknown: bool = False
    ) -> TranscriptFilteringConfig:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        known = _known_fields(
            "transcript_filtering_config",
            d,
            ("remove_disfluencies", "replacements"),
            allow_unknown,
        )
        if "replacements" in known:
            known["replacements"] = _parse_list(
                "replacements", known["replacements"], WordReplacement.from_dict, allow_unknown
            )
        return cls(**known)


@dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class PunctuationOverrides:
    """Which punctuation the transcript may contain (spec: ``PunctuationOverrides``)."""

    #: Single-character marks the client accepts, or ``("all",)`` (the server's default).
    #: An empty tuple permits no punctuation. ``"all"`` together with other marks is an error.
    permitted_marks: Sequence[str] | None = None
    #: 0 to 1: higher values produce more punctuation (the server's default is 0.5).
    sensitivity: float | None = None

    def __post_init__(self) -> None:
        if self.permitted_marks is not None:
            marks = _str_seq("permitted_marks", self.permitted_marks, unique=False, non_empty=False)
            for i, mark in enumerate(marks):
                if not _PERMITTED_MARK.fullmatch(mark):
                    raise ConfigError(
                        f"permitted_marks[{i}]",
                        f"must be a single character or 'all', got {mark!r}",
                    )
            if "all" in marks and any(mark != "all" for mark in marks):
                raise ConfigError(
                    "permitted_marks",
                    f"'all' cannot be combined with other marks, got {list(marks)!r}",
                )
            _set(self, "permitted_marks", marks)
        if self.sensitivity is not None:
            _set(self, "sensitivity", _number("sensitivity", self.sensitivity, 0, 1))

    def __repr__(self) -> str:
        return _compact_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        out: dict[str, Any] = {}
        if self.permitted_marks is not None:
            out["permitted_marks"] = list(self.permitted_marks)
        if self.sensitivity is not None:
            out["sensitivity"] = self.sensitivity
        return out

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, allow_unknown: bool = False
    ) -> PunctuationOverrides:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        return cls(
            **_known_fields(
                "punctuation_overrides", d, ("permitted_marks", "sensitivity"), allow_unknown
            )
        )


@dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class ConversationConfig:
    """End-of-utterance detection (spec: ``ConversationConfig``); may change mid-session."""

    #: 0 to 2 seconds of silence after which the server sends ``EndOfUtterance``; 0 disables it.
    end_of_utterance_silence_trigger: float | None = None

    def __post_init__(self) -> None:
        if self.end_of_utterance_silence_trigger is not None:
            _set(
                self,
                "end_of_utterance_silence_trigger",
                _number(
                    "end_of_utterance_silence_trigger",
                    self.end_of_utterance_silence_trigger,
                    0,
                    2,
                    "seconds",
                ),
            )

    def __repr__(self) -> str:
        return _compact_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        if self.end_of_utterance_silence_trigger is None:
            return {}
        return {"end_of_utterance_silence_trigger": self.end_of_utterance_silence_trigger}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> ConversationConfig:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        return cls(
            **_known_fields(
                "conversation_config", d, ("end_of_utterance_silence_trigger",), allow_unknown
            )
        )


# --------------------------------------------------------------------------------------------
# TranscriptionConfig
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class TranscriptionConfig:
    """The ``transcription_config`` of ``StartRecognition`` (spec: ``TranscriptionConfig``).

    ``TranscriptionConfig("en", max_delay=1.0, enable_partials=True)``: ``language`` may be
    given positionally, every other field by keyword. Unset (``None``) fields are left to the
    server's defaults.

    Only the fields in :data:`MID_SESSION_FIELDS` can be changed once the session has started:
    build the new config with :meth:`with_changes` and send :meth:`mid_session_dict`.

    :attr:`extra` carries wire fields this version of smproto does not model; it takes part in
    ``==`` but not in ``hash()`` (its values may be lists and dicts), which keeps the hash
    contract: equal configs still have equal hashes. Because its keys are unknown fields,
    ``from_dict(cfg.to_dict())`` round-trips a config with ``extra`` only when
    ``allow_unknown=True`` is passed.
    """

    #: The language code (``"en"``, ``"de"``, ...); must agree with the URL's language, if any.
    language: str = "en"
    _: KW_ONLY
    #: A specialised model for ``language``, e.g. ``"finance"`` or ``"medical"`` (non-empty).
    domain: str | None = None
    #: The spelling locale of the output, e.g. ``"en-US"`` (non-empty).
    output_locale: str | None = None
    #: Custom dictionary: plain non-empty strings, or :class:`VocabEntry` with ``sounds_like``.
    additional_vocab: Sequence[str | VocabEntry] | None = None
    #: ``"speaker"``, ``"channel"``, ``"channel_and_speaker"`` or ``"none"``.
    diarization: DiarizationMode | None = None
    #: 0.7 to 4 seconds: how long the server may wait before sending a final transcript.
    max_delay: float | None = None
    #: ``"flexible"`` lets the server exceed ``max_delay`` a little to format entities.
    max_delay_mode: MaxDelayMode | None = None
    speaker_diarization_config: SpeakerDiarizationConfig | None = None
    audio_filtering_config: AudioFilteringConfig | None = None
    transcript_filtering_config: TranscriptFilteringConfig | None = None
    #: Send ``AddPartialTranscript`` as well as ``AddTranscript``.
    enable_partials: bool | None = None
    #: Format entities (dates, numbers, ...) in the written form.
    enable_entities: bool | None = None
    #: ``"standard"``, ``"enhanced"`` or ``"melia-1"``.
    model: ModelName | None = None
    #: Deprecated alias of :attr:`model`: setting it warns (``DeprecationWarning``), and
    #: setting it together with :attr:`model` is an error.
    operating_point: ModelName | None = None
    punctuation_overrides: PunctuationOverrides | None = None
    conversation_config: ConversationConfig | None = None
    #: Labels for the channels of multichannel audio (non-empty, unique).
    channel_diarization_labels: Sequence[str] | None = None
    #: Languages likely to appear in the audio (non-empty, unique language codes).
    language_hints: Sequence[str] | None = None
    #: Restrict recognition to :attr:`language_hints` (which must then be set and non-empty).
    language_hints_strict: bool | None = None
    #: Extra wire fields to send verbatim (merged into :meth:`to_dict`). Keys must not name a
    #: modelled field; values must be JSON values. Stored as a read-only deep copy (lists become
    #: tuples, dicts become mappingproxies; :meth:`to_dict` turns them back). An empty mapping
    #: is stored as ``None``. Excluded from ``hash()``, included in ``==``.
    extra: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _set(self, "language", _str("language", self.language))
        if self.domain is not None:
            _set(self, "domain", _str("domain", self.domain))
        if self.output_locale is not None:
            _set(self, "output_locale", _str("output_locale", self.output_locale))
        if self.additional_vocab is not None:
            _set(self, "additional_vocab", _vocab("additional_vocab", self.additional_vocab))
        if self.diarization is not None:
            _set(self, "diarization", _choice("diarization", self.diarization, _DIARIZATION_MODES))
        if self.max_delay is not None:
            _set(self, "max_delay", _number("max_delay", self.max_delay, 0.7, 4, "seconds"))
        if self.max_delay_mode is not None:
            _set(
                self,
                "max_delay_mode",
                _choice("max_delay_mode", self.max_delay_mode, _MAX_DELAY_MODES),
            )
        if self.speaker_diarization_config is not None:
            _instance(
                "speaker_diarization_config",
                self.speaker_diarization_config,
                SpeakerDiarizationConfig,
            )
        if self.audio_filtering_config is not None:
            _instance("audio_filtering_config", self.audio_filtering_config, AudioFilteringConfig)
        if self.transcript_filtering_config is not None:
            _instance(
                "transcript_filtering_config",
                self.transcript_filtering_config,
                TranscriptFilteringConfig,
            )
        if self.enable_partials is not None:
            _bool("enable_partials", self.enable_partials)
        if self.enable_entities is not None:
            _bool("enable_entities", self.enable_entities)
        if self.model is not None:
            _set(self, "model", _choice("model", self.model, _MODEL_NAMES))
        if self.operating_point is not None:
            _set(
                self,
                "operating_point",
                _choice("operating_point", self.operating_point, _MODEL_NAMES),
            )
        if self.punctuation_overrides is not None:
            _instance("punctuation_overrides", self.punctuation_overrides, PunctuationOverrides)
        if self.conversation_config is not None:
            _instance("conversation_config", self.conversation_config, ConversationConfig)
        if self.channel_diarization_labels is not None:
            _set(
                self,
                "channel_diarization_labels",
                _str_seq(
                    "channel_diarization_labels",
                    self.channel_diarization_labels,
                    unique=True,
                    non_empty=False,
                ),
            )
        if self.language_hints is not None:
            _set(
                self,
                "language_hints",
                _str_seq("language_hints", self.language_hints, unique=True, non_empty=False),
            )
        if self.language_hints_strict is not None:
            _bool("language_hints_strict", self.language_hints_strict)
            if not self.language_hints:
                raise ConfigError(
                    "language_hints_strict",
                    "only makes sense with language_hints: set language_hints to a non-empty "
                    "list, or leave language_hints_strict unset",
                )
        if self.extra is not None:
            _set(self, "extra", _extra(self.extra))
        # Cross-field checks last, so each single field is known to be well-formed.
        if self.operating_point is not None:
            if self.model is not None:
                raise ConfigError(
                    "operating_point",
                    "is a deprecated alias of model and cannot be set together with it; "
                    "set only model",
                )
            warnings.warn(
                "TranscriptionConfig.operating_point is deprecated; use model instead",
                DeprecationWarning,
                stacklevel=3,
            )

    # ----- wire form -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return _compact_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The wire ``transcription_config`` object, without unset fields, plus :attr:`extra`."""
        out: dict[str, Any] = {"language": self.language}
        for name in _TC_WIRE_FIELDS[1:]:
            value = getattr(self, name)
            if value is not None:
                out[name] = _to_wire(value)
        if self.extra is not None:
            out.update(_thaw_json(self.extra))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> TranscriptionConfig:
        """Parse a wire ``transcription_config`` object.

        ``language`` is required (as in the spec). A ``null`` value for a known field means
        *unset*. Unknown keys raise :class:`ConfigError` naming the key, unless
        ``allow_unknown`` is true: then they are kept in :attr:`extra` (and unknown keys inside
        nested objects are dropped). Error fields are relative to the object
        (``"max_delay"``, ``"speaker_diarization_config.max_speakers"``).
        """
        mapping = _mapping("transcription_config", d)
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in _TC_WIRE_FIELD_SET:
                if allow_unknown:
                    extra[key] = value
                    continue
                raise ConfigError(
                    key,
                    "is not a known transcription_config field (pass allow_unknown=True to "
                    "keep unknown fields in TranscriptionConfig.extra)",
                )
            if value is not None:
                kwargs[key] = _parse_tc_value(key, value, allow_unknown)
        if "language" not in kwargs:
            raise ConfigError("language", "is required")
        if extra:
            kwargs["extra"] = extra
        if "operating_point" in kwargs:
            # A peer's wire config may use the deprecated alias: that is the peer's
            # business, not a deprecation in this program's code.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return cls(**kwargs)
        return cls(**kwargs)

    # ----- mid-session changes ---------------------------------------------------------------

    def mid_session_dict(self) -> dict[str, Any]:
        """The ``transcription_config`` of a ``SetRecognitionConfig`` message.

        The :data:`MID_SESSION_FIELDS` that are set (``language`` always). Check first, with
        :meth:`changed_fields`, that the change from the session's config touches only those.
        """
        out: dict[str, Any] = {"language": self.language}
        for name in _MID_SESSION_ORDER:
            value = getattr(self, name)
            if value is not None:
                out[name] = _to_wire(value)
        return out

    def changed_fields(self, other: TranscriptionConfig) -> frozenset[str]:
        """The names of the fields (``extra`` included) whose values differ in ``other``."""
        _instance("other", other, TranscriptionConfig)
        return frozenset(
            f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)
        )

    def with_changes(self, **changes: Any) -> TranscriptionConfig:
        """A copy with ``changes`` applied and validated again (``dataclasses.replace``).

        An unknown field name raises ``TypeError``, as the constructor does.
        """
        return replace(self, **changes)

    @classmethod
    def mid_session_from_dict(
        cls, d: Mapping[str, Any], *, current: TranscriptionConfig
    ) -> TranscriptionConfig:
        """Apply a ``SetRecognitionConfig`` ``transcription_config`` payload to ``current``.

        For the server role. Only :data:`MID_SESSION_FIELDS` may appear; ``language``, if
        present, must equal ``current.language``. A ``null`` value leaves the field as it is;
        a nested object replaces the current one whole. Error fields are relative to the
        payload (``"max_delay"``, ``"conversation_config.end_of_utterance_silence_trigger"``).
        """
        _instance("current", current, TranscriptionConfig)
        mapping = _mapping("transcription_config", d)
        changes: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in MID_SESSION_FIELDS:
                allowed = ", ".join(sorted(MID_SESSION_FIELDS))
                what = (
                    "cannot be changed mid-session"
                    if key in _TC_WIRE_FIELD_SET
                    else "is not a known transcription_config field"
                )
                raise ConfigError(key, f"{what}; SetRecognitionConfig accepts only: {allowed}")
            if value is None:
                continue
            if key == "language":
                if value != current.language:
                    raise ConfigError(
                        "language",
                        f"cannot be changed mid-session: the session language is "
                        f"{current.language!r}, got {_describe(value)}",
                    )
                continue
            changes[key] = _parse_tc_value(key, value, False)
        return current.with_changes(**changes) if changes else current


_TC_WIRE_FIELDS: Final[tuple[str, ...]] = tuple(
    f.name for f in fields(TranscriptionConfig) if f.name != "extra"
)
_TC_WIRE_FIELD_SET: Final[frozenset[str]] = frozenset(_TC_WIRE_FIELDS)
_MID_SESSION_ORDER: Final[tuple[str, ...]] = tuple(
    name for name in _TC_WIRE_FIELDS if name in MID_SESSION_FIELDS and name != "language"
)


def _vocab(path: str, value: object) -> tuple[str | VocabEntry, ...]:
    items: list[str | VocabEntry] = []
    for i, item in enumerate(_seq(path, value)):
        if isinstance(item, VocabEntry):
            items.append(item)
        elif isinstance(item, str):
            items.append(_str(f"{path}[{i}]", item))
        else:
            raise ConfigError(
                f"{path}[{i}]",
                f"must be a non-empty string or a VocabEntry, got {_describe(item)}",
            )
    return tuple(items)


def _extra(value: object) -> Mapping[str, Any] | None:
    mapping = _mapping("extra", value)
    frozen: dict[str, Any] = {}
    for key, item in mapping.items():
        if not key:
            raise ConfigError("extra", "keys must be non-empty strings")
        if key in _TC_WIRE_FIELD_SET:
            raise ConfigError(
                f"extra.{key}",
                f"{key!r} is a modelled field: set TranscriptionConfig.{key} instead",
            )
        frozen[str.__str__(key)] = _freeze_json(f"extra.{key}", item)
    return MappingProxyType(frozen) if frozen else None


def _to_wire(value: object) -> Any:
    """A set TranscriptionConfig field value in its wire form."""
    if isinstance(value, tuple):
        return [item if isinstance(item, str) else item.to_dict() for item in value]
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    return value


def _parse_vocab_list(value: object, allow_unknown: bool) -> tuple[Any, ...]:
    return tuple(
        item
        if not isinstance(item, Mapping)
        else _parse_nested(f"additional_vocab[{i}]", item, VocabEntry.from_dict, allow_unknown)
        for i, item in enumerate(_seq("additional_vocab", value))
    )


_TC_NESTED: Final[Mapping[str, _Parser[object]]] = MappingProxyType(
    {
        "speaker_diarization_config": SpeakerDiarizationConfig.from_dict,
        "audio_filtering_config": AudioFilteringConfig.from_dict,
        "transcript_filtering_config": TranscriptFilteringConfig.from_dict,
        "punctuation_overrides": PunctuationOverrides.from_dict,
        "conversation_config": ConversationConfig.from_dict,
    }
)


def _parse_tc_value(key: str, value: object, allow_unknown: bool) -> object:
    """A non-null wire value of a TranscriptionConfig field, with nested objects parsed."""
    nested = _TC_NESTED.get(key)
    if nested is not None:
        return _parse_nested(key, value, nested, allow_unknown)
    if key == "additional_vocab":
        return _parse_vocab_list(value, allow_unknown)
    return value


# --------------------------------------------------------------------------------------------
# AudioFormat, TranslationConfig, AudioEventsConfig
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFormat:
    """The ``audio_format`` of ``StartRecognition`` (spec: ``AudioFormat``).

    ``AudioFormat()`` is raw 16 kHz ``pcm_s16le``; for raw audio a missing ``encoding`` becomes
    ``"pcm_s16le"`` and a missing ``sample_rate`` becomes ``16000``. ``AudioFormat.file()``
    (``type="file"``) sends a whole encoded file (wav, mp3, ogg, flac, ...), and then
    ``encoding`` and ``sample_rate`` must stay unset. Raw audio is one channel; multichannel
    audio is sent per channel.
    """

    #: ``"raw"`` samples or a ``"file"`` in a container format.
    type: AudioType = "raw"
    #: Raw only: ``"pcm_s16le"``, ``"pcm_f32le"`` or ``"mulaw"``.
    encoding: AudioEncoding | None = None
    #: Raw only: samples per second, a positive integer up to :data:`MAX_SAMPLE_RATE`.
    sample_rate: int | None = None

    def __post_init__(self) -> None:
        kind = _choice("type", self.type, _AUDIO_TYPES)
        _set(self, "type", kind)
        if kind == "file":
            for name in ("encoding", "sample_rate"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        name,
                        f"must not be set for file audio (the file's header says it), got "
                        f"{_describe(getattr(self, name))}",
                    )
            return
        encoding = "pcm_s16le" if self.encoding is None else self.encoding
        _set(self, "encoding", _choice("encoding", encoding, _AUDIO_ENCODINGS))
        rate = 16_000 if self.sample_rate is None else self.sample_rate
        _set(self, "sample_rate", _int("sample_rate", rate, 1, MAX_SAMPLE_RATE))

    @classmethod
    def file(cls) -> AudioFormat:
        """Audio in a container format (wav, mp3, ...), described by its own header."""
        return cls(type="file")

    @property
    def bytes_per_sample(self) -> int | None:
        """2 for ``pcm_s16le``, 4 for ``pcm_f32le``, 1 for ``mulaw``; ``None`` for a file."""
        return None if self.encoding is None else _BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_second(self) -> int | None:
        """How many bytes one second of (one channel of) raw audio takes; ``None`` for a file."""
        per_sample = self.bytes_per_sample
        if per_sample is None or self.sample_rate is None:
            return None
        return per_sample * self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "raw", "encoding": ..., "sample_rate": ...}`` or ``{"type": "file"}``."""
        if self.type == "file":
            return {"type": "file"}
        return {"type": "raw", "encoding": self.encoding, "sample_rate": self.sample_rate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> AudioFormat:
        """Parse the wire object; raw audio must state ``encoding`` and ``sample_rate``.

        ``allow_unknown`` drops unknown keys instead of raising.
        """
        known = _known_fields("audio_format", d, ("type", "encoding", "sample_rate"), allow_unknown)
        if "type" not in known:
            raise ConfigError("type", "is required ('raw' or 'file')")
        if known["type"] == "raw":
            for name in ("encoding", "sample_rate"):
                if name not in known:
                    raise ConfigError(name, "is required for raw audio")
        return cls(**known)


@dataclass(frozen=True, slots=True)
class TranslationConfig:
    """The ``translation_config`` of ``StartRecognition`` (spec: ``TranslationConfig``).

    ``TranslationConfig(("de", "fr"), enable_partials=True)``. An empty ``target_languages`` is
    allowed: the server answers it with an ``empty_translation_target_list`` warning.
    """

    #: Language codes to translate into (unique, non-empty strings).
    target_languages: Sequence[str]
    _: KW_ONLY
    #: Send ``AddPartialTranslation`` as well as ``AddTranslation``.
    enable_partials: bool | None = None

    def __post_init__(self) -> None:
        _set(
            self,
            "target_languages",
            _str_seq("target_languages", self.target_languages, unique=True, non_empty=False),
        )
        if self.enable_partials is not None:
            _bool("enable_partials", self.enable_partials)

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        out: dict[str, Any] = {"target_languages": list(self.target_languages)}
        if self.enable_partials is not None:
            out["enable_partials"] = self.enable_partials
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> TranslationConfig:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        known = _known_fields(
            "translation_config", d, ("target_languages", "enable_partials"), allow_unknown
        )
        if "target_languages" not in known:
            raise ConfigError("target_languages", "is required")
        return cls(**known)


@dataclass(frozen=True, slots=True)
class AudioEventsConfig:
    """The ``audio_events_config`` of ``StartRecognition`` (spec: ``AudioEventsConfig``).

    Its presence enables audio event detection (``AudioEventStarted``/``AudioEventEnded``).
    """

    #: The event types to detect, e.g. ``("applause", "music", "laughter")`` (unique,
    #: non-empty); unset leaves the choice to the server.
    types: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.types is not None:
            _set(self, "types", _str_seq("types", self.types, unique=True, non_empty=False))

    def to_dict(self) -> dict[str, Any]:
        """The wire object, without unset fields."""
        return {} if self.types is None else {"types": list(self.types)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, allow_unknown: bool = False) -> AudioEventsConfig:
        """Parse the wire object (``allow_unknown`` drops unknown keys instead of raising)."""
        return cls(**_known_fields("audio_events_config", d, ("types",), allow_unknown))


# --------------------------------------------------------------------------------------------
# StartRecognition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRecognitionConfig:
    """Everything a ``StartRecognition`` message configures, as parsed by
    :func:`parse_start_recognition` or built by the client."""

    transcription_config: TranscriptionConfig
    audio_format: AudioFormat
    translation_config: TranslationConfig | None = None
    audio_events_config: AudioEventsConfig | None = None

    def __post_init__(self) -> None:
        _instance("transcription_config", self.transcription_config, TranscriptionConfig)
        _instance("audio_format", self.audio_format, AudioFormat)
        if self.translation_config is not None:
            _instance("translation_config", self.translation_config, TranslationConfig)
        if self.audio_events_config is not None:
            _instance("audio_events_config", self.audio_events_config, AudioEventsConfig)

    def to_message(self) -> dict[str, Any]:
        """The full ``StartRecognition`` message dict (see :func:`start_recognition_message`)."""
        message: dict[str, Any] = {
            "message": "StartRecognition",
            "audio_format": self.audio_format.to_dict(),
            "transcription_config": self.transcription_config.to_dict(),
        }
        if self.translation_config is not None:
            message["translation_config"] = self.translation_config.to_dict()
        if self.audio_events_config is not None:
            message["audio_events_config"] = self.audio_events_config.to_dict()
        return message


_START_RECOGNITION_KEYS: Final = (
    "message",
    "audio_format",
    "transcription_config",
    "translation_config",
    "audio_events_config",
)


def parse_start_recognition(
    msg: Mapping[str, Any], *, allow_unknown: bool = False
) -> StartRecognitionConfig:
    """Parse and validate a client's ``StartRecognition`` message (for the server role).

    Errors are :class:`ConfigError` whose ``field`` starts with the part of the message at
    fault: ``audio_format`` (an ``invalid_audio_type``), or ``transcription_config``,
    ``translation_config``, ``audio_events_config`` or ``message`` (an ``invalid_config``).
    A missing ``audio_format`` or ``transcription_config`` is an error on that field.
    ``allow_unknown`` tolerates unknown keys: those of ``transcription_config`` are kept in
    :attr:`TranscriptionConfig.extra`, all others are dropped.
    """
    mapping = _mapping("message", msg)
    kind = mapping.get("message")
    if kind != "StartRecognition":
        raise ConfigError("message", f"must be 'StartRecognition', got {_describe(kind)}")
    for key in mapping:
        if key not in _START_RECOGNITION_KEYS and not allow_unknown:
            raise ConfigError(key, "is not a known StartRecognition field")
    for key in ("audio_format", "transcription_config"):
        if mapping.get(key) is None:
            raise ConfigError(key, "is required")
    audio_format = _parse_nested(
        "audio_format", mapping["audio_format"], AudioFormat.from_dict, allow_unknown
    )
    transcription_config = _parse_nested(
        "transcription_config",
        mapping["transcription_config"],
        TranscriptionConfig.from_dict,
        allow_unknown,
    )
    translation_config = None
    if mapping.get("translation_config") is not None:
        translation_config = _parse_nested(
            "translation_config",
            mapping["translation_config"],
            TranslationConfig.from_dict,
            allow_unknown,
        )
    audio_events_config = None
    if mapping.get("audio_events_config") is not None:
        audio_events_config = _parse_nested(
            "audio_events_config",
            mapping["audio_events_config"],
            AudioEventsConfig.from_dict,
            allow_unknown,
        )
    return StartRecognitionConfig(
        transcription_config=transcription_config,
        audio_format=audio_format,
        translation_config=translation_config,
        audio_events_config=audio_events_config,
    )


def start_recognition_message(
    transcription_config: TranscriptionConfig,
    audio_format: AudioFormat,
    translation_config: TranslationConfig | None = None,
    audio_events_config: AudioEventsConfig | None = None,
) -> dict[str, Any]:
    """The client's ``StartRecognition`` message, as a JSON-able dict.

    ``{"message": "StartRecognition", "audio_format": ..., "transcription_config": ...}``,
    plus ``translation_config`` and ``audio_events_config`` when given.
    """
    return StartRecognitionConfig(
        transcription_config=transcription_config,
        audio_format=audio_format,
        translation_config=translation_config,
        audio_events_config=audio_events_config,
    ).to_message()
