"""Behaviour of the client engine, driven by hand with no event loop."""

from __future__ import annotations

import base64
import gc
import json
import weakref
from typing import Any

import pytest

from smproto import (
    AudioEventsConfig,
    AudioFormat,
    ClientConnection,
    CloseTransport,
    ConfigError,
    ConversationConfig,
    FailureKind,
    LocalProtocolError,
    RemoteProtocolError,
    SendBinary,
    SendText,
    State,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto.events import (
    AddPartialTranscript,
    AddPartialTranslation,
    AddTranscript,
    AddTranslation,
    AudioAdded,
    AudioEventEnded,
    AudioEventStarted,
    ChannelAudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    EndOfUtterance,
    RecognitionStarted,
    ServerError,
    ServerInfo,
    ServerWarning,
    SpeakersResult,
    UnknownMessage,
)
from tests.support import FRAME, client_in, recognition_started


def sent_json(conn: ClientConnection) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in conn.actions() if isinstance(a, SendText)]


def msg(**fields: Any) -> str:
    return json.dumps(fields)


def transcript(
    kind: str = "AddTranscript", start: float = 0.0, end: float = 1.0, **extra: Any
) -> str:
    words = extra.pop("words", [])
    results = [
        {
            "type": "word",
            "start_time": s,
            "end_time": e,
            "alternatives": [{"content": w, "confidence": 0.9}],
        }
        for w, s, e in words
    ]
    body = {
        "message": kind,
        "format": "2.9",
        "results": results,
        "metadata": {
            "start_time": start,
            "end_time": end,
            "transcript": " ".join(w for w, *_ in words),
        },
    }
    body.update(extra)
    return json.dumps(body)


# --------------------------------------------------------------------------- a whole session


def test_whole_session() -> None:
    conn = ClientConnection(
        TranscriptionConfig(language="en", enable_partials=True),
        AudioFormat(encoding="pcm_s16le", sample_rate=16000),
        translation_config=TranslationConfig(target_languages=["de"]),
        audio_events_config=AudioEventsConfig(types=["music"]),
    )
    assert conn.state is State.CONNECTING
    conn.connection_opened(now=0.0)
    (start,) = sent_json(conn)
    assert start == {
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "transcription_config": {"language": "en", "enable_partials": True},
        "translation_config": {"target_languages": ["de"]},
        "audio_events_config": {"types": ["music"]},
    }
    assert conn.state is State.AWAITING_RECOGNITION_STARTED
    # Info may arrive before RecognitionStarted.
    conn.receive_message(
        msg(message="Info", type="concurrent_session_usage", reason="1 of 2", usage=1), now=0.1
    )
    conn.receive_message(recognition_started(), now=0.2)
    assert conn.state is State.STREAMING
    assert [conn.send_audio(FRAME) for _ in range(3)] == [1, 2, 3]
    actions = conn.actions()
    assert actions == [SendBinary(FRAME)] * 3
    conn.receive_message(msg(message="AudioAdded", seq_no=1), now=0.3)
    conn.receive_message(
        transcript("AddPartialTranscript", 0, 0.2, words=[("hel", 0, 0.2)]), now=0.4
    )
    conn.receive_message(transcript("AddTranscript", 0, 0.3, words=[("hello", 0, 0.3)]), now=0.5)
    conn.end_of_stream()
    # last_seq_no is the number of frames *sent*, not acknowledged.
    assert sent_json(conn) == [{"message": "EndOfStream", "last_seq_no": 3}]
    assert conn.state is State.DRAINING
    conn.receive_message(msg(message="AudioAdded", seq_no=3), now=0.6)
    conn.receive_message(msg(message="EndOfTranscript"), now=0.7)
    assert conn.state is State.CLOSED
    assert conn.actions() == [CloseTransport(1000, "")]
    conn.connection_closed(1000, "", now=0.8)
    events = conn.events()
    assert [type(e) for e in events] == [
        ServerInfo,
        RecognitionStarted,
        AudioAdded,
        AddPartialTranscript,
        AddTranscript,
        AudioAdded,
        EndOfTranscript,
        ConnectionClosed,
    ]
    info = events[0]
    assert isinstance(info, ServerInfo)
    assert (info.type, info.reason, info.raw["usage"]) == ("concurrent_session_usage", "1 of 2", 1)
    started = events[1]
    assert isinstance(started, RecognitionStarted)
    assert started.id == "test-session"
    assert started.language_pack_info is not None
    assert started.language_pack_info.language_description == "English"
    assert conn.recognition_started is started
    assert events[3].text == "hel"  # type: ignore[attr-defined]
    final = events[4]
    assert isinstance(final, AddTranscript) and final.is_final and final.text == "hello"
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.failure is None and closed.code == 1000
    assert conn.next_event() is None


def test_every_event_keeps_raw() -> None:
    conn = client_in(State.STREAMING)
    text = msg(
        message="Info", type="recognition_quality", reason="x", quality="broadcast", new_field=[1]
    )
    conn.receive_message(text, now=1.0)
    (event,) = conn.events()
    assert event.raw == json.loads(text)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- audio and acks


def test_audio_refused_before_streaming_and_after_end() -> None:
    conn = client_in(State.AWAITING_RECOGNITION_STARTED)
    with pytest.raises(
        LocalProtocolError, match=r"AWAITING_RECOGNITION_STARTED.*expected STREAMING"
    ):
        conn.send_audio(FRAME)
    conn = client_in(State.DRAINING)
    with pytest.raises(LocalProtocolError, match="DRAINING"):
        conn.send_audio(FRAME)


def test_audio_types() -> None:
    conn = client_in(State.STREAMING)
    assert conn.send_audio(bytearray(FRAME)) == 1
    assert conn.send_audio(memoryview(FRAME)) == 2
    assert all(isinstance(a, SendBinary) and type(a.data) is bytes for a in conn.actions())
    with pytest.raises(TypeError):
        conn.send_audio("not audio")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="non-empty"):
        conn.send_audio(b"")


def test_in_flight_and_window() -> None:
    conn = client_in(State.STREAMING, max_audio_in_flight_seconds=0.5)
    for _ in range(4):
        conn.send_audio(FRAME)
    assert conn.audio_in_flight == (4, 4 * len(FRAME), pytest.approx(0.4))
    assert not conn.audio_window_full
    conn.send_audio(FRAME)
    assert conn.audio_window_full
    # A cumulative ack (skipping numbers) releases every frame up to it.
    conn.receive_message(msg(message="AudioAdded", seq_no=3), now=1.0)
    assert conn.audio_in_flight.frames == 2
    assert conn.audio_in_flight.seconds == pytest.approx(0.2)
    assert not conn.audio_window_full
    assert (conn.frames_sent, conn.frames_acknowledged) == (5, 3)
    # A repeated ack is harmless.
    conn.receive_message(msg(message="AudioAdded", seq_no=3), now=1.1)
    assert conn.state is State.STREAMING


@pytest.mark.parametrize(
    ("seq_no", "match"), [(2, "goes backwards"), (6, "only 5 were sent"), ("7", "integer")]
)
def test_bad_acks_fail_the_connection(seq_no: object, match: str) -> None:
    conn = client_in(State.STREAMING)
    for _ in range(5):
        conn.send_audio(FRAME)
    conn.receive_message(msg(message="AudioAdded", seq_no=3), now=1.0)
    conn.actions()
    with pytest.raises(RemoteProtocolError, match=match) as info:
        conn.receive_message(msg(message="AudioAdded", seq_no=seq_no), now=1.1)
    assert conn.state is State.FAILED
    assert conn.failure is not None and conn.failure.kind is FailureKind.REMOTE_PROTOCOL_ERROR
    assert not conn.failure.retryable
    (close,) = conn.actions()
    assert close == info.value.close_action
    assert isinstance(close, CloseTransport) and close.code == 1002
    assert len(close.reason.encode()) <= 123


def test_ack_before_any_audio_is_a_protocol_error() -> None:
    conn = client_in(State.STREAMING)
    with pytest.raises(RemoteProtocolError, match="only 0 were sent"):
        conn.receive_message(msg(message="AudioAdded", seq_no=1), now=1.0)


def test_late_messages_after_failure_are_ignored() -> None:
    conn = client_in(State.FAILED)
    conn.receive_message(transcript(), now=2.0)
    conn.receive_message("not json", now=2.0)
    conn.receive_message(b"\x00", now=2.0)
    assert conn.events() == [] and conn.actions() == []


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{not json", 1002),
        ("[1, 2]", 1002),
        ('{"message": 5}', 1002),
        ('{"message": ["AudioAdded"]}', 1002),
        ('{"seq_no": 1}', 1002),
        ('{"message": "AddTranscript", "results": "x"}', 1002),
        ('{"message": "RecognitionStarted", "language_pack_info": 3}', 1002),
        ('{"message": "AudioAdded", "seq_no": NaN}', 1002),
        ('{"message": "AudioAdded", "seq_no": 1} trailing', 1002),
        (b"\x00\x01", 1003),
    ],
)
def test_malformed_input(data: str | bytes, code: int) -> None:
    conn = client_in(State.STREAMING, frames=1)
    with pytest.raises(RemoteProtocolError):
        conn.receive_message(data, now=1.0)
    assert conn.state is State.FAILED
    (close,) = conn.actions()
    assert isinstance(close, CloseTransport) and close.code == code


def test_whitespace_around_json_is_fine() -> None:
    conn = client_in(State.STREAMING, frames=1)
    conn.receive_message(' \n{"message": "AudioAdded", "seq_no": 1}\n ', now=1.0)
    assert isinstance(conn.next_event(), AudioAdded)


def test_receive_before_open_is_local_misuse() -> None:
    conn = client_in(State.CONNECTING)
    with pytest.raises(LocalProtocolError, match="connection_opened"):
        conn.receive_message(recognition_started(), now=0.0)


def test_unknown_message_is_an_event_not_a_crash() -> None:
    conn = client_in(State.STREAMING)
    conn.receive_message(msg(message="BrandNewThing", value=1), now=1.0)
    (event,) = conn.events()
    assert isinstance(event, UnknownMessage)
    assert event.message == "BrandNewThing" and event.raw["value"] == 1
    assert conn.state is State.STREAMING


# --------------------------------------------------------------------------- server errors


@pytest.mark.parametrize(
    ("etype", "retryable"),
    [
        ("quota_exceeded", True),
        ("job_error", True),
        ("invalid_config", False),
        ("not_authorised", False),
    ],
)
def test_server_error(etype: str, retryable: bool) -> None:
    conn = client_in(State.AWAITING_RECOGNITION_STARTED)
    conn.receive_message(msg(message="Error", type=etype, reason="because", code=4005), now=1.0)
    (event,) = conn.events()
    assert isinstance(event, ServerError)
    assert (event.type, event.reason, event.code, event.retryable) == (
        etype,
        "because",
        4005,
        retryable,
    )
    assert conn.state is State.FAILED
    assert conn.failure is not None
    assert conn.failure.kind is FailureKind.SERVER_ERROR
    assert conn.failure.error_type == etype and conn.failure.retryable is retryable
    assert etype in conn.failure.reason and "because" in conn.failure.reason
    assert isinstance(conn.actions()[-1], CloseTransport)
    with pytest.raises(LocalProtocolError, match="because"):
        conn.end_of_stream()


def test_error_with_odd_fields_still_fails_the_session() -> None:
    conn = client_in(State.STREAMING)
    conn.receive_message(msg(message="Error", type=7, reason=None), now=1.0)
    (event,) = conn.events()
    assert isinstance(event, ServerError) and event.type == "unknown_error"
    assert conn.state is State.FAILED


def test_duration_limit_moves_to_draining() -> None:
    conn = client_in(State.STREAMING, frames=2)
    conn.receive_message(
        msg(message="Warning", type="duration_limit_exceeded", reason="limit", duration_limit=7200),
        now=1.0,
    )
    (event,) = conn.events()
    assert isinstance(event, ServerWarning) and event.duration_limit == 7200
    assert conn.state is State.DRAINING
    with pytest.raises(LocalProtocolError):
        conn.send_audio(FRAME)
    conn.end_of_stream()  # ignored: the server already treats the stream as ended
    assert conn.actions() == []
    conn.receive_message(msg(message="EndOfTranscript"), now=2.0)
    assert conn.state is State.CLOSED


# --------------------------------------------------------------------------- transcripts


def test_channel_at_root_or_in_results() -> None:
    conn = client_in(State.STREAMING)
    conn.receive_message(transcript(words=[("a", 0, 0.1)], channel="left"), now=1.0)
    body = json.loads(transcript(words=[("b", 0, 0.1)]))
    body["results"][0]["channel"] = "right"
    conn.receive_message(json.dumps(body), now=1.0)
    left, right = conn.events()
    assert isinstance(left, AddTranscript) and left.channel == "left"
    assert isinstance(right, AddTranscript) and right.channel == "right"
    assert right.results[0].channel == "right"


def test_empty_transcripts_are_normal() -> None:
    conn = client_in(State.STREAMING)
    conn.receive_message(transcript("AddPartialTranscript", 0.5, 0.5), now=1.0)
    conn.receive_message(transcript("AddTranscript", 0.0, 0.5), now=1.0)
    partial, final = conn.events()
    assert partial.text == "" and final.text == ""  # type: ignore[attr-defined]
    assert conn.state is State.STREAMING


def test_forced_and_format() -> None:
    conn = client_in(State.STREAMING)
    conn.receive_message(transcript(words=[("x", 0, 1)], forced=True), now=1.0)
    (event,) = conn.events()
    assert isinstance(event, AddTranscript)
    assert event.forced and event.format == "2.9"
    assert event.transcript == "x"


def test_translation_utterance_audio_events_speakers() -> None:
    conn = client_in(State.STREAMING)
    for text in (
        msg(
            message="AddPartialTranslation",
            language="de",
            results=[{"content": "Hal", "start_time": 0, "end_time": 1}],
        ),
        msg(
            message="AddTranslation",
            format="2.9",
            language="de",
            results=[
                {"content": "Hallo.", "start_time": 0, "end_time": 1, "speaker": "S1"},
                {"content": "Wie geht's?", "start_time": 1, "end_time": 2},
            ],
        ),
        msg(
            message="EndOfUtterance", metadata={"start_time": 2.5, "end_time": 2.5}, channel="left"
        ),
        msg(
            message="AudioEventStarted", event={"type": "music", "start_time": 3, "confidence": 0.8}
        ),
        msg(message="AudioEventEnded", event={"type": "music", "end_time": 4}),
        msg(message="SpeakersResult", speakers=[{"label": "S1", "speaker_identifiers": ["abc"]}]),
    ):
        conn.receive_message(text, now=1.0)
    partial, final, eou, started, ended, speakers = conn.events()
    assert isinstance(partial, AddPartialTranslation) and not partial.is_final
    assert isinstance(final, AddTranslation) and final.is_final
    assert final.text == "Hallo. Wie geht's?" and final.results[0].speaker == "S1"
    assert isinstance(eou, EndOfUtterance) and (eou.start_time, eou.channel) == (2.5, "left")
    assert isinstance(started, AudioEventStarted) and (started.type, started.confidence) == (
        "music",
        0.8,
    )
    assert isinstance(ended, AudioEventEnded) and ended.end_time == 4
    assert isinstance(speakers, SpeakersResult)
    assert speakers.speakers[0].label == "S1" and speakers.speakers[0].speaker_identifiers == (
        "abc",
    )


# --------------------------------------------------------------------------- timers


def test_recognition_started_timeout() -> None:
    conn = ClientConnection(TranscriptionConfig(), recognition_started_timeout=5.0)
    assert conn.get_timer() is None
    conn.connection_opened(now=100.0)
    assert conn.get_timer() == 105.0
    conn.handle_timer(now=104.9)  # early: nothing happens
    assert conn.state is State.AWAITING_RECOGNITION_STARTED
    conn.actions()
    conn.handle_timer(now=105.0)
    assert conn.state is State.FAILED
    assert conn.failure is not None
    assert (conn.failure.kind, conn.failure.timer, conn.failure.retryable) == (
        FailureKind.TIMEOUT,
        "recognition_started",
        True,
    )
    assert "RecognitionStarted" in conn.failure.reason
    (close,) = conn.actions()
    assert isinstance(close, CloseTransport) and close.code == 1001
    assert conn.get_timer() is None


def test_ack_stall_timeout() -> None:
    conn = client_in(State.STREAMING, ack_timeout=2.0)
    assert conn.get_timer() is None  # nothing in flight
    conn.send_audio(FRAME, now=10.0)
    assert conn.get_timer() == 12.0
    conn.send_audio(FRAME, now=11.0)
    assert conn.get_timer() == 12.0  # measured from the oldest unacknowledged progress
    conn.receive_message(msg(message="AudioAdded", seq_no=1), now=11.5)
    assert conn.get_timer() == 13.5
    conn.receive_message(msg(message="AudioAdded", seq_no=2), now=11.6)
    assert conn.get_timer() is None
    conn.send_audio(FRAME, now=20.0)
    conn.handle_timer(now=22.0)
    assert conn.state is State.FAILED
    assert conn.failure is not None and conn.failure.timer == "ack"
    assert "1 frames" in conn.failure.reason


def test_drain_timeout() -> None:
    conn = client_in(State.STREAMING, drain_timeout=3.0)
    conn.end_of_stream(now=50.0)
    assert conn.get_timer() == 53.0
    conn.handle_timer(now=53.0)
    assert conn.state is State.FAILED
    assert conn.failure is not None and conn.failure.timer == "drain"


def test_commands_use_the_latest_input_time_without_now() -> None:
    conn = client_in(State.STREAMING, ack_timeout=2.0)
    conn.receive_message(msg(message="Info", type="recognition_quality", reason=""), now=40.0)
    conn.send_audio(FRAME)
    assert conn.get_timer() == 42.0


# --------------------------------------------------------------------------- closing


def test_connection_lost_before_end_of_transcript() -> None:
    conn = client_in(State.STREAMING)
    conn.connection_closed(None, "", now=1.0)
    assert conn.state is State.FAILED
    assert conn.failure is not None
    assert conn.failure.kind is FailureKind.CONNECTION_LOST and conn.failure.retryable
    (closed,) = conn.events()
    assert isinstance(closed, ConnectionClosed) and closed.failure is conn.failure
    conn.connection_closed(None, "", now=1.1)  # reported once
    assert conn.events() == []


def test_close_codes_that_cannot_be_retried() -> None:
    conn = client_in(State.STREAMING)
    conn.connection_closed(4001, "not authorised", now=1.0)
    assert conn.failure is not None and not conn.failure.retryable
    assert conn.failure.close_code == 4001 and "not authorised" in conn.failure.reason


def test_application_close() -> None:
    conn = client_in(State.STREAMING, frames=1)
    conn.close()
    assert conn.state is State.CLOSED
    assert conn.actions() == [CloseTransport(1000, "closed by client")]
    conn.close()
    assert conn.actions() == []
    conn.connection_closed(1000, "", now=1.0)
    (event,) = conn.events()
    assert isinstance(event, ConnectionClosed) and event.failure is None


# --------------------------------------------------------------------------- commands


def test_set_recognition_config() -> None:
    conn = client_in(State.STREAMING)
    new = conn.set_recognition_config(
        max_delay=2.0, conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.5)
    )
    assert conn.transcription_config is new and new.max_delay == 2.0
    (sent,) = sent_json(conn)
    assert sent["message"] == "SetRecognitionConfig"
    assert sent["transcription_config"]["max_delay"] == 2.0
    assert sent["transcription_config"]["conversation_config"] == {
        "end_of_utterance_silence_trigger": 0.5
    }
    with pytest.raises(LocalProtocolError, match="diarization cannot change mid-session"):
        conn.set_recognition_config(new.with_changes(diarization="speaker"))
    with pytest.raises(LocalProtocolError, match="language"):
        conn.set_recognition_config(language="de")
    with pytest.raises(LocalProtocolError, match="at least one"):
        conn.set_recognition_config()
    with pytest.raises(ConfigError, match="max_delay"):
        conn.set_recognition_config(max_delay=9.0)
    assert conn.actions() == []


def test_force_end_of_utterance() -> None:
    conn = client_in(State.STREAMING)
    for _ in range(5):
        conn.send_audio(FRAME)
    conn.actions()
    conn.force_end_of_utterance()
    conn.force_end_of_utterance(0.25, channel="left")
    assert sent_json(conn) == [
        {"message": "ForceEndOfUtterance", "timestamp": 0.5},
        {"message": "ForceEndOfUtterance", "timestamp": 0.25, "channel": "left"},
    ]
    with pytest.raises(LocalProtocolError):
        conn.force_end_of_utterance(-1.0)


def test_force_end_of_utterance_with_file_audio_has_no_default_timestamp() -> None:
    conn = client_in(State.STREAMING, audio_format=AudioFormat.file())
    conn.send_audio(b"RIFF....")
    conn.actions()
    conn.force_end_of_utterance()
    assert sent_json(conn) == [{"message": "ForceEndOfUtterance"}]


def test_get_speakers() -> None:
    conn = client_in(State.STREAMING)
    conn.get_speakers()
    conn.end_of_stream()
    conn.get_speakers(final=True)  # still allowed while draining
    assert [m for m in sent_json(conn) if m["message"] == "GetSpeakers"] == [
        {"message": "GetSpeakers", "final": False},
        {"message": "GetSpeakers", "final": True},
    ]


# --------------------------------------------------------------------------- multichannel


def multichannel(**options: Any) -> ClientConnection:
    config = TranscriptionConfig(
        language="en", diarization="channel", channel_diarization_labels=["left", "right"]
    )
    return client_in(State.STREAMING, config, **options)


def test_multichannel_session() -> None:
    conn = multichannel()
    assert conn.send_channel_audio("left", FRAME) == 1
    assert conn.send_channel_audio("left", FRAME) == 2
    assert conn.send_channel_audio("right", FRAME) == 1
    sent = sent_json(conn)
    assert [(m["message"], m["channel"]) for m in sent] == [
        ("AddChannelAudio", "left"),
        ("AddChannelAudio", "left"),
        ("AddChannelAudio", "right"),
    ]
    assert base64.b64decode(sent[0]["data"]) == FRAME
    conn.receive_message(msg(message="ChannelAudioAdded", channel="left", seq_no=2), now=1.0)
    (ack,) = conn.events()
    assert isinstance(ack, ChannelAudioAdded) and (ack.channel, ack.seq_no) == ("left", 2)
    assert conn.audio_in_flight.frames == 1
    with pytest.raises(LocalProtocolError, match="unknown channel"):
        conn.send_channel_audio("middle", FRAME)
    with pytest.raises(LocalProtocolError, match="mixed"):
        conn.send_audio(FRAME)
    conn.end_of_channel("left")
    assert conn.state is State.STREAMING
    with pytest.raises(LocalProtocolError, match="already ended"):
        conn.send_channel_audio("left", FRAME)
    conn.end_of_channel("right")
    assert conn.state is State.DRAINING
    assert sent_json(conn) == [
        {"message": "EndOfChannel", "channel": "left", "last_seq_no": 2},
        {"message": "EndOfChannel", "channel": "right", "last_seq_no": 1},
    ]


def test_multichannel_end_of_stream_ends_every_channel() -> None:
    conn = multichannel()
    conn.send_channel_audio("right", FRAME)
    conn.actions()
    conn.end_of_stream()
    assert sorted((m["channel"], m["last_seq_no"]) for m in sent_json(conn)) == [
        ("left", 0),
        ("right", 1),
    ]
    assert conn.state is State.DRAINING


def test_channel_ack_for_a_channel_never_sent() -> None:
    conn = multichannel()
    with pytest.raises(RemoteProtocolError, match="never sent"):
        conn.receive_message(msg(message="ChannelAudioAdded", channel="left", seq_no=1), now=1.0)


def test_single_stream_cannot_end_a_channel() -> None:
    conn = client_in(State.STREAMING, frames=1)
    with pytest.raises(LocalProtocolError, match="single-channel"):
        conn.end_of_channel("left")


# --------------------------------------------------------------------------- the object


def test_dropped_engine_is_garbage() -> None:
    conn = client_in(State.STREAMING, frames=3)
    conn.receive_message(transcript(words=[("a", 0, 0.1)]), now=1.0)
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None


def test_repr() -> None:
    conn = client_in(State.STREAMING, frames=2)
    text = repr(conn)
    assert "STREAMING" in text and "2 frames" in text


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_audio_in_flight_seconds": 0}, ValueError),
        ({"ack_timeout": float("nan")}, ValueError),
        ({"drain_timeout": True}, ValueError),
        ({"retain_audio_seconds": -1}, ValueError),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ClientConnection(TranscriptionConfig(), **kwargs)


def test_constructor_types() -> None:
    with pytest.raises(TypeError, match="TranscriptionConfig"):
        ClientConnection({"language": "en"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AudioFormat"):
        ClientConnection(TranscriptionConfig(), {"type": "raw"})  # type: ignore[arg-type]
