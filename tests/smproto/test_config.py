"""Tests for smproto.config: validation, wire shape, round trips and spec conformance."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import warnings
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto.config import (
    MAX_SPEAKER_IDENTIFIERS,
    MID_SESSION_FIELDS,
    AudioEventsConfig,
    AudioFilteringConfig,
    AudioFormat,
    ConversationConfig,
    KnownSpeaker,
    PunctuationOverrides,
    SpeakerDiarizationConfig,
    StartRecognitionConfig,
    TranscriptFilteringConfig,
    TranscriptionConfig,
    TranslationConfig,
    VocabEntry,
    WordReplacement,
    parse_start_recognition,
    start_recognition_message,
)
from smproto.errors import ConfigError
from smproto.testing import (
    _maybe,
    _seconds,
    audio_events_configs,
    audio_filtering_configs,
    audio_formats,
    conversation_configs,
    punctuation_overrides,
    speaker_diarization_configs,
    transcript_filtering_configs,
    transcription_configs,
    translation_configs,
    vocab_entries,
)
from tests.support import SpecSchemas, spec_schemas

# ============================================================================================
# Helpers
# ============================================================================================


@contextlib.contextmanager
def no_deprecation_warnings() -> Iterator[None]:
    """Silence the DeprecationWarning that ``operating_point`` emits (tested on its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def raises_config(field: str, match: str | None = None) -> Any:
    """``pytest.raises(ConfigError)`` that also checks the error's field path."""
    return _RaisesConfig(field, match)


class _RaisesConfig:
    def __init__(self, field: str, match: str | None) -> None:
        self.field = field
        self.match = match
        self._ctx = pytest.raises(ConfigError, match=match)

    def __enter__(self) -> Any:
        self._info = self._ctx.__enter__()
        return self._info

    def __exit__(self, *exc: Any) -> bool:
        handled = self._ctx.__exit__(*exc)
        assert self._info.value.field == self.field, str(self._info.value)
        return bool(handled)


def just_below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def just_above(x: float) -> float:
    return math.nextafter(x, math.inf)


TC_FIELDS = tuple(f.name for f in dataclasses.fields(TranscriptionConfig))


# ============================================================================================
# Defaults and the wire shape
# ============================================================================================


def test_transcription_config_defaults() -> None:
    cfg = TranscriptionConfig()
    assert cfg.language == "en"
    assert all(getattr(cfg, name) is None for name in TC_FIELDS if name != "language")
    assert cfg.to_dict() == {"language": "en"}
    assert TranscriptionConfig("de").to_dict() == {"language": "de"}
    assert repr(cfg) == "TranscriptionConfig(language='en')"


def test_language_is_the_only_positional_field() -> None:
    assert TranscriptionConfig("fr").language == "fr"
    with pytest.raises(TypeError):
        TranscriptionConfig("fr", None)  # type: ignore[misc]


@pytest.mark.parametrize(
    "cls",
    [
        SpeakerDiarizationConfig,
        AudioFilteringConfig,
        TranscriptFilteringConfig,
        PunctuationOverrides,
        ConversationConfig,
        AudioEventsConfig,
    ],
)
def test_empty_option_objects_serialise_to_empty_dicts(cls: Callable[[], Any]) -> None:
    obj = cls()
    assert obj.to_dict() == {}
    assert type(obj).from_dict({}) == obj


def test_to_dict_omits_unset_fields_and_uses_wire_shapes() -> None:
    cfg = TranscriptionConfig(
        "en",
        additional_vocab=["gnocchi", VocabEntry("bigoli", ["bee go lee"])],
        max_delay=1,
        diarization="speaker",
        speaker_diarization_config=SpeakerDiarizationConfig(
            max_speakers=3, speakers=[KnownSpeaker("Alice", ["id-1", "id-2"])]
        ),
        transcript_filtering_config=TranscriptFilteringConfig(
            replacements=[WordReplacement("hello", "hi")]
        ),
        punctuation_overrides=PunctuationOverrides(permitted_marks=[".", "?"]),
        conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.5),
        language_hints=["en", "es"],
        language_hints_strict=True,
    )
    assert cfg.to_dict() == {
        "language": "en",
        "additional_vocab": ["gnocchi", {"content": "bigoli", "sounds_like": ["bee go lee"]}],
        "diarization": "speaker",
        "max_delay": 1.0,
        "speaker_diarization_config": {
            "max_speakers": 3,
            "speakers": [{"label": "Alice", "speaker_identifiers": ["id-1", "id-2"]}],
        },
        "transcript_filtering_config": {"replacements": [{"from": "hello", "to": "hi"}]},
        "punctuation_overrides": {"permitted_marks": [".", "?"]},
        "conversation_config": {"end_of_utterance_silence_trigger": 0.5},
        "language_hints": ["en", "es"],
        "language_hints_strict": True,
    }
    # Plain JSON types only: no tuples, no mappingproxies.
    assert json.loads(json.dumps(cfg.to_dict(), allow_nan=False)) == cfg.to_dict()


def test_to_dict_returns_a_fresh_structure() -> None:
    cfg = TranscriptionConfig(language_hints=["en"], extra={"x_a": [1]})
    first = cfg.to_dict()
    first["language_hints"].append("de")
    first["x_a"].append(2)
    assert cfg.to_dict() == {"language": "en", "language_hints": ["en"], "x_a": [1]}


def test_lists_become_tuples_and_configs_are_immutable_and_hashable() -> None:
    hints = ["en", "de"]
    cfg = TranscriptionConfig(language_hints=hints, additional_vocab=["a"])
    hints.append("fr")
    assert cfg.language_hints == ("en", "de")
    assert cfg.additional_vocab == ("a",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.language = "de"  # type: ignore[misc]
    assert hash(cfg) == hash(
        TranscriptionConfig(language_hints=("en", "de"), additional_vocab=("a",))
    )
    assert {cfg, TranscriptionConfig(language_hints=("en", "de"), additional_vocab=["a"])} == {cfg}
    speaker = KnownSpeaker("Alice", ["x"])
    assert speaker.speaker_identifiers == ("x",)
    assert TranslationConfig(["de"]).target_languages == ("de",)


def test_ints_are_stored_as_floats_where_floats_are_expected() -> None:
    cfg = TranscriptionConfig(max_delay=2)
    assert cfg.max_delay == 2.0
    assert type(cfg.max_delay) is float
    assert type(AudioFilteringConfig(volume_threshold=5).volume_threshold) is float


def test_str_enum_members_are_stored_as_plain_strings() -> None:
    class Model(str, enum.Enum):  # noqa: UP042 - the official SDK uses this form
        ENHANCED = "enhanced"

    cfg = TranscriptionConfig(model=Model.ENHANCED)  # type: ignore[arg-type]
    assert cfg.model == "enhanced"
    assert type(cfg.model) is str
    assert json.dumps(cfg.to_dict()) == '{"language": "en", "model": "enhanced"}'


def test_config_error_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError) as info:
        TranscriptionConfig(max_delay=5.0)
    assert str(info.value) == "max_delay: must be between 0.7 and 4 seconds, got 5.0"
    assert isinstance(info.value, ConfigError)
    assert info.value.detail == "must be between 0.7 and 4 seconds, got 5.0"


# ============================================================================================
# Ranges: inclusive edges accepted, just outside rejected, the field named
# ============================================================================================

RANGES: list[tuple[Callable[[Any], Any], str, float, float, bool]] = [
    # factory, field, low, high, integer?
    (lambda v: TranscriptionConfig(max_delay=v), "max_delay", 0.7, 4, False),
    (
        lambda v: SpeakerDiarizationConfig(speaker_sensitivity=v),
        "speaker_sensitivity",
        0,
        1,
        False,
    ),
    (lambda v: AudioFilteringConfig(volume_threshold=v), "volume_threshold", 0, 100, False),
    (lambda v: PunctuationOverrides(sensitivity=v), "sensitivity", 0, 1, False),
    (
        lambda v: ConversationConfig(end_of_utterance_silence_trigger=v),
        "end_of_utterance_silence_trigger",
        0,
        2,
        False,
    ),
    (lambda v: AudioFormat(sample_rate=v), "sample_rate", 1, 384_000, True),
]


@pytest.mark.parametrize(("factory", "name", "low", "high", "integer"), RANGES)
def test_range_edges(
    factory: Callable[[Any], Any], name: str, low: float, high: float, integer: bool
) -> None:
    for ok in (low, high, float(low), float(high)) if not integer else (low, high):
        assert getattr(factory(ok), name) == ok
    outside = (low - 1, high + 1) if integer else (just_below(low), just_above(high))
    for bad in outside:
        with raises_config(name) as info:
            factory(bad)
        assert "between" in info.value.detail
        assert repr(bad) in info.value.detail


def test_max_speakers_has_a_lower_bound_only() -> None:
    assert SpeakerDiarizationConfig(max_speakers=2).max_speakers == 2
    assert SpeakerDiarizationConfig(max_speakers=10_000).max_speakers == 10_000
    for bad in (1, 0, -3):
        with raises_config("max_speakers", "at least 2"):
            SpeakerDiarizationConfig(max_speakers=bad)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda v: TranscriptionConfig(max_delay=v), "max_delay"),
        (lambda v: SpeakerDiarizationConfig(speaker_sensitivity=v), "speaker_sensitivity"),
        (lambda v: AudioFilteringConfig(volume_threshold=v), "volume_threshold"),
        (lambda v: PunctuationOverrides(sensitivity=v), "sensitivity"),
        (
            lambda v: ConversationConfig(end_of_utterance_silence_trigger=v),
            "end_of_utterance_silence_trigger",
        ),
    ],
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(
    factory: Callable[[Any], Any], name: str, bad: float
) -> None:
    with raises_config(name, "finite|between"):
        factory(bad)


# ============================================================================================
# Wrong types
# ============================================================================================

WRONG_TYPES: list[tuple[Callable[[], Any], str, str]] = [
    # bools are not numbers
    (lambda: TranscriptionConfig(max_delay=True), "max_delay", "must be a number"),
    (lambda: TranscriptionConfig(max_delay="1"), "max_delay", "must be a number"),
    (lambda: SpeakerDiarizationConfig(max_speakers=True), "max_speakers", "integer"),
    (lambda: SpeakerDiarizationConfig(max_speakers=2.0), "max_speakers", "integer"),
    (lambda: SpeakerDiarizationConfig(speaker_sensitivity=False), "speaker_sensitivity", "number"),
    (lambda: AudioFilteringConfig(volume_threshold=True), "volume_threshold", "number"),
    (lambda: PunctuationOverrides(sensitivity=True), "sensitivity", "number"),
    (
        lambda: ConversationConfig(end_of_utterance_silence_trigger=True),
        "end_of_utterance_silence_trigger",
        "number",
    ),
    (lambda: AudioFormat(sample_rate=True), "sample_rate", "integer"),
    (lambda: AudioFormat(sample_rate=16000.0), "sample_rate", "integer"),
    (lambda: AudioFormat(sample_rate="16000"), "sample_rate", "integer"),
    # booleans must be bools
    (lambda: TranscriptionConfig(enable_partials=1), "enable_partials", "true or false"),
    (lambda: TranscriptionConfig(enable_entities="yes"), "enable_entities", "true or false"),
    (
        lambda: SpeakerDiarizationConfig(prefer_current_speaker=0),
        "prefer_current_speaker",
        "true or false",
    ),
    (lambda: SpeakerDiarizationConfig(get_speakers=1), "get_speakers", "true or false"),
    (
        lambda: TranscriptFilteringConfig(remove_disfluencies="no"),
        "remove_disfluencies",
        "true or false",
    ),
    (lambda: TranslationConfig([], enable_partials=1), "enable_partials", "true or false"),
    (
        lambda: TranscriptionConfig(language_hints=["en"], language_hints_strict=1),
        "language_hints_strict",
        "true or false",
    ),
    # strings
    (lambda: TranscriptionConfig(language=5), "language", "must be a string"),
    (lambda: TranscriptionConfig(language=b"en"), "language", "must be a string"),
    (lambda: TranscriptionConfig(language=""), "language", "non-empty"),
    (lambda: TranscriptionConfig(domain=""), "domain", "non-empty"),
    (lambda: TranscriptionConfig(output_locale=""), "output_locale", "non-empty"),
    (lambda: TranscriptionConfig(output_locale=1), "output_locale", "must be a string"),
    # enumerations
    (lambda: TranscriptionConfig(diarization="speakers"), "diarization", "one of"),
    (lambda: TranscriptionConfig(diarization=True), "diarization", "one of"),
    (lambda: TranscriptionConfig(max_delay_mode="strict"), "max_delay_mode", "one of"),
    (lambda: TranscriptionConfig(model="turbo"), "model", "'standard', 'enhanced', 'melia-1'"),
    (lambda: TranscriptionConfig(operating_point="x"), "operating_point", "one of"),
    (lambda: AudioFormat(encoding="pcm_s24le"), "encoding", "one of"),
    (lambda: AudioFormat(type="stream"), "type", "one of"),
    # sequences
    (lambda: TranscriptionConfig(additional_vocab="word"), "additional_vocab", "list or tuple"),
    (lambda: TranscriptionConfig(additional_vocab=[5]), "additional_vocab[0]", "string"),
    (lambda: TranscriptionConfig(additional_vocab=["a", ""]), "additional_vocab[1]", "non-empty"),
    (
        lambda: TranscriptionConfig(additional_vocab=[{"content": "a"}]),
        "additional_vocab[0]",
        "VocabEntry",
    ),
    (lambda: TranscriptionConfig(language_hints="en"), "language_hints", "list or tuple"),
    (lambda: TranscriptionConfig(language_hints=["en", "en"]), "language_hints[1]", "duplicate"),
    (lambda: TranscriptionConfig(language_hints=[""]), "language_hints[0]", "non-empty"),
    (
        lambda: TranscriptionConfig(channel_diarization_labels=["a", "b", "a"]),
        "channel_diarization_labels[2]",
        "duplicate",
    ),
    (
        lambda: TranscriptionConfig(channel_diarization_labels={"a"}),
        "channel_diarization_labels",
        "list or tuple",
    ),
    (lambda: TranslationConfig(["de", "de"]), "target_languages[1]", "duplicate"),
    (lambda: TranslationConfig("de"), "target_languages", "list or tuple"),
    (lambda: TranslationConfig([""]), "target_languages[0]", "non-empty"),
    (lambda: AudioEventsConfig(["music", "music"]), "types[1]", "duplicate"),
    (lambda: AudioEventsConfig([3]), "types[0]", "string"),
    # nested objects must be the modelled classes
    (
        lambda: TranscriptionConfig(speaker_diarization_config={"max_speakers": 2}),
        "speaker_diarization_config",
        "SpeakerDiarizationConfig.from_dict",
    ),
    (
        lambda: TranscriptionConfig(audio_filtering_config=ConversationConfig()),
        "audio_filtering_config",
        "must be a AudioFilteringConfig",
    ),
    (
        lambda: TranscriptionConfig(transcript_filtering_config=1),
        "transcript_filtering_config",
        "TranscriptFilteringConfig",
    ),
    (
        lambda: TranscriptionConfig(punctuation_overrides="all"),
        "punctuation_overrides",
        "PunctuationOverrides",
    ),
    (lambda: TranscriptionConfig(conversation_config={}), "conversation_config", "from_dict"),
    (
        lambda: SpeakerDiarizationConfig(speakers=[{"label": "A"}]),
        "speakers[0]",
        "KnownSpeaker",
    ),
    (
        lambda: TranscriptFilteringConfig(replacements=[("a", "b")]),
        "replacements[0]",
        "WordReplacement",
    ),
    (
        lambda: StartRecognitionConfig(
            transcription_config={"language": "en"}, audio_format=AudioFormat()
        ),
        "transcription_config",
        "TranscriptionConfig",
    ),
    (
        lambda: StartRecognitionConfig(
            transcription_config=TranscriptionConfig(), audio_format="raw"
        ),
        "audio_format",
        "AudioFormat",
    ),
    # extra
    (lambda: TranscriptionConfig(extra=[("x", 1)]), "extra", "JSON object"),
    (lambda: TranscriptionConfig(extra={"x": math.nan}), "extra.x", "finite"),
    (lambda: TranscriptionConfig(extra={"x": {1, 2}}), "extra.x", "JSON value"),
    (lambda: TranscriptionConfig(extra={"x": {"y": object()}}), "extra.x.y", "JSON value"),
    (lambda: TranscriptionConfig(extra={"": 1}), "extra", "non-empty"),
    (lambda: TranscriptionConfig(extra={1: 1}), "extra", "strings"),
]


@pytest.mark.parametrize(("build", "name", "match"), WRONG_TYPES)
def test_wrong_types_are_rejected(build: Callable[[], Any], name: str, match: str) -> None:
    with raises_config(name, match):
        build()


# ============================================================================================
# The small building blocks
# ============================================================================================


def test_vocab_entry() -> None:
    assert VocabEntry("gnocchi").to_dict() == {"content": "gnocchi"}
    assert VocabEntry("gnocchi", ["nyohki"]).to_dict() == {
        "content": "gnocchi",
        "sounds_like": ["nyohki"],
    }
    with raises_config("content", "non-empty"):
        VocabEntry("")
    with raises_config("sounds_like", "at least one"):
        VocabEntry("a", [])
    with raises_config("sounds_like[1]", "non-empty"):
        VocabEntry("a", ["b", ""])
    with raises_config("sounds_like", "list or tuple"):
        VocabEntry("a", "b")


@pytest.mark.parametrize("label", ["Alice", "S", "SA1", "s1", "UUU", "A l", "S1a", "uu", "Ünal"])
def test_known_speaker_accepts_ordinary_labels(label: str) -> None:
    assert KnownSpeaker(label, ["id"]).label == label


@pytest.mark.parametrize(
    "label", ["S1", "S12", "UU", " Alice", "Alice ", "Alice\n", "\tA", " ", "S1 "]
)
def test_known_speaker_rejects_reserved_and_padded_labels(label: str) -> None:
    with raises_config("label", "reserved"):
        KnownSpeaker(label, ["id"])


def test_known_speaker_identifiers() -> None:
    with raises_config("label", "non-empty"):
        KnownSpeaker("", ["id"])
    with raises_config("speaker_identifiers", "at least one"):
        KnownSpeaker("Alice", [])
    with raises_config("speaker_identifiers[1]", "duplicate"):
        KnownSpeaker("Alice", ["a", "a"])
    with raises_config("speaker_identifiers[0]", "non-empty"):
        KnownSpeaker("Alice", [""])


def test_speaker_identifier_limit_counts_all_speakers() -> None:
    half = MAX_SPEAKER_IDENTIFIERS // 2
    assert MAX_SPEAKER_IDENTIFIERS == 50
    a = KnownSpeaker("A", [f"a{i}" for i in range(half)])
    b = KnownSpeaker("B", [f"b{i}" for i in range(MAX_SPEAKER_IDENTIFIERS - half)])
    assert SpeakerDiarizationConfig(speakers=[a, b]).speakers == (a, b)
    c = KnownSpeaker("C", ["c"])
    with raises_config("speakers", "at most 50 speaker identifiers") as info:
        SpeakerDiarizationConfig(speakers=[a, b, c])
    assert "got 51" in info.value.detail


def test_an_identifier_cannot_name_two_speakers() -> None:
    with raises_config("speakers[1].speaker_identifiers", "already given"):
        SpeakerDiarizationConfig(
            speakers=[KnownSpeaker("A", ["x", "y"]), KnownSpeaker("B", ["z", "x"])]
        )
    # The same label twice, with different identifiers, is fine.
    SpeakerDiarizationConfig(speakers=[KnownSpeaker("A", ["x"]), KnownSpeaker("A", ["y"])])


def test_word_replacement() -> None:
    assert WordReplacement("hello", "hi").to_dict() == {"from": "hello", "to": "hi"}
    assert WordReplacement("um", "").to == ""
    assert WordReplacement.from_dict({"from": "a", "to": "b"}) == WordReplacement("a", "b")
    with raises_config("from", "non-empty"):
        WordReplacement("", "x")
    with raises_config("to", "string"):
        WordReplacement("a", None)  # type: ignore[arg-type]
    with raises_config("to", "required"):
        WordReplacement.from_dict({"from": "a"})
    with raises_config("from_", "not a known"):
        WordReplacement.from_dict({"from_": "a", "to": "b"})


@pytest.mark.parametrize("marks", [["all"], [".", ",", "?"], [], ["é"], ["all", "all"]])
def test_permitted_marks_accepted(marks: list[str]) -> None:
    assert PunctuationOverrides(permitted_marks=marks).permitted_marks == tuple(marks)


@pytest.mark.parametrize(
    ("marks", "name"),
    [
        ([".."], "permitted_marks[0]"),
        ([".", ""], "permitted_marks[1]"),
        (["\n"], "permitted_marks[0]"),
        (["a\n"], "permitted_marks[0]"),
        (["All"], "permitted_marks[0]"),
    ],
)
def test_permitted_marks_must_be_single_characters(marks: list[str], name: str) -> None:
    with raises_config(name):
        PunctuationOverrides(permitted_marks=marks)


def test_all_with_other_marks_is_contradictory() -> None:
    with raises_config("permitted_marks", "'all' cannot be combined"):
        PunctuationOverrides(permitted_marks=["all", "."])


# ============================================================================================
# TranscriptionConfig cross-field rules
# ============================================================================================


def test_operating_point_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="use model instead"):
        cfg = TranscriptionConfig(operating_point="enhanced")
    assert cfg.to_dict() == {"language": "en", "operating_point": "enhanced"}
    # Parsing a peer's wire config does not warn: the alias is the peer's choice.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TranscriptionConfig.from_dict(cfg.to_dict()) == cfg


def test_the_warning_points_at_the_caller() -> None:
    with pytest.warns(DeprecationWarning) as record:
        TranscriptionConfig(operating_point="standard")
    assert record[0].filename == __file__


def test_model_alone_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TranscriptionConfig(model="enhanced")
        TranscriptionConfig.from_dict({"language": "en", "model": "melia-1"})


def test_model_and_operating_point_together_are_contradictory() -> None:
    with raises_config("operating_point", "cannot be set together"):
        TranscriptionConfig(model="standard", operating_point="standard")


def test_language_hints_strict_needs_language_hints() -> None:
    assert TranscriptionConfig(language_hints=["en"], language_hints_strict=True)
    assert TranscriptionConfig(language_hints=["en"], language_hints_strict=False)
    assert TranscriptionConfig(language_hints=[]).language_hints == ()
    for hints in (None, []):
        for strict in (True, False):
            with raises_config("language_hints_strict", "language_hints"):
                TranscriptionConfig(language_hints=hints, language_hints_strict=strict)


def test_speaker_diarization_config_without_diarization_is_allowed() -> None:
    cfg = TranscriptionConfig(speaker_diarization_config=SpeakerDiarizationConfig(max_speakers=2))
    assert cfg.diarization is None
    cfg = TranscriptionConfig(
        diarization="none", speaker_diarization_config=SpeakerDiarizationConfig(max_speakers=2)
    )
    assert cfg.to_dict()["speaker_diarization_config"] == {"max_speakers": 2}


def test_empty_additional_vocab_is_sent_as_an_empty_list() -> None:
    cfg = TranscriptionConfig(additional_vocab=[])
    assert cfg.to_dict() == {"language": "en", "additional_vocab": []}
    assert TranscriptionConfig.from_dict(cfg.to_dict()) == cfg


# ============================================================================================
# extra
# ============================================================================================


def test_extra_is_merged_into_to_dict() -> None:
    cfg = TranscriptionConfig(max_delay=1, extra={"x_new": {"a": [1, 2]}, "x_flag": True})
    assert cfg.to_dict() == {
        "language": "en",
        "max_delay": 1.0,
        "x_new": {"a": [1, 2]},
        "x_flag": True,
    }


def test_extra_is_a_read_only_deep_copy() -> None:
    source: dict[str, Any] = {"x": {"a": [1]}}
    cfg = TranscriptionConfig(extra=source)
    source["x"]["a"].append(2)
    source["y"] = 1
    assert isinstance(cfg.extra, MappingProxyType)
    assert cfg.to_dict() == {"language": "en", "x": {"a": [1]}}
    with pytest.raises(TypeError):
        cfg.extra["z"] = 1  # type: ignore[index]
    assert cfg.extra["x"]["a"] == (1,)


def test_extra_takes_part_in_equality_but_not_in_hash() -> None:
    a = TranscriptionConfig(extra={"x": [1]})
    b = TranscriptionConfig(extra={"x": (1,)})
    c = TranscriptionConfig(extra={"x": [2]})
    assert a == b
    assert hash(a) == hash(b) == hash(c) == hash(TranscriptionConfig())
    assert a != c
    assert a != TranscriptionConfig()
    assert TranscriptionConfig(extra={}) == TranscriptionConfig()
    assert TranscriptionConfig(extra={}).extra is None


@pytest.mark.parametrize("name", [n for n in TC_FIELDS if n != "extra"])
def test_extra_cannot_shadow_a_modelled_field(name: str) -> None:
    with raises_config(f"extra.{name}", "modelled field"):
        TranscriptionConfig(extra={name: 1})


# ============================================================================================
# from_dict
# ============================================================================================

ALL_CLASSES: list[type[Any]] = [
    VocabEntry,
    KnownSpeaker,
    SpeakerDiarizationConfig,
    AudioFilteringConfig,
    WordReplacement,
    TranscriptFilteringConfig,
    PunctuationOverrides,
    ConversationConfig,
    TranscriptionConfig,
    AudioFormat,
    TranslationConfig,
    AudioEventsConfig,
]


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("bad", [None, [], "x", 3, [("language", "en")]])
def test_from_dict_rejects_non_objects(cls: type[Any], bad: object) -> None:
    with pytest.raises(ConfigError, match="must be a JSON object"):
        cls.from_dict(bad)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_from_dict_rejects_unknown_keys(cls: type[Any]) -> None:
    with raises_config("bogus", "not a known"):
        cls.from_dict({"bogus": 1})


def test_from_dict_rejects_non_string_keys() -> None:
    with pytest.raises(ConfigError, match="field names must be strings"):
        TranscriptionConfig.from_dict({"language": "en", 1: 2})


def test_transcription_config_from_dict_requires_language() -> None:
    with raises_config("language", "required"):
        TranscriptionConfig.from_dict({})
    with raises_config("language", "required"):
        TranscriptionConfig.from_dict({"language": None})


def test_from_dict_treats_null_as_unset() -> None:
    wire = {name: None for name in TC_FIELDS if name not in ("extra", "language")}
    assert TranscriptionConfig.from_dict({"language": "en", **wire}) == TranscriptionConfig()
    assert SpeakerDiarizationConfig.from_dict({"max_speakers": None}) == SpeakerDiarizationConfig()
    assert TranslationConfig.from_dict(
        {"target_languages": ["de"], "enable_partials": None}
    ) == TranslationConfig(["de"])


@pytest.mark.parametrize(
    ("wire", "name", "match"),
    [
        ({"max_delay": "2"}, "max_delay", "must be a number"),
        ({"max_delay": True}, "max_delay", "must be a number"),
        ({"max_delay": 9}, "max_delay", "between 0.7 and 4 seconds, got 9"),
        ({"additional_vocab": "x"}, "additional_vocab", "list or tuple"),
        ({"additional_vocab": ["a", 3]}, "additional_vocab[1]", "string"),
        ({"additional_vocab": [{"sounds_like": ["b"]}]}, "additional_vocab[0].content", "required"),
        ({"additional_vocab": ["a", {"content": ""}]}, "additional_vocab[1].content", "non-empty"),
        (
            {"additional_vocab": [{"content": "a", "sounds": ["b"]}]},
            "additional_vocab[0].sounds",
            "not a known",
        ),
        ({"speaker_diarization_config": []}, "speaker_diarization_config", "JSON object"),
        (
            {"speaker_diarization_config": {"max_speakers": 1}},
            "speaker_diarization_config.max_speakers",
            "at least 2",
        ),
        (
            {"speaker_diarization_config": {"speakers": [{"label": "S3"}]}},
            "speaker_diarization_config.speakers[0].speaker_identifiers",
            "required",
        ),
        (
            {"speaker_diarization_config": {"speakers": ["Alice"]}},
            "speaker_diarization_config.speakers[0]",
            "JSON object",
        ),
        (
            {
                "speaker_diarization_config": {
                    "speakers": [{"label": "S3", "speaker_identifiers": ["x"]}]
                }
            },
            "speaker_diarization_config.speakers[0].label",
            "reserved",
        ),
        (
            {"audio_filtering_config": {"volume_threshold": 101}},
            "audio_filtering_config.volume_threshold",
            "between 0 and 100",
        ),
        (
            {"transcript_filtering_config": {"replacements": [{"from": "a"}]}},
            "transcript_filtering_config.replacements[0].to",
            "required",
        ),
        (
            {"transcript_filtering_config": {"replacements": {"from": "a", "to": "b"}}},
            "transcript_filtering_config.replacements",
            "list or tuple",
        ),
        (
            {"punctuation_overrides": {"permitted_marks": ["all", "!"]}},
            "punctuation_overrides.permitted_marks",
            "'all' cannot be combined",
        ),
        (
            {"conversation_config": {"end_of_utterance_silence_trigger": -1}},
            "conversation_config.end_of_utterance_silence_trigger",
            "between 0 and 2 seconds",
        ),
        (
            {"conversation_config": {"silence": 1}},
            "conversation_config.silence",
            "not a known conversation_config field",
        ),
        ({"model": "standard", "operating_point": "enhanced"}, "operating_point", "together"),
        ({"language_hints_strict": True}, "language_hints_strict", "language_hints"),
        ({"extra": {"a": 1}}, "extra", "not a known"),
    ],
)
def test_transcription_config_from_dict_errors(wire: dict[str, Any], name: str, match: str) -> None:
    with raises_config(name, match):
        TranscriptionConfig.from_dict({"language": "en", **wire})


def test_unknown_key_message_suggests_allow_unknown() -> None:
    with raises_config("new_feature", "allow_unknown=True"):
        TranscriptionConfig.from_dict({"language": "en", "new_feature": 1})


def test_allow_unknown_keeps_unknown_keys_in_extra() -> None:
    wire = {"language": "en", "max_delay": 2, "new_feature": {"on": True}, "extra": [1], "n": None}
    cfg = TranscriptionConfig.from_dict(wire, allow_unknown=True)
    assert cfg.max_delay == 2.0
    assert cfg.extra == {"new_feature": {"on": True}, "extra": (1,), "n": None}
    assert cfg.to_dict() == {**wire, "max_delay": 2.0}
    assert TranscriptionConfig.from_dict(cfg.to_dict(), allow_unknown=True) == cfg


def test_allow_unknown_drops_unknown_keys_of_nested_objects() -> None:
    wire = {
        "language": "en",
        "speaker_diarization_config": {"max_speakers": 2, "future": 1},
        "additional_vocab": [{"content": "a", "future": 1}],
    }
    cfg = TranscriptionConfig.from_dict(wire, allow_unknown=True)
    assert cfg.speaker_diarization_config == SpeakerDiarizationConfig(max_speakers=2)
    assert cfg.additional_vocab == (VocabEntry("a"),)
    assert cfg.extra is None


def test_allow_unknown_does_not_relax_validation() -> None:
    with raises_config("max_delay"):
        TranscriptionConfig.from_dict({"language": "en", "max_delay": 0}, allow_unknown=True)


def test_from_dict_accepts_tuples() -> None:
    cfg = TranscriptionConfig.from_dict({"language": "en", "language_hints": ("en", "de")})
    assert cfg.language_hints == ("en", "de")


# ============================================================================================
# Round trips (property)
# ============================================================================================


@given(
    st.one_of(
        vocab_entries(),
        speaker_diarization_configs(),
        audio_filtering_configs(),
        transcript_filtering_configs(),
        punctuation_overrides(),
        conversation_configs(),
        audio_formats(),
        translation_configs(),
        audio_events_configs(),
    )
)
def test_round_trip_small_classes(obj: Any) -> None:
    wire = obj.to_dict()
    assert type(obj).from_dict(wire) == obj
    assert type(obj).from_dict(json.loads(json.dumps(wire, allow_nan=False))) == obj
    assert hash(type(obj).from_dict(wire)) == hash(obj)


@given(transcription_configs())
def test_round_trip_transcription_config(cfg: TranscriptionConfig) -> None:
    wire = json.loads(json.dumps(cfg.to_dict(), allow_nan=False))
    with no_deprecation_warnings():
        again = TranscriptionConfig.from_dict(wire, allow_unknown=True)
        assert again == cfg
        assert hash(again) == hash(cfg)
        if cfg.extra is None:
            assert TranscriptionConfig.from_dict(cfg.to_dict()) == cfg
        # Rebuilding from the fields gives the same config (validation is idempotent).
        assert cfg.with_changes() == cfg


@given(
    transcription_configs(),
    audio_formats(),
    _maybe(translation_configs()),
    _maybe(audio_events_configs()),
)
def test_round_trip_start_recognition(
    cfg: TranscriptionConfig,
    fmt: AudioFormat,
    translation: TranslationConfig | None,
    events: AudioEventsConfig | None,
) -> None:
    msg = json.loads(json.dumps(start_recognition_message(cfg, fmt, translation, events)))
    with no_deprecation_warnings():
        parsed = parse_start_recognition(msg, allow_unknown=True)
    assert parsed == StartRecognitionConfig(
        transcription_config=cfg,
        audio_format=fmt,
        translation_config=translation,
        audio_events_config=events,
    )
    assert parsed.to_message() == start_recognition_message(cfg, fmt, translation, events)


# ============================================================================================
# Mid-session changes
# ============================================================================================


def test_mid_session_fields() -> None:
    assert (
        frozenset(
            {
                "language",
                "max_delay",
                "max_delay_mode",
                "audio_filtering_config",
                "enable_partials",
                "conversation_config",
            }
        )
        == MID_SESSION_FIELDS
    )
    assert set(TC_FIELDS) >= MID_SESSION_FIELDS


def test_mid_session_dict_holds_only_mid_session_fields() -> None:
    cfg = TranscriptionConfig(
        "de",
        max_delay=1.5,
        max_delay_mode="fixed",
        enable_partials=True,
        audio_filtering_config=AudioFilteringConfig(volume_threshold=3),
        conversation_config=ConversationConfig(end_of_utterance_silence_trigger=1),
        diarization="speaker",
        model="enhanced",
        extra={"x": 1},
    )
    assert cfg.mid_session_dict() == {
        "language": "de",
        "max_delay": 1.5,
        "max_delay_mode": "fixed",
        "audio_filtering_config": {"volume_threshold": 3.0},
        "enable_partials": True,
        "conversation_config": {"end_of_utterance_silence_trigger": 1.0},
    }
    assert TranscriptionConfig(diarization="speaker").mid_session_dict() == {"language": "en"}


def test_changed_fields_and_with_changes() -> None:
    base = TranscriptionConfig(max_delay=2, diarization="speaker")
    new = base.with_changes(max_delay=1, enable_partials=True)
    assert new is not base
    assert new.max_delay == 1.0
    assert base.max_delay == 2.0
    assert base.changed_fields(new) == {"max_delay", "enable_partials"}
    assert new.changed_fields(base) == {"max_delay", "enable_partials"}
    assert base.changed_fields(base) == frozenset()
    assert base.changed_fields(base.with_changes(extra={"x": 1})) == {"extra"}
    assert not base.changed_fields(base.with_changes(max_delay=2.0))
    assert base.changed_fields(base.with_changes(diarization="channel")) - MID_SESSION_FIELDS


def test_with_changes_validates() -> None:
    base = TranscriptionConfig()
    with raises_config("max_delay", "between"):
        base.with_changes(max_delay=0.5)
    with raises_config("language_hints_strict"):
        base.with_changes(language_hints_strict=True)
    with pytest.raises(TypeError):
        base.with_changes(no_such_field=1)


def test_changed_fields_needs_a_transcription_config() -> None:
    with raises_config("other", "TranscriptionConfig"):
        TranscriptionConfig().changed_fields({"language": "en"})  # type: ignore[arg-type]


def test_mid_session_from_dict_applies_allowed_changes() -> None:
    current = TranscriptionConfig(
        "en",
        max_delay=2,
        diarization="speaker",
        audio_filtering_config=AudioFilteringConfig(volume_threshold=1),
    )
    new = TranscriptionConfig.mid_session_from_dict(
        {
            "language": "en",
            "max_delay": 1,
            "max_delay_mode": "fixed",
            "enable_partials": True,
            "audio_filtering_config": {},
            "conversation_config": {"end_of_utterance_silence_trigger": 0.5},
        },
        current=current,
    )
    assert new == current.with_changes(
        max_delay=1.0,
        max_delay_mode="fixed",
        enable_partials=True,
        audio_filtering_config=AudioFilteringConfig(),
        conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.5),
    )
    assert new.diarization == "speaker"


def test_mid_session_from_dict_null_and_empty_change_nothing() -> None:
    current = TranscriptionConfig(max_delay=2)
    assert TranscriptionConfig.mid_session_from_dict({}, current=current) is current
    assert (
        TranscriptionConfig.mid_session_from_dict({"max_delay": None}, current=current) == current
    )


@pytest.mark.parametrize("name", sorted(set(TC_FIELDS) - MID_SESSION_FIELDS - {"extra"}))
def test_mid_session_from_dict_rejects_other_fields(name: str) -> None:
    with raises_config(name, "cannot be changed mid-session"):
        TranscriptionConfig.mid_session_from_dict({name: None}, current=TranscriptionConfig())


def test_mid_session_from_dict_rejects_unknown_fields() -> None:
    with raises_config("bogus", "not a known transcription_config field"):
        TranscriptionConfig.mid_session_from_dict({"bogus": 1}, current=TranscriptionConfig())


def test_mid_session_from_dict_language_must_not_change() -> None:
    current = TranscriptionConfig("en")
    assert TranscriptionConfig.mid_session_from_dict({"language": "en"}, current=current) == current
    with raises_config("language", "cannot be changed mid-session") as info:
        TranscriptionConfig.mid_session_from_dict({"language": "de"}, current=current)
    assert "'en'" in info.value.detail
    assert "'de'" in info.value.detail
    with raises_config("language"):
        TranscriptionConfig.mid_session_from_dict({"language": 5}, current=current)


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        ({"max_delay": 10}, "max_delay"),
        ({"max_delay": False}, "max_delay"),
        ({"enable_partials": "yes"}, "enable_partials"),
        ({"max_delay_mode": "slow"}, "max_delay_mode"),
        (
            {"audio_filtering_config": {"volume_threshold": -1}},
            "audio_filtering_config.volume_threshold",
        ),
        ({"audio_filtering_config": 1}, "audio_filtering_config"),
        ({"conversation_config": {"x": 1}}, "conversation_config.x"),
    ],
)
def test_mid_session_from_dict_validates_values(wire: dict[str, Any], name: str) -> None:
    with raises_config(name):
        TranscriptionConfig.mid_session_from_dict(wire, current=TranscriptionConfig())


def test_mid_session_from_dict_rejects_non_objects() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        TranscriptionConfig.mid_session_from_dict([], current=TranscriptionConfig())  # type: ignore[arg-type]


@given(
    transcription_configs(extra=False),
    st.fixed_dictionaries(
        {},
        optional={
            "max_delay": _seconds(0.7, 4),
            "max_delay_mode": st.sampled_from(["flexible", "fixed"]),
            "audio_filtering_config": audio_filtering_configs(),
            "enable_partials": st.booleans(),
            "conversation_config": conversation_configs(),
        },
    ),
)
def test_mid_session_round_trip(current: TranscriptionConfig, changes: dict[str, Any]) -> None:
    with no_deprecation_warnings():
        new = current.with_changes(**changes)
        assert current.changed_fields(new) <= MID_SESSION_FIELDS
        assert (
            TranscriptionConfig.mid_session_from_dict(new.mid_session_dict(), current=current)
            == new
        )


# ============================================================================================
# AudioFormat, TranslationConfig, AudioEventsConfig
# ============================================================================================


def test_audio_format_defaults() -> None:
    fmt = AudioFormat()
    assert (fmt.type, fmt.encoding, fmt.sample_rate) == ("raw", "pcm_s16le", 16000)
    assert fmt.to_dict() == {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
    assert AudioFormat(encoding="mulaw") == AudioFormat(encoding="mulaw", sample_rate=16000)
    assert AudioFormat(sample_rate=8000).encoding == "pcm_s16le"


@pytest.mark.parametrize(
    ("encoding", "per_sample"), [("pcm_s16le", 2), ("pcm_f32le", 4), ("mulaw", 1)]
)
def test_audio_format_sizes(encoding: Any, per_sample: int) -> None:
    fmt = AudioFormat(encoding=encoding, sample_rate=8000)
    assert fmt.bytes_per_sample == per_sample
    assert fmt.bytes_per_second == per_sample * 8000


def test_file_audio_format() -> None:
    fmt = AudioFormat.file()
    assert fmt == AudioFormat(type="file")
    assert (fmt.encoding, fmt.sample_rate) == (None, None)
    assert fmt.bytes_per_sample is None
    assert fmt.bytes_per_second is None
    assert fmt.to_dict() == {"type": "file"}
    with raises_config("encoding", "must not be set for file audio"):
        AudioFormat(type="file", encoding="pcm_s16le")
    with raises_config("sample_rate", "must not be set for file audio"):
        AudioFormat(type="file", sample_rate=16000)


@pytest.mark.parametrize(
    ("wire", "name", "match"),
    [
        ({}, "type", "required"),
        ({"type": None}, "type", "required"),
        ({"type": "mp3"}, "type", "one of 'raw', 'file'"),
        ({"type": 1}, "type", "one of"),
        ({"type": "raw", "sample_rate": 16000}, "encoding", "required for raw audio"),
        ({"type": "raw", "encoding": "mulaw"}, "sample_rate", "required for raw audio"),
        ({"type": "raw", "encoding": "mulaw", "sample_rate": "8000"}, "sample_rate", "integer"),
        ({"type": "raw", "encoding": "mulaw", "sample_rate": 0}, "sample_rate", "between 1 and"),
        ({"type": "raw", "encoding": "alaw", "sample_rate": 8000}, "encoding", "one of"),
        ({"type": "file", "encoding": "mulaw"}, "encoding", "file audio"),
        ({"type": "file", "channels": 2}, "channels", "not a known audio_format field"),
    ],
)
def test_audio_format_from_dict_errors(wire: dict[str, Any], name: str, match: str) -> None:
    with raises_config(name, match):
        AudioFormat.from_dict(wire)


def test_audio_format_from_dict() -> None:
    assert AudioFormat.from_dict({"type": "file"}) == AudioFormat.file()
    assert AudioFormat.from_dict(
        {"type": "raw", "encoding": "pcm_f32le", "sample_rate": 44100}
    ) == AudioFormat(encoding="pcm_f32le", sample_rate=44100)
    assert AudioFormat.from_dict({"type": "file", "x": 1}, allow_unknown=True) == AudioFormat.file()


def test_translation_config() -> None:
    assert TranslationConfig(()).to_dict() == {"target_languages": []}
    cfg = TranslationConfig(["es", "de"], enable_partials=True)
    assert cfg.to_dict() == {"target_languages": ["es", "de"], "enable_partials": True}
    assert TranslationConfig.from_dict(cfg.to_dict()) == cfg
    with raises_config("target_languages", "required"):
        TranslationConfig.from_dict({"enable_partials": True})
    with pytest.raises(TypeError):
        TranslationConfig(["de"], True)  # type: ignore[misc]


def test_audio_events_config() -> None:
    assert AudioEventsConfig().to_dict() == {}
    assert AudioEventsConfig(["applause", "music"]).to_dict() == {"types": ["applause", "music"]}
    assert AudioEventsConfig([]).to_dict() == {"types": []}


# ============================================================================================
# StartRecognition
# ============================================================================================

SPEC_EXAMPLE: dict[str, Any] = {
    "message": "StartRecognition",
    "audio_format": {"type": "raw", "encoding": "pcm_f32le", "sample_rate": 16000},
    "transcription_config": {
        "language": "en",
        "model": "enhanced",
        "output_locale": "en-US",
        "additional_vocab": ["gnocchi", "bucatini", "bigoli"],
        "diarization": "speaker",
        "max_delay": 1.0,
        "enable_partials": True,
    },
    "translation_config": {"target_languages": ["es", "de"], "enable_partials": True},
    "audio_events_config": {"types": ["applause", "music"]},
}


def test_parse_start_recognition_spec_example() -> None:
    parsed = parse_start_recognition(SPEC_EXAMPLE)
    assert parsed.audio_format == AudioFormat(encoding="pcm_f32le", sample_rate=16000)
    assert parsed.transcription_config == TranscriptionConfig(
        "en",
        model="enhanced",
        output_locale="en-US",
        additional_vocab=("gnocchi", "bucatini", "bigoli"),
        diarization="speaker",
        max_delay=1.0,
        enable_partials=True,
    )
    assert parsed.translation_config == TranslationConfig(("es", "de"), enable_partials=True)
    assert parsed.audio_events_config == AudioEventsConfig(("applause", "music"))
    assert parsed.to_message() == SPEC_EXAMPLE


def test_parse_start_recognition_minimal() -> None:
    parsed = parse_start_recognition(
        {
            "message": "StartRecognition",
            "audio_format": {"type": "file"},
            "transcription_config": {"language": "ja"},
        }
    )
    assert parsed == StartRecognitionConfig(
        transcription_config=TranscriptionConfig("ja"), audio_format=AudioFormat.file()
    )
    nulls = parse_start_recognition(
        {**SPEC_EXAMPLE, "translation_config": None, "audio_events_config": None}
    )
    assert nulls.translation_config is None
    assert nulls.audio_events_config is None


def _message(**changes: Any) -> dict[str, Any]:
    msg = dict(SPEC_EXAMPLE)
    for key, value in changes.items():
        if value is _DELETE:
            del msg[key]
        else:
            msg[key] = value
    return msg


_DELETE = object()


@pytest.mark.parametrize(
    ("msg", "name"),
    [
        # audio_format problems: the server answers invalid_audio_type
        (_message(audio_format=_DELETE), "audio_format"),
        (_message(audio_format=None), "audio_format"),
        (_message(audio_format="raw"), "audio_format"),
        (_message(audio_format={"type": "wav"}), "audio_format.type"),
        (_message(audio_format={}), "audio_format.type"),
        (
            _message(audio_format={"type": "raw", "encoding": "pcm_s16le"}),
            "audio_format.sample_rate",
        ),
        (
            _message(audio_format={"type": "raw", "encoding": "pcm_s16le", "sample_rate": -1}),
            "audio_format.sample_rate",
        ),
        (_message(audio_format={"type": "file", "encoding": "mulaw"}), "audio_format.encoding"),
        (_message(audio_format={"type": "file", "x": 1}), "audio_format.x"),
        # everything else: invalid_config
        (_message(transcription_config=_DELETE), "transcription_config"),
        (_message(transcription_config=[]), "transcription_config"),
        (_message(transcription_config={}), "transcription_config.language"),
        (
            _message(transcription_config={"language": "en", "max_delay": 0.1}),
            "transcription_config.max_delay",
        ),
        (
            _message(
                transcription_config={
                    "language": "en",
                    "speaker_diarization_config": {"max_speakers": 1},
                }
            ),
            "transcription_config.speaker_diarization_config.max_speakers",
        ),
        (
            _message(transcription_config={"language": "en", "unknown": 1}),
            "transcription_config.unknown",
        ),
        (
            _message(translation_config={"target_languages": "de"}),
            "translation_config.target_languages",
        ),
        (_message(translation_config={}), "translation_config.target_languages"),
        (_message(translation_config=[]), "translation_config"),
        (_message(audio_events_config={"types": [1]}), "audio_events_config.types[0]"),
        (_message(audio_events_config=True), "audio_events_config"),
        (_message(message="StartRecognitio"), "message"),
        (_message(message=_DELETE), "message"),
        (_message(extra_top_level=1), "extra_top_level"),
    ],
)
def test_parse_start_recognition_error_fields(msg: dict[str, Any], name: str) -> None:
    with raises_config(name):
        parse_start_recognition(msg)


def test_parse_start_recognition_rejects_non_objects() -> None:
    with raises_config("message", "JSON object"):
        parse_start_recognition([])  # type: ignore[arg-type]


def test_parse_start_recognition_allow_unknown() -> None:
    msg = {
        **SPEC_EXAMPLE,
        "future_top_level": 1,
        "audio_format": {**SPEC_EXAMPLE["audio_format"], "channels": 1},
        "transcription_config": {**SPEC_EXAMPLE["transcription_config"], "future": [1]},
    }
    parsed = parse_start_recognition(msg, allow_unknown=True)
    assert parsed.transcription_config.extra == {"future": (1,)}
    assert parsed.audio_format == AudioFormat(encoding="pcm_f32le")


def test_start_recognition_message() -> None:
    cfg = TranscriptionConfig("en", max_delay=1)
    fmt = AudioFormat.file()
    assert start_recognition_message(cfg, fmt) == {
        "message": "StartRecognition",
        "audio_format": {"type": "file"},
        "transcription_config": {"language": "en", "max_delay": 1.0},
    }
    full = start_recognition_message(
        cfg, fmt, TranslationConfig(["de"]), AudioEventsConfig(["music"])
    )
    assert full["translation_config"] == {"target_languages": ["de"]}
    assert full["audio_events_config"] == {"types": ["music"]}
    with raises_config("audio_format", "AudioFormat"):
        start_recognition_message(cfg, {"type": "file"})  # type: ignore[arg-type]
    with raises_config("translation_config", "TranslationConfig"):
        start_recognition_message(cfg, fmt, ["de"])  # type: ignore[arg-type]


# ============================================================================================
# Conformance with the official AsyncAPI spec
# ============================================================================================


@pytest.fixture(scope="module")
def spec() -> SpecSchemas:
    return spec_schemas()


pytestmark_fixtures = pytest.mark.fixtures


@pytestmark_fixtures
def test_spec_validator_is_wired_up(spec: SpecSchemas) -> None:
    # The validator must actually follow the $refs: these are invalid per the spec.
    good = start_recognition_message(TranscriptionConfig(), AudioFormat())
    assert spec.errors("StartRecognition", good) == []
    assert spec.errors("StartRecognition", {**good, "audio_format": {"type": "raw"}})
    bad_delay = {**good, "transcription_config": {"language": "en", "max_delay": 5}}
    assert spec.errors("StartRecognition", bad_delay)
    bad_label = {
        **good,
        "transcription_config": {
            "language": "en",
            "speaker_diarization_config": {
                "speakers": [{"label": "S1", "speaker_identifiers": ["x"]}]
            },
        },
    }
    assert spec.errors("StartRecognition", bad_label)
    assert spec.errors(
        "SetRecognitionConfig",
        {"message": "SetRecognitionConfig", "transcription_config": {"max_delay": 0.1}},
    )


@pytestmark_fixtures
def test_spec_example_parses(spec: SpecSchemas) -> None:
    example = spec.root["components"]["schemas"]["StartRecognition"]["example"]
    assert spec.errors("StartRecognition", example) == []
    assert parse_start_recognition(example).to_message() == example


@pytestmark_fixtures
@given(
    transcription_configs(),
    audio_formats(),
    _maybe(translation_configs()),
    _maybe(audio_events_configs()),
)
def test_start_recognition_conforms_to_spec(
    spec: SpecSchemas,
    cfg: TranscriptionConfig,
    fmt: AudioFormat,
    translation: TranslationConfig | None,
    events: AudioEventsConfig | None,
) -> None:
    msg = json.loads(json.dumps(start_recognition_message(cfg, fmt, translation, events)))
    assert spec.errors("StartRecognition", msg) == []


@pytestmark_fixtures
@given(transcription_configs())
def test_set_recognition_config_conforms_to_spec(
    spec: SpecSchemas, cfg: TranscriptionConfig
) -> None:
    msg = {"message": "SetRecognitionConfig", "transcription_config": cfg.mid_session_dict()}
    assert spec.errors("SetRecognitionConfig", json.loads(json.dumps(msg))) == []
    assert set(msg["transcription_config"]) <= set(
        spec.root["components"]["schemas"]["MidSessionTranscriptionConfig"]["properties"]
    )


@pytestmark_fixtures
def test_mid_session_fields_match_the_spec(spec: SpecSchemas) -> None:
    props = spec.root["components"]["schemas"]["MidSessionTranscriptionConfig"]["properties"]
    assert set(props) == MID_SESSION_FIELDS


@pytestmark_fixtures
def test_every_spec_transcription_field_is_modelled(spec: SpecSchemas) -> None:
    props = spec.root["components"]["schemas"]["TranscriptionConfig"]["properties"]
    assert set(props) <= set(TC_FIELDS)
