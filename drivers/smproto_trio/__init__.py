"""smproto_trio: Speechmatics real-time sessions on trio (``websockets``' trio implementation).

    from smproto import TranscriptionConfig
    from smproto_trio import connect

    async with connect(url, transcription_config=TranscriptionConfig(language="en")) as session:
        ...

The same API as ``smproto_asyncio``: :func:`connect`, :class:`Session`,
:func:`transcribe`, and the typed errors of :mod:`smproto.session`.
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
