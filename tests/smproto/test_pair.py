"""Our client engine and server engine, talking through an in-memory link."""

from __future__ import annotations

import json

import pytest

from smproto import (
    AudioEventsConfig,
    AudioFormat,
    ClientConnection,
    FailureKind,
    Result,
    ServerState,
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
    SpeakerIdentity,
    SpeakersResult,
    TranslatedSentence,
)
from smproto.server_events import (
    AudioReceived,
    ChannelEnded,
    ClientDisconnected,
    ForceEndOfUtteranceRequested,
    RecognitionConfigChanged,
    SessionFailed,
    SpeakersRequested,
    StartRequested,
    StreamEnded,
)
from smproto.transcript import Alternative
from tests.pair import Pair
from tests.support import FRAME


def word(content: str, start: float, end: float, speaker: str | None = None) -> Result:
    return Result("word", start, end, (Alternative(content, 0.9, "en", speaker),))


def started(pair: Pair, **kwargs: object) -> None:
    (request,) = [e for e in pair.server_events if isinstance(e, StartRequested)]
    assert pair.server.state is ServerState.STARTING
    pair.server.start_recognition(session_id="s-1", **kwargs)  # type: ignore[arg-type]
    pair.pump()
    assert request.config.transcription_config == pair.client.transcription_config


def test_every_message_type_round_trips() -> None:
    config = TranscriptionConfig(
        language="en", enable_partials=True, diarization="speaker", max_delay=1.0
    )
    client = ClientConnection(
        config,
        AudioFormat(sample_rate=16000),
        translation_config=TranslationConfig(["de"], enable_partials=True),
        audio_events_config=AudioEventsConfig(types=["music"]),
    )
    pair = Pair.open(client=client, path="/v2/en?sm-sdk=test-1")
    request = pair.server_events[0]
    assert isinstance(request, StartRequested)
    assert (request.url_language, request.sdk) == ("en", "test-1")
    assert request.config.translation_config == TranslationConfig(["de"], enable_partials=True)
    pair.server.send_info("recognition_quality", "broadcast", quality="broadcast")
    started(pair)
    assert pair.client.state is State.STREAMING
    for _ in range(3):
        pair.client.send_audio(FRAME)
    pair.pump()
    audio = [e for e in pair.server_events if isinstance(e, AudioReceived)]
    assert [a.seq_no for a in audio] == [1, 2, 3] and audio[0].data == FRAME
    assert pair.client.audio_in_flight.frames == 0
    server = pair.server
    hello = [word("hello", 0.0, 0.2, "S1")]
    server.send_transcript(hello[:1], start_time=0.0, end_time=0.2, final=False)
    server.send_transcript(hello, start_time=0.0, end_time=0.3, final=True)
    server.send_end_of_utterance(0.3)
    server.send_translation("de", [TranslatedSentence("Hal", 0.0, 0.2)], final=False)
    server.send_translation("de", [TranslatedSentence("Hallo", 0.0, 0.3, "S1")], final=True)
    server.send_audio_event_started("music", 0.1, 0.75)
    server.send_audio_event_ended("music", 0.25)
    server.send_warning("speaker_id", "no speakers yet")
    pair.client.set_recognition_config(max_delay=2.5)
    pair.client.force_end_of_utterance()
    pair.client.get_speakers(final=True)
    pair.pump()
    changed = [e for e in pair.server_events if isinstance(e, RecognitionConfigChanged)]
    assert changed[0].config.max_delay == 2.5
    assert server.config is not None and server.config.transcription_config.max_delay == 2.5
    (feou,) = [e for e in pair.server_events if isinstance(e, ForceEndOfUtteranceRequested)]
    assert feou.timestamp == pytest.approx(0.3)
    assert [e.final for e in pair.server_events if isinstance(e, SpeakersRequested)] == [True]
    server.send_speakers([SpeakerIdentity("S1", ("id-1",))])
    pair.client.end_of_stream()
    pair.pump()
    (ended,) = [e for e in pair.server_events if isinstance(e, StreamEnded)]
    assert (ended.last_seq_no, ended.frames_received) == (3, 3)
    server.end_of_transcript()
    pair.pump()
    assert pair.client.state is State.CLOSED and server.state is ServerState.CLOSED
    types = [type(e) for e in pair.client_events]
    assert types == [
        ServerInfo,
        RecognitionStarted,
        AudioAdded,
        AudioAdded,
        AudioAdded,
        AddPartialTranscript,
        AddTranscript,
        EndOfUtterance,
        AddPartialTranslation,
        AddTranslation,
        AudioEventStarted,
        AudioEventEnded,
        ServerWarning,
        SpeakersResult,
        EndOfTranscript,
        ConnectionClosed,
    ]
    final = pair.client_events[6]
    assert isinstance(final, AddTranscript)
    assert final.text == "hello" and final.results == tuple(hello)
    assert final.transcript == "hello "
    rs = pair.client_events[1]
    assert isinstance(rs, RecognitionStarted) and rs.id == "s-1"
    closed = pair.client_events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.failure is None
    disconnected = pair.server_events[-1]
    assert isinstance(disconnected, ClientDisconnected) and disconnected.completed


def test_acks_wait_for_the_application() -> None:
    pair = Pair.open(TranscriptionConfig(language="en"))
    started(pair)
    for _ in range(5):
        pair.client.send_audio(FRAME)
    pair.pump(take_audio=False)
    assert pair.server.pending_audio_bytes == 5 * len(FRAME)
    assert pair.client.audio_in_flight.frames == 5
    assert isinstance(pair.server.next_event(), AudioReceived)
    assert isinstance(pair.server.next_event(), AudioReceived)
    pair.pump(take_audio=False)
    assert pair.client.audio_in_flight.frames == 3
    assert pair.server.pending_audio_bytes == 3 * len(FRAME)


def test_multichannel() -> None:
    config = TranscriptionConfig(
        language="en", diarization="channel", channel_diarization_labels=["agent", "caller"]
    )
    pair = Pair.open(config)
    started(pair)
    rs = next(e for e in pair.client_events if isinstance(e, RecognitionStarted))
    assert rs.channel_ids == ("agent", "caller")
    pair.client.send_channel_audio("agent", FRAME)
    pair.client.send_channel_audio("caller", FRAME)
    pair.client.send_channel_audio("caller", FRAME)
    pair.pump()
    audio = [(e.channel, e.seq_no) for e in pair.server_events if isinstance(e, AudioReceived)]
    assert audio == [("agent", 1), ("caller", 1), ("caller", 2)]
    acks = [(e.channel, e.seq_no) for e in pair.client_events if isinstance(e, ChannelAudioAdded)]
    assert acks == audio
    pair.server.send_transcript(
        [word("hi", 0, 0.1)], start_time=0, end_time=0.1, final=True, channel="caller"
    )
    pair.client.end_of_channel("agent")
    pair.pump()
    assert pair.server.state is ServerState.STREAMING
    pair.client.end_of_channel("caller")
    pair.pump()
    ends = [
        (e.channel, e.last_seq_no, e.last)
        for e in pair.server_events
        if isinstance(e, ChannelEnded)
    ]
    assert ends == [("agent", 1, False), ("caller", 2, True)]
    assert pair.server.state is ServerState.DRAINING
    pair.server.end_of_transcript()
    pair.pump()
    final = next(e for e in pair.client_events if isinstance(e, AddTranscript))
    assert final.channel == "caller"
    assert pair.client.state is State.CLOSED


@pytest.mark.parametrize(
    ("start_message", "error_type", "code"),
    [
        ({"transcription_config": {"language": "en", "max_delay": 9}}, "invalid_config", 1003),
        ({"transcription_config": {"language": "en", "bogus": 1}}, "invalid_config", 1003),
        (
            {"audio_format": {"type": "raw", "encoding": "opus", "sample_rate": 16000}},
            "invalid_audio_type",
            1003,
        ),
    ],
)
def test_bad_start_recognition(
    start_message: dict[str, object], error_type: str, code: int
) -> None:
    message = {
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "transcription_config": {"language": "en"},
    }
    message.update(start_message)
    client = ClientConnection(TranscriptionConfig())
    pair = Pair(client, __import__("smproto").ServerConnection())
    assert pair.server.handshake("/v2", {}, now=0).accepted
    client.connection_opened(now=0)
    client.actions()  # drop our own StartRecognition: send the crafted one instead
    pair.server.receive_message(json.dumps(message), now=0)
    pair.pump()
    error = next(e for e in pair.client_events if isinstance(e, ServerError))
    assert error.type == error_type
    closed = next(e for e in pair.client_events if isinstance(e, ConnectionClosed))
    assert closed.code == code
    assert pair.server.state is ServerState.FAILED
    failed = next(e for e in pair.server_events if isinstance(e, SessionFailed))
    assert (failed.error_type, failed.close_code) == (error_type, code)


def test_language_in_the_url_must_match() -> None:
    client = ClientConnection(TranscriptionConfig(language="de"))
    pair = Pair(client, __import__("smproto").ServerConnection())
    pair.server.handshake("/v2/en", {}, now=0)
    client.connection_opened(now=0)
    pair.pump()
    error = next(e for e in pair.client_events if isinstance(e, ServerError))
    assert error.type == "invalid_language"
    assert client.failure is not None and client.failure.kind is FailureKind.SERVER_ERROR


def test_recogniser_can_refuse() -> None:
    pair = Pair.open(TranscriptionConfig(language="xx"))
    pair.server.send_error("invalid_language", "xx is not supported")
    pair.pump()
    error = next(e for e in pair.client_events if isinstance(e, ServerError))
    assert (error.type, error.reason, error.retryable) == (
        "invalid_language",
        "xx is not supported",
        False,
    )
    closed = next(e for e in pair.client_events if isinstance(e, ConnectionClosed))
    assert closed.code == 4004


def test_quota_error_is_retryable_for_the_client() -> None:
    pair = Pair.open(TranscriptionConfig(language="en"))
    pair.server.send_error("quota_exceeded", "too many sessions")
    pair.pump()
    assert pair.client.failure is not None and pair.client.failure.retryable
    closed = next(e for e in pair.client_events if isinstance(e, ConnectionClosed))
    assert closed.code == 4005


def test_audio_after_end_of_stream_is_warned_and_ignored() -> None:
    pair = Pair.open(TranscriptionConfig(language="en"))
    started(pair)
    pair.client.send_audio(FRAME)
    pair.client.end_of_stream()
    pair.pump()
    pair.server.receive_message(FRAME, now=1.0)
    pair.server.receive_message(FRAME, now=1.0)
    pair.pump()
    warnings = [e for e in pair.client_events if isinstance(e, ServerWarning)]
    assert [w.type for w in warnings] == ["add_audio_after_eos"]
    assert len([e for e in pair.server_events if isinstance(e, AudioReceived)]) == 1


def test_duration_limit() -> None:
    pair = Pair.open(TranscriptionConfig(language="en"), max_audio_seconds=0.25)
    started(pair)
    for _ in range(3):
        pair.client.send_audio(FRAME)
    pair.pump()
    warning = next(e for e in pair.client_events if isinstance(e, ServerWarning))
    assert warning.type == "duration_limit_exceeded" and warning.duration_limit == 0.25
    assert pair.client.state is State.DRAINING
    assert pair.server.state is ServerState.DRAINING
    assert any(isinstance(e, StreamEnded) for e in pair.server_events)
    pair.server.end_of_transcript()
    pair.pump()
    assert pair.client.state is State.CLOSED


def test_idle_warnings_then_timeout() -> None:
    pair = Pair.open(
        TranscriptionConfig(language="en"), idle_timeout=10.0, idle_warnings=(6.0, 3.0)
    )
    started(pair)
    pair.client.send_audio(FRAME)
    pair.pump()
    assert pair.server.get_timer() == pytest.approx(4.0)
    pair.advance(4.0)
    pair.advance(3.0)
    warnings = [e for e in pair.client_events if isinstance(e, ServerWarning)]
    assert [w.type for w in warnings] == ["idle_timeout", "idle_timeout"]
    assert "timeout in 0.1m" in warnings[0].reason
    pair.client.send_audio(FRAME)  # audio resets the idle clock
    pair.pump()
    assert pair.server.get_timer() == pytest.approx(7.0 + 4.0)
    pair.advance(20.0)
    error = next(e for e in pair.client_events if isinstance(e, ServerError))
    assert error.type == "idle_timeout"
    closed = next(e for e in pair.client_events if isinstance(e, ConnectionClosed))
    assert closed.code == 1008


def test_session_timeout() -> None:
    pair = Pair.open(
        TranscriptionConfig(language="en"), session_timeout=5.0, session_warnings=(2.0,)
    )
    started(pair)
    pair.advance(3.0)
    pair.client.send_audio(FRAME)
    pair.advance(2.0)
    types = [(type(e).__name__, getattr(e, "type", None)) for e in pair.client_events]
    assert ("ServerWarning", "session_timeout") in types
    assert ("ServerError", "session_timeout") in types


def test_no_start_recognition_in_time() -> None:
    from smproto import ServerConnection

    server = ServerConnection(start_timeout=2.0)
    server.handshake("/v2/", {}, now=10.0)
    assert server.get_timer() == 12.0
    server.handle_timer(now=12.0)
    assert server.state is ServerState.FAILED
    texts = [json.loads(a.text) for a in server.actions() if hasattr(a, "text")]
    assert texts[0]["type"] == "protocol_error"


def test_server_closes_after_end_of_transcript_if_the_client_does_not() -> None:
    pair = Pair.open(TranscriptionConfig(language="en"), close_timeout=1.5)
    started(pair)
    pair.client.end_of_stream()
    pair.pump()
    pair.server.end_of_transcript()
    # The client engine would close at once; pretend it is slow by not pumping it.
    pair.server.actions()
    assert pair.server.get_timer() == pytest.approx(1.5)
    pair.server.handle_timer(now=1.5)
    (close,) = pair.server.actions()
    assert close.code == 1000  # type: ignore[union-attr]


def test_server_closes_right_after_end_of_transcript_by_default() -> None:
    """As Speechmatics does: clients that wait for the server's close (the LiveKit 1.0
    plugin) are not kept waiting."""
    pair = Pair.open(TranscriptionConfig(language="en"))
    started(pair)
    pair.client.end_of_stream()
    pair.pump()
    pair.server.end_of_transcript()
    actions = pair.server.actions()
    assert [type(a).__name__ for a in actions] == ["SendText", "CloseTransport"]
    assert json.loads(actions[0].text)["message"] == "EndOfTranscript"  # type: ignore[union-attr]
    assert actions[1].code == 1000  # type: ignore[union-attr]
    assert pair.server.get_timer() is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1"])
def test_close_timeout_is_validated(bad: object) -> None:
    from smproto import ServerConnection

    with pytest.raises(ValueError, match="close_timeout"):
        ServerConnection(close_timeout=bad)  # type: ignore[arg-type]


def test_client_vanishing_mid_stream() -> None:
    pair = Pair.open(TranscriptionConfig(language="en"))
    started(pair)
    pair.server.connection_closed(1006, "", now=1.0)
    assert pair.server.state is ServerState.FAILED
    event = pair.server.next_event()
    while event is not None and not isinstance(event, ClientDisconnected):
        event = pair.server.next_event()
    assert isinstance(event, ClientDisconnected) and not event.completed
