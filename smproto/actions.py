"""What an engine asks its driver to do on the transport.

``ClientConnection.actions()`` and ``ServerConnection.actions()`` return these in
the order they must be performed. They are deliberately few: a WebSocket text
message, a binary message, or the end of the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Action", "CloseTransport", "SendBinary", "SendText"]


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
