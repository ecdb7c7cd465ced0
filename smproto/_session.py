"""The client session, sans IO: one stream of audio over as many connections as it takes.

See :class:`ClientSession`. Its lifecycle is :data:`smproto._state.SESSION_RULES`; each
connection's is the engine's (:class:`~smproto.ClientConnection`).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

from . import _state
from ._client import AudioInFlight, ClientConnection
from ._state import SESSION_MACHINE, SESSION_RULES, Outcome, Rule, SessionState, State
from .actions import (
    AbortConnection,
    OpenConnection,
    RequestTemporaryKey,
    SessionAction,
    Transmit,
)
from .auth import (
    DEFAULT_MANAGEMENT_URL,
    DEFAULT_RT_URL,
    handshake_headers,
    mask_credentials,
    parse_temporary_key_response,
    redact,
    session_url,
    temporary_key_request,
)
from .config import AudioEventsConfig, AudioFormat, TranscriptionConfig, TranslationConfig
from .errors import LocalProtocolError, RemoteProtocolError, TemporaryKeyError
from .events import (
    ConnectionClosed,
    Event,
    Reconnected,
    RolledOver,
    ServerError,
    ServerWarning,
)
from .session import (
    NO_RECONNECT,
    AuthenticationError,
    ConnectionFailed,
    EventBacklog,
    HandshakeRejected,
    ReconnectAttempts,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    error_for_failure,
)

__all__ = ["ClientSession"]

_S = SessionState
_IDLE, _OPENING, _ACTIVE, _ROLLING_OVER = _S.IDLE, _S.OPENING, _S.ACTIVE, _S.ROLLING_OVER
_BACKING_OFF, _DRAINING, _CLOSED, _FAILED = _S.BACKING_OFF, _S.DRAINING, _S.CLOSED, _S.FAILED
_STREAMING, _AWAITING = State.STREAMING, State.AWAITING_RECOGNITION_STARTED

# How far a connection has got.
_KEY: Final = 0  # waiting for the temporary key
_HANDSHAKE: Final = 1  # OpenConnection asked for, not opened yet
_OPEN: Final = 2  # the transport is open: the engine runs


class _Secret:
    """A credential that no repr shows (a session's ``__dict__`` may be printed)."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>" if self.value is not None else "None"


class _Conn:
    """One connection of the session: its id, its engine, how far it got."""

    __slots__ = ("began", "engine", "id", "key", "open_deadline", "phase")

    def __init__(self, cid: int, engine: ClientConnection, now: float, open_timeout: float):
        self.id = cid
        self.engine = engine
        self.began = now
        self.open_deadline = now + open_timeout
        self.phase = _KEY
        self.key: str | None = None

    def __repr__(self) -> str:
        return f"<connection {self.id} {('key', 'handshake', 'open')[self.phase]} {self.engine!r}>"


class ClientSession:
    """A Speechmatics real-time session over as many connections as it takes, with no IO.

    It owns the current :class:`~smproto.ClientConnection` (and, during a rollover, the
    next one) and decides everything that is not IO: when to open a connection, whether
    and when to retry a failure (:class:`~smproto.session.ReconnectPolicy`, the close
    codes, a retry budget), how the next connection continues the stream without loss
    or repetition (``ClientConnection.take_over``), when to roll over to a new
    connection before a limit the server announced, and which events the application
    sees (a bounded backlog). A driver opens the transports it asks for, feeds what
    arrives, performs its actions, arms its one timer and wakes its waiters.

    Inputs, each with ``now`` (seconds on any monotonic clock):

    - :meth:`start`; per connection id: :meth:`key_received` / :meth:`key_failed`,
      :meth:`connection_opened` / :meth:`open_failed`, :meth:`receive_message`,
      :meth:`connection_closed`; and :meth:`handle_timer` at :meth:`get_timer`.

    Commands (the application's, through the driver): :meth:`send_audio`,
    :meth:`send_channel_audio`, :meth:`end_of_stream`, :meth:`end_of_channel`,
    :meth:`set_recognition_config`, :meth:`force_end_of_utterance`,
    :meth:`get_speakers`, :meth:`close`.

    Outputs: :meth:`actions` (``smproto.actions.SessionAction`` s, each naming its
    connection), :meth:`next_event`, :meth:`get_timer`, :attr:`state`,
    :attr:`failure`, and the conditions drivers wait on (:meth:`check_send_audio`,
    :meth:`check_command`, :attr:`wake_sender`, :attr:`ready`, :attr:`finished`,
    :attr:`reading_paused`).

    Args:
        url: the real-time endpoint (``sm-sdk`` is added to its query from ``sdk``).
        transcription_config, audio_format, translation_config, audio_events_config:
            what to recognise, as for ``ClientConnection``.
        api_key: the key (``None``: connect without one, e.g. to a local server).
        temporary_key, temporary_key_ttl, management_url: exchange the key for a
            short-lived one before each connection (:class:`RequestTemporaryKey`).
        extra_headers: more handshake headers (never ``Authorization``).
        sdk: how the client introduces itself (``sm-sdk``).
        reconnect: ``True`` (the default policy), ``False``, or a ``ReconnectPolicy``.
        open_timeout: the most a connection may take to open (key and handshake).
        recognition_started_timeout, ack_timeout, drain_timeout: each connection's timers.
        max_audio_in_flight_seconds, retain_audio_seconds: each connection's window and
            what it keeps for a replay (see ``ClientConnection``).
        event_queue_size: unread events before late-reader drops (see ``EventBacklog``).
        max_session_seconds: roll over to a new connection after this long on one
            (``None``: only when the server warns of ``session_timeout``).
        rng: the randomness of the backoff jitter (tests pass a seeded one).

    Raises:
        ValueError, TypeError: a setting is invalid (``ConfigError`` for configurations).
    """

    def __init__(
        self,
        url: str = DEFAULT_RT_URL,
        *,
        transcription_config: TranscriptionConfig,
        audio_format: AudioFormat | None = None,
        translation_config: TranslationConfig | None = None,
        audio_events_config: AudioEventsConfig | None = None,
        api_key: str | None = None,
        temporary_key: bool = False,
        temporary_key_ttl: int = 60,
        management_url: str = DEFAULT_MANAGEMENT_URL,
        extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        sdk: str | None = None,
        reconnect: ReconnectPolicy | bool = True,
        open_timeout: float = 10.0,
        recognition_started_timeout: float = 30.0,
        ack_timeout: float = 30.0,
        drain_timeout: float = 60.0,
        max_audio_in_flight_seconds: float = 10.0,
        retain_audio_seconds: float = 60.0,
        event_queue_size: int = 1000,
        max_session_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._options: dict[str, Any] = {
            "translation_config": translation_config,
            "audio_events_config": audio_events_config,
            "max_audio_in_flight_seconds": max_audio_in_flight_seconds,
            "retain_audio_seconds": retain_audio_seconds,
            "recognition_started_timeout": recognition_started_timeout,
            "ack_timeout": ack_timeout,
            "drain_timeout": drain_timeout,
        }
        engine = ClientConnection(
            transcription_config, audio_format or AudioFormat(), **self._options
        )
        if isinstance(reconnect, ReconnectPolicy):
            self.policy = reconnect
        elif type(reconnect) is bool:
            self.policy = ReconnectPolicy() if reconnect else NO_RECONNECT
        else:
            raise TypeError("reconnect must be a bool or a ReconnectPolicy")
        for name, value in (
            ("open_timeout", open_timeout),
            ("max_session_seconds", max_session_seconds),
        ):
            if value is not None and (type(value) not in (int, float) or not 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if temporary_key and api_key is None:
            raise ValueError("temporary_key=True needs an API key")
        self._api_key = _Secret(api_key)
        self._extra = list(handshake_headers(None, extra_headers))  # checked now
        if api_key is not None:
            handshake_headers(api_key)  # checked now (never shown)
            if temporary_key:
                temporary_key_request(api_key, ttl=temporary_key_ttl, base_url=management_url)
        #: The URL each connection opens.
        self.url = session_url(url, sdk=sdk)
        self._temporary_key = temporary_key
        self._ttl = temporary_key_ttl
        self._management_url = management_url
        self._open_timeout = float(open_timeout)
        self._max_session = max_session_seconds
        self._rng = rng or random.Random()
        self._backlog = EventBacklog(event_queue_size)

        #: Where the session is in its life; read it freely.
        self.state = SessionState.IDLE
        #: Why the session failed (set in ``FAILED``): a ``SessionError``.
        self.failure: SessionError | None = None
        #: Whether the application has been told of :attr:`failure` (see :meth:`raise_failure`).
        self.failure_reported = False
        #: How many times a failed connection was replaced (``Reconnected``).
        self.reconnects = 0
        #: How many times the session rolled over to a new connection (``RolledOver``).
        self.rollovers = 0

        self._engine = engine  # the current connection's engine
        self._cur: _Conn | None = None  # the current connection (None while backing off)
        self._next: _Conn | None = None  # the connection a rollover is making
        self._conns: dict[int, _Conn] = {}  # every connection still fed: current, next, retiring
        self._retiring: set[int] = set()  # rolled over from: ending, its output discarded
        self._next_id = 1
        self._actions: list[SessionAction] = []
        self._deadline: float | None = None  # the session's own (open, backoff, budget, rollover)
        self._now = 0.0
        self._paused = False
        # What arrived while reading was paused (already read by the driver): fed, in
        # order, once the application catches up. (connection, message) or, for the end
        # of a connection with messages held, (connection, (code, reason)).
        self._held: deque[tuple[int, str | bytes | tuple[int | None, str]]] = deque()
        self._stream_ended = False  # by the application or the server
        self._started_once = False
        # Reconnecting.
        self._source: ClientConnection | None = None  # the failed engine the next one continues
        self._attempts = ReconnectAttempts()
        self._outage_start: float | None = None
        self._outage_attempts = 0
        self._budget_used = 0.0
        self._backoff_until = 0.0
        self._last_error: SessionError | None = None
        # Rolling over.
        self._rollover_at: float | None = None
        self._rollover_reason = ""
        self._rollover_tries = 0

    def __repr__(self) -> str:  # never shows a key
        return (
            f"<ClientSession {self.state.name} connection={self._engine.state.name} "
            f"reconnects={self.reconnects} rollovers={self.rollovers}>"
        )

    # ---------------------------------------------------------------- the rules

    def _enter(self, name: str) -> Rule:
        """Apply the rule of input ``name`` in the current state: the one place where the
        session's ``state`` changes. Raises for commands refused in this state."""
        state = self.state
        rule = SESSION_RULES[name][state]
        outcome = rule.outcome
        if outcome is Outcome.OK:
            if rule.trigger is not None:
                _state.fire(SESSION_MACHINE, self, rule.trigger)
            return rule
        if outcome is Outcome.IGNORE:
            return rule
        if outcome is Outcome.FAILURE:
            assert self.failure is not None
            self.failure_reported = True
            raise self.failure
        if outcome is Outcome.WAIT:
            raise LocalProtocolError(
                f"{name}() cannot be done while a connection is being made (session state "
                f"{state.name}): wait until check_command({name!r}) is true"
            )
        row = SESSION_RULES[name]
        expected = " or ".join(s.name for s in SessionState if row[s].outcome is Outcome.OK)
        message = f"{name}() is not allowed in session state {state.name} (expected {expected})"
        if state is _DRAINING and name.startswith(("send_", "end_of_channel")):
            message += ": the stream has ended"
        raise LocalProtocolError(message)

    # ---------------------------------------------------------------- outputs

    def actions(self) -> list[SessionAction]:
        """Take what the driver must do, in order (per connection)."""
        cur = self._cur
        if not self._actions and cur is not None and len(self._conns) == 1:
            # The hot path: one connection, the current one.
            if not cur.engine.has_actions:
                return []
            return [Transmit(cur.id, cur.engine.actions())]
        out = self._actions
        self._actions = []
        for conn in self._conns.values():
            if conn.engine.has_actions:
                out.append(Transmit(conn.id, conn.engine.actions()))
        return out

    @property
    def has_actions(self) -> bool:
        """Whether :meth:`actions` would return anything (it takes nothing)."""
        if self._actions:
            return True
        return any(conn.engine.has_actions for conn in self._conns.values())

    def next_event(self) -> Event | None:
        """Take the next event for the application, or ``None`` when there is none (yet:
        see :attr:`finished`). Reading may lift :attr:`reading_paused`."""
        backlog = self._backlog
        event = backlog.pop()
        if self._paused and len(backlog) < backlog.limit:
            self._paused = False
            self._feed_held()
        return event

    def _feed_held(self) -> None:
        """Reading resumes: feed what was held, until the backlog is overfull again."""
        held = self._held
        while held and not self._paused:
            connection, item = held.popleft()
            if type(item) is tuple:
                self.connection_closed(connection, item[0], item[1], now=self._now)
            else:
                self.receive_message(connection, item, now=self._now)  # type: ignore[arg-type]

    @property
    def has_events(self) -> bool:
        """Whether :meth:`next_event` would return an event."""
        return len(self._backlog) > 0

    def get_timer(self) -> float | None:
        """The next deadline (a ``now`` value) at which to call :meth:`handle_timer`."""
        best = self._deadline
        for conn in self._conns.values():
            if conn.phase == _OPEN:
                deadline = conn.engine.get_timer()
                if deadline is not None and (best is None or deadline < best):
                    best = deadline
        return best

    # ---------------------------------------------------------------- what drivers read

    @property
    def connection(self) -> ClientConnection:
        """The current connection's engine (a new one after each reconnect or rollover)."""
        return self._engine

    @property
    def connection_id(self) -> int | None:
        """The id of the current connection (``None`` while waiting to reconnect)."""
        return self._cur.id if self._cur is not None else None

    @property
    def audio_in_flight(self) -> AudioInFlight:
        """Audio sent on the current connection and not yet acknowledged."""
        return self._engine.audio_in_flight

    @property
    def dropped_events(self) -> int:
        """Events dropped because the application read too slowly (acknowledgements and
        superseded partials, never finals)."""
        return self._backlog.dropped

    @property
    def reading_paused(self) -> bool:
        """Whether the driver should stop reading its transports: the application has
        fallen far behind (eight times ``event_queue_size`` events wait). It lifts once
        the application has read the backlog below ``event_queue_size``.

        What the driver had already read when it paused is still given to the session,
        which holds it, unparsed, and feeds it in order when reading resumes (in
        :meth:`next_event`: a driver performs :meth:`actions` after reading an event
        while reading was paused). So the backlog stays bounded by eight times its
        limit, and what is held by one read of each transport."""
        return self._paused

    @property
    def ready(self) -> bool:
        """Whether the first connection has started (``connect()`` may return), or the
        session is already over."""
        return self._started_once or self.state is _CLOSED or self.state is _FAILED

    @property
    def finished(self) -> bool:
        """Whether the session is over: no more events will be added."""
        return self.state is _CLOSED or self.state is _FAILED

    def check_send_audio(self) -> bool:
        """Whether :meth:`send_audio` may be called now: ``True``; ``False`` while the
        driver must wait (the flow-control window is full, or a connection is being
        made). Raises what :meth:`send_audio` would when it never can again: the
        session's failure, or ``LocalProtocolError`` once the stream has ended."""
        state = self.state
        if state is _ACTIVE or state is _ROLLING_OVER:
            return not self._engine.audio_window_full
        return self._check("send_audio")

    def check_command(self, name: str) -> bool:
        """Whether command ``name`` (e.g. ``"force_end_of_utterance"``) may be called now
        (``False``: wait, a connection is being made); raises when it never can again."""
        return self._check(name)

    def _check(self, name: str) -> bool:
        outcome = SESSION_RULES[name][self.state].outcome
        if outcome is Outcome.WAIT:
            return False
        if outcome is not Outcome.OK and outcome is not Outcome.IGNORE:
            self._enter(name)  # raises
        return True

    @property
    def wake_sender(self) -> bool:
        """Whether a sender waiting for room should wake: the window is at most three
        quarters full (fewer wake-ups than one per ack), or it can never send again (it
        will raise)."""
        state = self.state
        if state is _ACTIVE or state is _ROLLING_OVER:
            engine = self._engine
            return (
                not engine.audio_window_full
                and engine.audio_in_flight.seconds <= 0.75 * engine.max_audio_in_flight_seconds
            )
        return SESSION_RULES["send_audio"][state].outcome is not Outcome.WAIT

    def raise_failure(self) -> None:
        """Raise :attr:`failure`, if the session failed (and note it was reported)."""
        if self.failure is not None:
            self.failure_reported = True
            raise self.failure

    # ---------------------------------------------------------------- inputs

    def start(self, *, now: float) -> None:
        """Begin: ask for the first connection."""
        self._enter("start")
        self._now = now
        self._cur = self._begin(self._engine, now)
        self._refresh_deadline()

    def key_received(self, connection: int, status: int, body: bytes | str, *, now: float) -> None:
        """The temporary-key endpoint answered HTTP ``status`` with ``body``."""
        self._now = now
        conn = self._conns.get(connection)
        if conn is None or conn.phase != _KEY:
            return  # a connection the session gave up
        try:
            key = parse_temporary_key_response(status, body, redact_secrets=[self._api_key.value])
        except TemporaryKeyError as exc:
            message = self._redact(str(exc))
            error: SessionError
            if exc.status in (401, 403):
                error = AuthenticationError(message, status=exc.status)
            elif exc.status is not None and not 200 <= exc.status <= 299:
                error = HandshakeRejected(exc.status, message)
            else:
                error = ConnectionFailed(message, retryable=exc.retryable)
            self._attempt_failed(conn, error, now)
        else:
            self._open(conn, key)
        self._refresh_deadline()

    def key_failed(self, connection: int, reason: str, *, now: float) -> None:
        """The temporary-key endpoint could not be reached."""
        self._now = now
        conn = self._conns.get(connection)
        if conn is None or conn.phase != _KEY:
            return
        error = ConnectionFailed(
            self._redact(f"the temporary-key endpoint is unreachable: {reason}")
        )
        self._attempt_failed(conn, error, now)
        self._refresh_deadline()

    def connection_opened(self, connection: int, *, now: float) -> None:
        """The transport of ``connection`` is open."""
        self._now = now
        conn = self._conns.get(connection)
        if conn is None or conn.phase != _HANDSHAKE:
            return
        conn.phase = _OPEN
        conn.key = None
        before = conn.engine.state
        conn.engine.connection_opened(now=now)
        self._after(conn, before, now)
        self._refresh_deadline()

    def open_failed(
        self,
        connection: int,
        reason: str,
        *,
        now: float,
        status: int | None = None,
        body: bytes | str = b"",
        timed_out: bool = False,
    ) -> None:
        """The transport of ``connection`` could not be opened: refused, DNS, TLS
        (``reason``), the upgrade answered with HTTP ``status`` (and ``body``), or the
        driver's own timeout (``timed_out``)."""
        self._now = now
        conn = self._conns.get(connection)
        if conn is None or conn.phase == _OPEN:
            return
        secrets = (conn.key,)
        error: SessionError
        if timed_out:
            error = self._open_timeout_error()
        elif status is not None:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            excerpt = " ".join(self._redact(text[:200], *secrets).split())
            message = f"the server refused the connection with HTTP {status}" + (
                f": {excerpt}" if excerpt else ""
            )
            if status in (401, 403):
                error = AuthenticationError(message, status=status)
            else:
                error = HandshakeRejected(status, message)
        else:
            url = mask_credentials(self.url)
            error = ConnectionFailed(
                self._redact(f"could not connect to {url}: {reason}", *secrets)
            )
        self._attempt_failed(conn, error, now, abort=False)
        self._refresh_deadline()

    def receive_message(self, connection: int, data: str | bytes, *, now: float) -> None:
        """One WebSocket message from the server on ``connection``. Never raises for what
        the server sends: a protocol violation fails that connection (and the session
        decides what follows)."""
        if self._paused:
            self._held.append((connection, data))
            return
        cur = self._cur
        if cur is not None and cur.id == connection:
            engine = cur.engine
            before = engine.state
            try:  # noqa: SIM105 - suppress() would cost a context manager per message
                engine.receive_message(data, now=now)
            except RemoteProtocolError:
                pass  # the engine has failed and queued its close
            if engine.state is before:  # the hot path: an ack or a transcript
                if engine.has_events:
                    self._deliver(engine.events(), now)
                return
            self._now = now
            self._after(cur, before, now)
            self._refresh_deadline()
            return
        conn = self._conns.get(connection)
        if conn is None or conn.phase != _OPEN:
            return  # a connection the session is done with
        self._now = now
        before = conn.engine.state
        try:  # noqa: SIM105
            conn.engine.receive_message(data, now=now)
        except RemoteProtocolError:
            pass
        self._after(conn, before, now)
        self._refresh_deadline()

    def connection_closed(
        self, connection: int, code: int | None, reason: str = "", *, now: float
    ) -> None:
        """The transport of ``connection`` is gone (either side closed it, or it broke)."""
        self._now = now
        conn = self._conns.get(connection)
        if conn is None:
            return
        if self._held and any(held[0] == connection for held in self._held):
            self._held.append((connection, (code, reason)))  # after what it said
            return
        if conn.phase != _OPEN:
            self.open_failed(connection, reason or "the connection closed", now=now)
            return
        before = conn.engine.state
        conn.engine.connection_closed(code, reason, now=now)
        self._after(conn, before, now)
        self._forget(conn)
        self._refresh_deadline()

    def handle_timer(self, *, now: float) -> None:
        """Call when ``now`` reaches :meth:`get_timer` (early or late is harmless)."""
        self._now = now
        for conn in list(self._conns.values()):
            if self._conns.get(conn.id) is not conn:
                continue  # gone meanwhile
            if conn.phase == _OPEN:
                before = conn.engine.state
                conn.engine.handle_timer(now=now)
                self._after(conn, before, now)
            elif now >= conn.open_deadline:
                self._attempt_failed(conn, self._open_timeout_error(), now)
        state = self.state
        if (
            self._outage_start is not None
            and (state is _OPENING or state is _BACKING_OFF)
            and now >= self._budget_deadline()
        ):
            self._give_up(self._budget_spent(self._last_error), "budget_spent", now)
        elif state is _BACKING_OFF and now >= self._backoff_until:
            self._retry(now)
        elif state is _ACTIVE and self._rollover_at is not None and now >= self._rollover_at:
            self._roll_over("max_session_seconds", now)
        self._refresh_deadline()

    # ---------------------------------------------------------------- commands

    def send_audio(self, chunk: bytes, *, now: float | None = None) -> int:
        """Send a chunk of audio on the current connection; returns its ``seq_no`` there.

        Check :meth:`check_send_audio` first: the session never waits, and refuses
        audio while a connection is being made (``LocalProtocolError``).
        """
        state = self.state
        if state is not _ACTIVE and state is not _ROLLING_OVER:  # the hot path fires nothing
            self._enter("send_audio")  # raises
        return self._engine.send_audio(chunk, now=now)

    def send_channel_audio(self, channel: str, chunk: bytes, *, now: float | None = None) -> int:
        """Send a chunk of one channel's audio (multichannel sessions)."""
        state = self.state
        if state is not _ACTIVE and state is not _ROLLING_OVER:
            self._enter("send_channel_audio")
        return self._engine.send_channel_audio(channel, chunk, now=now)

    def end_of_stream(self, *, now: float | None = None) -> None:
        """No more audio. While a connection is being made, the next one ends the stream
        once it has replayed the audio. Ignored once the stream has ended."""
        if self._enter("end_of_stream").outcome is Outcome.IGNORE:
            return
        self._stream_ended = True
        if self.state is _ACTIVE or self.state is _ROLLING_OVER:
            self._command(lambda engine: engine.end_of_stream(now=now))

    def end_of_channel(self, channel: str, *, now: float | None = None) -> None:
        """No more audio on ``channel``; the last one ends the stream."""
        if self._enter("end_of_channel").outcome is not Outcome.IGNORE:
            self._command(lambda engine: engine.end_of_channel(channel, now=now))

    def set_recognition_config(
        self, config: TranscriptionConfig | None = None, **changes: Any
    ) -> TranscriptionConfig:
        """Change settings mid-session (see ``ClientConnection.set_recognition_config``);
        the connections that continue this one start with them."""
        self._enter("set_recognition_config")
        result: list[TranscriptionConfig] = []
        self._command(
            lambda engine: result.append(engine.set_recognition_config(config, **changes))
        )
        return result[0]

    def force_end_of_utterance(
        self, timestamp: float | None = None, *, channel: str | None = None
    ) -> None:
        """Ask the server to finalise what it has now (``ForceEndOfUtterance``)."""
        self._enter("force_end_of_utterance")
        self._command(lambda engine: engine.force_end_of_utterance(timestamp, channel=channel))

    def get_speakers(self, final: bool = False) -> None:
        """Ask for the speakers identified so far (answered by ``SpeakersResult``)."""
        self._enter("get_speakers")
        self._command(lambda engine: engine.get_speakers(final))

    def close(self, *, now: float | None = None) -> None:
        """Abort: every connection is closed (or its opening dropped), ``CLOSED``.
        Transcripts not yet received are lost. Does nothing once the session is over."""
        if self._enter("close").outcome is Outcome.IGNORE:
            return
        if now is not None:
            self._now = now
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._cur = self._next = None
        self._source = None
        self._held.clear()
        self._backlog.end()
        self._refresh_deadline()

    def _command(self, apply: Any) -> None:
        cur = self._cur
        assert cur is not None
        before = cur.engine.state
        apply(cur.engine)
        if cur.engine.state is not before:
            self._after(cur, before, self._now)
            self._refresh_deadline()

    # ---------------------------------------------------------------- connections

    def _begin(self, engine: ClientConnection, now: float) -> _Conn:
        """Ask for a new connection for ``engine``."""
        conn = _Conn(self._next_id, engine, now, self._open_timeout)
        self._next_id += 1
        self._conns[conn.id] = conn
        api_key = self._api_key.value
        if self._temporary_key and api_key is not None:
            request = temporary_key_request(api_key, ttl=self._ttl, base_url=self._management_url)
            self._actions.append(RequestTemporaryKey(conn.id, request))
        else:
            self._open(conn, api_key)
        return conn

    def _open(self, conn: _Conn, key: str | None) -> None:
        conn.phase = _HANDSHAKE
        conn.key = key
        headers = tuple(handshake_headers(key, self._extra))
        self._actions.append(OpenConnection(conn.id, self.url, headers))

    def _new_engine(self) -> ClientConnection:
        """A fresh engine for the next connection, with the current settings."""
        model = self._source or self._engine
        return ClientConnection(model.transcription_config, model.audio_format, **self._options)

    def _forget(self, conn: _Conn) -> None:
        """The session is done with ``conn``: what its engine still had to say goes out."""
        if self._conns.pop(conn.id, None) is None:
            return
        if conn is self._cur:
            self._cur = None  # its engine stays self._engine: the last one, for reading
        self._retiring.discard(conn.id)
        if conn.engine.has_actions:
            self._actions.append(Transmit(conn.id, conn.engine.actions()))
        conn.engine.events()  # nobody reads them

    def _drop(self, conn: _Conn) -> None:
        """Give ``conn`` up: close it (the engine's close), or stop its opening."""
        if conn.phase == _OPEN:
            conn.engine.close()  # does nothing once the engine is closed or failed
        else:
            self._actions.append(AbortConnection(conn.id))
        self._forget(conn)

    def _after(self, conn: _Conn, before: State, now: float) -> None:
        """After ``conn``'s engine took an input: deliver its events where they belong and
        follow its state."""
        engine = conn.engine
        state = engine.state
        if conn is self._cur:
            if (
                state is not before
                and before is _AWAITING
                and (state is _STREAMING or state is State.DRAINING)
            ):
                self._started(conn, now)  # Reconnected comes before RecognitionStarted
                if engine.has_events:
                    self._deliver(engine.events(), now)
                return
            if engine.has_events:
                self._deliver(engine.events(), now)
            if state is not before:
                self._current_changed(conn, state, now)
        elif conn is self._next:
            if state is _STREAMING and before is not _STREAMING:
                self._switch(conn, now)
            elif state is State.FAILED or state is State.CLOSED:
                failure = engine.failure
                self._next_failed(
                    conn,
                    error_for_failure(failure) if failure else ConnectionFailed("closed"),
                    now,
                )
        else:  # retiring: it ends on its own, and what it says is not wanted
            engine.events()

    def _deliver(self, events: list[Event], now: float) -> None:
        backlog = self._backlog
        for event in events:
            kind = type(event)
            if kind is ConnectionClosed or kind is ServerError:
                continue  # the session reports the failure, or absorbs it
            if kind is ServerWarning and event.type == "session_timeout":  # type: ignore[attr-defined]
                backlog.push(event)
                self._roll_over("session_timeout", now)
                continue
            backlog.push(event)
        if not self._paused and backlog.overfull:
            self._paused = True

    def _current_changed(self, conn: _Conn, state: State, now: float) -> None:
        if state is State.DRAINING:
            self._stream_ended = True
            if self._next is not None:
                self._drop(self._next)
                self._next = None
            self._enter("stream_ended")
        elif state is State.CLOSED:
            self._enter("end_of_transcript")
            if self.state is _CLOSED:
                self._backlog.end()
        elif state is State.FAILED:
            assert conn.engine.failure is not None
            self._current_failed(conn, error_for_failure(conn.engine.failure), now)

    # ---------------------------------------------------------------- starting

    def _started(self, conn: _Conn, now: float) -> None:
        """The current connection got ``RecognitionStarted``."""
        engine = conn.engine
        source = self._source
        if source is not None:
            try:
                replayed = engine.take_over(
                    source,
                    allow_loss=self.policy.allow_loss,
                    end_stream=self._stream_ended,
                    now=now,
                )
            except LocalProtocolError as exc:  # checked at the failure: cannot happen
                self._give_up(
                    SessionError(f"cannot continue the session: {exc}"), "failure:give_up", now
                )
                return
            self._source = None
            self.reconnects += 1
            gap = now - (self._outage_start if self._outage_start is not None else now)
            reason = str(self._last_error) if self._last_error else ""
            self._backlog.push(
                Reconnected(self._outage_attempts, reason, gap, replayed, self.reconnects)
            )
        elif self._stream_ended and engine.state is _STREAMING:
            engine.end_of_stream(now=now)  # ended while the first connection was opening
        if self._outage_start is not None:
            self._budget_used += now - self._outage_start
            self._outage_start = None
        self._outage_attempts = 0
        self._started_once = True
        drained = engine.state is State.DRAINING
        self._enter("connection_started:drained" if drained else "connection_started")
        self._rollover_at = now + self._max_session if self._max_session else None

    # ---------------------------------------------------------------- failing

    def _attempt_failed(
        self, conn: _Conn, error: SessionError, now: float, *, abort: bool = True
    ) -> None:
        """A connection failed before its transport opened (key, handshake, timeout)."""
        if conn.engine.state is State.CONNECTING:
            conn.engine.connection_closed(None, str(error), now=now)
        conn.engine.events()
        if conn is self._next:
            self._next_failed(conn, error, now)  # drops it (and aborts its opening)
            return
        if abort:
            self._actions.append(AbortConnection(conn.id))
        if conn is self._cur:
            self._current_failed(conn, error, now)
        self._conns.pop(conn.id, None)

    def _current_failed(self, conn: _Conn, error: SessionError, now: float) -> None:
        """The current connection failed: reconnect, or give up."""
        self._forget(conn)
        self._cur = None
        engine = conn.engine
        started = engine.recognition_started is not None
        if started:
            self._source = engine  # it holds the stream now (its audio, its cut)
        if self._outage_start is None:
            self._outage_start = now if started else conn.began
        self._last_error = error
        if self._next is not None:
            self._drop(self._next)
            self._next = None
        policy = self.policy
        attempt = self._attempts.after_failure(engine)
        if attempt == 1 and started:
            self._budget_used = 0.0  # it got further than any connection before: progress
        if not self._started_once and not policy.retry_first_connection:
            self._give_up(error, "failure:give_up", now)
            return
        if not error.retryable or attempt > policy.max_attempts:
            self._give_up(error, "failure:give_up", now)
            return
        source = self._source
        if source is not None:
            try:
                source._check_lossless(policy.allow_loss, "reconnect")
            except LocalProtocolError as exc:
                error.add_note(f"not reconnected: {exc}")
                self._give_up(error, "failure:give_up", now)
                return
        delay = policy.delay(error, attempt, self._rng)
        if now + delay >= self._budget_deadline():
            self._give_up(self._budget_spent(error), "budget_spent", now)
            return
        self._backoff_until = now + delay
        self._enter("failure:retry")

    def _budget_deadline(self) -> float:
        assert self._outage_start is not None
        return self._outage_start + self.policy.retry_budget - self._budget_used

    def _retry(self, now: float) -> None:
        self._enter("backoff_elapsed")
        self._outage_attempts += 1
        engine = self._new_engine()
        self._engine = engine
        self._cur = self._begin(engine, now)

    def _give_up(self, error: SessionError, name: str, now: float) -> None:
        self.failure = error
        self._enter(name)
        for conn in list(self._conns.values()):
            if conn.id not in self._retiring:
                self._drop(conn)
        self._cur = self._next = None
        self._source = None
        self._backlog.end()

    def _budget_spent(self, error: SessionError | None) -> SessionError:
        """The failure the session ends with once its retry budget is spent: the last
        one, with a note saying why it was not retried."""
        error = error or self._open_timeout_error()
        note = (
            f"not reconnected: the retry budget ({self.policy.retry_budget:g}s of failing "
            "without progress) is spent"
        )
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
        return error

    def _open_timeout_error(self) -> SessionTimeout:
        url = mask_credentials(self.url)
        return SessionTimeout(f"could not open {url} within {self._open_timeout:g}s", timer="open")

    def _redact(self, text: str, *secrets: str | None) -> str:
        return mask_credentials(redact(text, [self._api_key.value, *secrets]))

    # ---------------------------------------------------------------- rolling over

    def _roll_over(self, reason: str, now: float) -> None:
        """Open the next connection while the current one runs (make before break)."""
        policy = self.policy
        if not policy.rollover or policy.max_attempts == 0 or self._stream_ended:
            return
        if self._enter("rollover_due").outcome is Outcome.IGNORE:
            return
        self._rollover_reason = reason
        self._rollover_at = None
        self._next = self._begin(self._new_engine(), now)
        self._refresh_deadline()

    def _switch(self, conn: _Conn, now: float) -> None:
        """The next connection started: it takes the stream over, the old one ends."""
        old = self._cur
        assert old is not None
        try:
            replayed = conn.engine.take_over(old.engine, allow_loss=self.policy.allow_loss, now=now)
        except LocalProtocolError as exc:
            # Audio since the last final exceeds what is kept: try again later.
            self._next_failed(conn, SessionError(f"cannot roll over yet: {exc}"), now)
            return
        old.engine.end_of_stream(now=now)
        self._retiring.add(old.id)
        old.engine.events()
        self._cur, self._next = conn, None
        self._engine = conn.engine
        self.rollovers += 1
        self._rollover_tries = 0
        self._backlog.push(RolledOver(self._rollover_reason, replayed, self.rollovers))
        self._enter("next_started")
        self._rollover_at = now + self._max_session if self._max_session else None
        if conn.engine.has_events:
            self._deliver(conn.engine.events(), now)

    def _next_failed(self, conn: _Conn, error: SessionError, now: float) -> None:
        """The next connection could not be made: the current one runs on; try again
        later if the policy allows (its limit ends it otherwise: then a reconnect)."""
        if self._next is not conn:
            return
        self._next = None
        self._drop(conn)
        self._enter("next_failed")
        self._rollover_tries += 1
        policy = self.policy
        if error.retryable and self._rollover_tries <= policy.max_attempts:
            delay = policy.delay(error, self._rollover_tries, self._rng)
            self._rollover_at = now + delay
        else:
            self._rollover_at = None

    # ---------------------------------------------------------------- the timer

    def _refresh_deadline(self) -> None:
        """Recompute the session's own deadline: opens, backoff, budget, rollover."""
        best = math.inf
        for conn in self._conns.values():
            if conn.phase != _OPEN and conn.open_deadline < best:
                best = conn.open_deadline
        state = self.state
        if state is _BACKING_OFF:
            best = min(best, self._backoff_until)
        if self._outage_start is not None and (state is _OPENING or state is _BACKING_OFF):
            best = min(best, self._budget_deadline())
        if state is _ACTIVE and self._rollover_at is not None:
            best = min(best, self._rollover_at)
        self._deadline = None if best == math.inf else best
