"""The server side of the Speechmatics RT protocol, as a sans-IO engine.

See :class:`ServerConnection`. Its lifecycle rules are ``SERVER_RULES`` in
:mod:`smproto._state`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from . import _state
from ._state import SERVER_MACHINE, SERVER_RULES, Outcome, Rule, ServerState
from .actions import Action, CloseTransport, SendText
from .config import (
    StartRecognitionConfig,
    TranscriptionConfig,
    parse_start_recognition,
)
from .errors import ConfigError, LocalProtocolError
from .events import LanguagePackInfo, SpeakerIdentity, TranslatedSentence
from .server_events import (
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
from .transcript import Result, join_results

__all__ = ["ERROR_CLOSE_CODES", "Handshake", "ServerConnection"]

#: The WebSocket close code that follows each ``Error`` type.
#:
#: Speechmatics documents 4005 (quota_exceeded), 4013 (job_error), 1011 (internal
#: errors) and 1008 (idle and session timeouts); the rest follow the same scheme.
ERROR_CLOSE_CODES: Final[Mapping[str, int]] = {
    "invalid_message": 1003,
    "protocol_error": 1003,
    "invalid_config": 1003,
    "invalid_audio_type": 1003,
    "invalid_output_format": 1003,
    "not_authorised": 4001,
    "not_allowed": 4003,
    "invalid_model": 4004,
    "invalid_language": 4004,
    "quota_exceeded": 4005,
    "timelimit_exceeded": 4006,
    "job_error": 4013,
    "idle_timeout": 1008,
    "session_timeout": 1008,
    "unknown_error": 1011,
    "internal_error": 1011,
}

_DEFAULT_LANGUAGE_PACK = LanguagePackInfo(
    word_delimiter=" ",
    language_description="English",
    writing_direction="left-to-right",
    itn=True,
    adapted=False,
)


@dataclass(frozen=True, slots=True)
class Handshake:
    """The answer to a WebSocket upgrade (see :meth:`ServerConnection.handshake`).

    When :attr:`accepted` is false the driver answers the upgrade with :attr:`status`
    and :attr:`reason` instead of switching protocols.
    """

    accepted: bool
    status: int
    reason: str
    #: The language in the path (``/v2/<language>``), if any.
    url_language: str | None = None
    #: The ``sm-sdk`` query parameter, if any.
    sdk: str | None = None
    #: Whether credentials were presented (the credential itself is never kept).
    authenticated: bool = field(default=False)


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _unquote(text: str) -> str:
    """Percent-decoding for query strings (``+`` is a space), without urllib."""
    raw = text.replace("+", " ").encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        digits = raw[i + 1 : i + 3]
        if c == 0x25 and len(digits) == 2 and all(d in _HEX for d in digits):
            out.append(int(digits, 16))
            i += 3
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.setdefault(_unquote(name), _unquote(value))
    return params


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lowered = name.lower()
    for key, value in items:
        if key.lower() == lowered:
            return value
    return None


def _jdump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _ack_text(channel: str | None, seq_no: int) -> str:
    if channel is None:
        return f'{{"message":"AudioAdded","seq_no":{seq_no}}}'
    return _jdump({"message": "ChannelAudioAdded", "channel": channel, "seq_no": seq_no})


def _close_reason(reason: str) -> str:
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    return encoded[:120].decode("utf-8", "ignore") + "..."


class _Channel:
    __slots__ = ("bytes_received", "ended", "received")

    def __init__(self) -> None:
        self.received = 0
        self.bytes_received = 0
        self.ended = False


class _Malformed(Exception):
    """A client message of a known type with the wrong shape (internal)."""


class ServerConnection:
    """A Speechmatics RT server connection, with no IO.

    The driver feeds it the upgrade (:meth:`handshake`), the client's messages
    (:meth:`receive_message`), the end of the transport (:meth:`connection_closed`) and
    the time (:meth:`handle_timer` when :meth:`get_timer` says). The application — a
    recogniser — reads :meth:`next_event` and answers with commands:
    :meth:`start_recognition`, :meth:`send_transcript`, :meth:`send_end_of_utterance`,
    :meth:`send_translation`, the audio-event, speaker and notice commands,
    :meth:`send_error` and :meth:`end_of_transcript`. :meth:`actions` is what to write.

    The engine enforces the protocol on the client: messages out of order get
    ``Error protocol_error``, unparseable ones ``invalid_message``, a bad
    ``StartRecognition`` ``invalid_config`` (or ``invalid_audio_type`` for its audio
    format); audio after ``EndOfStream`` gets ``Warning add_audio_after_eos``. Each
    ``Error`` is followed by its close code (:data:`ERROR_CLOSE_CODES`).

    Limits (all in seconds; warnings are sent at each offset before the limit):

    Args:
        authorize: ``authorize(token) -> bool`` for the credential of the upgrade
            (``Authorization: Bearer`` or ``?jwt=``). ``None`` accepts everyone.
        auth_failure: how a refused credential is answered: ``"in_band"`` (accept the
            upgrade, then ``Error not_authorised`` and close 4001) or ``"handshake"``
            (HTTP 401). A missing credential is always HTTP 401.
        start_timeout: how long to wait for ``StartRecognition``.
        idle_timeout, idle_warnings: no audio for this long ends the session
            (``idle_timeout`` warnings, then the error, then close 1008).
        session_timeout, session_warnings: the longest session.
        max_audio_seconds: after this much audio, ``Warning duration_limit_exceeded``
            and the stream is treated as ended.
        close_timeout: after ``EndOfTranscript``, how long to wait for the client to
            close before closing. ``0`` (the default) closes right after
            ``EndOfTranscript``, as Speechmatics does: some clients (the LiveKit 1.0
            plugin) wait for the server's close.
        allow_unknown_config: accept unknown ``transcription_config`` fields (kept in
            ``TranscriptionConfig.extra``) instead of answering ``invalid_config``.
        max_message_bytes: the largest text message accepted (``invalid_message`` above).
    """

    def __init__(
        self,
        *,
        authorize: Callable[[str], bool] | None = None,
        auth_failure: Literal["in_band", "handshake"] = "in_band",
        start_timeout: float = 60.0,
        idle_timeout: float = 3600.0,
        idle_warnings: Sequence[float] = (900.0, 600.0, 300.0),
        session_timeout: float = 48 * 3600.0,
        session_warnings: Sequence[float] = (2700.0, 1800.0, 900.0),
        max_audio_seconds: float | None = None,
        close_timeout: float = 0.0,
        allow_unknown_config: bool = False,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if auth_failure not in ("in_band", "handshake"):
            raise ValueError("auth_failure must be 'in_band' or 'handshake'")
        for name, value in (
            ("start_timeout", start_timeout),
            ("idle_timeout", idle_timeout),
            ("session_timeout", session_timeout),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if (
            not isinstance(close_timeout, int | float)
            or isinstance(close_timeout, bool)
            or not close_timeout >= 0
            or close_timeout == float("inf")
        ):
            raise ValueError(f"close_timeout must be a number >= 0, got {close_timeout!r}")
        self._authorize = authorize
        self.auth_failure = auth_failure
        self.start_timeout = float(start_timeout)
        self.idle_timeout = float(idle_timeout)
        self.idle_warnings = tuple(sorted((float(w) for w in idle_warnings), reverse=True))
        self.session_timeout = float(session_timeout)
        self.session_warnings = tuple(sorted((float(w) for w in session_warnings), reverse=True))
        self.max_audio_seconds = max_audio_seconds
        self.close_timeout = float(close_timeout)
        self.allow_unknown_config = allow_unknown_config
        self.max_message_bytes = max_message_bytes

        self.state = ServerState.HANDSHAKE
        #: The session's configuration, once ``StartRecognition`` was accepted.
        self.config: StartRecognitionConfig | None = None
        #: The handshake's answer, once :meth:`handshake` was called.
        self.handshake_result: Handshake | None = None
        #: The ``Error`` type the session ended with, if it did.
        self.error_type: str | None = None
        self._actions: list[Action] = []
        self._events: deque[ServerEvent] = deque()
        self._now = 0.0
        self._frames = 0  # binary frames received
        self._audio_bytes = 0
        self._channels: dict[str, _Channel] = {}
        self._expected_channels: frozenset[str] | None = None
        self._warned_after_eos = False
        self._limit_reached = False
        self._word_delimiter = " "
        self._pending_bytes = 0  # audio received but not yet taken by the application
        self._pending_frames = 0  # AudioReceived events not yet taken
        # Frames past max_audio_seconds are acknowledged without being recognised; while
        # earlier frames still wait to be taken, their acks wait too (acks never go
        # backwards). Per channel: the first and last seq_no whose ack is deferred.
        self._deferred_acks: dict[str | None, list[int]] = {}
        self._start_deadline: float | None = None
        self._last_audio = 0.0
        self._session_start = 0.0
        self._idle_warned = 0  # how many idle warnings were sent since the last audio
        self._session_warned = 0
        self._close_deadline: float | None = None
        self._disconnect_reported = False
        self._auth_error = False

    def __repr__(self) -> str:
        return (
            f"<ServerConnection state={self.state.name} frames={self._frames} "
            f"pending_audio={self._pending_bytes}B>"
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
        """Whether :meth:`actions` would return anything (it takes nothing)."""
        return bool(self._actions)

    def next_event(self) -> ServerEvent | None:
        """Take the next event. Taking an :class:`AudioReceived` acknowledges it."""
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) is AudioReceived:
            self._pending_bytes -= len(event.data)
            self._pending_frames -= 1
            if self.state is ServerState.STREAMING or self.state is ServerState.DRAINING:
                self._actions.append(SendText(_ack_text(event.channel, event.seq_no)))
                if not self._pending_frames and self._deferred_acks:
                    for channel, (first, last) in self._deferred_acks.items():
                        for seq_no in range(first, last + 1):
                            self._actions.append(SendText(_ack_text(channel, seq_no)))
                    self._deferred_acks.clear()
        return event

    @property
    def pending_audio_bytes(self) -> int:
        """Audio received but not yet taken by the application.

        A driver stops reading the socket while this is large, so TCP pushes back on
        the client as the real service does when its recogniser falls behind.
        """
        return self._pending_bytes

    @property
    def audio_seconds_received(self) -> float | None:
        """Seconds of (single-stream) audio received, for raw audio formats."""
        if self.config is None:
            return None
        bps = self.config.audio_format.bytes_per_second
        return self._audio_bytes / bps if bps else None

    def get_timer(self) -> float | None:
        """The next deadline at which to call :meth:`handle_timer`."""
        state = self.state
        if state is ServerState.AWAITING_START:
            return self._start_deadline
        if state is ServerState.STREAMING:
            return min(self._next_idle_deadline(), self._next_session_deadline())
        if state is ServerState.DRAINING:
            return self._next_session_deadline()
        if state is ServerState.CLOSED:
            return self._close_deadline
        return None

    def _next_idle_deadline(self) -> float:
        warnings = self.idle_warnings
        if self._idle_warned < len(warnings):
            return self._last_audio + self.idle_timeout - warnings[self._idle_warned]
        return self._last_audio + self.idle_timeout

    def _next_session_deadline(self) -> float:
        warnings = self.session_warnings
        if self._session_warned < len(warnings):
            return self._session_start + self.session_timeout - warnings[self._session_warned]
        return self._session_start + self.session_timeout

    # ------------------------------------------------------------------ helpers

    def _rule(self, name: str) -> Rule:
        return SERVER_RULES[name][self.state]

    def _fire(self, trigger: str) -> None:
        _state.fire(SERVER_MACHINE, self, trigger)

    def _command(self, name: str, expected: str) -> Rule:
        rule = SERVER_RULES[name][self.state]
        if rule.outcome is Outcome.LOCAL_ERROR:
            raise LocalProtocolError(
                f"{name}() is not allowed in state {self.state.name} (expected {expected})"
            )
        return rule

    def _send(self, message: dict[str, Any]) -> None:
        self._actions.append(SendText(_jdump(message)))

    def _error(self, error_type: str, reason: str, *, event: bool = True) -> None:
        """Send ``Error``, close with its code, fail."""
        code = ERROR_CLOSE_CODES.get(error_type, 1011)
        self._send({"message": "Error", "type": error_type, "reason": reason})
        self._actions.append(CloseTransport(code, _close_reason(reason)))
        self._fire("fail")
        self.error_type = error_type
        self._close_deadline = None
        if event:
            self._events.append(SessionFailed(error_type, reason, code))

    def _violation(self, rule: Rule, what: str) -> None:
        """Apply an IGNORE / LOCAL_ERROR / REMOTE_ERROR rule for a received message."""
        if rule.outcome is Outcome.IGNORE:
            return
        if rule.outcome is Outcome.LOCAL_ERROR:
            raise LocalProtocolError(
                f"receive_message() is not allowed in state {self.state.name} "
                "(call handshake() first)"
            )
        error_type = rule.detail or "protocol_error"
        if error_type == "not_authorised":
            self._error(error_type, "the API key was not accepted")
            return
        self._error(error_type, f"{what} is not allowed in state {self.state.name}")

    # ------------------------------------------------------------------- inputs

    def handshake(
        self,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        now: float,
    ) -> Handshake:
        """Decide on the WebSocket upgrade of ``path`` (with its query) and ``headers``.

        Accepts ``/v2``, ``/v2/`` and ``/v2/<language>`` with any query (``sm-sdk``,
        ``jwt``, ...). The credential is the ``Authorization: Bearer`` header or the
        ``jwt`` query parameter. Returns the answer; an accepted connection moves to
        ``AWAITING_START``. A credential refused in band is answered with ``Error
        not_authorised`` (and close 4001) when the client's first message arrives: the
        official clients send ``StartRecognition`` before they read anything, and then
        report the error as such.
        """
        self._command("handshake_accepted", "HANDSHAKE")
        self._now = now
        raw_path, _, query = path.partition("?")
        params = _parse_query(query)
        parts = raw_path.split("/")
        url_language: str | None = None
        if raw_path in ("/v2", "/v2/"):
            pass
        elif len(parts) == 3 and parts[1] == "v2" and parts[2] and _is_language(parts[2]):
            url_language = parts[2]
        else:
            return self._reject(404, f"unknown path {raw_path[:80]!r}: use /v2 or /v2/<language>")
        token: str | None = None
        authorization = _header(headers, "authorization")
        if authorization is not None:
            scheme, _, credential = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                token = credential.strip()
        if token is None and params.get("jwt"):
            token = params["jwt"]
        sdk = params.get("sm-sdk")
        refused = False
        if self._authorize is not None:
            if token is None:
                return self._reject(401, "missing credentials: send Authorization: Bearer <key>")
            try:
                refused = not self._authorize(token)
            except Exception:  # an authorizer that crashes refuses
                refused = True
            if refused and self.auth_failure == "handshake":
                return self._reject(401, "the API key was not accepted")
        result = Handshake(True, 101, "Switching Protocols", url_language, sdk, token is not None)
        self.handshake_result = result
        self._fire("accept")
        self._start_deadline = now + self.start_timeout
        self._auth_error = refused
        return result

    def _reject(self, status: int, reason: str) -> Handshake:
        result = Handshake(False, status, reason)
        self.handshake_result = result
        self._fire("reject")
        return result

    def connection_closed(self, code: int | None, reason: str = "", *, now: float) -> None:
        """The transport is gone. Emits :class:`ClientDisconnected` once."""
        self._now = now
        rule = self._rule("connection_closed")
        completed = self.state is ServerState.CLOSED and self.error_type is None
        if rule.trigger == "fail":
            self._fire("fail")
        self._close_deadline = None
        if not self._disconnect_reported:
            self._disconnect_reported = True
            self._events.append(ClientDisconnected(code, reason, completed))

    def handle_timer(self, *, now: float) -> None:
        """Call when ``now`` reaches :meth:`get_timer`."""
        self._now = now
        state = self.state
        if state is ServerState.AWAITING_START:
            if self._start_deadline is not None and now >= self._start_deadline:
                if self._auth_error:
                    self._error("not_authorised", "the API key was not accepted")
                else:
                    reason = f"no StartRecognition within {self.start_timeout:g}s"
                    self._error("protocol_error", reason)
            return
        if state is ServerState.CLOSED:
            if self._close_deadline is not None and now >= self._close_deadline:
                self._close_deadline = None
                self._actions.append(CloseTransport(1000, ""))
            return
        if state is not ServerState.STREAMING and state is not ServerState.DRAINING:
            return
        # Session length.
        while self._session_warned < len(self.session_warnings):
            remaining = self.session_warnings[self._session_warned]
            if now < self._session_start + self.session_timeout - remaining:
                break
            self._session_warned += 1
            elapsed = now - self._session_start
            self._send(
                {
                    "message": "Warning",
                    "type": "session_timeout",
                    "reason": f"Session will timeout in {_minutes(remaining)}m due to max "
                    f"duration, session has been active for {_minutes(elapsed)}m",
                }
            )
        if now >= self._session_start + self.session_timeout:
            self._error(
                "session_timeout",
                f"session reached the maximum duration of {_minutes(self.session_timeout)}m",
            )
            return
        if state is not ServerState.STREAMING:
            return  # idleness is about audio, and no more audio is expected
        # Idleness: no audio.
        while self._idle_warned < len(self.idle_warnings):
            remaining = self.idle_warnings[self._idle_warned]
            if now < self._last_audio + self.idle_timeout - remaining:
                break
            self._idle_warned += 1
            idle = now - self._last_audio
            self._send(
                {
                    "message": "Warning",
                    "type": "idle_timeout",
                    "reason": f"Session will timeout in {_minutes(remaining)}m due to "
                    f"inactivity, no audio sent within the last {_minutes(idle)}m",
                }
            )
        if now >= self._last_audio + self.idle_timeout:
            self._error("idle_timeout", f"no audio received for {_minutes(self.idle_timeout)}m")

    def receive_message(self, data: str | bytes, *, now: float) -> None:
        """Feed one WebSocket message from the client.

        Never raises for anything the client sends: a violation is answered in band
        (``Error``, then the close), and reported as :class:`SessionFailed`.

        Raises:
            LocalProtocolError: called before :meth:`handshake` accepted the connection.
        """
        self._now = now
        if self._auth_error:
            self._violation(self._rule("<unauthorised>"), "a message")
            return
        if not isinstance(data, str):
            rule = self._rule("<binary>")
            if rule.outcome is not Outcome.OK:
                self._violation(rule, "audio")
                return
            self._on_audio(data if type(data) is bytes else bytes(data), None)
            return
        if len(data) > self.max_message_bytes:
            rule = self._rule("<unknown>")
            if rule.outcome is Outcome.OK:  # pragma: no cover - never OK
                return
            if rule.outcome is Outcome.REMOTE_ERROR:
                self._error(
                    "invalid_message",
                    f"message of {len(data)} bytes exceeds the limit of {self.max_message_bytes}",
                )
                return
            self._violation(rule, "a message")
            return
        try:
            msg = json.loads(data)
        except (ValueError, RecursionError):
            msg = None
        mtype = msg.get("message") if type(msg) is dict else None
        handler = _HANDLERS.get(mtype) if type(mtype) is str else None
        if handler is None:
            rule = self._rule("<unknown>")
            what = f"message type {mtype!r}" if type(mtype) is str else "a message that is not"
            if rule.outcome is Outcome.REMOTE_ERROR:
                if type(mtype) is str:
                    reason = f"unknown message type {mtype[:60]!r}"
                else:
                    reason = "the message is not a JSON object with a string 'message' field"
                self._error("invalid_message", reason)
                return
            self._violation(rule, what)
            return
        assert type(msg) is dict
        name: str = msg["message"]
        if name == "EndOfChannel" and self._is_last_channel(msg.get("channel")):
            name = "EndOfChannel:last"
        rule = SERVER_RULES[name][self.state]
        if rule.outcome is not Outcome.OK:
            self._violation(rule, msg["message"])
            return
        try:
            handler(self, msg, rule.trigger)
        except _Malformed as exc:
            self._error("invalid_message", f"malformed {msg['message']}: {exc}")

    # ---------------------------------------------------------- message handlers

    def _on_start_recognition(self, msg: dict[str, Any], trigger: str | None) -> None:
        try:
            config = parse_start_recognition(msg, allow_unknown=self.allow_unknown_config)
        except ConfigError as exc:
            error = (
                "invalid_audio_type" if exc.field.startswith("audio_format") else "invalid_config"
            )
            self._error(error, str(exc))
            return
        handshake = self.handshake_result
        url_language = handshake.url_language if handshake is not None else None
        language = config.transcription_config.language
        if url_language is not None and url_language != language:
            self._error(
                "invalid_language",
                f"the URL asks for {url_language!r} but transcription_config.language is "
                f"{language!r}",
            )
            return
        tc = config.transcription_config
        if tc.channel_diarization_labels:
            self._expected_channels = frozenset(tc.channel_diarization_labels)
        assert trigger == "request"
        self._fire(trigger)
        self.config = config
        self._start_deadline = None
        sdk = handshake.sdk if handshake is not None else None
        self._events.append(StartRequested(config, url_language, sdk, msg))

    def _on_audio(self, data: bytes, channel: str | None) -> None:
        if self.state is ServerState.DRAINING:
            if self._limit_reached:
                # Past the duration limit: acknowledged, but not recognised.
                self._ack_ignored(channel)
                return
            # After EndOfStream: warned once, and ignored.
            if not self._warned_after_eos:
                self._warned_after_eos = True
                self._send(
                    {
                        "message": "Warning",
                        "type": "add_audio_after_eos",
                        "reason": "audio after EndOfStream is ignored",
                    }
                )
            return
        self._last_audio = self._now
        self._idle_warned = 0
        if channel is None:
            if self._channels:
                self._error("protocol_error", "binary audio cannot be mixed with AddChannelAudio")
                return
            self._frames += 1
            self._audio_bytes += len(data)
            seq_no = self._frames
        else:
            if self._frames:
                self._error("protocol_error", "AddChannelAudio cannot be mixed with binary audio")
                return
            stream = self._channels.get(channel)
            if stream is None:
                stream = self._channels[channel] = _Channel()
            if stream.ended:
                self._error("protocol_error", f"audio on channel {channel!r} after its end")
                return
            stream.received += 1
            stream.bytes_received += len(data)
            seq_no = stream.received
        self._pending_bytes += len(data)
        self._pending_frames += 1
        self._events.append(AudioReceived(seq_no, data, channel))
        limit = self.max_audio_seconds
        if limit is not None and self.config is not None:
            bps = self.config.audio_format.bytes_per_second
            received = (
                self._audio_bytes
                if channel is None
                else max(s.bytes_received for s in self._channels.values())
            )
            if bps and received / bps > limit:
                rule = self._rule("<binary>:over_limit")
                assert rule.trigger == "drain"
                self._send(
                    {
                        "message": "Warning",
                        "type": "duration_limit_exceeded",
                        "reason": f"the audio exceeded the limit of {limit:g}s",
                        "duration_limit": limit,
                    }
                )
                self._fire(rule.trigger)
                self._limit_reached = True
                frames = self._frames or sum(s.received for s in self._channels.values())
                self._events.append(StreamEnded(None, frames, {}))

    def _ack_ignored(self, channel: str | None) -> None:
        if channel is None:
            self._frames += 1
            seq_no = self._frames
        else:
            stream = self._channels.setdefault(channel, _Channel())
            stream.received += 1
            seq_no = stream.received
        if not self._pending_frames:
            self._actions.append(SendText(_ack_text(channel, seq_no)))
            return
        # Earlier frames are still waiting to be taken: this ack follows theirs.
        deferred = self._deferred_acks.get(channel)
        if deferred is None:
            self._deferred_acks[channel] = [seq_no, seq_no]
        else:
            deferred[1] = seq_no

    def _on_add_channel_audio(self, msg: dict[str, Any], trigger: str | None) -> None:
        channel, data = msg.get("channel"), msg.get("data")
        if type(channel) is not str or not channel or type(data) is not str:
            raise _Malformed("AddChannelAudio needs a channel and base64 data")
        expected = self._expected_channels
        if expected is not None and channel not in expected:
            self._error(
                "protocol_error",
                f"channel {channel[:40]!r} is not one of {sorted(expected)}",
            )
            return
        try:
            audio = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _Malformed("data is not valid base64") from None
        self._on_audio(audio, channel)

    def _on_end_of_stream(self, msg: dict[str, Any], trigger: str | None) -> None:
        last = msg.get("last_seq_no")
        if last is not None and type(last) is not int:
            raise _Malformed("last_seq_no must be an integer")
        assert trigger == "drain"
        self._fire(trigger)
        for stream in self._channels.values():
            stream.ended = True
        received = self._frames or sum(s.received for s in self._channels.values())
        self._events.append(StreamEnded(last, received, msg))

    def _is_last_channel(self, channel: object) -> bool:
        if type(channel) is not str:
            return False
        expected = self._expected_channels
        names = expected if expected is not None else frozenset(self._channels)
        if channel not in names:
            return False
        return all(c == channel or (c in self._channels and self._channels[c].ended) for c in names)

    def _on_end_of_channel(self, msg: dict[str, Any], trigger: str | None) -> None:
        channel, last = msg.get("channel"), msg.get("last_seq_no")
        if type(channel) is not str or not channel:
            raise _Malformed("EndOfChannel needs a channel")
        if last is not None and type(last) is not int:
            raise _Malformed("last_seq_no must be an integer")
        if self._frames:
            self._error("protocol_error", "EndOfChannel in a single-stream session")
            return
        stream = self._channels.get(channel)
        if stream is None:
            expected = self._expected_channels
            if expected is not None and channel not in expected:
                self._error("protocol_error", f"unknown channel {channel[:40]!r}")
                return
            stream = self._channels[channel] = _Channel()
        if stream.ended:
            self._error("protocol_error", f"channel {channel[:40]!r} already ended")
            return
        stream.ended = True
        if trigger == "drain":
            self._fire(trigger)
        self._events.append(ChannelEnded(channel, last, stream.received, trigger == "drain", msg))

    def _on_set_recognition_config(self, msg: dict[str, Any], trigger: str | None) -> None:
        payload = msg.get("transcription_config")
        if type(payload) is not dict:
            raise _Malformed("transcription_config must be an object")
        assert self.config is not None
        try:
            new = TranscriptionConfig.mid_session_from_dict(
                payload, current=self.config.transcription_config
            )
        except ConfigError as exc:
            self._error("invalid_config", f"SetRecognitionConfig: {exc}")
            return
        self.config = StartRecognitionConfig(
            transcription_config=new,
            audio_format=self.config.audio_format,
            translation_config=self.config.translation_config,
            audio_events_config=self.config.audio_events_config,
        )
        self._events.append(RecognitionConfigChanged(new, msg))

    def _on_force_end_of_utterance(self, msg: dict[str, Any], trigger: str | None) -> None:
        timestamp, channel = msg.get("timestamp"), msg.get("channel")
        if timestamp is not None and (
            type(timestamp) not in (int, float) or not 0 <= timestamp < math.inf
        ):
            raise _Malformed("timestamp must be a number of seconds >= 0")
        if channel is not None and type(channel) is not str:
            raise _Malformed("channel must be a string")
        self._events.append(ForceEndOfUtteranceRequested(timestamp, channel, msg))

    def _on_get_speakers(self, msg: dict[str, Any], trigger: str | None) -> None:
        final = msg.get("final", False)
        if type(final) is not bool:
            raise _Malformed("final must be a boolean")
        self._events.append(SpeakersRequested(final, msg))

    # ----------------------------------------------------------------- commands

    def start_recognition(
        self,
        *,
        session_id: str | None = None,
        language_pack_info: LanguagePackInfo | None = None,
        channel_ids: Sequence[str] | None = None,
        orchestrator_version: str | None = "smproto",
        now: float | None = None,
    ) -> None:
        """Answer ``StartRequested``: send ``RecognitionStarted``; audio may flow.

        ``language_pack_info`` defaults to English with a space between words; its
        ``word_delimiter`` is used to build each transcript's text. For multichannel
        sessions ``channel_ids`` defaults to the config's ``channel_diarization_labels``.
        """
        rule = self._command("start_recognition", "STARTING")
        if now is not None:
            self._now = now
        info = language_pack_info or _DEFAULT_LANGUAGE_PACK
        message: dict[str, Any] = {"message": "RecognitionStarted"}
        if orchestrator_version is not None:
            message["orchestrator_version"] = orchestrator_version
        if session_id is not None:
            message["id"] = session_id
        lpi: dict[str, Any] = {"word_delimiter": info.word_delimiter}
        for key in ("language_description", "writing_direction", "itn", "adapted"):
            value = getattr(info, key)
            if value is not None:
                lpi[key] = value
        message["language_pack_info"] = lpi
        if channel_ids is None and self._expected_channels is not None:
            assert self.config is not None
            channel_ids = self.config.transcription_config.channel_diarization_labels
        if channel_ids:
            message["channel_ids"] = list(channel_ids)
            self._expected_channels = frozenset(channel_ids)
        self._word_delimiter = info.word_delimiter
        assert rule.trigger == "start"
        self._fire(rule.trigger)
        self._send(message)
        self._last_audio = self._session_start = self._now
        translation = self.config.translation_config if self.config else None
        if translation is not None and not translation.target_languages:
            self._send(
                {
                    "message": "Warning",
                    "type": "empty_translation_target_list",
                    "reason": "no translation target languages: translation will not run",
                }
            )

    def send_transcript(
        self,
        results: Sequence[Result],
        *,
        start_time: float,
        end_time: float,
        final: bool,
        channel: str | None = None,
        forced: bool = False,
    ) -> None:
        """Send ``AddTranscript`` (``final``) or ``AddPartialTranscript`` from typed results.

        ``metadata.transcript`` is the results joined with the language's delimiter.
        Partials are only sent when the session enabled them.
        """
        self._command("send_result", "STREAMING or DRAINING")
        assert self.config is not None
        if not final and not self.config.transcription_config.enable_partials:
            raise LocalProtocolError("partials were not enabled by this session's config")
        if not end_time >= start_time:
            raise LocalProtocolError(f"end_time {end_time} is before start_time {start_time}")
        text = join_results(results, word_delimiter=self._word_delimiter)
        message: dict[str, Any] = {
            "message": "AddTranscript" if final else "AddPartialTranscript",
            "format": "2.9",
            "results": [r.to_dict() for r in results],
            "metadata": {
                "start_time": start_time,
                "end_time": end_time,
                "transcript": text + " " if text else "",
            },
        }
        if channel is not None:
            message["channel"] = channel
        if forced:
            message["forced"] = True
        self._send(message)

    def send_end_of_utterance(
        self, time: float, *, channel: str | None = None, forced: bool = False
    ) -> None:
        """Send ``EndOfUtterance`` at ``time`` (it has zero duration)."""
        self._command("send_result", "STREAMING or DRAINING")
        message: dict[str, Any] = {
            "message": "EndOfUtterance",
            "metadata": {"start_time": time, "end_time": time},
        }
        if channel is not None:
            message["channel"] = channel
        if forced:
            message["forced"] = True
        self._send(message)

    def send_translation(
        self, language: str, sentences: Sequence[TranslatedSentence], *, final: bool
    ) -> None:
        """Send ``AddTranslation`` (``final``) or ``AddPartialTranslation``."""
        self._command("send_result", "STREAMING or DRAINING")
        assert self.config is not None
        translation = self.config.translation_config
        if translation is None or language not in translation.target_languages:
            raise LocalProtocolError(f"{language!r} is not a target language of this session")
        if not final and not translation.enable_partials:
            raise LocalProtocolError("partial translations were not enabled")
        results = []
        for s in sentences:
            item: dict[str, Any] = {
                "content": s.content,
                "start_time": s.start_time,
                "end_time": s.end_time,
            }
            if s.speaker is not None:
                item["speaker"] = s.speaker
            results.append(item)
        self._send(
            {
                "message": "AddTranslation" if final else "AddPartialTranslation",
                "format": "2.9",
                "language": language,
                "results": results,
            }
        )

    def send_audio_event_started(
        self, event_type: str, start_time: float, confidence: float, *, channel: str | None = None
    ) -> None:
        """Send ``AudioEventStarted``."""
        self._command("send_result", "STREAMING or DRAINING")
        message: dict[str, Any] = {
            "message": "AudioEventStarted",
            "event": {"type": event_type, "start_time": start_time, "confidence": confidence},
        }
        if channel is not None:
            message["channel"] = channel
        self._send(message)

    def send_audio_event_ended(
        self, event_type: str, end_time: float, *, channel: str | None = None
    ) -> None:
        """Send ``AudioEventEnded``."""
        self._command("send_result", "STREAMING or DRAINING")
        message: dict[str, Any] = {
            "message": "AudioEventEnded",
            "event": {"type": event_type, "end_time": end_time},
        }
        if channel is not None:
            message["channel"] = channel
        self._send(message)

    def send_speakers(self, speakers: Sequence[SpeakerIdentity]) -> None:
        """Send ``SpeakersResult``."""
        self._command("send_result", "STREAMING or DRAINING")
        self._send(
            {
                "message": "SpeakersResult",
                "speakers": [
                    {"label": s.label, "speaker_identifiers": list(s.speaker_identifiers)}
                    for s in speakers
                ],
            }
        )

    def send_info(self, info_type: str, reason: str, **fields: Any) -> None:
        """Send ``Info`` (e.g. ``recognition_quality``, ``concurrent_session_usage``)."""
        self._command("send_notice", "a connected session")
        self._send({"message": "Info", "type": info_type, "reason": reason, **fields})

    def send_warning(self, warning_type: str, reason: str, **fields: Any) -> None:
        """Send ``Warning`` (the engine sends ``duration_limit_exceeded``,
        ``add_audio_after_eos``, ``idle_timeout`` and ``session_timeout`` itself)."""
        self._command("send_notice", "a connected session")
        self._send({"message": "Warning", "type": warning_type, "reason": reason, **fields})

    def send_error(self, error_type: str, reason: str) -> None:
        """End the session: send ``Error``, then close with its code (see
        :data:`ERROR_CLOSE_CODES`). Does nothing once the session has ended."""
        rule = self._command("send_error", "a connected session")
        if rule.outcome is Outcome.IGNORE:
            return
        self._error(error_type, reason, event=False)

    def end_of_transcript(self) -> None:
        """Send ``EndOfTranscript``: every transcript has been sent. The engine closes
        the connection (code 1000) right away, or after ``close_timeout`` if the
        client has not closed by then."""
        rule = self._command("end_of_transcript", "DRAINING")
        if self._pending_bytes:
            raise LocalProtocolError("take every AudioReceived event before end_of_transcript()")
        assert rule.trigger == "finish"
        self._fire(rule.trigger)
        self._send({"message": "EndOfTranscript"})
        if self.close_timeout > 0:
            self._close_deadline = self._now + self.close_timeout
        else:
            self._actions.append(CloseTransport(1000, ""))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End the connection without ``EndOfTranscript`` (e.g. the server shuts down)."""
        rule = self._command("close", "a connected session")
        if rule.outcome is Outcome.IGNORE:
            return
        assert rule.trigger == "close"
        self._fire(rule.trigger)
        self._close_deadline = None
        self._actions.append(CloseTransport(code, _close_reason(reason)))


def _is_language(text: str) -> bool:
    return len(text) <= 32 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}"


_Handler = Callable[[ServerConnection, dict[str, Any], "str | None"], None]

_HANDLERS: Final[dict[str, _Handler]] = {
    "StartRecognition": ServerConnection._on_start_recognition,
    "AddChannelAudio": ServerConnection._on_add_channel_audio,
    "EndOfStream": ServerConnection._on_end_of_stream,
    "EndOfChannel": ServerConnection._on_end_of_channel,
    "SetRecognitionConfig": ServerConnection._on_set_recognition_config,
    "ForceEndOfUtterance": ServerConnection._on_force_end_of_utterance,
    "GetSpeakers": ServerConnection._on_get_speakers,
}
