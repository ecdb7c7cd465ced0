"""Random sequences of client messages, transport events, timers and application commands
against one server engine, with a ``transitions`` machine as the oracle for its state and
a model of the session (audio, channels, timers, events) for everything else.

The oracle is a separate ``transitions.Machine`` built from ``SERVER_TRANSITIONS``; which
trigger (if any) each input should fire is written out here (:data:`ROWS`), independently
of the engine's rules table, and then refined by what the message handlers do (a
well-formed message can still be refused: a channel that already ended, a bad config, ...).

After every step: the engine's state is the oracle's; what it sent is exactly what the
model expected (acks, warnings, errors and their close codes, ...); its queued events are
the model's; its next deadline is the model's.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from transitions import Machine

from smproto import (
    ERROR_CLOSE_CODES,
    Alternative,
    AudioFormat,
    CloseTransport,
    Handshake,
    LocalProtocolError,
    Result,
    SendText,
    ServerConnection,
    ServerState,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto._state import SERVER_INPUTS, SERVER_RULES, SERVER_TRANSITIONS, Outcome
from smproto.actions import Action
from smproto.config import start_recognition_message
from smproto.events import SpeakerIdentity, TranslatedSentence
from smproto.server_events import (
    AudioReceived,
    ChannelEnded,
    ClientDisconnected,
    ForceEndOfUtteranceRequested,
    RecognitionConfigChanged,
    ServerEvent,
    SessionFailed,
    SpeakersRequested,
    StartRequested,
    StreamEnded,
)
from smproto.testing import (
    SERVER_MESSAGE_TYPES,
    fuzzed_client_messages,
    mid_session_changes,
    start_recognition_messages,
)
from tests.support import secret

HANDSHAKE = ServerState.HANDSHAKE
AWAITING = ServerState.AWAITING_START
STARTING = ServerState.STARTING
STREAMING = ServerState.STREAMING
DRAINING = ServerState.DRAINING
CLOSED = ServerState.CLOSED
FAILED = ServerState.FAILED
STATES = (HANDSHAKE, AWAITING, STARTING, STREAMING, DRAINING, CLOSED, FAILED)
LIVE = frozenset(STATES[:5])

KEY = secret("server-stateful")

# ------------------------------------------------------------------------------------------
# What each input does in each state, written out independently of SERVER_RULES.
#
# "local": LocalProtocolError, nothing changes; "ignore": nothing happens; "ok": handled,
# no transition; a trigger name: handled, and that trigger fires; "error:<type>": the
# engine answers with Error <type> and its close code, and fails.

P = "error:protocol_error"
V = "error:invalid_message"
L = "local"
I = "ignore"  # noqa: E741


def _row(*cells: str) -> dict[ServerState, str]:
    return dict(zip(STATES, cells, strict=True))


ROWS: dict[str, dict[ServerState, str]] = {
    # HANDSHAKE, AWAITING_START, STARTING, STREAMING, DRAINING, CLOSED, FAILED
    "handshake_accepted": _row("accept", L, L, L, L, L, L),
    "handshake_rejected": _row("reject", L, L, L, L, L, L),
    "connection_closed": _row("fail", "fail", "fail", "fail", "fail", "ok", "ok"),
    "timer_expired": _row(I, "fail", I, "fail", "fail", "ok", I),
    "timer_warning": _row(I, I, I, "ok", "ok", "ok", I),
    "StartRecognition": _row(L, "request", P, P, P, I, I),
    "<binary>": _row(L, P, P, "ok", "ok", I, I),
    "<binary>:over_limit": _row(L, P, P, "drain", "ok", I, I),
    "AddChannelAudio": _row(L, P, P, "ok", "ok", I, I),
    "EndOfStream": _row(L, P, P, "drain", I, I, I),
    "EndOfChannel": _row(L, P, P, "ok", I, I, I),
    "EndOfChannel:last": _row(L, P, P, "drain", I, I, I),
    "SetRecognitionConfig": _row(L, P, P, "ok", I, I, I),
    "ForceEndOfUtterance": _row(L, P, P, "ok", I, I, I),
    "GetSpeakers": _row(L, P, P, "ok", "ok", I, I),
    "<unknown>": _row(L, V, V, V, V, I, I),
    "<unauthorised>": _row(L, "error:not_authorised", I, I, I, I, I),
    "start_recognition": _row(L, L, "start", L, L, L, L),
    "send_result": _row(L, L, L, "ok", "ok", L, L),
    "send_notice": _row(L, "ok", "ok", "ok", "ok", L, L),
    "send_error": _row(L, "fail", "fail", "fail", "fail", I, I),
    "end_of_transcript": _row(L, L, L, L, "finish", L, L),
    "close": _row(L, "close", "close", "close", "close", I, I),
}

KNOWN_TYPES = frozenset(
    {
        "StartRecognition",
        "AddChannelAudio",
        "EndOfStream",
        "EndOfChannel",
        "SetRecognitionConfig",
        "ForceEndOfUtterance",
        "GetSpeakers",
    }
)


def test_rows_match_the_rules_table() -> None:
    """The machine's own view of the lifecycle is the table's (a difference here means
    one of them is wrong; the machine below checks the engine against ROWS)."""
    assert set(ROWS) == set(SERVER_INPUTS)
    for name, row in ROWS.items():
        for state, want in row.items():
            rule = SERVER_RULES[name][state]
            if rule.outcome is Outcome.LOCAL_ERROR:
                got = L
            elif rule.outcome is Outcome.IGNORE:
                got = I
            elif rule.outcome is Outcome.REMOTE_ERROR:
                got = f"error:{rule.detail}"
            else:
                got = rule.trigger or "ok"
            assert got == want, (name, state)


# ------------------------------------------------------------------------------------------
# The model.


@dataclass(frozen=True)
class Options:
    authorize: bool
    auth_failure: str
    start_timeout: float
    idle_timeout: float
    idle_warnings: tuple[float, ...]
    session_timeout: float
    session_warnings: tuple[float, ...]
    max_audio_seconds: float | None
    close_timeout: float
    max_message_bytes: int

    def engine(self) -> ServerConnection:
        return ServerConnection(
            authorize=(lambda token: token == KEY) if self.authorize else None,
            auth_failure="in_band" if self.auth_failure == "in_band" else "handshake",
            start_timeout=self.start_timeout,
            idle_timeout=self.idle_timeout,
            idle_warnings=self.idle_warnings,
            session_timeout=self.session_timeout,
            session_warnings=self.session_warnings,
            max_audio_seconds=self.max_audio_seconds,
            close_timeout=self.close_timeout,
            max_message_bytes=self.max_message_bytes,
        )


# (timeout, warnings): the last idle one warns before the session could even start.
IDLE = st.sampled_from(
    [(10.0, (6.0, 3.0)), (4.0, ()), (3600.0, (900.0, 600.0, 300.0)), (2.0, (5.0,))]
)
SESSION = st.sampled_from([(30.0, (10.0, 5.0)), (8.0, (2.0,)), (48 * 3600.0, (2700.0, 900.0))])


@st.composite
def options(draw: st.DrawFn) -> Options:
    idle_timeout, idle_warnings = draw(IDLE)
    session_timeout, session_warnings = draw(SESSION)
    return Options(
        authorize=draw(st.booleans()),
        auth_failure=draw(st.sampled_from(["in_band", "handshake"])),
        start_timeout=draw(st.sampled_from([5.0, 1.0, 60.0])),
        idle_timeout=idle_timeout,
        idle_warnings=idle_warnings,
        session_timeout=session_timeout,
        session_warnings=session_warnings,
        max_audio_seconds=draw(st.sampled_from([None, 0.3, 1.0])),
        close_timeout=draw(st.sampled_from([0.0, 2.0])),
        max_message_bytes=draw(st.sampled_from([4 * 1024 * 1024, 400])),
    )


@dataclass
class Chan:
    received: int = 0
    nbytes: int = 0
    ended: bool = False


@dataclass
class Expect:
    """What an input or command should do."""

    #: "local", "ignore", "ok", a trigger, "error:<type>", or "lenient" (a fuzzed config:
    #: accepted, or refused with one of ``allowed``).
    code: str
    #: The messages sent before any Error (see :func:`kind`).
    kinds: list[str] = field(default_factory=list)
    #: For "local": whether the table refuses it (the message names the state).
    table: bool = True
    #: For "error": whether the engine reports it as SessionFailed (not send_error()).
    reported: bool = True
    #: For "lenient": the Error types it may be answered with, and what acceptance does.
    allowed: frozenset[str] = frozenset()
    trigger: str | None = None
    on_success: Callable[[], list[str]] | None = None


def kind(action: Action) -> str:
    """A short name for what the server sent: ``AudioAdded:3``, ``Warning:idle_timeout``,
    ``Close:1003``, ``AddTranscript``, ..."""
    if isinstance(action, CloseTransport):
        return f"Close:{action.code}"
    assert isinstance(action, SendText), action  # the server never sends binary
    msg = json.loads(action.text)
    name = msg["message"]
    assert name in SERVER_MESSAGE_TYPES, msg
    if name in ("Info", "Warning", "Error"):
        assert isinstance(msg["type"], str) and isinstance(msg["reason"], str)
        return f"{name}:{msg['type']}"
    if name == "AudioAdded":
        return f"AudioAdded:{msg['seq_no']}"
    if name == "ChannelAudioAdded":
        return f"ChannelAudioAdded:{msg['channel']}:{msg['seq_no']}"
    return str(name)


def ack_kind(channel: str | None, seq_no: int) -> str:
    if channel is None:
        return f"AudioAdded:{seq_no}"
    return f"ChannelAudioAdded:{channel}:{seq_no}"


def describe(event: ServerEvent) -> tuple[Any, ...]:
    """The parts of an event the model predicts."""
    if isinstance(event, StartRequested):
        return ("StartRequested", event.url_language, event.sdk)
    if isinstance(event, AudioReceived):
        return ("AudioReceived", event.seq_no, event.data, event.channel)
    if isinstance(event, StreamEnded):
        return ("StreamEnded", event.last_seq_no, event.frames_received)
    if isinstance(event, ChannelEnded):
        return ("ChannelEnded", event.channel, event.last_seq_no, event.frames_received, event.last)
    if isinstance(event, RecognitionConfigChanged):
        return ("RecognitionConfigChanged", event.config.enable_partials)
    if isinstance(event, ForceEndOfUtteranceRequested):
        return ("ForceEndOfUtteranceRequested", event.timestamp, event.channel)
    if isinstance(event, SpeakersRequested):
        return ("SpeakersRequested", event.final)
    if isinstance(event, SessionFailed):
        return ("SessionFailed", event.error_type, event.close_code)
    if isinstance(event, ClientDisconnected):
        return ("ClientDisconnected", event.code, event.reason, event.completed)
    raise AssertionError(f"unknown event {event!r}")


def close_code(error_type: str) -> int:
    return ERROR_CLOSE_CODES.get(error_type, 1011)


# ------------------------------------------------------------------------------------------
# Strategies for the machine's inputs.


def _start(
    language: str, channels: bool, partials: bool, audio: str, translation: str | None
) -> dict[str, Any]:
    labels: dict[str, Any] = (
        {"diarization": "channel", "channel_diarization_labels": ["a", "b"]} if channels else {}
    )
    config = TranscriptionConfig(language=language, enable_partials=partials, **labels)
    audio_format = {
        "raw": AudioFormat(),
        "f32": AudioFormat(encoding="pcm_f32le", sample_rate=8000),
        "file": AudioFormat.file(),
    }[audio]
    translation_config = {
        None: None,
        "de": TranslationConfig(["de"]),
        "de+partials": TranslationConfig(["de"], enable_partials=True),
        "empty": TranslationConfig([]),
    }[translation]
    return start_recognition_message(config, audio_format, translation_config)


_RAW = {
    "message": "StartRecognition",
    "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}
#: (StartRecognition, what parsing it says): "ok" or the Error type.
VALID_STARTS = st.builds(
    _start,
    language=st.sampled_from(["en", "en", "de"]),
    channels=st.booleans(),
    partials=st.booleans(),
    audio=st.sampled_from(["raw", "raw", "f32", "file"]),
    translation=st.sampled_from([None, "de", "de+partials", "empty"]),
)
START_MESSAGES = st.one_of(
    VALID_STARTS.map(lambda m: (m, "ok")),
    start_recognition_messages().map(lambda m: (m, "ok")),
    st.sampled_from(
        [
            ({**_RAW, "transcription_config": {"language": 3}}, "invalid_config"),
            ({**_RAW, "transcription_config": {"language": "en"}, "foo": 1}, "invalid_config"),
            ({"message": "StartRecognition"}, "invalid_audio_type"),
            (
                {**_RAW, "audio_format": {"type": "bogus"}, "transcription_config": {}},
                "invalid_audio_type",
            ),
        ]
    ),
)

GARBAGE = st.sampled_from(
    [
        "{oops",
        "[]",
        "null",
        "",
        '{"message": 3}',
        '{"message": "AddAudio"}',
        '{"message": "Nonsense", "x": 1}',
        '{"message": "StartRecognition"',
        "[" * 5000,
        '{"message": NaN}',
    ]
) | st.text(max_size=20)

WORD = Result("word", 0.0, 0.5, (Alternative("hi", 1.0),))


# ------------------------------------------------------------------------------------------
# The machine.


class Oracle:
    state: ServerState


class ServerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.oracle = Oracle()
        self.machine = Machine(
            model=self.oracle,
            states=ServerState,
            transitions=SERVER_TRANSITIONS,
            initial=HANDSHAKE,
            auto_transitions=False,
        )
        self.opts: Options | None = None
        self.conn = ServerConnection()
        self.now = 0.0  # the clock
        self.input_now = 0.0  # the last now the engine was given
        # The handshake.
        self.hs_time = 0.0
        self.url_language: str | None = None
        self.sdk: str | None = None
        self.auth_error = False
        # The session's config.
        self.configured = False
        self.language = "en"
        self.partials = False
        self.targets: tuple[str, ...] = ()
        self.translation_partials = False
        self.translation = False
        self.bps: int | None = None
        self.labels: tuple[str, ...] | None = None
        self.expected: frozenset[str] | None = None
        # Audio.
        self.frames = 0
        self.binary_bytes = 0
        self.channels: dict[str, Chan] = {}
        self.limit_reached = False
        self.warned_after_eos = False
        self.pending_bytes = 0
        self.untaken: dict[str | None, int] = {}
        self.acked: dict[str | None, int] = {}  # the last seq_no acknowledged, per stream
        self.ackable: dict[str | None, set[int]] = {}  # taken (or ignored), not yet acked
        # Frames past the duration limit that came while earlier frames were untaken:
        # their acks come once the last untaken frame is taken, in order.
        self.deferred: list[str] = []
        # Timers.
        self.session_start = 0.0
        self.last_audio = 0.0
        self.idle_warned = 0
        self.session_warned = 0
        self.close_deadline: float | None = None
        # The end.
        self.error_type: str | None = None
        self.transport_closed = False  # CloseTransport sent, or the upgrade refused
        self.disconnected = False  # connection_closed() called
        self.events: deque[tuple[Any, ...]] = deque()
        self.disconnect_taken = False

    # ------------------------------------------------------------------ plumbing

    @property
    def state(self) -> ServerState:
        return self.oracle.state

    def _collect(self) -> list[str]:
        """Take the engine's actions, check what must hold of any of them, and return
        their kinds."""
        pending = self.conn.has_actions
        actions = self.conn.actions()
        assert pending == bool(actions) and not self.conn.has_actions
        if actions:
            assert not self.transport_closed, f"sent after CloseTransport: {actions}"
            assert not self.disconnected, f"sent after the transport closed: {actions}"
        kinds = [kind(a) for a in actions]
        for i, (action, k) in enumerate(zip(actions, kinds, strict=True)):
            if isinstance(action, CloseTransport):
                assert i == len(actions) - 1, f"CloseTransport is not last: {kinds}"
                assert len(action.reason.encode("utf-8")) <= 123
                self.transport_closed = True
            elif k.startswith("Error:"):
                after = actions[i + 1 : i + 2]
                code = close_code(k.removeprefix("Error:"))
                assert [kind(a) for a in after] == [f"Close:{code}"], kinds
            elif k.startswith(("AudioAdded:", "ChannelAudioAdded:")):
                msg = json.loads(action.text)  # type: ignore[union-attr]
                stream = msg.get("channel")
                seq_no = msg["seq_no"]
                last = self.acked.get(stream, 0)
                assert seq_no == last + 1, f"{k} after ack {last} of {stream!r}"
                ready = self.ackable.setdefault(stream, set())
                assert seq_no in ready, f"{k} acknowledges a frame not taken yet"
                ready.discard(seq_no)
                self.acked[stream] = seq_no
        return kinds

    def _run(self, expect: Expect, call: Callable[[], object]) -> object:
        before = self.conn.state
        assert before is self.state
        code = expect.code
        if code == L:
            with pytest.raises(LocalProtocolError) as info:
                call()
            if expect.table:
                assert before.name in str(info.value)
            assert self.conn.state is before
            assert self.conn.actions() == []
            return None
        result = call()  # anything but LocalProtocolError is a bug (nothing else is caught)
        kinds = self._collect()
        if code == "lenient":
            if self.conn.state is FAILED:
                assert kinds[-2].startswith("Error:"), kinds
                code = "error:" + kinds[-2].removeprefix("Error:")
                assert code.removeprefix("error:") in expect.allowed, kinds
            else:
                assert expect.on_success is not None
                code = expect.trigger or "ok"
                expect.kinds = expect.on_success()
        if code == I:
            assert self.conn.state is before
            assert kinds == []
        elif code.startswith("error:"):
            error_type = code.removeprefix("error:")
            self.oracle.trigger("fail")  # type: ignore[attr-defined]
            assert kinds == [
                *expect.kinds,
                f"Error:{error_type}",
                f"Close:{close_code(error_type)}",
            ]
            self.error_type = error_type
            self.close_deadline = None
            if expect.reported:
                self.events.append(("SessionFailed", error_type, close_code(error_type)))
        else:
            if code != "ok":
                self.oracle.trigger(code)  # type: ignore[attr-defined]
            assert kinds == expect.kinds, (kinds, expect.kinds)
        assert self.conn.state is self.state
        return result

    def _receive(self, expect: Expect, data: str | bytes) -> None:
        self.input_now = self.now
        self._run(expect, lambda: self.conn.receive_message(data, now=self.now))

    def _text(self, text: str, *, hint: str | None = None) -> None:
        self._receive(self._expect_text(text, hint), text)

    def _binary(self, data: bytes) -> None:
        self._receive(self._expect_binary(data), data)

    # --------------------------------------------------------------- the model

    def _expect_text(self, text: str, hint: str | None) -> Expect:
        """What a text message should do (and the model's changes if it is accepted).

        ``hint`` is what the message's config says: "ok", an Error type, or None when
        unknown (a fuzzed config: either is fine)."""
        state = self.state
        if state is HANDSHAKE:
            return Expect(L)
        if self.auth_error:
            return Expect(ROWS["<unauthorised>"][state])
        if len(text) > self.opts_.max_message_bytes:
            return Expect(ROWS["<unknown>"][state])
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            msg = None
        mtype = msg.get("message") if type(msg) is dict else None
        if type(mtype) is not str or mtype not in KNOWN_TYPES:
            return Expect(ROWS["<unknown>"][state])
        assert isinstance(msg, dict)
        name = mtype
        if name == "EndOfChannel" and self._is_last_channel(msg.get("channel")):
            name = "EndOfChannel:last"
        code = ROWS[name][state]
        if code not in ("ok", "request", "drain"):
            return Expect(code)
        handler = {
            "StartRecognition": self._on_start_recognition,
            "AddChannelAudio": self._on_add_channel_audio,
            "EndOfStream": self._on_end_of_stream,
            "EndOfChannel": self._on_end_of_channel,
            "SetRecognitionConfig": self._on_set_recognition_config,
            "ForceEndOfUtterance": self._on_force_end_of_utterance,
            "GetSpeakers": self._on_get_speakers,
        }[mtype]
        return handler(msg, code, hint)

    def _expect_binary(self, data: bytes) -> Expect:
        state = self.state
        if state is HANDSHAKE:
            return Expect(L)
        if self.auth_error:
            return Expect(ROWS["<unauthorised>"][state])
        code = ROWS["<binary>"][state]
        if code != "ok":
            return Expect(code)
        return self._audio(data, None)

    def _is_last_channel(self, channel: object) -> bool:
        if type(channel) is not str:
            return False
        names = self.expected if self.expected is not None else frozenset(self.channels)
        if channel not in names:
            return False
        return all(c == channel or (c in self.channels and self.channels[c].ended) for c in names)

    def _audio(self, data: bytes, channel: str | None) -> Expect:
        if self.state is DRAINING:
            if self.limit_reached:
                # Past the duration limit: acknowledged, never an event; at once, unless
                # earlier frames are still untaken (acks never overtake them).
                if channel is None:
                    self.frames += 1
                    seq_no = self.frames
                else:
                    stream = self.channels.setdefault(channel, Chan())
                    stream.received += 1
                    seq_no = stream.received
                self.ackable.setdefault(channel, set()).add(seq_no)
                if any(self.untaken.values()):
                    self.deferred.append(ack_kind(channel, seq_no))
                    return Expect("ok")
                return Expect("ok", [ack_kind(channel, seq_no)])
            kinds = [] if self.warned_after_eos else ["Warning:add_audio_after_eos"]
            self.warned_after_eos = True
            return Expect("ok", kinds)
        assert self.state is STREAMING
        self.last_audio = self.now
        self.idle_warned = 0
        if channel is None:
            if self.channels:
                return Expect(P)
            self.frames += 1
            self.binary_bytes += len(data)
            seq_no = self.frames
        else:
            if self.frames:
                return Expect(P)
            stream = self.channels.setdefault(channel, Chan())
            if stream.ended:
                return Expect(P)
            stream.received += 1
            stream.nbytes += len(data)
            seq_no = stream.received
        self.pending_bytes += len(data)
        self.untaken[channel] = self.untaken.get(channel, 0) + 1
        self.events.append(("AudioReceived", seq_no, data, channel))
        limit = self.opts_.max_audio_seconds
        if limit is not None and self.bps:
            received = (
                self.binary_bytes
                if channel is None
                else max(c.nbytes for c in self.channels.values())
            )
            if received / self.bps > limit:
                self.limit_reached = True
                self.events.append(("StreamEnded", None, self._frames_received()))
                return Expect("drain", ["Warning:duration_limit_exceeded"])
        return Expect("ok")

    def _frames_received(self) -> int:
        return self.frames or sum(c.received for c in self.channels.values())

    def _on_start_recognition(self, msg: dict[str, Any], code: str, hint: str | None) -> Expect:
        assert code == "request"

        def accepted() -> list[str]:
            config = self.conn.config
            assert config is not None
            tc = config.transcription_config
            assert self.url_language in (None, tc.language)
            self.configured = True
            self.language = tc.language
            self.partials = bool(tc.enable_partials)
            translation = config.translation_config
            self.translation = translation is not None
            self.targets = tuple(translation.target_languages) if translation else ()
            self.translation_partials = bool(translation and translation.enable_partials)
            self.bps = config.audio_format.bytes_per_second
            labels = tc.channel_diarization_labels
            self.labels = tuple(labels) if labels else None
            self.expected = frozenset(labels) if labels else None
            self.events.append(("StartRequested", self.url_language, self.sdk))
            return []

        if hint is None:
            return Expect(
                "lenient",
                allowed=frozenset({"invalid_config", "invalid_audio_type", "invalid_language"}),
                trigger="request",
                on_success=accepted,
            )
        if hint != "ok":
            return Expect(f"error:{hint}")
        language = msg["transcription_config"]["language"]
        if self.url_language is not None and self.url_language != language:
            return Expect("error:invalid_language")
        return Expect("lenient", trigger="request", on_success=accepted)

    def _on_add_channel_audio(self, msg: dict[str, Any], code: str, hint: str | None) -> Expect:
        channel, data = msg.get("channel"), msg.get("data")
        if type(channel) is not str or not channel or type(data) is not str:
            return Expect(V)
        if self.expected is not None and channel not in self.expected:
            return Expect(P)
        try:
            audio = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return Expect(V)
        return self._audio(audio, channel)

    def _on_end_of_stream(self, msg: dict[str, Any], code: str, hint: str | None) -> Expect:
        last = msg.get("last_seq_no")
        if last is not None and type(last) is not int:
            return Expect(V)
        assert code == "drain"
        for stream in self.channels.values():
            stream.ended = True
        self.events.append(("StreamEnded", last, self._frames_received()))
        return Expect("drain")

    def _on_end_of_channel(self, msg: dict[str, Any], code: str, hint: str | None) -> Expect:
        channel, last = msg.get("channel"), msg.get("last_seq_no")
        if type(channel) is not str or not channel:
            return Expect(V)
        if last is not None and type(last) is not int:
            return Expect(V)
        if self.frames:
            return Expect(P)
        stream = self.channels.get(channel)
        if stream is None:
            if self.expected is not None and channel not in self.expected:
                return Expect(P)
            stream = self.channels[channel] = Chan()
        if stream.ended:
            return Expect(P)
        stream.ended = True
        self.events.append(("ChannelEnded", channel, last, stream.received, code == "drain"))
        return Expect(code)

    def _on_set_recognition_config(
        self, msg: dict[str, Any], code: str, hint: str | None
    ) -> Expect:
        payload = msg.get("transcription_config")
        if type(payload) is not dict:
            return Expect(V)

        def accepted() -> list[str]:
            config = self.conn.config
            assert config is not None
            new = config.transcription_config
            if hint == "ok" and payload.get("enable_partials") is not None:
                assert new.enable_partials == payload["enable_partials"]
            self.partials = bool(new.enable_partials)
            self.events.append(("RecognitionConfigChanged", new.enable_partials))
            return []

        if hint is None:
            return Expect("lenient", allowed=frozenset({"invalid_config"}), on_success=accepted)
        if hint != "ok" or payload.get("language", self.language) != self.language:
            return Expect("error:invalid_config")
        return Expect("lenient", on_success=accepted)

    def _on_force_end_of_utterance(
        self, msg: dict[str, Any], code: str, hint: str | None
    ) -> Expect:
        timestamp, channel = msg.get("timestamp"), msg.get("channel")
        if timestamp is not None and (
            type(timestamp) not in (int, float) or not 0 <= timestamp < math.inf
        ):
            return Expect(V)
        if channel is not None and type(channel) is not str:
            return Expect(V)
        self.events.append(("ForceEndOfUtteranceRequested", timestamp, channel))
        return Expect("ok")

    def _on_get_speakers(self, msg: dict[str, Any], code: str, hint: str | None) -> Expect:
        final = msg.get("final", False)
        if type(final) is not bool:
            return Expect(V)
        self.events.append(("SpeakersRequested", final))
        return Expect("ok")

    @property
    def opts_(self) -> Options:
        assert self.opts is not None
        return self.opts

    # Timers, as the spec and the engine's docs describe them.

    def _idle_deadline(self) -> float:
        warnings, timeout = self.opts_.idle_warnings, self.opts_.idle_timeout
        if self.idle_warned < len(warnings):
            return self.last_audio + timeout - warnings[self.idle_warned]
        return self.last_audio + timeout

    def _session_deadline(self) -> float:
        warnings, timeout = self.opts_.session_warnings, self.opts_.session_timeout
        if self.session_warned < len(warnings):
            return self.session_start + timeout - warnings[self.session_warned]
        return self.session_start + timeout

    def _timer(self) -> float | None:
        state = self.state
        if state is AWAITING:
            return self.hs_time + self.opts_.start_timeout
        if state is STREAMING:
            return min(self._idle_deadline(), self._session_deadline())
        if state is DRAINING:
            return self._session_deadline()
        if state is CLOSED:
            return self.close_deadline
        return None

    def _expect_timer(self, now: float) -> Expect:
        state, opts = self.state, self.opts_
        if state is AWAITING:
            if now >= self.hs_time + opts.start_timeout:
                return Expect("error:not_authorised" if self.auth_error else P)
            return Expect(I)
        if state is CLOSED:
            if self.close_deadline is not None and now >= self.close_deadline:
                self.close_deadline = None
                return Expect("ok", ["Close:1000"])
            return Expect(I)
        if state not in (STREAMING, DRAINING):
            return Expect(I)
        kinds = []
        while self.session_warned < len(opts.session_warnings) and now >= self._session_deadline():
            self.session_warned += 1
            kinds.append("Warning:session_timeout")
        if now >= self.session_start + opts.session_timeout:
            return Expect("error:session_timeout", kinds)
        if state is STREAMING:
            while self.idle_warned < len(opts.idle_warnings) and now >= self._idle_deadline():
                self.idle_warned += 1
                kinds.append("Warning:idle_timeout")
            if now >= self.last_audio + opts.idle_timeout:
                return Expect("error:idle_timeout", kinds)
        return Expect("ok", kinds)

    # -------------------------------------------------------------------- setup

    @initialize(
        options=options(),
        advance=st.sampled_from(["none", "connected", "started", "streaming", "streaming"]),
        start=VALID_STARTS,
    )
    def setup(self, options: Options, advance: str, start: dict[str, Any]) -> None:
        """A fresh engine, and most of the time a session already under way (through the
        same rules as later steps), so that the random steps spend their budget in the
        states where most of the protocol lives rather than failing in HANDSHAKE."""
        self.opts = options
        self.conn = options.engine()
        if advance == "none":
            return
        self.handshake("/v2", "bearer")
        if advance == "connected" or self.state is not AWAITING:
            return
        self.start_message((start, "ok"))
        if self.state is not STARTING:
            return  # refused (a config the engine does not take)
        self.take_events(1)  # StartRequested
        if advance == "streaming":
            self.start_recognition(None, with_now=True)

    # ------------------------------------------------------------- transport

    @rule(
        path=st.sampled_from(
            ["/v2", "/v2/", "/v2/en", "/v2/de", "/v2?sm-sdk=py-1", "/v1", "/v2/en/x"]
        ),
        auth=st.sampled_from(["none", "bearer", "jwt", "wrong", "basic"]),
    )
    def handshake(self, path: str, auth: str) -> None:
        headers = {
            "bearer": {"Authorization": f"Bearer {KEY}"},
            "wrong": {"Authorization": "Bearer wrong"},
            "basic": {"Authorization": f"Basic {KEY}"},
        }.get(auth, {})
        if auth == "jwt":
            path += ("&" if "?" in path else "?") + f"jwt={KEY}"
        token = {"bearer": KEY, "jwt": KEY, "wrong": "wrong"}.get(auth)
        raw_path = path.partition("?")[0]
        language = {"/v2": None, "/v2/": None, "/v2/en": "en", "/v2/de": "de"}.get(raw_path, "?")
        status = 101
        refused = False
        if language == "?":
            status = 404
        elif self.opts_.authorize:
            refused = token != KEY
            if token is None or (refused and self.opts_.auth_failure == "handshake"):
                status = 401
        if self.state is not HANDSHAKE:
            self._run(Expect(L), lambda: self.conn.handshake(path, headers, now=self.now))
            return
        self.input_now = self.now
        result = self._run(
            Expect("accept" if status == 101 else "reject"),
            lambda: self.conn.handshake(path, headers, now=self.now),
        )
        assert isinstance(result, Handshake) and self.conn.handshake_result is result
        assert result.accepted is (status == 101)
        assert result.status == status
        if status != 101:
            self.transport_closed = True  # the upgrade was answered with HTTP
            return
        self.hs_time = self.now
        self.auth_error = refused
        self.url_language = language
        self.sdk = "py-1" if "sm-sdk" in path else None
        assert result.url_language == language
        assert result.sdk == self.sdk
        assert result.authenticated is (token is not None)
        assert KEY not in repr(result) and KEY not in repr(self.conn)

    @rule(code=st.sampled_from([None, 1000, 1001, 1006, 4001]))
    def connection_closed(self, code: int | None) -> None:
        state = self.state
        completed = state is CLOSED and self.error_type is None
        self.input_now = self.now
        self._run(
            Expect(ROWS["connection_closed"][state]),
            lambda: self.conn.connection_closed(code, "bye", now=self.now),
        )
        self.close_deadline = None
        if not self.disconnected:
            self.events.append(("ClientDisconnected", code, "bye", completed))
        self.disconnected = True

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0]) | st.floats(0.0, 40.0))
    def time_passes(self, dt: float) -> None:
        """The driver's timer: handle_timer() at any time (early calls do nothing)."""
        self.now += dt
        self._timer_at(self.now)

    @precondition(lambda self: self.conn.get_timer() is not None)
    @rule(extra=st.sampled_from([0.0, 0.0, 1e-6, 0.25]))
    def timer_fires(self, extra: float) -> None:
        """handle_timer() exactly at (or just past) the deadline."""
        deadline = self.conn.get_timer()
        assert deadline is not None
        self.now = max(self.now, deadline + extra)
        self._timer_at(self.now)

    def _timer_at(self, now: float) -> None:
        self.input_now = now
        self._run(self._expect_timer(now), lambda: self.conn.handle_timer(now=now))
        deadline = self.conn.get_timer()
        assert deadline is None or deadline > now, (deadline, now)

    @rule(dt=st.floats(0.0, 15.0))
    def clock_moves(self, dt: float) -> None:
        """Time passes with no call: the next input comes late (its timer may be due)."""
        self.now += dt

    # ---------------------------------------------------------- client messages

    @rule(message=START_MESSAGES)
    def start_message(self, message: tuple[dict[str, Any], str]) -> None:
        msg, hint = message
        self._text(json.dumps(msg), hint=hint)

    @rule(size=st.integers(0, 6400))
    def audio_frame(self, size: int) -> None:
        self._binary(bytes(i % 251 for i in range(size)))

    @rule(count=st.integers(2, 6), channel=st.sampled_from([None, None, "a", "b"]))
    def audio_burst(self, count: int, channel: str | None) -> None:
        """Several 0.2 s frames in a row, none taken: reaches the duration limit with
        frames still untaken, and audio past it."""
        for _ in range(count):
            if channel is None:
                self._binary(b"\x01\x02" * 3200)
            else:
                data = base64.b64encode(b"\x01\x02" * 3200).decode()
                self._text(
                    json.dumps({"message": "AddChannelAudio", "channel": channel, "data": data})
                )

    @rule(
        channel=st.sampled_from(["a", "b", "c"]),
        size=st.integers(0, 6400),
        valid=st.sampled_from([True, True, True, False]),
    )
    def channel_audio(self, channel: str, size: int, valid: bool) -> None:
        data = base64.b64encode(b"\x01\x02" * (size // 2)).decode() if valid else "!!not base64"
        self._text(json.dumps({"message": "AddChannelAudio", "channel": channel, "data": data}))

    @rule(
        channel=st.sampled_from(["a", "b", "c"]),
        last=st.sampled_from([None, 0, 1, 5, "7"]),
    )
    def end_of_channel(self, channel: str, last: int | str | None) -> None:
        msg: dict[str, Any] = {"message": "EndOfChannel", "channel": channel}
        if last is not None:
            msg["last_seq_no"] = last
        self._text(json.dumps(msg))

    @rule(last=st.sampled_from([None, 0, 1, 2, 1000, -1, "3", 2.5, True]))
    def end_of_stream(self, last: object) -> None:
        msg: dict[str, Any] = {"message": "EndOfStream"}
        if last is not None:
            msg["last_seq_no"] = last
        self._text(json.dumps(msg))

    @rule(changes=mid_session_changes())
    def set_recognition_config(self, changes: dict[str, Any]) -> None:
        payload = TranscriptionConfig("en").with_changes(**changes).mid_session_dict()
        self._text(
            json.dumps({"message": "SetRecognitionConfig", "transcription_config": payload}),
            hint="ok",
        )

    @rule(
        payload=st.sampled_from(
            [{"diarization": "speaker"}, {"language": "zz"}, {"max_delay": -1}, {"nope": 1}]
        )
    )
    def bad_recognition_config(self, payload: dict[str, Any]) -> None:
        message = {"message": "SetRecognitionConfig", "transcription_config": payload}
        self._text(json.dumps(message), hint="invalid_config")

    @rule(
        timestamp=st.sampled_from([None, 0, 1.5, -1.0, "1"]),
        channel=st.sampled_from([None, "a", 3]),
    )
    def force_end_of_utterance(self, timestamp: object, channel: object) -> None:
        msg: dict[str, Any] = {"message": "ForceEndOfUtterance"}
        if timestamp is not None:
            msg["timestamp"] = timestamp
        if channel is not None:
            msg["channel"] = channel
        self._text(json.dumps(msg))

    @rule(final=st.sampled_from([None, True, False, "yes"]))
    def get_speakers(self, final: object) -> None:
        msg: dict[str, Any] = {"message": "GetSpeakers"}
        if final is not None:
            msg["final"] = final
        self._text(json.dumps(msg))

    @rule(text=GARBAGE)
    def garbage(self, text: str) -> None:
        self._text(text)

    @precondition(lambda self: self.opts is not None and self.opts.max_message_bytes < 10_000)
    @rule(extra=st.sampled_from([0, 1]), pad=st.sampled_from(["x", "é"]))
    def big_message(self, extra: int, pad: str) -> None:
        """A message of exactly the limit is read, one character more is not (the limit
        counts characters: a pad of "é" is twice as many UTF-8 bytes)."""
        head = '{"message":"GetSpeakers","pad":"'
        size = self.opts_.max_message_bytes + extra - len(head) - 2
        self._text(head + pad * size + '"}')

    @rule(data=fuzzed_client_messages(channels=["a", "b"]))
    def fuzzed(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self._binary(data)
        else:
            self._text(data)

    # ---------------------------------------------------------- the application

    @rule(count=st.integers(1, 4))
    def take_events(self, count: int) -> None:
        for _ in range(count):
            event = self.conn.next_event()
            if event is None:
                assert not self.events
                assert self.conn.actions() == []
                return
            assert not self.disconnect_taken, f"{event!r} after ClientDisconnected"
            got = describe(event)
            assert self.events, f"unexpected {got}"
            assert got == self.events.popleft()
            expected: list[str] = []
            if isinstance(event, AudioReceived):
                self.pending_bytes -= len(event.data)
                self.untaken[event.channel] -= 1
                if self.state in (STREAMING, DRAINING):
                    self.ackable.setdefault(event.channel, set()).add(event.seq_no)
                    expected = [ack_kind(event.channel, event.seq_no)]
                    if not any(self.untaken.values()):
                        # Per stream, the streams in the order their first deferred ack came.
                        streams = dict.fromkeys(k.rsplit(":", 1)[0] for k in self.deferred)
                        expected += [
                            k for s in streams for k in self.deferred if k.rsplit(":", 1)[0] == s
                        ]
                        self.deferred = []
            if isinstance(event, ClientDisconnected):
                self.disconnect_taken = True
            assert self._collect() == expected

    @rule(
        channel_ids=st.sampled_from([None, None, ("a", "b"), ("x",)]),
        with_now=st.booleans(),
    )
    def start_recognition(self, channel_ids: tuple[str, ...] | None, with_now: bool) -> None:
        code = ROWS["start_recognition"][self.state]
        kinds = ["RecognitionStarted"]
        if self.translation and not self.targets:
            kinds.append("Warning:empty_translation_target_list")
        now = self.now if with_now else None
        self._run(
            Expect(code, kinds),
            lambda: self.conn.start_recognition(session_id="s", channel_ids=channel_ids, now=now),
        )
        if code == L:
            return
        if now is not None:
            self.input_now = now
        self.session_start = self.last_audio = self.input_now
        ids = channel_ids if channel_ids is not None else self.labels
        if ids:
            self.expected = frozenset(ids)

    @rule(
        final=st.booleans(),
        channel=st.sampled_from([None, "a"]),
        backwards=st.sampled_from([False, False, False, True]),
    )
    def send_transcript(self, final: bool, channel: str | None, backwards: bool) -> None:
        code = ROWS["send_result"][self.state]
        expect = Expect(code, ["AddTranscript" if final else "AddPartialTranscript"])
        if code == "ok" and ((not final and not self.partials) or backwards):
            expect = Expect(L, table=False)
        start, end = (1.0, 0.5) if backwards else (0.0, 0.5)
        self._run(
            expect,
            lambda: self.conn.send_transcript(
                [WORD], start_time=start, end_time=end, final=final, channel=channel
            ),
        )

    @rule(
        what=st.sampled_from(
            [
                "EndOfUtterance",
                "AddTranslation",
                "AddPartialTranslation",
                "AddTranslation:fr",
                "AudioEventStarted",
                "AudioEventEnded",
                "SpeakersResult",
            ]
        )
    )
    def send_other_result(self, what: str) -> None:
        code = ROWS["send_result"][self.state]
        name, _, language = what.partition(":")
        language = language or "de"
        expect = Expect(code, [name])
        refused = language not in self.targets or (
            name == "AddPartialTranslation" and not self.translation_partials
        )
        if code == "ok" and "Translation" in name and refused:
            expect = Expect(L, table=False)
        sentence = TranslatedSentence("Hallo", 0.0, 0.5, "S1")
        calls: dict[str, Callable[[], None]] = {
            "EndOfUtterance": lambda: self.conn.send_end_of_utterance(0.5, channel="a"),
            "AddTranslation": lambda: self.conn.send_translation(language, [sentence], final=True),
            "AddPartialTranslation": lambda: self.conn.send_translation(
                language, [sentence], final=False
            ),
            "AudioEventStarted": lambda: self.conn.send_audio_event_started("music", 0.1, 0.9),
            "AudioEventEnded": lambda: self.conn.send_audio_event_ended("music", 0.4),
            "SpeakersResult": lambda: self.conn.send_speakers([SpeakerIdentity("S1", ("x",))]),
        }
        self._run(expect, calls[name])

    @rule(info=st.booleans())
    def send_notice(self, info: bool) -> None:
        code = ROWS["send_notice"][self.state]
        if info:
            expect = Expect(code, ["Info:recognition_quality"])
            self._run(expect, lambda: self.conn.send_info("recognition_quality", "ok", quality="x"))
        else:
            expect = Expect(code, ["Warning:speaker_id"])
            self._run(expect, lambda: self.conn.send_warning("speaker_id", "nothing yet"))

    @rule(error_type=st.sampled_from([*sorted(ERROR_CLOSE_CODES), "made_up_type"]))
    def send_error(self, error_type: str) -> None:
        code = ROWS["send_error"][self.state]
        if code == "fail":
            code = f"error:{error_type}"
        self._run(Expect(code, reported=False), lambda: self.conn.send_error(error_type, "because"))

    @rule()
    def end_of_transcript(self) -> None:
        code = ROWS["end_of_transcript"][self.state]
        kinds = ["EndOfTranscript"]
        if self.opts_.close_timeout == 0:
            kinds.append("Close:1000")
        expect = Expect(code, kinds)
        if code == "finish" and self.pending_bytes:
            expect = Expect(L, table=False)
        self._run(expect, self.conn.end_of_transcript)
        if expect.code == "finish" and self.opts_.close_timeout > 0:
            self.close_deadline = self.input_now + self.opts_.close_timeout

    @rule(code=st.sampled_from([1000, 1001, 1011, 4000]), long_reason=st.booleans())
    def close(self, code: int, long_reason: bool) -> None:
        want = ROWS["close"][self.state]
        reason = "é" * 100 if long_reason else "shutting down"
        self._run(Expect(want, [f"Close:{code}"]), lambda: self.conn.close(code, reason))
        if want == "close":
            self.close_deadline = None

    # --------------------------------------------------------------- invariants

    @invariant()
    def states_agree(self) -> None:
        assert self.conn.state is self.state

    @invariant()
    def timer_is_the_model_s(self) -> None:
        if self.opts is None:
            return
        assert self.conn.get_timer() == self._timer()
        if self.state in (FAILED, HANDSHAKE, STARTING):
            assert self.conn.get_timer() is None

    @invariant()
    def events_are_the_model_s(self) -> None:
        # (A peek at the queue: the events are checked again as they are taken.)
        queued = [describe(e) for e in self.conn._events]
        assert queued == list(self.events)
        assert all(isinstance(e, ServerEvent) for e in self.conn._events)

    @invariant()
    def audio_accounting(self) -> None:
        assert self.conn.pending_audio_bytes == self.pending_bytes >= 0
        if not self.configured:
            assert self.conn.audio_seconds_received is None
        elif self.bps:
            assert self.conn.audio_seconds_received == self.binary_bytes / self.bps
        else:
            assert self.conn.audio_seconds_received is None

    @invariant()
    def ends_agree(self) -> None:
        assert self.conn.error_type == self.error_type
        if self.error_type is not None:
            assert self.state is FAILED
        assert (self.conn.config is not None) == self.configured


ServerMachine.TestCase.settings = settings(stateful_step_count=40)
TestServerMachine = ServerMachine.TestCase


# ------------------------------------------------------------------------------------------
# Found by the machine: frames past max_audio_seconds were acked at once, ahead of
# earlier frames still waiting to be taken (AudioAdded went 3, 1, 2 and the client
# engine failed on the backwards ack).


def _acks(server: ServerConnection) -> list[str]:
    return [kind(a) for a in server.actions() if "AudioAdded" in kind(a)]


def _streaming(server: ServerConnection, config: TranscriptionConfig) -> None:
    server.handshake("/v2", {}, now=0.0)
    start = start_recognition_message(config, AudioFormat())
    server.receive_message(json.dumps(start), now=0.0)
    assert isinstance(server.next_event(), StartRequested)
    server.start_recognition()
    server.actions()


def test_ack_of_audio_past_the_limit_never_goes_backwards() -> None:
    server = ServerConnection(max_audio_seconds=0.15)
    _streaming(server, TranscriptionConfig("en"))
    frame = b"\x00\x01" * 1600  # 0.1 s
    for _ in range(4):  # frames 3 and 4 were on their way when the limit was reached
        server.receive_message(frame, now=1.0)
    assert _acks(server) == []  # nothing taken yet: nothing acknowledged
    assert isinstance(server.next_event(), AudioReceived)
    assert _acks(server) == ["AudioAdded:1"]  # frame 2 is still untaken: 3 and 4 wait
    while server.next_event() is not None:
        pass
    assert _acks(server) == ["AudioAdded:2", "AudioAdded:3", "AudioAdded:4"]
    # With nothing untaken, audio past the limit is acknowledged at once.
    server.receive_message(frame, now=1.1)
    assert _acks(server) == ["AudioAdded:5"]
    server.end_of_transcript()


def test_channel_acks_past_the_limit_wait_for_every_untaken_frame() -> None:
    server = ServerConnection(max_audio_seconds=0.15)
    _streaming(
        server,
        TranscriptionConfig("en", diarization="channel", channel_diarization_labels=["a", "b"]),
    )
    data = base64.b64encode(b"\x00\x01" * 1600).decode()  # 0.1 s

    def add(channel: str) -> None:
        message = {"message": "AddChannelAudio", "channel": channel, "data": data}
        server.receive_message(json.dumps(message), now=1.0)

    for channel in ["a", "b", "a", "b", "a", "b"]:  # "a" passes the limit with its 2nd frame
        add(channel)
    assert _acks(server) == []
    taken = []
    while (event := server.next_event()) is not None:
        if isinstance(event, AudioReceived):
            taken.append(event.channel)
    assert taken == ["a", "b", "a"]  # the rest came past the limit: acked, not recognised
    acks = _acks(server)
    for channel in "ab":  # per channel, in order, each frame once
        mine = [a for a in acks if a.startswith(f"ChannelAudioAdded:{channel}:")]
        assert mine == [f"ChannelAudioAdded:{channel}:{n}" for n in range(1, 4)]
    # The untaken frames' acks came first, then the deferred ones.
    assert acks[:3] == ["ChannelAudioAdded:a:1", "ChannelAudioAdded:b:1", "ChannelAudioAdded:a:2"]
