"""Typed results, joining them into text, and the running transcript."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import Result, TranscriptAssembler, join_results, parse_results
from smproto.transcript import Alternative, TranscriptFormatError
from tests.support import require_fixtures

# The golden cases of the legacy SDK's convert_to_txt: (json, txt, word delimiter, labels).
GOLDEN = [
    ("empty.json", "empty.txt", " ", False),
    ("simple_case.json", "simple_case.txt", " ", False),
    ("simple_case.json", "simple_case_with_speakers.txt", " ", True),
    ("simple_case.json", "simple_case_no_word_delim.txt", "", False),
    ("two_speakers.json", "two_speakers.txt", " ", False),
    ("two_speakers.json", "two_speakers_with_speaker_labels.txt", " ", True),
    ("entity.json", "entity.txt", " ", False),
    ("punctuation.json", "punctuation.txt", " ", False),
]


@pytest.mark.parametrize(("json_name", "txt_name", "delimiter", "labels"), GOLDEN)
def test_golden_convert_to_txt(json_name: str, txt_name: str, delimiter: str, labels: bool) -> None:
    folder = require_fixtures() / "convert_to_txt"
    data = json.loads((folder / json_name).read_text())
    expected = (folder / txt_name).read_text()
    results = parse_results(data["results"])
    assert join_results(results, word_delimiter=delimiter, speaker_labels=labels) == expected


def test_golden_speaker_change() -> None:
    """speaker_change.txt has no JSON beside it: the message is the legacy one with a
    ``speaker_change`` result between two words."""
    expected = (require_fixtures() / "convert_to_txt" / "speaker_change.txt").read_text()
    raw = [
        {"type": "word", "start_time": 0.0, "end_time": 0.1,
         "alternatives": [{"content": "Hello", "confidence": 1.0, "language": "en"}]},
        {"type": "speaker_change", "start_time": 0.1, "end_time": 0.1},
        {"type": "word", "start_time": 0.1, "end_time": 0.2,
         "alternatives": [{"content": "Hey", "confidence": 1.0, "language": "en"}]},
    ]  # fmt: skip
    assert join_results(parse_results(raw)) == expected


def test_entity_fields() -> None:
    data = json.loads((require_fixtures() / "convert_to_txt" / "entity.json").read_text())
    entity, stop = parse_results(data["results"])
    assert entity.type == "entity" and entity.entity_class == "money"
    assert [r.content for r in entity.spoken_form] == ["Two", "dollars", "five", "cents"]
    assert [r.content for r in entity.written_form] == ["$2.05"]
    assert entity.content == "$2.05" and entity.speaker == "S1" and entity.language == "en"
    assert stop.type == "punctuation" and stop.is_eos and stop.attaches_to is None


def test_multi_word_written_form_keeps_every_word() -> None:
    """The legacy joiner used only the first written-form word; we keep them all."""
    entity = {
        "type": "entity",
        "start_time": 0.0,
        "end_time": 1.0,
        "entity_class": "time",
        "written_form": [
            {"type": "word", "start_time": 0, "end_time": 0.5,
             "alternatives": [{"content": "10", "confidence": 1}]},
            {"type": "word", "start_time": 0.5, "end_time": 1,
             "alternatives": [{"content": "am", "confidence": 1}]},
        ],
    }  # fmt: skip
    assert join_results(parse_results([entity])) == "10 am"


def test_offset_shifts_every_time() -> None:
    raw = json.loads((require_fixtures() / "convert_to_txt" / "entity.json").read_text())
    plain = parse_results(raw["results"])
    shifted = parse_results(raw["results"], offset=100.0)
    assert shifted[0].start_time == pytest.approx(plain[0].start_time + 100)
    assert shifted[0].spoken_form[1].end_time == pytest.approx(
        plain[0].spoken_form[1].end_time + 100
    )
    assert shifted == tuple(r.shifted(100.0) for r in plain)


def test_alternatives_details() -> None:
    (r,) = parse_results(
        [
            {
                "type": "word",
                "start_time": 1,
                "end_time": 2,
                "volume": 50.0,
                "alternatives": [
                    {"content": "um", "confidence": 0.4, "tags": ["disfluency"],
                     "display": {"direction": "ltr"}, "speaker": "S2"},
                    {"content": "hum", "confidence": 0.3},
                ],
            }
        ]
    )  # fmt: skip
    assert r.tags == ("disfluency",) and r.confidence == 0.4 and r.volume == 50.0
    assert r.alternatives[0].display_direction == "ltr"
    assert r.alternatives[1] == Alternative("hum", 0.3)


@pytest.mark.parametrize(
    "raw",
    [
        "not a list",
        [1],
        [{"type": 1, "start_time": 0, "end_time": 0}],
        [{"type": "word", "start_time": "0", "end_time": 0}],
        [{"type": "word", "start_time": True, "end_time": 0}],
        [{"type": "word", "start_time": 0, "end_time": 0, "alternatives": {}}],
        [{"type": "word", "start_time": 0, "end_time": 0, "alternatives": [{"content": 1}]}],
        [{"type": "word", "start_time": 0, "end_time": 0,
          "alternatives": [{"content": "a", "confidence": "high"}]}],
        [{"type": "word", "start_time": 0, "end_time": 0,
          "alternatives": [{"content": "a", "confidence": 1, "tags": "x"}]}],
        [{"type": "punctuation", "start_time": 0, "end_time": 0, "is_eos": "yes"}],
        [{"type": "entity", "start_time": 0, "end_time": 0, "written_form": "x"}],
    ],
)  # fmt: skip
def test_bad_shapes_are_rejected(raw: Any) -> None:
    with pytest.raises(TranscriptFormatError):
        parse_results(raw)


# --------------------------------------------------------------------------- properties


def _word(content: str, speaker: str | None, t: float) -> Result:
    return Result("word", t, t + 0.1, (Alternative(content, 1.0, "en", speaker),))


def _punct(mark: str, attaches: str | None, speaker: str | None, t: float) -> Result:
    return Result("punctuation", t, t, (Alternative(mark, 1.0, "en", speaker),), attaches)


tokens = st.lists(
    st.one_of(
        st.builds(
            _word,
            st.text("abcxyz", min_size=1, max_size=4),
            st.sampled_from([None, "S1", "S2"]),
            st.floats(0, 100),
        ),
        st.builds(
            _punct,
            st.sampled_from([".", ",", "-", "&", "*"]),
            st.sampled_from([None, "previous", "next", "both", "none"]),
            st.sampled_from([None, "S1", "S2"]),
            st.floats(0, 100),
        ),
    ),
    max_size=30,
)


@given(tokens, tokens, st.booleans())
def test_assembler_equals_joining_everything(
    first: list[Result], second: list[Result], labels: bool
) -> None:
    """Finals appended one message at a time join exactly as if joined in one go."""
    assembler = TranscriptAssembler(speaker_labels=labels)
    assembler.add_final(first)
    assembler.add_final(second)
    assert assembler.final_text == join_results(first + second, speaker_labels=labels)


@given(tokens, tokens, tokens)
def test_partial_replaces_the_last(
    final: list[Result], partial1: list[Result], partial2: list[Result]
) -> None:
    assembler = TranscriptAssembler()
    assembler.add_final(final)
    assembler.add_partial(partial1)
    assembler.add_partial(partial2)
    assert assembler.text == join_results(final + partial2)
    assert assembler.final_text == join_results(final)
    assembler.add_final([])
    assert assembler.text == join_results(final)
    assert assembler.partial_results == ()


@given(tokens)
def test_join_never_loses_a_token(results: list[Result]) -> None:
    """Every word and every mark is in the text: only delimiters are added."""
    text = join_results(results)
    for r in results:
        if r.type == "word":
            assert r.content in text
    assert sorted(text.replace(" ", "").replace("\n", "")) == sorted(
        "".join(r.content for r in results)
    )


def test_assembler_joins_punctuation_across_messages() -> None:
    """A final holding only a full stop attaches it to the previous final's last word."""
    assembler = TranscriptAssembler()
    assembler.add_final([_word("Welcome", "S1", 0), _word("to", "S1", 1)])
    assembler.add_final([_word("speech", "S1", 2)])
    assembler.add_final([_punct(".", "previous", "S1", 3)])
    assembler.add_partial([_word("We're", "S1", 4)])
    assert assembler.text == "Welcome to speech. We're"
    assert assembler.final_text == "Welcome to speech."


def test_assembler_learns_the_delimiter_and_filters_channels() -> None:
    from smproto.events import AddTranscript, LanguagePackInfo, RecognitionStarted

    started = RecognitionStarted("id", None, LanguagePackInfo(word_delimiter=""), None, {})
    words = (_word("日本", None, 0), _word("語", None, 1))
    left = AddTranscript(words, 0, 1, "left", False, None, "", {})
    right = AddTranscript((_word("x", None, 2),), 0, 1, "right", False, None, "", {})
    assembler = TranscriptAssembler(channel="left")
    for event in (started, left, right, object()):
        assembler.add(event)
    assert assembler.text == "日本語"
    assert len(assembler.final_results) == 2
    with pytest.raises(ValueError, match="delimiter"):
        assembler.set_word_delimiter(" ")
