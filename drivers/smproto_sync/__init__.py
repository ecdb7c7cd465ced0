"""smproto_sync: Speechmatics real-time sessions on threads (``websockets.sync``).

    from smproto import TranscriptionConfig
    from smproto_sync import connect

    with connect(url, transcription_config=TranscriptionConfig(language="en")) as session:
        ...

See :func:`connect`, :class:`Session` and :func:`transcribe`: the API of
``smproto_asyncio``, with blocking calls. Errors are the typed hierarchy of
:mod:`smproto.session`, shared with the other drivers.
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
