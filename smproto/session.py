"""The client session, with no IO: :class:`ClientSession`, the typed errors it ends
with, the reconnect policy, and the event backlog.

A session is one continuous stream of audio over as many connections as it takes
(:class:`ClientSession`); every client driver (``smproto_asyncio``, ``smproto_trio``,
``smproto_sync``, ``smproto_livekit``) is a pump around one, so they all decide the same
way. They raise exactly these exceptions out of ``connect()`` and from a session's
methods, never a bare library exception. Each has :attr:`SessionError.retryable`:
whether a new attempt may succeed.

::

    SessionError
    ├── ConnectionFailed       the transport could not be opened (refused, DNS, TLS, ...)
    ├── HandshakeRejected      the server answered the upgrade with an HTTP error
    ├── AuthenticationError    the key was refused (HTTP 401/403, not_authorised, key endpoint)
    ├── TranscriptionError     the server sent an Error (type and reason)
    ├── SessionTimeout         a deadline passed (open, RecognitionStarted, acks, drain)
    ├── ProtocolViolation      the server broke the protocol
    └── ConnectionLost         the connection dropped before EndOfTranscript
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import Failure, FailureKind, SmprotoError
from .events import (
    AddPartialTranscript,
    AddPartialTranslation,
    AddTranscript,
    AddTranslation,
    AudioAdded,
    ChannelAudioAdded,
    Event,
)

if TYPE_CHECKING:
    from ._client import ClientConnection

__all__ = [
    "NO_RECONNECT",
    "SLOW_RETRY_CLOSE_CODES",
    "AuthenticationError",
    "ClientSession",
    "ConnectionFailed",
    "ConnectionLost",
    "EventBacklog",
    "HandshakeRejected",
    "ProtocolViolation",
    "ReconnectAttempts",
    "ReconnectPolicy",
    "SessionError",
    "SessionTimeout",
    "TranscriptionError",
    "error_for_failure",
]


class SessionError(SmprotoError):
    """A client session failed. :attr:`retryable` says whether trying again can help."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConnectionFailed(SessionError):
    """The connection could not be opened: refused, unreachable, DNS or TLS failure."""

    retryable = True


class HandshakeRejected(SessionError):
    """The server refused the WebSocket upgrade with HTTP :attr:`status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, retryable=status == 429 or status >= 500)
        self.status = status


class AuthenticationError(SessionError):
    """The credentials were refused: HTTP 401/403 at the handshake, ``not_authorised``
    in band, or the temporary-key endpoint saying no."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, retryable=False)
        self.status = status


class TranscriptionError(SessionError):
    """The server sent an ``Error``: :attr:`type` (e.g. ``"invalid_config"``) and
    :attr:`reason`. Retryable for ``quota_exceeded``, ``job_error`` and internal errors."""

    def __init__(self, error_type: str, reason: str, *, retryable: bool) -> None:
        text = f"the server reported {error_type}" + (f": {reason}" if reason else "")
        super().__init__(text, retryable=retryable)
        self.type = error_type
        self.reason = reason


class SessionTimeout(SessionError):
    """A deadline passed; :attr:`timer` says which (``"open"``, ``"recognition_started"``,
    ``"ack"``, ``"drain"``, ``"close"``)."""

    retryable = True

    def __init__(self, message: str, *, timer: str) -> None:
        super().__init__(message)
        self.timer = timer


class ProtocolViolation(SessionError):
    """The server broke the protocol (bad JSON, a bad ack, a message out of order)."""


class ConnectionLost(SessionError):
    """The connection closed before ``EndOfTranscript`` (:attr:`code` is the close code,
    ``None`` when there was no closing handshake)."""

    def __init__(self, message: str, *, code: int | None, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


def error_for_failure(failure: Failure) -> SessionError:
    """The exception that reports an engine's :class:`~smproto.errors.Failure`."""
    kind = failure.kind
    if kind is FailureKind.SERVER_ERROR:
        error_type = failure.error_type or "unknown_error"
        reason = failure.reason
        prefix = f"server error {error_type}: "
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
        elif reason == f"server error {error_type}":
            reason = ""
        if error_type == "not_authorised":
            return AuthenticationError(f"the server refused the credentials: {reason}")
        return TranscriptionError(error_type, reason, retryable=failure.retryable)
    if kind is FailureKind.TIMEOUT:
        return SessionTimeout(failure.reason, timer=failure.timer or "unknown")
    if kind is FailureKind.REMOTE_PROTOCOL_ERROR:
        return ProtocolViolation(failure.reason)
    if failure.close_code == 4001:
        return AuthenticationError(failure.reason)
    return ConnectionLost(failure.reason, code=failure.close_code, retryable=failure.retryable)


#: Speechmatics asks clients to wait 5-10 s before retrying these.
_SLOW_RETRY_TYPES = frozenset({"quota_exceeded", "job_error", "internal_error", "unknown_error"})
#: The close codes that follow those errors (quota, job error, internal error): a retry
#: after them waits 5-10 s too, even when the ``Error`` message never arrived.
SLOW_RETRY_CLOSE_CODES = frozenset({4005, 4013, 1011})


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When and how often a session reconnects after a retryable failure.

    Attempts back off exponentially (``initial_delay`` * ``multiplier`` ** n, at most
    ``max_delay``, with ± ``jitter`` randomness). After ``quota_exceeded``, ``job_error``
    and internal errors, and after their close codes (4005, 4013, 1011), the wait is
    ``slow_retry_delay`` to ``slow_retry_delay`` * (1 + ``jitter``) (Speechmatics asks
    for 5 to 10 s). The attempt count starts again once a connection gets further than
    any before it (the server acknowledges audio it had not acknowledged before).

    ``retry_budget`` bounds the time a session spends failing — in attempts that fail
    and in the waits between them — since it last made such progress: once spent, the
    session ends with the last error, whatever ``max_attempts`` says. It lives in the
    session, so no retry loop around it (LiveKit's, say) can reset it.

    ``rollover``: before a limit the server announces (``Warning session_timeout``), or
    after ``max_session_seconds``, the session opens a new connection while the old one
    still runs and moves the stream over (make before break).
    ``ReconnectPolicy(max_attempts=0)`` never reconnects, nor rolls over.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    slow_retry_delay: float = 5.0
    #: Reconnect even if audio was already lost (retention overflowed); otherwise fail.
    allow_loss: bool = False
    #: Seconds of failing without progress after which the session gives up.
    retry_budget: float = 60.0
    #: Retry the first connection too (before recognition ever started), as a voice
    #: agent wants; by default a first connection that fails ends ``connect()`` at once.
    retry_first_connection: bool = False
    #: Roll over to a new connection before a server-imposed limit (make before break).
    rollover: bool = True

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 0:
            raise ValueError("max_attempts must be an integer >= 0")
        for name in ("initial_delay", "max_delay", "slow_retry_delay", "retry_budget"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError("multiplier must be >= 1 and jitter in [0, 1)")

    def should_retry(self, error: SessionError, attempt: int) -> bool:
        """Whether to make attempt number ``attempt`` (1-based) after ``error``."""
        return error.retryable and attempt <= self.max_attempts

    def delay(self, error: SessionError, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))
        rng = rng or random  # type: ignore[assignment]
        if is_slow_retry(error):
            # At least slow_retry_delay: the jitter only adds.
            slow = max(base, self.slow_retry_delay)
            return slow * (1 + rng.uniform(0, self.jitter))  # type: ignore[union-attr]
        spread = rng.uniform(-self.jitter, self.jitter)  # type: ignore[union-attr]
        return max(0.0, base * (1 + spread))


def is_slow_retry(error: SessionError) -> bool:
    """Whether Speechmatics asks for 5-10 s before retrying after ``error``: an ``Error``
    of type ``quota_exceeded``, ``job_error`` or an internal error, or a connection
    closed with their codes (4005, 4013, 1011)."""
    if isinstance(error, TranscriptionError):
        return error.type in _SLOW_RETRY_TYPES
    return isinstance(error, ConnectionLost) and error.code in SLOW_RETRY_CLOSE_CODES


#: Never reconnect.
NO_RECONNECT = ReconnectPolicy(max_attempts=0)


class ReconnectAttempts:
    """The attempt count a session passes to :class:`ReconnectPolicy`.

    It starts again only when a connection made progress: the server acknowledged audio
    that no earlier connection of the session got acknowledged. A server that
    acknowledges the replayed audio and then fails again makes none, so it cannot keep
    a session reconnecting for ever.
    """

    __slots__ = ("_acknowledged", "attempt")

    def __init__(self) -> None:
        #: The number of the attempt about to be made (1-based); 0 before any failure.
        self.attempt = 0
        self._acknowledged = 0.0  # the furthest any connection got (audio seconds)

    def after_failure(self, engine: ClientConnection) -> int:
        """Count a reconnect attempt after ``engine``'s connection failed; returns its
        number, for :meth:`ReconnectPolicy.should_retry` and :meth:`ReconnectPolicy.delay`."""
        reached = engine.audio_seconds_acknowledged
        # A tolerance: the same audio measured on another connection's timeline may come
        # out a rounding error further (0.4 + 0.2 > 0.6), and that is no progress.
        if reached > self._acknowledged + 1e-6:
            self.attempt = 0
            self._acknowledged = reached
        self.attempt += 1
        return self.attempt


class EventBacklog:
    """The events a session has received and the application has not read yet.

    A driver's pump pushes events here without ever waiting, so acknowledgements and
    errors keep being processed however slowly the application reads. Growth is bounded:
    once ``limit`` events wait, acknowledgements (``AudioAdded``, ``ChannelAudioAdded``)
    are dropped, and a new partial replaces the unread partial it supersedes (same type
    and channel, or language, with no final in between). Finals and everything else are
    always kept: only superseded or informational events are ever dropped, and
    :attr:`dropped` counts them. A backlog :attr:`overfull` (eight times ``limit``: a
    flood of events the application does not read) tells the pump to stop reading the
    server until the application catches up, so memory stays bounded even then.
    """

    __slots__ = ("_events", "dropped", "ended", "limit")

    def __init__(self, limit: int = 1000) -> None:
        if limit < 1:
            raise ValueError("the event backlog limit must be at least 1")
        self.limit = limit
        self._events: deque[Event] = deque()
        #: Events dropped because the application read too slowly.
        self.dropped = 0
        #: Whether the session is over (no more events will come).
        self.ended = False

    def __len__(self) -> int:
        return len(self._events)

    def push(self, event: Event) -> None:
        """Add an event (applying the overflow policy)."""
        events = self._events
        if len(events) >= self.limit:
            if isinstance(event, AudioAdded | ChannelAudioAdded):
                self.dropped += 1
                return
            if isinstance(event, AddPartialTranscript | AddPartialTranslation):
                self._drop_superseded(event)
        events.append(event)

    def _drop_superseded(self, event: AddPartialTranscript | AddPartialTranslation) -> None:
        events = self._events
        if isinstance(event, AddPartialTranscript):
            key = event.channel
            final_type: type[Event] = AddTranscript
        else:
            key = event.language
            final_type = AddTranslation
        for i in range(len(events) - 1, -1, -1):
            other = events[i]
            other_key = getattr(
                other, "channel" if final_type is AddTranscript else "language", None
            )
            if other_key != key:
                continue
            if isinstance(other, final_type):
                return  # a final came after it: the old partial is not superseded
            if type(other) is type(event):
                del events[i]
                self.dropped += 1
                return

    @property
    def overfull(self) -> bool:
        """Whether the pump should wait for the reader before reading more messages."""
        return len(self._events) >= 8 * self.limit

    def pop(self) -> Event | None:
        """The oldest unread event, or ``None`` when there is none (yet)."""
        return self._events.popleft() if self._events else None

    def end(self) -> None:
        """No more events will come."""
        self.ended = True


# The session engine, in a module of its own (it needs everything above).
from ._session import ClientSession  # noqa: E402
