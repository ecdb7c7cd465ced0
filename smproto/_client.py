"""The client side of the Speechmatics RT protocol, as a sans-IO engine.

See :class:`ClientConnection`. The lifecycle rules live in :mod:`smproto._state`;
this module does what each rule allows and nothing else changes ``state``.
"""

from __future__ import annotations

import base64
import json
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple, NoReturn

from . import _state
from ._state import CLIENT_MACHINE, CLIENT_RULES, Outcome, Rule, State
from .actions import Action, CloseTransport, SendBinary, SendText
from .config import (
    MID_SESSION_FIELDS,
    AudioEventsConfig,
    AudioFilteringConfig,
    AudioFormat,
    ConversationConfig,
    TranscriptionConfig,
    TranslationConfig,
    start_recognition_message,
)
from .errors import Failure, FailureKind, LocalProtocolError, RemoteProtocolError
from .events import (
    RETRYABLE_ERROR_TYPES,
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
    Event,
    LanguagePackInfo,
    RecognitionStarted,
    ServerError,
    ServerInfo,
    ServerWarning,
    SpeakerIdentity,
    SpeakersResult,
    TranslatedSentence,
    UnknownMessage,
)
from .transcript import Result, TranscriptFormatError, _brief, parse_results

__all__ = ["AudioInFlight", "ClientConnection"]

#: Bytes per second assumed for flow control when the audio is a file format
#: (``AudioFormat.file()``) and its real rate is unknown: 16 kHz 16-bit mono.
FILE_AUDIO_BYTES_PER_SECOND: Final = 32_000

#: WebSocket close codes after which a new connection cannot help.
NON_RETRYABLE_CLOSE_CODES: Final = frozenset(
    {1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003, 4004, 4006}
)

# Tolerance when comparing times for de-duplication after a resume.
_EPSILON = 1e-6


class AudioInFlight(NamedTuple):
    """Audio sent but not yet acknowledged by the server (``AudioAdded``)."""

    frames: int
    bytes: int
    #: ``bytes`` as seconds of audio (for file formats, at 32 kB/s).
    seconds: float


class _Stream:
    """Accounting for one audio stream: the single stream, or one channel."""

    __slots__ = (
        "acked",
        "bytes_acked",
        "bytes_sent",
        "cut",
        "ended",
        "final_until",
        "queued",
        "release_until",
        "retained",
        "retained_bytes",
        "sent",
        "unacked",
    )

    def __init__(self) -> None:
        self.sent = 0  # frames sent this session
        self.acked = 0  # highest seq_no acknowledged
        self.queued = 0  # frames waiting in the replay queue
        self.bytes_sent = 0
        self.bytes_acked = 0
        # Cumulative byte offset at the end of each unacknowledged frame.
        self.unacked: deque[int] = deque()
        # (cumulative end offset, chunk) of the audio no final covers yet.
        self.retained: deque[tuple[int, bytes]] = deque()
        self.retained_bytes = 0
        self.ended = False  # EndOfChannel / EndOfStream sent
        # Absolute time up to which finals have arrived for this stream.
        self.final_until = -math.inf
        # The end of the last final word delivered (and what followed it): a connection
        # that continues this one drops what lies before it (ClientConnection.take_over).
        self.cut = _Cut()
        # Audio before this time may be dropped: the start of the latest final, so that a
        # replay gives the recogniser the context of the last words it finalised.
        self.release_until = -math.inf


_SINGLE: Final = 1
_MULTI: Final = 2


def _jdump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every message: json.loads() with any option builds a new decoder
# per call, and raw_decode() skips a regex that decode() runs on the common path.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_raw_decode = _DECODER.raw_decode


def _decode(data: str) -> Any:
    """Parse one JSON document (strict: no NaN/Infinity, nothing after it)."""
    try:
        value, end = _raw_decode(data)
    except ValueError:
        return _DECODER.decode(data)  # leading whitespace, or a real error to report
    if end != len(data):
        return _DECODER.decode(data)  # trailing whitespace is fine, anything else is not
    return value


def _close_reason(reason: str) -> str:
    """A close reason that fits a WebSocket close frame (at most 123 UTF-8 bytes)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    return encoded[:120].decode("utf-8", "ignore") + "..."


def _num(value: Any) -> bool:
    """A JSON number (bools are not numbers; NaN cannot come from the decoder)."""
    t = type(value)
    return t is float or t is int


class ClientConnection:
    """A Speechmatics RT client connection, with no IO.

    The driver feeds it what happens (:meth:`connection_opened`,
    :meth:`receive_message`, :meth:`connection_closed`, :meth:`handle_timer`); the
    application gives it commands (:meth:`send_audio`, :meth:`end_of_stream`, ...).
    It answers with :meth:`actions` for the transport, :meth:`next_event` for the
    application, and :meth:`get_timer` for when to call :meth:`handle_timer`.

    Times are ``now`` arguments in seconds from any monotonic clock. Commands take
    an optional ``now``; without it the engine uses the time of its latest input.

    Flow control: every binary frame has a 1-based ``seq_no`` that the server
    acknowledges with ``AudioAdded``. :attr:`audio_in_flight` is what is not yet
    acknowledged; a driver waits while :attr:`audio_window_full` is true.

    Reconnect without loss: the engine retains the audio that no final transcript
    covers yet (at most ``retain_audio_seconds``). :meth:`resume_from` builds a new
    connection from a failed one that replays that audio and shifts every time it
    reports, so the application sees one continuous timeline.

    Args:
        transcription_config: What to recognise and how.
        audio_format: The audio that will be sent (default: 16 kHz 16-bit PCM).
        translation_config: Optional translation targets.
        audio_events_config: Optional audio event detection.
        max_audio_in_flight_seconds: The flow-control window (default 10 s).
        retain_audio_seconds: The most audio kept for replay after a failure
            (default 60 s; ``0`` keeps none, so a resume cannot be lossless).
        recognition_started_timeout: How long to wait for ``RecognitionStarted``.
        ack_timeout: How long audio may wait for any acknowledgement.
        drain_timeout: How long to wait for ``EndOfTranscript`` after the end of the stream.
    """

    __slots__ = (
        "__weakref__",
        "_ack_base",
        "_actions",
        "_channel_offsets",
        "_channels",
        "_closed_reported",
        "_cuts",
        "_drain_deadline",
        "_events",
        "_expected_channels",
        "_main",
        "_mode",
        "_now",
        "_pending",
        "_retain_limit",
        "_start_deadline",
        "_stream_ended",
        "_translation_cuts",
        "_translation_until",
        "_window_bps",
        "_word_delimiter",
        "ack_timeout",
        "audio_events_config",
        "audio_format",
        "drain_timeout",
        "failure",
        "max_audio_in_flight_seconds",
        "recognition_started",
        "recognition_started_timeout",
        "retain_audio_seconds",
        "retention_overflowed",
        "state",
        "time_offset",
        "transcription_config",
        "translation_config",
    )

    #: The engine's state; read it freely, it is a plain attribute.
    state: State
    #: Why the connection failed (set when ``state`` is ``FAILED``).
    failure: Failure | None
    #: The ``RecognitionStarted`` event, once received.
    recognition_started: RecognitionStarted | None
    #: Seconds added to every time this connection reports (non-zero after a resume).
    time_offset: float
    #: Whether retained audio had to be dropped before a final covered it.
    retention_overflowed: bool

    def __init__(
        self,
        transcription_config: TranscriptionConfig,
        audio_format: AudioFormat = AudioFormat(),  # noqa: B008 (frozen, safe)
        *,
        translation_config: TranslationConfig | None = None,
        audio_events_config: AudioEventsConfig | None = None,
        max_audio_in_flight_seconds: float = 10.0,
        retain_audio_seconds: float = 60.0,
        recognition_started_timeout: float = 30.0,
        ack_timeout: float = 30.0,
        drain_timeout: float = 60.0,
    ) -> None:
        if not isinstance(transcription_config, TranscriptionConfig):
            raise TypeError(
                "transcription_config must be a TranscriptionConfig, "
                f"got {type(transcription_config).__name__}"
            )
        if not isinstance(audio_format, AudioFormat):
            raise TypeError(
                f"audio_format must be an AudioFormat, got {type(audio_format).__name__}"
            )
        if translation_config is not None and not isinstance(translation_config, TranslationConfig):
            raise TypeError("translation_config must be a TranslationConfig or None")
        if audio_events_config is not None and not isinstance(
            audio_events_config, AudioEventsConfig
        ):
            raise TypeError("audio_events_config must be an AudioEventsConfig or None")
        for name, value, low in (
            ("max_audio_in_flight_seconds", max_audio_in_flight_seconds, 0.0),
            ("retain_audio_seconds", retain_audio_seconds, -1.0),
            ("recognition_started_timeout", recognition_started_timeout, 0.0),
            ("ack_timeout", ack_timeout, 0.0),
            ("drain_timeout", drain_timeout, 0.0),
        ):
            if not _num(value) or not low < value < math.inf:
                raise ValueError(f"{name} must be a finite number > {max(low, 0.0)}, got {value!r}")
        if retain_audio_seconds < 0:
            raise ValueError(f"retain_audio_seconds must be >= 0, got {retain_audio_seconds!r}")

        self.transcription_config = transcription_config
        self.audio_format = audio_format
        self.translation_config = translation_config
        self.audio_events_config = audio_events_config
        self.max_audio_in_flight_seconds = float(max_audio_in_flight_seconds)
        self.retain_audio_seconds = float(retain_audio_seconds)
        self.recognition_started_timeout = float(recognition_started_timeout)
        self.ack_timeout = float(ack_timeout)
        self.drain_timeout = float(drain_timeout)

        self.state = State.CONNECTING
        self.failure = None
        self.recognition_started = None
        self.time_offset = 0.0
        self.retention_overflowed = False

        bps = audio_format.bytes_per_second
        self._window_bps = bps if bps else FILE_AUDIO_BYTES_PER_SECOND
        self._retain_limit = int(self.retain_audio_seconds * self._window_bps)
        self._actions: list[Action] = []
        self._events: deque[Event] = deque()
        self._now: float = 0.0
        self._main = _Stream()
        self._channels: dict[str, _Stream] = {}
        self._expected_channels: frozenset[str] | None = (
            frozenset(transcription_config.channel_diarization_labels)
            if transcription_config.channel_diarization_labels
            else None
        )
        self._mode = 0
        # Audio (and ends of stream, as b"") waiting to be sent after a resume's replay.
        self._pending: deque[tuple[str | None, bytes]] = deque()
        self._stream_ended = False
        self._channel_offsets: dict[str, float] = {}
        self._word_delimiter = " "
        self._start_deadline: float | None = None
        self._drain_deadline: float | None = None
        self._ack_base = 0.0
        self._closed_reported = False
        # Per target language, the end of the last final translated sentence.
        self._translation_until: dict[str, float] = {}
        # After a take-over: per stream (or language), the end of the last final result
        # the connections before this one delivered (the time cut).
        self._cuts: dict[str | None, _Cut] = {}
        self._translation_cuts: dict[str, float] = {}

    def __repr__(self) -> str:
        inflight = self.audio_in_flight
        return (
            f"<ClientConnection state={self.state.name} language="
            f"{self.transcription_config.language!r} in_flight={inflight.frames} frames/"
            f"{inflight.seconds:.2f}s>"
        )

    # ------------------------------------------------------------------ outputs

    def actions(self) -> list[Action]:
        """Take the actions the driver must perform on the transport, in order."""
        actions = self._actions
        if actions:
            self._actions = []
        return actions

    @property
    def has_actions(self) -> bool:
        """Whether :meth:`actions` would return anything (it takes nothing). A driver
        can skip its write path, and its write lock, when there is nothing to write."""
        return bool(self._actions)

    @property
    def has_events(self) -> bool:
        """Whether :meth:`next_event` would return an event (it takes nothing)."""
        return bool(self._events)

    def next_event(self) -> Event | None:
        """Take the next event for the application, or ``None`` when there is none."""
        events = self._events
        return events.popleft() if events else None

    def events(self) -> list[Event]:
        """Take every pending event."""
        events = list(self._events)
        self._events.clear()
        return events

    def get_timer(self) -> float | None:
        """The next deadline (a ``now`` value) at which to call :meth:`handle_timer`."""
        state = self.state
        if state is State.AWAITING_RECOGNITION_STARTED:
            return self._start_deadline
        if state is State.STREAMING or state is State.DRAINING:
            deadline = self._drain_deadline
            if self._has_unacked():
                ack_deadline = self._ack_base + self.ack_timeout
                if deadline is None or ack_deadline < deadline:
                    deadline = ack_deadline
            return deadline
        return None

    # ------------------------------------------------------------ introspection

    @property
    def audio_in_flight(self) -> AudioInFlight:
        """Audio sent but not yet acknowledged (all channels together)."""
        frames = self._main.sent - self._main.acked
        nbytes = self._main.bytes_sent - self._main.bytes_acked
        seconds = nbytes / self._window_bps
        for stream in self._channels.values():
            frames += stream.sent - stream.acked
            inflight = stream.bytes_sent - stream.bytes_acked
            nbytes += inflight
            # Channels play in parallel: the window is about the longest one.
            seconds = max(seconds, inflight / self._window_bps)
        return AudioInFlight(frames, nbytes, seconds)

    @property
    def audio_window_full(self) -> bool:
        """Whether the application should wait before sending more audio.

        True while the audio in flight plus the audio queued for replay reaches
        ``max_audio_in_flight_seconds``. The engine never refuses audio because of
        the window; honouring it is the driver's job.
        """
        main = self._main
        limit = self.max_audio_in_flight_seconds * self._window_bps
        if self._pending:
            return True
        if main.bytes_sent - main.bytes_acked >= limit:
            return True
        if self._channels:
            return any(s.bytes_sent - s.bytes_acked >= limit for s in self._channels.values())
        return False

    @property
    def audio_seconds_sent(self) -> float:
        """Seconds of audio sent, on the continuous timeline (includes ``time_offset``).

        For file formats, where the duration is unknown, this is estimated at 32 kB/s.
        """
        seconds = self.time_offset + self._main.bytes_sent / self._window_bps
        for channel, stream in self._channels.items():
            sent = self._offset_for(channel) + stream.bytes_sent / self._window_bps
            seconds = max(seconds, sent)
        return seconds

    @property
    def audio_seconds_acknowledged(self) -> float:
        """Seconds of audio the server has acknowledged, on the continuous timeline
        (includes ``time_offset``; estimated at 32 kB/s for file formats). A resumed
        connection that gets further than this made progress.
        """
        seconds = self.time_offset + self._main.bytes_acked / self._window_bps
        for channel, stream in self._channels.items():
            acked = self._offset_for(channel) + stream.bytes_acked / self._window_bps
            seconds = max(seconds, acked)
        return seconds

    @property
    def frames_sent(self) -> int:
        """Binary audio frames sent in this connection (the next ``seq_no`` minus one)."""
        return self._main.sent

    @property
    def frames_acknowledged(self) -> int:
        """The highest ``seq_no`` the server has acknowledged."""
        return self._main.acked

    @property
    def retained_audio_seconds(self) -> float:
        """Seconds of audio kept for replay after a failure."""
        nbytes = self._main.retained_bytes
        for stream in self._channels.values():
            nbytes = max(nbytes, stream.retained_bytes)
        return nbytes / self._window_bps

    # ------------------------------------------------------------------ the rules

    def _enter(self, name: str, *, reason: str | None = None, code: int = 1002) -> Rule:
        """Apply the rule of input ``name`` in the current state: the one place where
        the engine's ``state`` changes (h11's rule).

        ``OK``: fires the row's trigger, if any, and returns the rule. ``IGNORE``:
        returns it (the caller does nothing more). ``LOCAL_ERROR``: raises
        :class:`LocalProtocolError`, naming the state; nothing changes.
        ``REMOTE_ERROR``: fires the row's trigger (``fail``), records a
        ``REMOTE_PROTOCOL_ERROR`` failure with ``reason``, queues the close (``code``)
        and raises :class:`RemoteProtocolError`.

        Handlers validate a message *before* they enter its rule, so a malformed
        message never changes the state it was not allowed to change.
        """
        rule = CLIENT_RULES[name][self.state]
        outcome = rule.outcome
        if outcome is Outcome.OK:
            if rule.trigger is not None:
                _state.fire(CLIENT_MACHINE, self, rule.trigger)
            return rule
        if outcome is Outcome.IGNORE:
            return rule
        if outcome is Outcome.LOCAL_ERROR:
            raise self._local_error(name)
        if reason is None:
            reason = self._wrong_state(_describe_input(name))
        if rule.trigger is not None:
            _state.fire(CLIENT_MACHINE, self, rule.trigger)
        close = CloseTransport(code, _close_reason(reason))
        self._failed(Failure(FailureKind.REMOTE_PROTOCOL_ERROR, reason, retryable=False), close)
        raise RemoteProtocolError(reason, close)

    def _local_error(self, name: str) -> LocalProtocolError:
        """The error for input ``name``, refused in the current state."""
        state = self.state.name
        if name not in _TRANSPORT_AND_COMMANDS:
            message = (
                f"receive_message() is not allowed in state {state} "
                "(call connection_opened() first)"
            )
        else:
            row = CLIENT_RULES[name]
            expected = " or ".join(s.name for s in State if row[s].outcome is Outcome.OK)
            message = (
                f"{name.partition(':')[0]}() is not allowed in state {state} (expected {expected})"
            )
        if self.failure is not None:
            message += f"; the connection failed: {self.failure.reason}"
        return LocalProtocolError(message)

    def _violation(self, reason: str, code: int = 1002) -> NoReturn:
        """The server sent a message allowed in this state but wrong in itself."""
        self._enter("<violation>", reason=reason, code=code)
        raise AssertionError("<violation> is a remote error in every state a handler runs in")

    def _has_unacked(self) -> bool:
        if self._main.unacked:
            return True
        return any(s.unacked for s in self._channels.values())

    def _failed(self, failure: Failure, close: CloseTransport | None) -> None:
        """Record why the connection failed (its rule has fired ``fail``)."""
        self.failure = failure
        # The replay queue is kept: resume_from() carries it to the next connection.
        self._start_deadline = self._drain_deadline = None
        if close is not None:
            self._actions.append(close)

    def _set_now(self, now: float | None) -> float:
        if now is None:
            return self._now
        self._now = now
        return now

    # ------------------------------------------------------------------- inputs

    def connection_opened(self, *, now: float) -> None:
        """The WebSocket is open: queue ``StartRecognition``, start the start timer."""
        self._enter("connection_opened")
        self._now = now
        message = start_recognition_message(
            self.transcription_config,
            self.audio_format,
            self.translation_config,
            self.audio_events_config,
        )
        self._actions.append(SendText(_jdump(message)))
        self._start_deadline = now + self.recognition_started_timeout

    def connection_closed(self, code: int | None, reason: str = "", *, now: float) -> None:
        """The transport is gone (closed by either side, or broken).

        Emits :class:`~smproto.events.ConnectionClosed` once. Before
        ``EndOfTranscript`` this is a failure (``CONNECTION_LOST``), retryable unless
        the close code says a retry cannot help.
        """
        self._now = now
        where = self.state.name
        if self._enter("connection_closed").trigger == "fail":
            what = f"code {code}" if code is not None else "no close code"
            text = f"the connection closed ({what}{': ' + reason if reason else ''}) in {where}"
            retryable = code not in NON_RETRYABLE_CLOSE_CODES
            self._failed(
                Failure(FailureKind.CONNECTION_LOST, text, retryable, close_code=code), None
            )
        if self._closed_reported:
            return
        self._closed_reported = True
        raw = {"code": code, "reason": reason}
        self._events.append(ConnectionClosed(code, reason, self.failure, raw))

    def handle_timer(self, *, now: float) -> None:
        """Call when ``now`` reaches :meth:`get_timer`; a passed deadline fails the connection."""
        self._now = now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        state = self.state
        if state is State.AWAITING_RECOGNITION_STARTED:
            timer = "recognition_started"
            reason = f"no RecognitionStarted within {self.recognition_started_timeout:g}s"
        elif self._drain_deadline is not None and now >= self._drain_deadline:
            timer = "drain"
            reason = f"no EndOfTranscript within {self.drain_timeout:g}s of the end of the stream"
        else:
            timer = "ack"
            inflight = self.audio_in_flight
            reason = (
                f"no AudioAdded for {self.ack_timeout:g}s with {inflight.frames} frames "
                f"({inflight.seconds:.1f}s of audio) unacknowledged"
            )
        if self._enter("timer_expired").trigger == "fail":
            failure = Failure(FailureKind.TIMEOUT, reason, retryable=True, timer=timer)
            self._failed(failure, CloseTransport(1001, _close_reason(reason)))

    def receive_message(self, data: str | bytes, *, now: float) -> None:
        """Feed one WebSocket message from the server.

        Raises:
            RemoteProtocolError: the server broke the protocol; the connection is now
                ``FAILED`` and the close to send is queued in :meth:`actions`.
            LocalProtocolError: called before :meth:`connection_opened`.
        """
        self._now = now
        if type(data) is not str:
            if isinstance(data, str):
                data = str(data)  # a str subclass: read it as text
            elif isinstance(data, bytes | bytearray | memoryview):
                text = _json_in_binary(data)
                if text is None:
                    rule = CLIENT_RULES["<binary>"][self.state]
                    if rule.outcome is not Outcome.OK:  # no state accepts binary
                        self._enter(
                            "<binary>", reason=self._wrong_state("a binary message"), code=1003
                        )
                    return
                data = text  # JSON sent as a binary frame: read as text (as both SDKs do)
            else:
                raise TypeError(f"a message is str or bytes, not {type(data).__name__}")
        try:
            msg = _decode(data)
        except (ValueError, RecursionError) as exc:
            self._refuse_unparsed(f"the server sent invalid JSON: {exc}")
            return
        if type(msg) is not dict:
            self._refuse_unparsed(f"the server sent a JSON {type(msg).__name__}, not an object")
            return
        mtype = msg.get("message")
        handler = _HANDLERS.get(mtype) if type(mtype) is str else None
        if handler is None:
            if type(mtype) is not str:
                self._refuse_unparsed(
                    f"the server sent a message without a string 'message' field: {data[:80]!r}"
                )
                return
            if self._enter("<unknown>").outcome is Outcome.OK:
                self._events.append(UnknownMessage(mtype, msg))
            return
        name: str = msg["message"]
        if mtype == "Warning" and msg.get("type") == "duration_limit_exceeded":
            name = "Warning:duration_limit_exceeded"
        elif mtype == "RecognitionStarted" and self._stream_ended:
            name = "RecognitionStarted:ended"
        rule = CLIENT_RULES[name][self.state]
        if rule.outcome is not Outcome.OK:
            self._enter(name, reason=self._wrong_state(f"a {mtype} message"))
            return
        try:
            handler(self, msg, name)
        except (TranscriptFormatError, _Malformed) as exc:
            self._violation(f"malformed {mtype} from the server: {exc}")
        except RecursionError:
            # A value nested deeper than Python can walk: refuse the message, don't crash.
            self._violation(f"malformed {mtype} from the server: nested too deeply")

    def _wrong_state(self, what: str) -> str:
        return f"the server sent {what} not allowed in state {self.state.name}"

    def _refuse_unparsed(self, reason: str) -> None:
        """A message that is not a JSON object with a ``message`` field: a violation
        where server messages are allowed (ignored once the connection is over)."""
        if CLIENT_RULES["<unknown>"][self.state].outcome is Outcome.OK:
            self._violation(reason)
        self._enter("<unknown>")

    # ---------------------------------------------------------- message handlers

    def _on_recognition_started(self, msg: dict[str, Any], name: str) -> None:
        session_id = msg.get("id")
        version = msg.get("orchestrator_version")
        if session_id is not None and type(session_id) is not str:
            raise _Malformed("id must be a string")
        if version is not None and type(version) is not str:
            raise _Malformed("orchestrator_version must be a string")
        info = None
        raw_info = msg.get("language_pack_info")
        if raw_info is not None:
            if type(raw_info) is not dict:
                raise _Malformed("language_pack_info must be an object")
            delimiter = raw_info.get("word_delimiter", " ")
            if type(delimiter) is not str:
                raise _Malformed("language_pack_info.word_delimiter must be a string")
            info = LanguagePackInfo(
                delimiter,
                _opt(raw_info, "language_description", str),
                _opt(raw_info, "writing_direction", str),
                _opt(raw_info, "itn", bool),
                _opt(raw_info, "adapted", bool),
            )
            self._word_delimiter = delimiter
        channel_ids = msg.get("channel_ids")
        if channel_ids is not None:
            if type(channel_ids) is not list or not all(type(c) is str for c in channel_ids):
                raise _Malformed("channel_ids must be a list of strings")
            channel_ids = tuple(channel_ids)
            if channel_ids:
                self._expected_channels = frozenset(channel_ids)
        # "start", or "start_drained" for a resumed connection whose predecessor had
        # already ended its stream (the replay goes out, then the end of the stream).
        self._enter(name)
        self._start_deadline = None
        event = RecognitionStarted(session_id, version, info, channel_ids, msg)
        self.recognition_started = event
        self._events.append(event)
        self._ack_base = self._now
        self._pump_pending()

    def _on_audio_added(self, msg: dict[str, Any], name: str) -> None:
        seq_no = msg.get("seq_no")
        if type(seq_no) is not int:
            seq_no = _integer(seq_no, "seq_no")
        self._ack(self._main, seq_no, "AudioAdded")
        self._events.append(AudioAdded(seq_no, msg))
        if self._pending:
            self._pump_pending()

    def _on_channel_audio_added(self, msg: dict[str, Any], name: str) -> None:
        seq_no = _integer(msg.get("seq_no"), "seq_no")
        channel = msg.get("channel")
        if type(channel) is not str:
            raise _Malformed("ChannelAudioAdded needs a string channel")
        stream = self._channels.get(channel)
        if stream is None:
            self._violation(
                f"the server acknowledged audio on channel {channel!r}, which was never sent"
            )
        self._ack(stream, seq_no, f"ChannelAudioAdded for channel {channel!r}")
        self._events.append(ChannelAudioAdded(channel, seq_no, msg))
        if self._pending:
            self._pump_pending()

    def _ack(self, stream: _Stream, seq_no: int, what: str) -> None:
        acked = stream.acked
        if seq_no > acked:
            if seq_no > stream.sent:
                self._violation(
                    f"{what} acknowledges frame {seq_no} but only {stream.sent} were sent"
                )
            unacked = stream.unacked
            for _ in range(seq_no - acked - 1):
                unacked.popleft()
            stream.bytes_acked = unacked.popleft()
            stream.acked = seq_no
            self._ack_base = self._now
        elif seq_no < acked:
            self._violation(
                f"{what} seq_no {seq_no} goes backwards (frame {acked} was already acknowledged)"
            )

    def _on_transcript(self, msg: dict[str, Any], name: str) -> None:
        # The hot path of every session: checks by type identity, no helper calls.
        metadata = msg.get("metadata")
        if type(metadata) is not dict:
            raise _Malformed("metadata must be an object")
        start: Any = metadata.get("start_time")
        end: Any = metadata.get("end_time")
        ts, te = type(start), type(end)
        if (
            (ts is not float and ts is not int)
            or (te is not float and te is not int)
            or type(metadata.get("transcript")) is not str
        ):
            raise _Malformed(
                "metadata needs numeric start_time and end_time and a string transcript"
            )
        channel = msg.get("channel")
        raw_results = msg.get("results")
        if channel is None:
            if raw_results and type(raw_results) is list and type(raw_results[0]) is dict:
                # The channel may sit on the results instead of the message.
                channel = raw_results[0].get("channel")
            offset = self.time_offset
        else:
            offset = self._offset_for(channel) if type(channel) is str else 0.0
        if channel is not None and type(channel) is not str:
            raise _Malformed("channel must be a string")
        results = parse_results(raw_results, offset=offset)
        forced = msg.get("forced", False)
        fmt = msg.get("format")
        if type(forced) is not bool or (fmt is not None and type(fmt) is not str):
            raise _Malformed("forced must be a boolean and format a string")
        if offset:
            start += offset
            end += offset
        final = msg["message"] == "AddTranscript"
        context = start  # where the final's audio starts: kept for a replay, as context
        if self._cuts:
            cut = self._cuts.get(channel)
            if cut is not None:
                results = cut.filter(results, final)
                if not results and end <= cut.end + _EPSILON:
                    return  # delivered already, by the connection before
                start = max(start, min(cut.end, end))  # the event starts at the cut
                if cut.passed:
                    del self._cuts[channel]  # a new word: nothing later is before the cut
        if final:
            stream = self._main if channel is None else self._channels.get(channel)
            if stream is not None:
                if results:
                    stream.cut.deliver(results)
                if end > stream.final_until + _EPSILON:
                    stream.final_until = end
                    stream.release_until = max(stream.release_until, min(context, end))
                    if stream.retained:
                        self._release_retained()
            self._events.append(
                AddTranscript(results, start, end, channel, forced, fmt, self._word_delimiter, msg)
            )
        else:
            self._events.append(
                AddPartialTranscript(
                    results, start, end, channel, forced, fmt, self._word_delimiter, msg
                )
            )

    def _on_translation(self, msg: dict[str, Any], name: str) -> None:
        language = msg.get("language")
        raw_results = msg.get("results")
        fmt = msg.get("format")
        if type(language) is not str or type(raw_results) is not list:
            raise _Malformed("a translation needs a string language and a list of results")
        if fmt is not None and type(fmt) is not str:
            raise _Malformed("format must be a string")
        offset = self.time_offset
        sentences = []
        for r in raw_results:
            if type(r) is not dict:
                raise _Malformed("a translated sentence must be an object")
            content: Any = r.get("content")
            start: Any = r.get("start_time")
            end: Any = r.get("end_time")
            speaker = r.get("speaker")
            if type(content) is not str or not _num(start) or not _num(end):
                raise _Malformed("a translated sentence needs content, start_time and end_time")
            if speaker is not None and type(speaker) is not str:
                raise _Malformed("speaker must be a string")
            sentences.append(TranslatedSentence(content, start + offset, end + offset, speaker))
        cut = self._translation_cuts.get(language) if self._translation_cuts else None
        if cut is not None:
            twice = 2 * cut + _EPSILON
            sentences = [s for s in sentences if s.start_time + s.end_time > twice]
        if msg["message"] == "AddTranslation":
            if cut is not None and raw_results and not sentences:
                return  # delivered already, by the connection before
            if sentences:
                last = max(s.end_time for s in sentences)
                if last > self._translation_until.get(language, -math.inf) + _EPSILON:
                    self._translation_until[language] = last
                    self._release_retained()
            self._events.append(AddTranslation(language, tuple(sentences), fmt, msg))
        else:
            self._events.append(AddPartialTranslation(language, tuple(sentences), fmt, msg))

    def _on_end_of_utterance(self, msg: dict[str, Any], name: str) -> None:
        metadata = msg.get("metadata", {})
        if type(metadata) is not dict:
            raise _Malformed("metadata must be an object")
        start, end = metadata.get("start_time"), metadata.get("end_time")
        if (start is not None and not _num(start)) or (end is not None and not _num(end)):
            raise _Malformed("metadata times must be numbers")
        channel = _opt(msg, "channel", str)
        forced = msg.get("forced", False)
        if type(forced) is not bool:
            raise _Malformed("forced must be a boolean")
        offset = self._offset_for(channel)
        if start is not None:
            start += offset
        if end is not None:
            end += offset
        cut = self._cuts.get(channel) if self._cuts else None
        if cut is not None and end is not None and not cut.new_end_of_utterance(end):
            return  # the end of an utterance delivered already
        stream = self._main if channel is None else self._channels.get(channel)
        if stream is not None and end is not None and end >= stream.cut.end - _EPSILON:
            stream.cut.end_of_utterance = True
        self._events.append(EndOfUtterance(start, end, channel, forced, msg))

    def _on_audio_event(self, msg: dict[str, Any], name: str) -> None:
        event = msg.get("event")
        if type(event) is not dict:
            raise _Malformed("event must be an object")
        etype = event.get("type")
        if type(etype) is not str:
            raise _Malformed("event.type must be a string")
        channel = _opt(msg, "channel", str)
        offset = self._offset_for(channel)
        if msg["message"] == "AudioEventStarted":
            start: Any = event.get("start_time")
            confidence: Any = event.get("confidence")
            if not _num(start) or not _num(confidence):
                raise _Malformed("event.start_time and event.confidence must be numbers")
            self._events.append(AudioEventStarted(etype, start + offset, confidence, channel, msg))
        else:
            end: Any = event.get("end_time")
            if not _num(end):
                raise _Malformed("event.end_time must be a number")
            self._events.append(AudioEventEnded(etype, end + offset, channel, msg))

    def _on_speakers_result(self, msg: dict[str, Any], name: str) -> None:
        raw = msg.get("speakers")
        if type(raw) is not list:
            raise _Malformed("speakers must be a list")
        speakers = []
        for item in raw:
            if type(item) is not dict:
                raise _Malformed("a speaker must be an object")
            label, ids = item.get("label"), item.get("speaker_identifiers")
            if type(label) is not str or type(ids) is not list:
                raise _Malformed("a speaker needs a label and a list of speaker_identifiers")
            if not all(type(i) is str for i in ids):
                raise _Malformed("speaker_identifiers must be strings")
            speakers.append(SpeakerIdentity(label, tuple(ids)))
        self._events.append(SpeakersResult(tuple(speakers), msg))

    def _on_info(self, msg: dict[str, Any], name: str) -> None:
        itype, reason, code, seq_no = _notice(msg)
        self._events.append(ServerInfo(itype, reason, code, seq_no, msg))

    def _on_warning(self, msg: dict[str, Any], name: str) -> None:
        wtype, reason, code, seq_no = _notice(msg)
        limit = msg.get("duration_limit")
        if limit is not None and not _num(limit):
            raise _Malformed("duration_limit must be a number")
        self._events.append(ServerWarning(wtype, reason, code, seq_no, limit, msg))
        if name != "Warning" and self._enter(name).trigger == "drain":
            # duration_limit_exceeded while streaming: the server treats the rest of the
            # audio as if EndOfStream had come.
            self._stream_ended = True
            self._main.ended = True
            for stream in self._channels.values():
                stream.ended = True
            self._pending.clear()
            self._drain_deadline = self._now + self.drain_timeout

    def _on_error(self, msg: dict[str, Any], name: str) -> None:
        etype, reason, code, seq_no = _notice(msg, lenient=True)
        retryable = etype in RETRYABLE_ERROR_TYPES
        event = ServerError(etype or "unknown_error", reason, code, seq_no, retryable, msg)
        text = f"server error {event.type}" + (f": {reason}" if reason else "")
        self._enter(name)  # fail
        self._failed(
            Failure(FailureKind.SERVER_ERROR, text, retryable, error_type=event.type),
            CloseTransport(1000, ""),
        )
        self._events.append(event)

    def _on_end_of_transcript(self, msg: dict[str, Any], name: str) -> None:
        self._enter(name)  # finish
        self._drain_deadline = None
        self._events.append(EndOfTranscript(msg))
        self._actions.append(CloseTransport(1000, ""))

    # ----------------------------------------------------------------- commands

    def send_audio(self, chunk: bytes, *, now: float | None = None) -> int:
        """Send one binary audio frame; returns its ``seq_no`` (1, 2, 3, ...).

        The engine never blocks or refuses audio for flow control: check
        :attr:`audio_window_full` first. The chunk is kept (not copied, when it is
        ``bytes``) until a final transcript covers it, for replay after a failure.
        """
        if self.state is not State.STREAMING:  # the hot path reads the state, fires nothing
            raise self._local_error("send_audio")
        if self._mode != _SINGLE:
            if self._mode == _MULTI:
                raise LocalProtocolError(
                    "send_audio() cannot be mixed with send_channel_audio() in one session"
                )
            self._mode = _SINGLE
        if type(chunk) is not bytes:
            if not isinstance(chunk, bytearray | memoryview):
                raise TypeError(f"audio must be bytes, got {type(chunk).__name__}")
            chunk = bytes(chunk)
        if not chunk:
            raise LocalProtocolError("send_audio() needs a non-empty chunk of audio")
        if now is not None:
            self._now = now
        main = self._main
        if self._pending:
            self._pending.append((None, chunk))
            main.queued += 1
            return main.sent + main.queued
        return self._send_frame(main, chunk)

    def _send_frame(self, stream: _Stream, chunk: bytes) -> int:
        stream.sent += 1
        end = stream.bytes_sent = stream.bytes_sent + len(chunk)
        unacked = stream.unacked
        if not unacked:
            self._ack_base = self._now
        unacked.append(end)
        if self._retain_limit:
            stream.retained.append((end, chunk))
            stream.retained_bytes += len(chunk)
            if stream.retained_bytes > self._retain_limit:
                self._trim_retained(stream)
        self._actions.append(SendBinary(chunk))
        return stream.sent

    def _trim_retained(self, stream: _Stream) -> None:
        retained = stream.retained
        while stream.retained_bytes > self._retain_limit and len(retained) > 1:
            stream.retained_bytes -= len(retained.popleft()[1])
            self.retention_overflowed = True

    def send_channel_audio(self, channel: str, chunk: bytes, *, now: float | None = None) -> int:
        """Send a chunk of one channel's audio (``AddChannelAudio``); returns its ``seq_no``.

        For multichannel sessions (``diarization="channel"`` with
        ``channel_diarization_labels``). Cannot be mixed with :meth:`send_audio`.
        """
        self._enter("send_channel_audio")
        if self._mode == _SINGLE:
            raise LocalProtocolError(
                "send_channel_audio() cannot be mixed with send_audio() in one session"
            )
        if type(chunk) is not bytes:
            if not isinstance(chunk, bytearray | memoryview):
                raise TypeError(f"audio must be bytes, got {type(chunk).__name__}")
            chunk = bytes(chunk)
        if not chunk:
            raise LocalProtocolError("send_channel_audio() needs a non-empty chunk of audio")
        stream = self._channel_stream(channel, "send_channel_audio")
        self._mode = _MULTI
        if now is not None:
            self._now = now
        if self._pending:
            self._pending.append((channel, chunk))
            stream.queued += 1
            return stream.sent + stream.queued
        return self._send_channel_frame(channel, stream, chunk)

    def _send_channel_frame(self, channel: str, stream: _Stream, chunk: bytes) -> int:
        seq_no = self._send_frame(stream, chunk)
        # _send_frame queued a SendBinary; a channel frame travels as JSON instead.
        self._actions[-1] = SendText(
            _jdump(
                {
                    "message": "AddChannelAudio",
                    "channel": channel,
                    "data": base64.b64encode(chunk).decode("ascii"),
                }
            )
        )
        return seq_no

    def _channel_stream(self, channel: str, command: str) -> _Stream:
        if type(channel) is not str or not channel:
            raise LocalProtocolError(f"{command}() needs a non-empty channel name")
        expected = self._expected_channels
        if expected is not None and channel not in expected:
            raise LocalProtocolError(
                f"{command}(): unknown channel {channel!r}; the session's channels are "
                f"{sorted(expected)}"
            )
        stream = self._channels.get(channel)
        if stream is None:
            stream = self._channels[channel] = _Stream()
        if stream.ended:
            raise LocalProtocolError(f"{command}(): channel {channel!r} has already ended")
        return stream

    def end_of_stream(self, *, now: float | None = None) -> None:
        """No more audio: send ``EndOfStream`` (or ``EndOfChannel`` for each open channel).

        ``last_seq_no`` is the number of frames *sent*, so the server knows exactly
        what to wait for. Ignored when the stream has already ended.
        """
        if self._enter("end_of_stream").outcome is Outcome.IGNORE:  # drain
            return
        self._set_now(now)
        self._stream_ended = True
        if self._mode == 0 and self._expected_channels is not None:
            self._mode = _MULTI  # a multichannel session that sent no audio at all
        if self._mode == _MULTI:
            channels = list(self._channels)
            channels += sorted((self._expected_channels or set()) - set(channels))
            for channel in channels:
                stream = self._stream_for(channel)
                if not stream.ended:
                    stream.ended = True
                    self._queue_end(channel, stream)
        else:
            self._main.ended = True
            self._queue_end(None, self._main)

    def end_of_channel(self, channel: str, *, now: float | None = None) -> None:
        """No more audio on ``channel``: send ``EndOfChannel``.

        When every channel of the session has ended the stream ends too (``DRAINING``).
        """
        if self._enter("end_of_channel").outcome is Outcome.IGNORE:
            return
        if self._mode == _SINGLE:
            raise LocalProtocolError("end_of_channel() in a single-channel session")
        stream = self._channel_stream(channel, "end_of_channel")
        self._mode = _MULTI
        self._set_now(now)
        expected = self._expected_channels
        last = expected is not None and all(
            c == channel or (c in self._channels and self._channels[c].ended) for c in expected
        )
        if last:
            self._enter("end_of_last_channel")  # drain
            self._stream_ended = True
        stream.ended = True
        self._queue_end(channel, stream)

    def _queue_end(self, channel: str | None, stream: _Stream) -> None:
        if self._pending:
            # Replay still running: the end goes out after the queued audio.
            self._pending.append((channel, b""))
            return
        self._send_end(channel, stream)

    def _send_end(self, channel: str | None, stream: _Stream) -> None:
        if channel is None:
            message: dict[str, Any] = {"message": "EndOfStream", "last_seq_no": stream.sent}
        else:
            message = {"message": "EndOfChannel", "channel": channel, "last_seq_no": stream.sent}
        self._actions.append(SendText(_jdump(message)))
        if self.state is State.DRAINING and self._drain_deadline is None:
            self._drain_deadline = self._now + self.drain_timeout

    def set_recognition_config(
        self,
        config: TranscriptionConfig | None = None,
        *,
        language: str | None = None,
        max_delay: float | None = None,
        max_delay_mode: str | None = None,
        enable_partials: bool | None = None,
        audio_filtering_config: AudioFilteringConfig | None = None,
        conversation_config: ConversationConfig | None = None,
    ) -> TranscriptionConfig:
        """Change the recognition settings mid-session (``SetRecognitionConfig``).

        Only the fields the protocol allows mid-session may change: ``max_delay``,
        ``max_delay_mode``, ``enable_partials``, ``audio_filtering_config`` and
        ``conversation_config`` (``language`` may be given but must not change).
        Pass them as keywords, or pass a whole new :class:`TranscriptionConfig`.
        Returns the session's new configuration (also :attr:`transcription_config`,
        which a resumed connection starts with).

        Raises:
            LocalProtocolError: not STREAMING, nothing to change, or a field that
                cannot change mid-session.
            ConfigError: a value out of range.
        """
        self._enter("set_recognition_config")
        current = self.transcription_config
        base = current
        if config is not None:
            if not isinstance(config, TranscriptionConfig):
                raise TypeError("config must be a TranscriptionConfig")
            base = config
        changes: dict[str, Any] = {
            k: v
            for k, v in (
                ("language", language),
                ("max_delay", max_delay),
                ("max_delay_mode", max_delay_mode),
                ("enable_partials", enable_partials),
                ("audio_filtering_config", audio_filtering_config),
                ("conversation_config", conversation_config),
            )
            if v is not None
        }
        if config is None and not changes:
            raise LocalProtocolError("set_recognition_config() needs at least one field to change")
        new = base.with_changes(**changes) if changes else base
        changed = current.changed_fields(new)
        forbidden = sorted(changed - MID_SESSION_FIELDS)
        if "language" in changed:
            forbidden.insert(0, "language")
        if forbidden:
            raise LocalProtocolError(
                f"set_recognition_config(): {', '.join(forbidden)} cannot change mid-session; "
                f"only {', '.join(sorted(MID_SESSION_FIELDS - {'language'}))} can"
            )
        message = {
            "message": "SetRecognitionConfig",
            "transcription_config": new.mid_session_dict(),
        }
        self._actions.append(SendText(_jdump(message)))
        self.transcription_config = new
        return new

    def force_end_of_utterance(
        self, timestamp: float | None = None, *, channel: str | None = None
    ) -> None:
        """Ask the server to finalise what it has now (``ForceEndOfUtterance``).

        ``timestamp`` is a time on the continuous timeline; by default, the audio
        seconds sent so far. For file formats, whose duration is unknown, no
        timestamp is sent unless one is given.
        """
        self._enter("force_end_of_utterance")
        message: dict[str, Any] = {"message": "ForceEndOfUtterance"}
        if channel is not None and (type(channel) is not str or not channel):
            raise LocalProtocolError("channel must be a non-empty string")
        offset = self._offset_for(channel)
        if timestamp is None:
            bps = self.audio_format.bytes_per_second
            if bps:
                stream = self._main if channel is None else self._channels.get(channel)
                if stream is None:
                    stream = max(self._channels.values(), key=lambda s: s.bytes_sent, default=None)
                sent = stream.bytes_sent if stream is not None else 0
                message["timestamp"] = round(sent / bps, 6)
        else:
            if not _num(timestamp) or math.isinf(timestamp):
                raise LocalProtocolError(f"timestamp must be a finite number, got {timestamp!r}")
            local = timestamp - offset
            if local < 0:
                raise LocalProtocolError(
                    f"timestamp {timestamp} is before the audio of this connection "
                    f"(which starts at {offset})"
                )
            message["timestamp"] = local
        if channel is not None:
            message["channel"] = channel
        self._actions.append(SendText(_jdump(message)))

    def get_speakers(self, final: bool = False) -> None:
        """Ask for the speaker identifiers detected so far (``GetSpeakers``).

        With ``final=True`` the server answers once, at the end of the session.
        """
        self._enter("get_speakers")
        if type(final) is not bool:
            raise TypeError("final must be a bool")
        self._actions.append(SendText(_jdump({"message": "GetSpeakers", "final": final})))

    def close(self) -> None:
        """Abort: queue a normal close of the transport. The state becomes ``CLOSED``.

        Transcripts not yet received are lost; to finish cleanly call
        :meth:`end_of_stream` and wait for ``EndOfTranscript``. Does nothing once the
        connection is already closed or failed.
        """
        if self._enter("close").outcome is Outcome.IGNORE:
            return
        self._pending.clear()
        self._start_deadline = self._drain_deadline = None
        self._actions.append(CloseTransport(1000, "closed by client"))

    # ------------------------------------------------------------ reconnecting

    def _release_retained(self) -> None:
        """Drop retained audio that every output (transcripts and translations) has
        finalised. A file format cannot be cut: it is kept whole, for a replay from
        its first byte."""
        bps = self.audio_format.bytes_per_second
        if not bps:
            return
        limit = math.inf
        if self.translation_config is not None:
            translated = self._translation_until
            for language in self.translation_config.target_languages:
                limit = min(limit, translated.get(language, -math.inf))
        if self._mode != _MULTI:
            self._release_stream(self._main, self.time_offset, limit, bps)
        else:
            for channel, stream in self._channels.items():
                self._release_stream(stream, self._offset_for(channel), limit, bps)

    @staticmethod
    def _release_stream(stream: _Stream, offset: float, limit: float, bps: int) -> None:
        cut = min(stream.release_until, limit) - offset
        if cut <= 0:
            return
        cut_bytes = (cut + _EPSILON) * bps  # times are floats: 0.3 + 0.6 < 0.9
        retained = stream.retained
        while retained and retained[0][0] <= cut_bytes:
            stream.retained_bytes -= len(retained.popleft()[1])

    @classmethod
    def resume_from(
        cls,
        old: ClientConnection,
        *,
        allow_loss: bool = False,
        end_stream: bool = False,
        **options: Any,
    ) -> ClientConnection:
        """A new connection that continues ``old``, which has failed, without losing audio.

        The new connection starts with ``old``'s current configuration (including
        changes made with :meth:`set_recognition_config`) and options (override any
        with keyword arguments). Once recognition starts it replays the audio no
        final covered (and any audio ``old`` had queued but not sent), then the
        audio the application sends; if ``old``'s stream had ended, it ends the new
        one after the replay. Every time it reports is shifted so that it continues
        ``old``'s timeline, and nothing ``old`` already delivered is delivered again
        (the time cut, see :meth:`take_over`).

        ``end_stream=True`` ends the stream after the replay even if ``old`` had not: for
        an application that asked for the end while ``old`` was failing.

        Raises:
            LocalProtocolError: ``old`` has not failed, or audio was already lost
                (retention overflowed, or retention is off) and ``allow_loss`` is false.
        """
        if old.state is not State.FAILED:
            raise LocalProtocolError(
                f"resume_from() needs a FAILED connection, not one in state {old.state.name}"
            )
        old._check_lossless(allow_loss, "resume")
        new = cls(old.transcription_config, old.audio_format, **(old._options() | options))
        new._now = old._now
        new._inherit(old, end_stream)
        return new

    def take_over(
        self,
        old: ClientConnection,
        *,
        allow_loss: bool = False,
        end_stream: bool = False,
        now: float | None = None,
    ) -> float:
        """Continue ``old`` on this connection, which has just started: a reconnect
        (``old`` has failed) or a planned rollover (``old`` still streams: make before
        break). Returns the seconds of audio replayed.

        This connection must be ``STREAMING`` with nothing sent yet. It replays the audio
        of ``old`` that no final covered, then the application's audio; every time it
        reports is shifted onto ``old``'s timeline. If ``old``'s stream had ended (or
        ``end_stream``), the stream ends after the replay (``DRAINING``). Settings that
        changed on ``old`` mid-session (:meth:`set_recognition_config`) are sent again.

        **The time cut.** ``old`` delivered final results up to the end of its last
        word: the cut. Here, a result whose midpoint lies at or before the cut is dropped
        (finals and partials alike; for translations, a sentence; an ``EndOfUtterance``
        that ends there), so a word that the server decodes again from the replayed
        audio, with times shifted by less than half its length or even as another word,
        is not delivered twice, and a new word is never taken for an old one.

        For a rollover the caller then ends ``old`` (:meth:`end_of_stream`) and discards
        what it says afterwards: this connection transcribes everything after the cut.

        Raises:
            LocalProtocolError: this connection is not ``STREAMING``, or has sent audio
                already; ``old`` is neither ``STREAMING`` nor ``FAILED``; audio was lost
                (see :meth:`resume_from`) and ``allow_loss`` is false; or a setting that
                cannot change mid-session differs.
        """
        ended = end_stream or old._stream_ended
        if self.state is State.STREAMING and (
            self._main.sent or self._channels or self._pending or self._mode
        ):
            raise LocalProtocolError("take_over() needs a connection that has sent no audio")
        if old is self or old.state not in (State.STREAMING, State.FAILED):
            raise LocalProtocolError(
                f"take_over() continues a STREAMING or FAILED connection, "
                f"not one in state {old.state.name}"
            )
        old._check_lossless(allow_loss, "take over")
        changed = self.transcription_config.changed_fields(old.transcription_config)
        if changed - MID_SESSION_FIELDS or "language" in changed:
            fields = ", ".join(sorted(changed))
            raise LocalProtocolError(f"take_over(): {fields} differ and cannot change mid-session")
        self._enter("take_over:ended" if ended else "take_over")
        self._set_now(now)
        if changed:
            self.transcription_config = old.transcription_config
            message = {
                "message": "SetRecognitionConfig",
                "transcription_config": old.transcription_config.mid_session_dict(),
            }
            self._actions.append(SendText(_jdump(message)))
        replayed = self._inherit(old, end_stream)
        if ended:
            self._drain_deadline = None  # set again when the end goes out, after the replay
        self._pump_pending()
        return replayed

    def _check_lossless(self, allow_loss: bool, what: str) -> None:
        sent_audio = self._main.sent or any(s.sent for s in self._channels.values())
        if allow_loss or not sent_audio:
            return
        if self.retention_overflowed:
            raise LocalProtocolError(
                f"cannot {what} without loss: more audio than retain_audio_seconds "
                "was waiting for a final transcript (pass allow_loss=True to do it anyway)"
            )
        if self._retain_limit == 0:
            raise LocalProtocolError(
                f"cannot {what} without loss: retain_audio_seconds is 0 "
                "(pass allow_loss=True to do it anyway)"
            )

    def _options(self) -> dict[str, Any]:
        """The keyword arguments this connection was made with (a resume copies them)."""
        return {
            "translation_config": self.translation_config,
            "audio_events_config": self.audio_events_config,
            "max_audio_in_flight_seconds": self.max_audio_in_flight_seconds,
            "retain_audio_seconds": self.retain_audio_seconds,
            "recognition_started_timeout": self.recognition_started_timeout,
            "ack_timeout": self.ack_timeout,
            "drain_timeout": self.drain_timeout,
        }

    def _inherit(self, old: ClientConnection, end_stream: bool) -> float:
        """Take over ``old``'s stream: its unfinalised audio as a replay queue, its
        timeline, its cut; returns the seconds of audio queued for replay."""
        self._mode = old._mode
        if self._expected_channels is None:
            self._expected_channels = old._expected_channels
        self._stream_ended = old._stream_ended
        self.retention_overflowed = old.retention_overflowed
        bps = old.audio_format.bytes_per_second
        replay_bytes = 0

        # Each stream (the single one, or each channel) restarts at its first retained
        # byte: its own timeline shifts by that much.
        def start_of(stream: _Stream) -> int:
            if stream.retained:
                first_end, first = stream.retained[0]
                return first_end - len(first)
            return stream.bytes_sent

        def offset_of(key: str | None, stream: _Stream) -> float:
            base = old._offset_for(key)
            return base + start_of(stream) / bps if bps else base

        def inherit(new_stream: _Stream, stream: _Stream) -> None:
            new_stream.ended = stream.ended
            new_stream.final_until = stream.final_until
            new_stream.release_until = stream.release_until

        pending = self._pending
        if old._mode == _MULTI:
            for channel, stream in old._channels.items():
                new_stream = self._channels[channel] = _Stream()
                inherit(new_stream, stream)
                self._channel_offsets[channel] = offset_of(channel, stream)
                for _, chunk in stream.retained:
                    pending.append((channel, chunk))
                    new_stream.queued += 1
                replay_bytes = max(replay_bytes, stream.retained_bytes)
            self.time_offset = old.time_offset
        else:
            inherit(self._main, old._main)
            self.time_offset = offset_of(None, old._main)
            for _, chunk in old._main.retained:
                pending.append((None, chunk))
                self._main.queued += 1
            replay_bytes = old._main.retained_bytes
        # What old had queued but not sent (its own replay, ends included) follows.
        ends_queued = set()
        for key, chunk in old._pending:
            pending.append((key, chunk))
            if chunk:
                self._stream_for(key).queued += 1
            else:
                ends_queued.add(key)
        # Ends old had already sent are sent again after the replay.
        if old._mode == _MULTI:
            for channel, stream in old._channels.items():
                if stream.ended and channel not in ends_queued:
                    pending.append((channel, b""))
        elif old._main.ended and None not in ends_queued:
            pending.append((None, b""))
        if end_stream and not self._stream_ended:
            self._stream_ended = True
            if old._mode == _MULTI or (old._mode == 0 and old._expected_channels is not None):
                self._mode = _MULTI
                names = list(self._channels) + sorted(
                    (old._expected_channels or frozenset()) - set(self._channels)
                )
                for channel in names:
                    stream = self._stream_for(channel)
                    if not stream.ended and channel not in ends_queued:
                        stream.ended = True
                        pending.append((channel, b""))
            elif not self._main.ended:
                self._main.ended = True
                pending.append((None, b""))

        # The cut: nothing before the end of the last final result old delivered (or
        # that the connections before it delivered) is delivered again.
        cuts: dict[str | None, _Cut] = {}
        streams = old._channels.items() if old._mode == _MULTI else [(None, old._main)]
        for key, stream in streams:
            if stream.cut.end > -math.inf:
                cuts[key] = stream.cut.copy()
                # What this connection delivers goes on from there.
                self._stream_for(key).cut = stream.cut.copy()
        self._cuts = cuts
        translation_cuts = dict(old._translation_cuts)
        for language, cut in old._translation_until.items():
            if cut > translation_cuts.get(language, -math.inf):
                translation_cuts[language] = cut
        self._translation_cuts = translation_cuts
        self._translation_until = dict(old._translation_until)
        return replay_bytes / bps if bps else replay_bytes / FILE_AUDIO_BYTES_PER_SECOND

    def _stream_for(self, channel: str | None) -> _Stream:
        if channel is None:
            return self._main
        stream = self._channels.get(channel)
        if stream is None:
            stream = self._channels[channel] = _Stream()
        return stream

    def _offset_for(self, channel: str | None) -> float:
        """The time offset of a stream: channels of a resumed session shift separately."""
        if channel is None or not self._channel_offsets:
            return self.time_offset
        return self._channel_offsets.get(channel, self.time_offset)

    def _pump_pending(self) -> None:
        """Send queued replay audio while the window allows (called on start and acks)."""
        pending = self._pending
        limit = self.max_audio_in_flight_seconds * self._window_bps
        main = self._main
        while pending:
            channel, chunk = pending[0]
            stream = main if channel is None else self._channels[channel]
            if chunk and stream.bytes_sent - stream.bytes_acked >= limit:
                return
            pending.popleft()
            if not chunk:
                # An end of stream or channel, sent in order after the audio before it.
                self._send_end(channel, stream)
                continue
            stream.queued -= 1
            if channel is None:
                self._send_frame(stream, chunk)
            else:
                self._send_channel_frame(channel, stream, chunk)


#: The inputs that are not server messages: transport events and commands.
_TRANSPORT_AND_COMMANDS: Final = frozenset(
    {
        "connection_opened",
        "connection_closed",
        "timer_expired",
        "send_audio",
        "send_channel_audio",
        "end_of_stream",
        "end_of_channel",
        "end_of_last_channel",
        "set_recognition_config",
        "force_end_of_utterance",
        "get_speakers",
        "close",
        "take_over",
        "take_over:ended",
    }
)


def _describe_input(name: str) -> str:
    if name == "<binary>":
        return "a binary message"
    if name.startswith("<"):
        return "a message"
    return f"a {name.partition(':')[0]} message"


def _json_in_binary(data: bytes | bytearray | memoryview) -> str | None:
    """The text of a binary message that holds a UTF-8 JSON object, else ``None``.

    Both official clients ``json.loads`` whatever arrives, and the legacy SDK's own test
    server sends its JSON in binary frames: such a message is read as text. Anything
    else (audio, garbage) is a binary message, which no state of the client accepts.
    """
    raw = bytes(data)  # no copy for bytes
    if raw.lstrip()[:1] != b"{":
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Malformed(Exception):
    """A server message of a known type with the wrong shape (internal)."""


def _integer(value: Any, what: str) -> int:
    """A JSON integer; like JSON Schema, an integral float such as ``3.0`` counts."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise _Malformed(f"{what} must be an integer, got {_brief(value)}")


def _opt(msg: dict[str, Any], key: str, kind: type) -> Any:
    value = msg.get(key)
    if value is not None and type(value) is not kind:
        raise _Malformed(f"{key} must be a {kind.__name__}")
    return value


def _notice(msg: dict[str, Any], lenient: bool = False) -> tuple[str, str, int | None, int | None]:
    """The common fields of Info, Warning and Error."""
    ntype = msg.get("type", "")
    reason = msg.get("reason", "")
    code = msg.get("code")
    seq_no = msg.get("seq_no")
    if type(ntype) is not str or type(reason) is not str:
        if not lenient:
            raise _Malformed("type and reason must be strings")
        ntype = ntype if type(ntype) is str else ""
        reason = reason if type(reason) is str else str(reason)
    if code is not None and type(code) is not int:
        try:
            code = _integer(code, "code")
        except _Malformed:
            if not lenient:
                raise
            code = None
    if seq_no is not None and type(seq_no) is not int:
        try:
            seq_no = _integer(seq_no, "seq_no")
        except _Malformed:
            if not lenient:
                raise
            seq_no = None
    return ntype, reason, code, seq_no


# Where the previous result stood relative to the cut (see _Cut.filter).
_NO_WORD: Final = 0  # no word seen yet since the take-over
_OLD: Final = 1  # a word delivered already, before the last one
_OLD_LAST: Final = 2  # the last word delivered (its midpoint lies within that word's span)
_NEW: Final = 3  # a new word


class _Cut:
    """The time cut between what a connection delivered and what the next one may.

    On the connection that delivers (its stream's ``cut``): :attr:`end` and :attr:`start`
    of the last final word (or entity), and whether a punctuation mark
    (:attr:`closed`) or an ``EndOfUtterance`` (:attr:`end_of_utterance`) followed it.

    On the connection that continues it (``take_over``), :meth:`filter` drops what was
    delivered already. A word is old when its midpoint lies at or before :attr:`end`:
    re-decoded with times shifted by less than half its length, or even as another word,
    it is still recognised, and a new word is never taken for an old one. Punctuation has
    no length: it goes with the word it follows, so the mark after the last old word is
    new only if none had followed that word; a mark that attaches to the next word goes
    by its time. An ``EndOfUtterance`` after the last old word is new only if none had.
    """

    __slots__ = ("closed", "end", "end_of_utterance", "prev", "start")

    def __init__(self) -> None:
        self.end = -math.inf
        self.start = -math.inf
        self.closed = False
        self.end_of_utterance = False
        self.prev = _NO_WORD  # the last word of the finals filtered so far

    def copy(self) -> _Cut:
        new = _Cut()
        new.end, new.start = self.end, self.start
        new.closed, new.end_of_utterance = self.closed, self.end_of_utterance
        return new

    @property
    def passed(self) -> bool:
        """Whether a final already held a new word: everything after it is new."""
        return self.prev == _NEW

    def deliver(self, results: tuple[Result, ...]) -> None:
        """Final results delivered: move the cut on."""
        for r in results:
            if r.type != "punctuation":
                if r.end_time >= self.end:
                    self.end, self.start = r.end_time, r.start_time
                    self.closed = self.end_of_utterance = False
            elif r.end_time >= self.end - _EPSILON:
                self.closed = True

    def filter(self, results: tuple[Result, ...], final: bool) -> tuple[Result, ...]:
        """The results after the cut (a final's decide what its later results follow)."""
        twice = 2 * self.end + 2 * _EPSILON
        prev = self.prev
        kept: list[Result] = []
        for r in results:
            middle = r.start_time + r.end_time
            if r.type != "punctuation":
                if middle > twice:
                    prev = _NEW
                    kept.append(r)
                else:
                    prev = _OLD_LAST if middle > 2 * self.start else _OLD
                continue
            # With no word before it (or attached to the next word), a mark goes by its
            # time: after the cut, or at it when no mark was delivered there yet.
            by_time = (prev == _NO_WORD or r.attaches_to == "next") and (
                r.end_time > self.end + _EPSILON
                or (r.end_time >= self.end - _EPSILON and not self.closed)
            )
            if prev == _NEW or (prev == _OLD_LAST and not self.closed) or by_time:
                kept.append(r)
        if final:
            self.prev = prev
        return results if len(kept) == len(results) else tuple(kept)

    def new_end_of_utterance(self, end: float) -> bool:
        """Whether an ``EndOfUtterance`` ending at ``end`` was not delivered already."""
        if end <= self.end + _EPSILON:
            return False
        return self.prev == _NEW or not self.end_of_utterance


_Handler = Callable[[ClientConnection, dict[str, Any], str], None]

_HANDLERS: Final[dict[str, _Handler]] = {
    "RecognitionStarted": ClientConnection._on_recognition_started,
    "AudioAdded": ClientConnection._on_audio_added,
    "ChannelAudioAdded": ClientConnection._on_channel_audio_added,
    "AddPartialTranscript": ClientConnection._on_transcript,
    "AddTranscript": ClientConnection._on_transcript,
    "AddPartialTranslation": ClientConnection._on_translation,
    "AddTranslation": ClientConnection._on_translation,
    "EndOfUtterance": ClientConnection._on_end_of_utterance,
    "AudioEventStarted": ClientConnection._on_audio_event,
    "AudioEventEnded": ClientConnection._on_audio_event,
    "SpeakersResult": ClientConnection._on_speakers_result,
    "Info": ClientConnection._on_info,
    "Warning": ClientConnection._on_warning,
    "Error": ClientConnection._on_error,
    "EndOfTranscript": ClientConnection._on_end_of_transcript,
}
