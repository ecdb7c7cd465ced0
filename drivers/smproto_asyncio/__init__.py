"""smproto_asyncio: Speechmatics real-time sessions on asyncio (``websockets``).

    from smproto import TranscriptionConfig
    from smproto_asyncio import connect

    async with connect(url, transcription_config=TranscriptionConfig(language="en")) as session:
        ...

See :func:`connect`, :class:`Session` and :func:`transcribe`. Errors are the typed
hierarchy of :mod:`smproto.session`, shared with ``smproto_trio``.
"""

from __future__ import annotations

from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    ProtocolViolation,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    TranscriptionError,
)

from .session import Session, connect, transcribe

__all__ = [
    "AuthenticationError",
    "ConnectionFailed",
    "ConnectionLost",
    "HandshakeRejected",
    "ProtocolViolation",
    "ReconnectPolicy",
    "Session",
    "SessionError",
    "SessionTimeout",
    "TranscriptionError",
    "connect",
    "transcribe",
]
