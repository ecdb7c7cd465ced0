"""What an engine, or a session, asks its driver to do.

``ClientConnection.actions()`` and ``ServerConnection.actions()`` return
:data:`Action` s in the order they must be performed. They are deliberately few: a
WebSocket text message, a binary message, or the end of the connection.

A client session (``smproto.session.ClientSession``) spans several connections, so its
``actions()`` return :data:`SessionAction` s, each naming its connection by the id the
session gave it: open one (:class:`OpenConnection`, after :class:`RequestTemporaryKey`
when the session uses temporary keys), perform an engine's actions on one
(:class:`Transmit`), or drop one the session no longer wants (:class:`AbortConnection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .auth import HTTPRequest

__all__ = [
    "AbortConnection",
    "Action",
    "CloseTransport",
    "OpenConnection",
    "RequestTemporaryKey",
    "SendBinary",
    "SendText",
    "SessionAction",
    "Transmit",
]


@dataclass(frozen=True, slots=True)
class SendText:
    """Send one WebSocket text message."""

    text: str


@dataclass(frozen=True, slots=True)
class SendBinary:
    """Send one WebSocket binary message."""

    data: bytes

    def __repr__(self) -> str:  # audio is big and not interesting to print
        return f"SendBinary(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close the WebSocket with this code and reason; send nothing after it."""

    code: int = 1000
    reason: str = ""


Action = SendText | SendBinary | CloseTransport


@dataclass(frozen=True, slots=True)
class OpenConnection:
    """Open a WebSocket to :attr:`url` with these handshake :attr:`headers`; report the
    outcome with ``connection_opened(connection)`` or ``open_failed(connection, ...)``,
    and, once open, its end with ``connection_closed(connection, ...)``."""

    connection: int
    url: str
    #: The handshake headers (``Authorization: Bearer ...`` among them): never log them.
    headers: tuple[tuple[str, str], ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class RequestTemporaryKey:
    """Perform :attr:`request` (an HTTP POST for a temporary key) for connection
    :attr:`connection`; report ``key_received(connection, status, body)`` or
    ``key_failed(connection, reason)``."""

    connection: int
    request: HTTPRequest


class Transmit(NamedTuple):
    """Perform these engine :attr:`actions` on connection :attr:`connection`, in order
    (a ``CloseTransport`` among them ends it: report ``connection_closed``). A tuple, not
    a dataclass: one is made for every audio frame sent."""

    connection: int
    actions: list[Action]


@dataclass(frozen=True, slots=True)
class AbortConnection:
    """The session no longer wants connection :attr:`connection`: stop opening it, or
    close it without waiting for anything. Nothing more is reported for it."""

    connection: int


SessionAction = OpenConnection | RequestTemporaryKey | Transmit | AbortConnection
