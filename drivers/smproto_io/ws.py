"""The message hook the client drivers put on ``websockets``' connections.

A ``websockets`` connection queues each received message for ``recv()``, which a task
must await: a pump task waiting there, then handing each message to the application's
task, costs two task switches per message. Its ``process_event`` hook (the one its own
client class overrides for the handshake) lets a subclass take each frame where the
connection parses it instead. :class:`MessageHook` gives every complete message to a
callback right there, so the session feeds its engine as data arrives and only wakes
the tasks that have something to do. Control frames, the closing handshake, keepalive
and size limits stay ``websockets``' own (its protocol checks fragment order and the
whole message's size before a frame gets here).

It imports no IO library (only ``websockets``' frames): ``smproto_asyncio``,
``smproto_trio`` and ``smproto_sync`` all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.frames import DATA_OPCODES, Frame, Opcode

__all__ = ["MessageHook", "OnMessage"]

#: Called with each message: ``str`` for text, ``bytes`` for binary, ``None`` for a
#: text message that is not UTF-8.
OnMessage = Callable[[str | bytes | None], None]


def _drop(message: str | bytes | None) -> None:
    """What a connection the session is done with does with a message."""


class MessageHook:
    """Mix in before a ``websockets`` connection class (asyncio or trio)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_message: OnMessage | None = None
        self._early: list[str | bytes | None] = []  # received before attach()
        self._fragments: list[bytes] = []
        self._fragmented_text = False

    def attach(self, on_message: OnMessage) -> None:
        """Deliver messages to ``on_message`` from now on, first those that came before."""
        self._on_message = on_message
        early, self._early = self._early, []
        for message in early:
            on_message(message)

    def detach(self) -> None:
        """Drop whatever this connection still receives: it is over for the session, and
        nothing it says may reach the engine of the next connection."""
        self._on_message = _drop
        self._early = []

    def process_event(self, event: Any) -> None:
        if type(event) is not Frame or event.opcode not in DATA_OPCODES:
            super().process_event(event)  # type: ignore[misc]
            return
        opcode = event.opcode
        if opcode is Opcode.CONT:
            self._fragments.append(bytes(event.data))
            if not event.fin:
                return
            data = b"".join(self._fragments)
            self._fragments = []
            text = self._fragmented_text
        elif not event.fin:
            self._fragments = [bytes(event.data)]
            self._fragmented_text = opcode is Opcode.TEXT
            return
        else:
            data = bytes(event.data)  # already bytes, as websockets parses it: no copy
            text = opcode is Opcode.TEXT
        message: str | bytes | None = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                message = None
        on_message = self._on_message
        if on_message is None:
            self._early.append(message)
        else:
            on_message(message)
