"""The server engine: every (state, input) cell of its rules table, fuzzing of its receive
path, and conformance of everything it sends."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import (
    ERROR_CLOSE_CODES,
    CloseTransport,
    LocalProtocolError,
    Result,
    SendText,
    ServerConnection,
    ServerState,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto._state import SERVER_INPUTS, SERVER_MACHINE, SERVER_RULES, Outcome
from smproto.config import start_recognition_message
from smproto.events import SpeakerIdentity, TranslatedSentence
from smproto.server_events import AudioReceived, SessionFailed, StartRequested
from smproto.testing import client_messages, fuzzed_client_messages, transcript_messages
from smproto.transcript import Alternative, parse_results
from tests.support import FRAME, spec_schemas

HEADERS = {"Authorization": "Bearer good"}


def start_message(**tc: Any) -> str:
    config = TranscriptionConfig(**({"language": "en", "enable_partials": True} | tc))
    from smproto import AudioFormat

    return json.dumps(
        start_recognition_message(
            config, AudioFormat(), TranslationConfig(["de"], enable_partials=True)
        )
    )


def server_in(state: ServerState, *, channels: bool = False, **options: Any) -> ServerConnection:
    """A server engine driven through its public API into ``state``."""
    server = ServerConnection(authorize=lambda token: token == "good", **options)
    if state is ServerState.HANDSHAKE:
        return server
    if state is ServerState.CLOSED:
        # The end of a whole session.
        server = server_in(ServerState.DRAINING, channels=channels, **options)
        server.end_of_transcript()
        _drain(server)
        return server
    assert server.handshake("/v2", HEADERS, now=0.0).accepted
    if state is ServerState.AWAITING_START:
        return _drain(server)
    if state is ServerState.FAILED:
        server.connection_closed(1006, "", now=0.1)
        return _drain(server)
    labels = (
        {"diarization": "channel", "channel_diarization_labels": ["a", "b"]} if channels else {}
    )
    server.receive_message(start_message(**labels), now=0.1)
    if state is ServerState.STARTING:
        return _drain(server)
    server.start_recognition(session_id="x")
    if channels:
        server.receive_message(json.dumps(_channel_audio("a")), now=0.2)
    else:
        server.receive_message(FRAME, now=0.2)
    if state is ServerState.STREAMING:
        return _drain(server)
    server.receive_message(json.dumps({"message": "EndOfStream", "last_seq_no": 1}), now=0.3)
    assert state is ServerState.DRAINING
    return _drain(server)


def _drain(server: ServerConnection) -> ServerConnection:
    while server.next_event() is not None:
        pass
    server.actions()
    return server


def _channel_audio(channel: str) -> dict[str, Any]:
    return {
        "message": "AddChannelAudio",
        "channel": channel,
        "data": base64.b64encode(FRAME).decode(),
    }


def _receive(message: dict[str, Any] | bytes) -> Callable[[ServerConnection], None]:
    data = message if isinstance(message, bytes) else json.dumps(message)
    return lambda server: server.receive_message(data, now=1.0)


WORD = Result("word", 0.0, 0.5, (Alternative("hi", 1.0),))

APPLY: dict[str, Callable[[ServerConnection], Any]] = {
    "handshake_accepted": lambda s: s.handshake("/v2", HEADERS, now=1.0),
    "handshake_rejected": lambda s: s.handshake("/v1", HEADERS, now=1.0),
    "connection_closed": lambda s: s.connection_closed(1006, "", now=1.0),
    "timer_expired": lambda s: s.handle_timer(now=1e9),
    "timer_warning": lambda s: s.handle_timer(now=10.0),
    "StartRecognition": lambda s: s.receive_message(start_message(), now=1.0),
    "<binary>": _receive(FRAME),
    "AddChannelAudio": _receive(_channel_audio("a")),
    "EndOfStream": _receive({"message": "EndOfStream", "last_seq_no": 1}),
    "EndOfChannel": _receive({"message": "EndOfChannel", "channel": "a", "last_seq_no": 1}),
    "EndOfChannel:last": _receive({"message": "EndOfChannel", "channel": "b", "last_seq_no": 0}),
    "SetRecognitionConfig": _receive(
        {"message": "SetRecognitionConfig", "transcription_config": {"max_delay": 2.0}}
    ),
    "ForceEndOfUtterance": _receive({"message": "ForceEndOfUtterance", "timestamp": 1.0}),
    "GetSpeakers": _receive({"message": "GetSpeakers", "final": False}),
    "<unknown>": _receive({"message": "Nonsense"}),
    "<unauthorised>": lambda s: s.receive_message(start_message(), now=1.0),
    "start_recognition": lambda s: s.start_recognition(session_id="y"),
    "send_result": lambda s: s.send_transcript([WORD], start_time=0, end_time=0.5, final=True),
    "send_notice": lambda s: s.send_info("recognition_quality", "ok", quality="broadcast"),
    "send_error": lambda s: s.send_error("job_error", "broken"),
    "<binary>:over_limit": lambda s: s.receive_message(FRAME * 10, now=1.0),
    "end_of_transcript": lambda s: s.end_of_transcript(),
    "close": lambda s: s.close(),
}


def _engine_for(name: str, state: ServerState) -> ServerConnection:
    if name in ("AddChannelAudio", "EndOfChannel", "EndOfChannel:last"):
        server = server_in(state, channels=True)
        if name == "EndOfChannel:last" and state is ServerState.STREAMING:
            server.receive_message(
                json.dumps({"message": "EndOfChannel", "channel": "a", "last_seq_no": 1}), now=0.5
            )
            _drain(server)
        return server
    if name == "<unauthorised>":
        server = server_in(state)
        server._auth_error = True  # as if the key had been refused in band
        return server
    if name == "<binary>:over_limit":
        return server_in(state, max_audio_seconds=0.5)
    if name == "timer_warning":
        return server_in(
            state,
            idle_timeout=100.0,
            idle_warnings=(95.0,),
            session_timeout=100.0,
            session_warnings=(95.0,),
        )
    return server_in(state)


def test_every_input_has_an_applier() -> None:
    assert set(APPLY) == set(SERVER_INPUTS)


def check_cell(state: ServerState, name: str) -> None:
    rule = SERVER_RULES[name][state]
    server = _engine_for(name, state)
    assert server.state is state
    apply = APPLY[name]
    if rule.outcome is Outcome.LOCAL_ERROR:
        with pytest.raises(LocalProtocolError) as info:
            apply(server)
        assert state.name in str(info.value)
        assert server.state is state
        assert server.actions() == []
    elif rule.outcome is Outcome.REMOTE_ERROR:
        apply(server)  # never raises: the client is answered in band
        assert server.state is ServerState.FAILED
        text, close = server.actions()[-2:]
        assert isinstance(text, SendText) and isinstance(close, CloseTransport)
        error = json.loads(text.text)
        assert error["message"] == "Error" and error["type"] == rule.detail
        assert close.code == ERROR_CLOSE_CODES[rule.detail or ""]
        assert any(isinstance(e, SessionFailed) for e in iter(server.next_event, None))
    elif rule.outcome is Outcome.IGNORE:
        apply(server)
        assert server.state is state
        assert server.actions() == []
        assert server.next_event() is None
    else:
        apply(server)
        if rule.trigger:
            transition = SERVER_MACHINE.events[rule.trigger].transitions[state.name][0]
            assert server.state is ServerState[transition.dest]
        else:
            assert server.state is state


@pytest.mark.parametrize("state", list(ServerState), ids=lambda s: s.name)
@pytest.mark.parametrize("name", SERVER_INPUTS)
def test_cell(state: ServerState, name: str) -> None:
    check_cell(state, name)


@given(st.sampled_from(list(ServerState)), st.sampled_from(SERVER_INPUTS))
def test_cell_sampled(state: ServerState, name: str) -> None:
    check_cell(state, name)


# --------------------------------------------------------------------------- the handshake


@pytest.mark.parametrize(
    ("path", "headers", "accepted", "status", "language"),
    [
        ("/v2", HEADERS, True, 101, None),
        ("/v2/", HEADERS, True, 101, None),
        ("/v2/en", HEADERS, True, 101, "en"),
        ("/v2/en?sm-sdk=python-rt-sdk-v1.2.1", HEADERS, True, 101, "en"),
        ("/v2?jwt=good", {}, True, 101, None),
        ("/v2?jwt=go%6Fd", {}, True, 101, None),
        ("/v2", {"authorization": "bearer good"}, True, 101, None),
        ("/v2", {}, False, 401, None),
        ("/v2", {"Authorization": "Basic good"}, False, 401, None),
        ("/v1", HEADERS, False, 404, None),
        ("/v2/en/extra", HEADERS, False, 404, None),
        ("/v2/e n", HEADERS, False, 404, None),
    ],
)
def test_handshake(
    path: str, headers: dict[str, str], accepted: bool, status: int, language: str | None
) -> None:
    server = ServerConnection(authorize=lambda token: token == "good")
    result = server.handshake(path, headers, now=0.0)
    assert (result.accepted, result.status, result.url_language) == (accepted, status, language)
    assert server.state is (ServerState.AWAITING_START if accepted else ServerState.CLOSED)
    assert "good" not in repr(result)


def test_sdk_is_recorded_and_the_token_is_not() -> None:
    server = ServerConnection()
    result = server.handshake("/v2?sm-sdk=smproto%2F0.1&jwt=secret-key", {}, now=0.0)
    assert result.sdk == "smproto/0.1" and result.authenticated
    assert "secret-key" not in repr(result) and "secret-key" not in repr(server)


def test_refused_key_in_band() -> None:
    """The Error answers the client's first message (StartRecognition), as the official
    clients expect; without one, it comes at the start timeout."""
    server = ServerConnection(authorize=lambda token: False)
    assert server.handshake("/v2", {"Authorization": "Bearer x"}, now=0.0).accepted
    assert server.actions() == []
    server.receive_message(start_message(), now=0.1)
    text, close = server.actions()
    assert json.loads(text.text)["type"] == "not_authorised"  # type: ignore[union-attr]
    assert close == CloseTransport(4001, "the API key was not accepted")
    assert server.state is ServerState.FAILED
    silent = ServerConnection(authorize=lambda token: False, start_timeout=1.0)
    silent.handshake("/v2", {"Authorization": "Bearer x"}, now=0.0)
    silent.handle_timer(now=1.0)
    assert json.loads(silent.actions()[0].text)["type"] == "not_authorised"  # type: ignore[union-attr]


def test_an_authorizer_that_crashes_refuses() -> None:
    def broken(token: str) -> bool:
        raise RuntimeError("database down")

    server = ServerConnection(authorize=broken, auth_failure="handshake")
    assert server.handshake("/v2", HEADERS, now=0.0).status == 401


# --------------------------------------------------------------------------- details


def test_last_seq_no_lower_than_received_is_tolerated() -> None:
    """The official clients send the last *acknowledged* frame as last_seq_no."""
    server = server_in(ServerState.STREAMING)
    for _ in range(4):
        server.receive_message(FRAME, now=1.0)
    server.receive_message(json.dumps({"message": "EndOfStream", "last_seq_no": 2}), now=1.0)
    events = list(iter(server.next_event, None))
    ended = events[-1]
    assert (ended.last_seq_no, ended.frames_received) == (2, 5)  # type: ignore[attr-defined]
    assert server.state is ServerState.DRAINING


def test_audio_is_acknowledged_only_when_taken() -> None:
    server = server_in(ServerState.STREAMING)
    server.receive_message(FRAME, now=1.0)
    assert server.actions() == []
    assert server.pending_audio_bytes == len(FRAME)
    event = server.next_event()
    assert isinstance(event, AudioReceived) and event.seq_no == 2
    assert server.actions() == [SendText('{"message":"AudioAdded","seq_no":2}')]
    assert server.pending_audio_bytes == 0


def test_bad_set_recognition_config_is_invalid_config() -> None:
    server = server_in(ServerState.STREAMING)
    server.receive_message(
        json.dumps(
            {"message": "SetRecognitionConfig", "transcription_config": {"diarization": "speaker"}}
        ),
        now=1.0,
    )
    error = json.loads(server.actions()[0].text)  # type: ignore[union-attr]
    assert error["type"] == "invalid_config" and "mid-session" in error["reason"]


def test_partials_only_when_enabled() -> None:
    server = ServerConnection()
    server.handshake("/v2", {}, now=0)
    server.receive_message(start_message(enable_partials=False), now=0)
    server.start_recognition()
    with pytest.raises(LocalProtocolError, match="partials"):
        server.send_transcript([WORD], start_time=0, end_time=1, final=False)
    with pytest.raises(LocalProtocolError, match="target language"):
        server.send_translation("fr", [TranslatedSentence("x", 0, 1)], final=True)


def test_end_of_transcript_needs_all_audio_taken() -> None:
    server = server_in(ServerState.STREAMING)
    server.receive_message(FRAME, now=1.0)
    server.receive_message(json.dumps({"message": "EndOfStream", "last_seq_no": 2}), now=1.0)
    with pytest.raises(LocalProtocolError, match="AudioReceived"):
        server.end_of_transcript()


def test_empty_translation_targets_are_warned() -> None:
    server = ServerConnection()
    server.handshake("/v2", {}, now=0)
    from smproto import AudioFormat

    message = start_recognition_message(TranscriptionConfig(), AudioFormat(), TranslationConfig([]))
    server.receive_message(json.dumps(message), now=0)
    assert isinstance(server.next_event(), StartRequested)
    server.start_recognition()
    texts = [json.loads(a.text) for a in server.actions() if isinstance(a, SendText)]
    assert [t.get("type") for t in texts] == [None, "empty_translation_target_list"]


# --------------------------------------------------------------------------- fuzzing

ERROR_REPLIES = {
    "invalid_message",
    "protocol_error",
    "invalid_config",
    "invalid_audio_type",
    "invalid_language",
}


def check_reply(server: ServerConnection, before: ServerState) -> None:
    """After any input the server either carried on or answered with a documented Error
    and its close code, and is FAILED."""
    actions = server.actions()
    if server.state is ServerState.FAILED and before is not ServerState.FAILED:
        text, close = actions[-2:]
        assert isinstance(text, SendText) and isinstance(close, CloseTransport)
        error = json.loads(text.text)
        assert error["message"] == "Error" and error["type"] in ERROR_REPLIES
        assert close.code == ERROR_CLOSE_CODES[error["type"]]
    for action in actions:
        if isinstance(action, SendText):
            assert json.loads(action.text)["message"] in (
                "AudioAdded",
                "ChannelAudioAdded",
                "Warning",
                "Error",
                "RecognitionStarted",
                "Info",
            )
    while (event := server.next_event()) is not None:
        assert event is not None


FUZZ_STATES = [
    ServerState.AWAITING_START,
    ServerState.STARTING,
    ServerState.STREAMING,
    ServerState.DRAINING,
]


@pytest.mark.parametrize("state", FUZZ_STATES, ids=lambda s: s.name)
@given(data=st.lists(fuzzed_client_messages(channels=["a", "b"]), min_size=1, max_size=6))
def test_fuzzed_client_input(state: ServerState, data: list[str | bytes]) -> None:
    server = server_in(state, channels=True)
    for message in data:
        before = server.state
        server.receive_message(message, now=1.0)  # never raises
        check_reply(server, before)


@given(data=st.lists(fuzzed_client_messages(), min_size=1, max_size=4))
def test_fuzzed_single_stream_input(data: list[str | bytes]) -> None:
    server = server_in(ServerState.STREAMING)
    for message in data:
        before = server.state
        server.receive_message(message, now=1.0)
        check_reply(server, before)


@given(client_messages())
def test_valid_messages_out_of_place_get_protocol_error(message: dict[str, Any]) -> None:
    server = server_in(ServerState.AWAITING_START)
    server.receive_message(json.dumps(message), now=1.0)
    if message["message"] == "StartRecognition":
        assert server.state in (ServerState.STARTING, ServerState.FAILED)
    else:
        assert server.state is ServerState.FAILED
        error = json.loads(server.actions()[-2].text)  # type: ignore[union-attr]
        assert error["type"] == "protocol_error"


def test_huge_text_messages_are_refused() -> None:
    server = server_in(ServerState.STREAMING, max_message_bytes=1000)
    server.receive_message(json.dumps({"message": "GetSpeakers", "pad": "x" * 2000}), now=1.0)
    assert server.state is ServerState.FAILED
    assert json.loads(server.actions()[0].text)["type"] == "invalid_message"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- conformance


@given(transcript_messages(final=True) | transcript_messages(final=False), st.booleans())
def test_everything_the_server_sends_conforms(message: dict[str, Any], with_channel: bool) -> None:
    spec = spec_schemas()
    server = server_in(ServerState.STREAMING)
    results = parse_results(message["results"])
    meta = message["metadata"]
    channel = "a" if with_channel else None
    server.send_transcript(
        results,
        start_time=meta["start_time"],
        end_time=meta["end_time"],
        final=message["message"] == "AddTranscript",
        channel=channel,
    )
    server.send_end_of_utterance(meta["end_time"], channel=channel)
    server.send_translation("de", [TranslatedSentence("Hallo", 0.0, 1.0, "S1")], final=True)
    server.send_translation("de", [TranslatedSentence("Hal", 0.0, 1.0)], final=False)
    server.send_audio_event_started("music", 1.0, 0.5, channel=channel)
    server.send_audio_event_ended("music", 2.0, channel=channel)
    server.send_speakers([SpeakerIdentity("S1", ("abc",))])
    server.send_info("recognition_quality", "broadcast", quality="broadcast")
    server.send_warning("speaker_id", "nothing yet")
    server.receive_message(json.dumps({"message": "EndOfStream", "last_seq_no": 1}), now=1.0)
    _ = list(iter(server.next_event, None))
    server.end_of_transcript()
    server.send_error  # noqa: B018 - an error after the end is ignored, tested elsewhere
    for action in server.actions():
        if isinstance(action, SendText):
            sent = json.loads(action.text)
            assert spec.message_errors(sent, strict_numbers=True) == [], sent


@pytest.mark.parametrize("error_type", sorted(ERROR_CLOSE_CODES))
def test_every_error_conforms_and_closes_with_its_code(error_type: str) -> None:
    spec = spec_schemas()
    server = server_in(ServerState.STREAMING)
    server.send_error(error_type, "reason")
    text, close = server.actions()
    assert isinstance(text, SendText) and isinstance(close, CloseTransport)
    message = json.loads(text.text)
    if error_type != "internal_error":  # our name for 1011; not in the spec's enum
        assert spec.message_errors(message) == []
    assert close.code == ERROR_CLOSE_CODES[error_type]


def test_recognition_started_conforms() -> None:
    spec = spec_schemas()
    server = server_in(ServerState.STARTING, channels=True)
    server.start_recognition(session_id="abc")
    (text,) = server.actions()
    message = json.loads(text.text)  # type: ignore[union-attr]
    assert spec.message_errors(message) == []
    assert message["channel_ids"] == ["a", "b"]
