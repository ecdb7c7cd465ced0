"""Tests of smproto.testing: the public Hypothesis strategies are what they say they are."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import smproto.testing as testing
from smproto import (
    AudioEventsConfig,
    AudioFormat,
    ClientConnection,
    CloseTransport,
    SendText,
    State,
    TranscriptAssembler,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    AudioAdded,
    EndOfTranscript,
    Event,
    RecognitionStarted,
)
from smproto.transcript import join_results, parse_results
from tests.support import FRAME, REPO, SpecSchemas, client_in, spec_schemas


@pytest.fixture(scope="module")
def spec() -> SpecSchemas:
    return spec_schemas()


def example_of(strategy: st.SearchStrategy[Any], condition: Any = lambda x: True) -> Any:
    """The first generated example that satisfies ``condition`` (no shrinking: fast)."""
    return find(
        strategy,
        condition,
        settings=settings(
            database=None,
            max_examples=5000,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )


def wire(msg: dict[str, Any]) -> Any:
    """The message as the peer would parse it."""
    return json.loads(json.dumps(msg))


# ============================================================================================
# The module itself
# ============================================================================================


def test_importing_smproto_does_not_import_hypothesis() -> None:
    code = (
        "import sys, smproto, smproto.events, smproto.config, smproto.transcript;"
        "assert 'hypothesis' not in sys.modules, 'smproto imported hypothesis'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_public_names_are_documented() -> None:
    for name in testing.__all__:
        obj = getattr(testing, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
    assert "Example" in (testing.__doc__ or "") and "pip install" in (testing.__doc__ or "")


@pytest.mark.fixtures
def test_message_type_lists_match_the_spec(spec: SpecSchemas) -> None:
    assert set(testing.SERVER_MESSAGE_TYPES) == spec.channel_messages("subscribe")
    assert set(testing.CLIENT_MESSAGE_TYPES) == spec.channel_messages("publish") - {"AddAudio"}
    schemas = spec.schemas
    assert set(testing.INFO_TYPES) == set(schemas["InfoTypeEnum"]["enum"])
    assert set(testing.WARNING_TYPES) == set(schemas["WarningTypeEnum"]["enum"])
    assert set(testing.ERROR_TYPES) == set(schemas["ErrorTypeEnum"]["enum"])


# ============================================================================================
# Server messages conform to the spec
# ============================================================================================


@pytest.mark.fixtures
@pytest.mark.parametrize("mtype", testing.SERVER_MESSAGE_TYPES)
@given(data=st.data())
def test_every_server_message_type_conforms_to_the_spec(
    spec: SpecSchemas, mtype: str, data: st.DataObject
) -> None:
    channels = data.draw(st.none() | st.just(["left", "right"]), label="channels")
    msg = data.draw(testing.server_messages([mtype], channels=channels, max_seq_no=50))
    assert msg["message"] == mtype
    assert spec.errors(mtype, wire(msg)) == []


@pytest.mark.fixtures
@given(testing.server_messages())
def test_server_messages_mix_conforms_to_the_spec(spec: SpecSchemas, msg: dict[str, Any]) -> None:
    assert spec.message_errors(wire(msg)) == []


@given(st.data())
def test_transcript_messages_respect_their_parameters(data: st.DataObject) -> None:
    start = data.draw(st.floats(0, 10_000), label="start")
    end = start + data.draw(st.floats(0, 30), label="length")
    final = data.draw(st.none() | st.booleans(), label="final")
    channels = data.draw(st.none() | st.just(["a", "b"]), label="channels")
    forced = data.draw(st.none() | st.booleans(), label="forced")
    delimiter = data.draw(st.sampled_from([" ", ""]), label="delimiter")
    msg = data.draw(
        testing.transcript_messages(
            start=start,
            end=end,
            final=final,
            channels=channels,
            forced=forced,
            max_results=5,
            word_delimiter=delimiter,
        )
    )
    if final is not None:
        assert msg["message"] == ("AddTranscript" if final else "AddPartialTranscript")
    assert msg["metadata"]["start_time"] == start
    assert msg["metadata"]["end_time"] == end
    results = msg["results"]
    assert len(results) <= 5
    previous_start = start
    for result in results:
        assert start <= result["start_time"] <= result["end_time"] <= end
        assert result["start_time"] >= previous_start
        previous_start = result["start_time"]
        if result["type"] == "punctuation":
            assert result["attaches_to"] in ("previous", "next", "both", "none")
            assert isinstance(result["is_eos"], bool)
        if result["type"] == "entity":
            assert result["spoken_form"] and result["written_form"]
            for form in result["spoken_form"] + result["written_form"]:
                assert result["start_time"] <= form["start_time"] <= form["end_time"]
                assert form["end_time"] <= result["end_time"]
    placed = {msg.get("channel")} | {r.get("channel") for r in results if "channel" in r}
    if channels is None:
        assert placed == {None}
    else:
        assert placed & set(channels)
    if forced is not None:
        assert msg.get("forced", False) is forced
    assert msg["metadata"]["transcript"] == join_results(
        parse_results(results), word_delimiter=delimiter
    )

    # A client engine takes it as it is, and renders the same text.
    conn = client_in(State.STREAMING)
    conn.receive_message(json.dumps(msg), now=1.0)
    (event,) = conn.events()
    assert isinstance(event, AddTranscript | AddPartialTranscript)
    assert (event.start_time, event.end_time) == (start, end)
    assert event.channel in (channels or [None])
    assert join_results(event.results, word_delimiter=delimiter) == msg["metadata"]["transcript"]


@given(st.data())
def test_time_bounded_messages_respect_their_range(data: st.DataObject) -> None:
    start = data.draw(st.floats(0, 1000), label="start")
    end = start + data.draw(st.floats(0, 5), label="length")
    utterance = data.draw(testing.end_of_utterance_messages(start=start, end=end))
    if utterance["metadata"]:
        assert start <= utterance["metadata"]["start_time"] == utterance["metadata"]["end_time"]
        assert utterance["metadata"]["end_time"] <= end
    translation = data.draw(testing.translation_messages(start=start, end=end, languages=["it"]))
    assert translation["language"] == "it"
    for sentence in translation["results"]:
        assert start <= sentence["start_time"] <= sentence["end_time"] <= end
    started = data.draw(testing.audio_event_started_messages(start=start, end=end))
    assert start <= started["event"]["start_time"] <= end
    ended = data.draw(testing.audio_event_ended_messages(start=start, end=end, channels=["x"]))
    assert start <= ended["event"]["end_time"] <= end
    assert ended["channel"] == "x"


@given(st.data())
def test_acknowledgements_respect_their_range(data: st.DataObject) -> None:
    low = data.draw(st.integers(0, 100), label="low")
    high = low + data.draw(st.integers(0, 100), label="span")
    msg = data.draw(testing.audio_added_messages(max_seq_no=high, min_seq_no=low))
    assert low <= msg["seq_no"] <= high
    msg = data.draw(
        testing.channel_audio_added_messages(channels=["c"], max_seq_no=high, min_seq_no=low)
    )
    assert (msg["channel"], low <= msg["seq_no"] <= high) == ("c", True)
    for msg in data.draw(st.lists(testing.server_messages(max_seq_no=high), max_size=5)):
        if msg["message"] in ("AudioAdded", "ChannelAudioAdded"):
            assert min(1, high) <= msg["seq_no"] <= high


@given(testing.server_messages(max_seq_no=0))
def test_server_messages_without_frames_has_no_acknowledgements(msg: dict[str, Any]) -> None:
    assert msg["message"] not in ("AudioAdded", "ChannelAudioAdded")


def test_acknowledgements_can_be_asked_for_without_frames() -> None:
    msg = example_of(testing.server_messages(["AudioAdded"], max_seq_no=0))
    assert msg == {"message": "AudioAdded", "seq_no": 0}


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: testing.server_messages(["Nope"]), ValueError),
        (lambda: testing.server_messages("AudioAdded"), TypeError),
        (lambda: testing.server_messages([]), ValueError),
        (lambda: testing.server_messages(max_seq_no=-1), ValueError),
        (lambda: testing.transcript_messages(start=-1), ValueError),
        (lambda: testing.transcript_messages(start=2, end=1), ValueError),
        (lambda: testing.transcript_messages(end=math.inf), ValueError),
        (lambda: testing.transcript_messages(channels="left"), TypeError),
        (lambda: testing.transcript_messages(channels=[]), ValueError),
        (lambda: testing.transcript_messages(max_results=-1), ValueError),
        (lambda: testing.translation_messages(languages=[]), ValueError),
        (lambda: testing.audio_added_messages(max_seq_no=1, min_seq_no=2), ValueError),
        (lambda: testing.audio_added_messages(max_seq_no=1.5), TypeError),  # type: ignore[arg-type]
        (lambda: testing.info_messages(["nope"]), ValueError),
        (lambda: testing.warning_messages(["nope"]), ValueError),
        (lambda: testing.error_messages(["nope"]), ValueError),
        (lambda: testing.recognition_started_messages(channel_ids=[1]), ValueError),  # type: ignore[list-item]
        (lambda: testing.mutated_messages([1]), TypeError),  # type: ignore[arg-type]
        (lambda: testing.server_sessions(-1), ValueError),
        (lambda: testing.server_sessions(3, frame_seconds=0), ValueError),
        (lambda: testing.server_sessions(3, translation_languages="de"), ValueError),
    ],
)
def test_arguments_are_checked_eagerly(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


def test_warning_error_info_types_can_be_chosen() -> None:
    msg = example_of(testing.warning_messages(["duration_limit_exceeded"]))
    assert msg["type"] == "duration_limit_exceeded" and "duration_limit" in msg
    assert example_of(testing.error_messages(["quota_exceeded"]))["type"] == "quota_exceeded"
    info = example_of(testing.info_messages(["concurrent_session_usage"]))
    assert {"usage", "quota"} <= set(info)


# ============================================================================================
# Configurations produce spec-valid client messages
# ============================================================================================


@pytest.mark.fixtures
@given(
    testing.transcription_configs(),
    testing.audio_formats(),
    st.none() | testing.translation_configs(),
    st.none() | testing.audio_events_configs(),
)
def test_generated_configs_start_recognition_conforms_to_spec(
    spec: SpecSchemas,
    cfg: TranscriptionConfig,
    fmt: AudioFormat,
    translation: TranslationConfig | None,
    events: AudioEventsConfig | None,
) -> None:
    conn = ClientConnection(cfg, fmt, translation_config=translation, audio_events_config=events)
    conn.connection_opened(now=0.0)
    (action,) = conn.actions()
    assert isinstance(action, SendText)
    msg = json.loads(action.text)
    assert spec.errors("StartRecognition", msg) == []


@pytest.mark.fixtures
@pytest.mark.filterwarnings("ignore:TranscriptionConfig.operating_point:DeprecationWarning")
@given(testing.transcription_configs(extra=False), testing.mid_session_changes())
def test_mid_session_changes_are_valid(
    spec: SpecSchemas, cfg: TranscriptionConfig, changes: dict[str, Any]
) -> None:
    assert changes and set(changes) <= {
        "max_delay",
        "max_delay_mode",
        "enable_partials",
        "audio_filtering_config",
        "conversation_config",
    }
    conn = client_in(State.STREAMING, cfg)
    conn.set_recognition_config(**changes)
    (action,) = conn.actions()
    assert isinstance(action, SendText)
    assert spec.errors("SetRecognitionConfig", json.loads(action.text)) == []


# ============================================================================================
# Mutations
# ============================================================================================

BASE = {"message": "AudioAdded", "seq_no": 3}


@given(st.data())
def test_mutated_messages_are_text_and_differ_from_the_original(data: st.DataObject) -> None:
    base = data.draw(testing.server_messages(max_seq_no=10), label="base")
    text = data.draw(testing.mutated_messages(base))
    assert isinstance(text, str)
    assert text != json.dumps(base, ensure_ascii=False, separators=(",", ":"))


def _parses(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=lambda name: math.nan)
    except (ValueError, RecursionError):
        return ValueError


def _depth(text: str) -> int:
    depth = best = 0
    for char in text:
        if char in "[{":
            depth += 1
            best = max(best, depth)
        elif char in "]}":
            depth -= 1
    return best


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("truncated JSON", lambda t: _parses(t) is ValueError),
        ("a non-object", lambda t: not isinstance(_parses(t), dict | type)),
        ("a dropped key", lambda t: _parses(t) == {"message": "AudioAdded"}),
        (
            "another message type",
            lambda t: (
                isinstance(_parses(t), dict)
                and _parses(t).get("message") in ("EndOfStream", "AddTranscript", "Error")
            ),
        ),
        (
            "a string seq_no",
            lambda t: isinstance(_parses(t), dict) and type(_parses(t).get("seq_no")) is str,
        ),
        (
            "a float seq_no",
            lambda t: isinstance(_parses(t), dict) and type(_parses(t).get("seq_no")) is float,
        ),
        ("a null", lambda t: isinstance(_parses(t), dict) and _parses(t).get("seq_no", 0) is None),
        ("an unknown key", lambda t: isinstance(_parses(t), dict) and len(_parses(t)) == 3),
        ("deep nesting", lambda t: _depth(t) >= 990),
        ("a NaN or Infinity", lambda t: "NaN" in t or "Infinity" in t),
        ("a huge number", lambda t: "1e400" in t or len(t) > 5000),
    ],
)
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_mutated_messages_can_produce(what: str, condition: Any) -> None:
    example_of(testing.mutated_messages(BASE), condition)


@given(testing.fuzzed_messages(max_seq_no=3))
def test_fuzzed_messages_are_websocket_messages(data: str | bytes) -> None:
    assert isinstance(data, str | bytes)


@given(testing.mutated_message_texts(["Info"], max_seq_no=3))
def test_mutated_message_texts(text: str) -> None:
    assert isinstance(text, str)


# ============================================================================================
# Whole sessions
# ============================================================================================


def _check_plausible(frames: int, frame_seconds: float, texts: list[str]) -> None:
    """The guarantees server_sessions documents."""
    msgs = [json.loads(t) for t in texts]
    kinds = [m["message"] for m in msgs]
    first = kinds.index("RecognitionStarted")
    assert set(kinds[:first]) <= {"Info"} and first <= 2
    assert kinds.count("RecognitionStarted") == 1
    assert kinds[-1] == "EndOfTranscript" and kinds.count("EndOfTranscript") == 1
    assert not {"Error", "Warning", "SpeakersResult", "ChannelAudioAdded"} & set(kinds)
    acked = 0
    covered = 0.0
    for msg in msgs[first + 1 :]:
        kind = msg["message"]
        heard = acked * frame_seconds + 1e-9
        if kind == "AudioAdded":
            assert acked < msg["seq_no"] <= frames
            acked = msg["seq_no"]
        elif kind in ("AddTranscript", "AddPartialTranscript"):
            meta = msg["metadata"]
            assert "forced" not in msg
            assert meta["start_time"] == covered, "finals are contiguous"
            if kind == "AddTranscript":
                covered = meta["end_time"]
            assert meta["end_time"] <= heard
        elif kind == "EndOfUtterance" and msg["metadata"]:
            assert msg["metadata"]["end_time"] == covered
        elif kind == "AudioEventStarted":
            assert msg["event"]["start_time"] <= heard
        elif kind == "AudioEventEnded":
            assert msg["event"]["end_time"] <= heard
    assert acked == frames
    if frames:
        assert math.isclose(covered, frames * frame_seconds)


@given(st.data())
def test_server_sessions_are_plausible(data: st.DataObject) -> None:
    frames = data.draw(st.integers(0, 30), label="frames")
    frame_seconds = data.draw(st.sampled_from([0.02, 0.1, 0.25]), label="frame_seconds")
    texts = data.draw(
        testing.server_sessions(
            frames,
            frame_seconds=frame_seconds,
            translation_languages=data.draw(st.sampled_from([(), ("de",), ("de", "fr")])),
            audio_events=data.draw(st.booleans()),
            partials=data.draw(st.booleans()),
        )
    )
    _check_plausible(frames, frame_seconds, texts)


@pytest.mark.fixtures
@given(st.integers(0, 12).flatmap(lambda n: st.tuples(st.just(n), testing.server_sessions(n))))
def test_server_sessions_conform_to_the_spec(
    spec: SpecSchemas, case: tuple[int, list[str]]
) -> None:
    for text in case[1]:
        assert spec.message_errors(json.loads(text)) == []


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_server_sessions_drive_a_client_to_closed(data: st.DataObject) -> None:
    frames = data.draw(st.integers(0, 40), label="frames")
    languages = data.draw(st.sampled_from([(), ("de",)]), label="languages")
    texts = data.draw(
        testing.server_sessions(
            frames, translation_languages=languages, audio_events=data.draw(st.booleans())
        ),
        label="session",
    )
    cfg = data.draw(testing.transcription_configs(extra=False), label="config")
    fmt = data.draw(testing.audio_formats(), label="format")
    conn = ClientConnection(
        cfg,
        fmt,
        translation_config=TranslationConfig(languages) if languages else None,
        audio_events_config=AudioEventsConfig(),
    )
    conn.connection_opened(now=0.0)
    assembler = TranscriptAssembler()
    events: list[Event] = []
    sent = 0
    now = 0.0

    def send(upto: int) -> None:
        nonlocal sent
        while sent < upto:
            sent += 1
            assert conn.send_audio(FRAME, now=now) == sent

    for text in texts:
        now += 0.01
        msg = json.loads(text)
        if conn.state is State.STREAMING:
            if msg["message"] == "AudioAdded":
                send(msg["seq_no"])
            send(sent + data.draw(st.integers(0, frames - sent), label="extra frames"))
            if msg["message"] == "EndOfTranscript" or (
                sent == frames and data.draw(st.booleans(), label="end early")
            ):
                send(frames)
                conn.end_of_stream(now=now)
        conn.receive_message(text, now=now)
        while (event := conn.next_event()) is not None:
            assert isinstance(event, Event)
            assembler.add(event)
            events.append(event)
    assert conn.state is State.CLOSED
    assert conn.failure is None
    assert conn.frames_sent == conn.frames_acknowledged == frames
    assert conn.audio_in_flight.frames == 0
    assert isinstance(events[0], RecognitionStarted) or events[0].raw["message"] == "Info"
    assert isinstance(events[-1], EndOfTranscript)
    assert [e.seq_no for e in events if isinstance(e, AudioAdded)] == sorted(
        {e.seq_no for e in events if isinstance(e, AudioAdded)}
    )
    assert isinstance(conn.actions()[-1], CloseTransport)
    assert conn.get_timer() is None
    assert isinstance(assembler.text, str)


def test_the_module_docstring_example_runs() -> None:
    doc = testing.__doc__ or ""
    block = doc.split("runs this example)::\n", 1)[1].split("\n\nEverything returns", 1)[0]
    code = textwrap.dedent(block)
    namespace: dict[str, Any] = {}
    exec(compile(code, "<smproto.testing docstring>", "exec"), namespace)
    for name in ("test_garbage", "test_session"):
        settings(max_examples=20)(namespace[name])()
