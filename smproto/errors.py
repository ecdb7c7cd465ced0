"""Exceptions raised by smproto, and the record of why a connection failed.

The hierarchy::

    SmprotoError
    ├── ProtocolError
    │   ├── LocalProtocolError    the application misused an engine
    │   └── RemoteProtocolError   the peer broke the protocol
    ├── ConfigError               a configuration value is invalid (also a ValueError)
    └── TemporaryKeyError         the temporary-key endpoint refused or answered nonsense

An in-band Speechmatics ``Error`` message is *not* an exception: the client engine
turns it into a :class:`smproto.events.ServerError` event and records a
:class:`Failure` on the connection.

No message built here ever contains an API key: callers pass keys only to
:mod:`smproto.auth`, which keeps them out of every repr and message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .actions import CloseTransport

__all__ = [
    "ConfigError",
    "Failure",
    "FailureKind",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SmprotoError",
    "TemporaryKeyError",
]


class SmprotoError(Exception):
    """Base class of every exception smproto raises on purpose."""


class ProtocolError(SmprotoError):
    """A violation of the Speechmatics RT protocol, by one side or the other."""


class LocalProtocolError(ProtocolError):
    """The application asked an engine for something the protocol does not allow now.

    The message names the engine's current state and what was expected, e.g.
    ``"send_audio() is not allowed in state DRAINING (expected STREAMING)"``.
    The engine's state is unchanged: the call simply did not happen.
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    By the time this is raised the engine has moved to ``FAILED`` and queued
    :attr:`close_action` (also available from ``actions()``), the close frame the
    driver should send: like wsproto's ``event_hint``, the error carries its reply.
    """

    def __init__(self, message: str, close_action: CloseTransport | None = None) -> None:
        super().__init__(message)
        self.close_action = close_action


class ConfigError(SmprotoError, ValueError):
    """A configuration value is out of range, of the wrong type, or contradicts another.

    :attr:`field` is the dotted path of the offending field, e.g.
    ``"transcription_config.max_delay"`` or ``"speaker_diarization_config.max_speakers"``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message

    def nested(self, prefix: str) -> ConfigError:
        """The same error with ``prefix.`` prepended to its field path."""
        return ConfigError(f"{prefix}.{self.field}", self.detail)


class TemporaryKeyError(SmprotoError):
    """The temporary-key endpoint did not give us a key.

    :attr:`status` is the HTTP status (``None`` when the body, not the status, was wrong);
    :attr:`retryable` says whether asking again later can help (5xx, 429).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class FailureKind(enum.StrEnum):
    """Why a connection ended in ``FAILED``."""

    #: The server sent an in-band ``Error`` message.
    SERVER_ERROR = "server_error"
    #: The server broke the protocol (bad JSON, bad ack, message out of order, ...).
    REMOTE_PROTOCOL_ERROR = "remote_protocol_error"
    #: A deadline passed: no ``RecognitionStarted``, acks stalled, or the drain took too long.
    TIMEOUT = "timeout"
    #: The transport closed before ``EndOfTranscript``.
    CONNECTION_LOST = "connection_lost"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a connection failed, and whether trying again can help.

    Drivers turn this into their typed exceptions; a reconnecting driver resumes
    only when :attr:`retryable` is true.
    """

    kind: FailureKind
    #: A human-readable explanation (never contains a secret).
    reason: str
    #: Whether a new connection (see ``ClientConnection.resume_from``) may succeed.
    retryable: bool
    #: For ``SERVER_ERROR``: the server's error ``type`` (e.g. ``"quota_exceeded"``).
    error_type: str | None = None
    #: For ``TIMEOUT``: which deadline passed (``"recognition_started"``, ``"ack"``, ``"drain"``).
    timer: str | None = None
    #: For ``CONNECTION_LOST``: the WebSocket close code, if there was one.
    close_code: int | None = None
