"""The message hook both client drivers put on ``websockets``' connections.

A ``websockets`` connection queues each received message for ``recv()``, which a task
must await: a pump task waiting there, then handing each message to the application's
task, costs two task switches per message. Its ``process_event`` hook (the one its own
client class overrides for the handshake) lets a subclass take each frame where the
connection parses it instead. :class:`MessageHook` gives every complete message to a
callback right there, so the session feeds its engine as data arrives and only wakes
the tasks that have something to do. Control frames, the closing handshake, keepalive
and size limits stay ``websockets``' own (its protocol checks fragment order and the
whole message's size before a frame gets here).

This module imports no IO library; ``smproto_trio`` uses it too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.frames import DATA_OPCODES, Frame, Opcode

from smproto import ClientConnection, RemoteProtocolError

__all__ = ["MessageHook", "MessageIntake", "OnMessage"]

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


class MessageIntake:
    """The session's side of :class:`MessageHook`, the same in both drivers: each
    message is fed to the engine as it arrives, or held, unfed, while the session has
    paused reading (the application is behind); :meth:`_feed_held` feeds them when
    it catches up. A session sets the attributes below and implements :meth:`_after`.
    """

    _engine: ClientConnection
    _reading_paused: bool
    _held: deque[str | bytes | None]  # read while paused, not fed yet
    _now: Callable[[], float]  # the driver's clock

    def _after(self, engine: ClientConnection) -> None:
        """After the engine took an input: deliver, write, wake (the driver's own)."""
        raise NotImplementedError

    def _on_message(self, message: str | bytes | None) -> None:
        """A message from the server (called where the connection parses it)."""
        if self._reading_paused:
            # Read with others before the pause took effect: it waits its turn, so that
            # the backlog stays bounded (by one read's worth of messages held here).
            self._held.append(message)
            return
        self._feed(message)

    def _feed(self, message: str | bytes | None) -> None:
        engine = self._engine
        now = self._now()
        if message is None:  # what websockets would have failed the connection for
            engine.connection_closed(1007, "the server sent text that is not UTF-8", now=now)
        else:
            try:  # noqa: SIM105 - suppress() would cost a context manager per message
                engine.receive_message(message, now=now)
            except RemoteProtocolError:
                pass  # it has failed the engine and queued its close
        self._after(engine)

    def _feed_held(self) -> None:
        """Reading resumes: feed the held messages, until one fills the backlog again
        (the caller resumes the connection's reading only if it did not)."""
        self._reading_paused = False
        held = self._held
        while held and not self._reading_paused:
            self._feed(held.popleft())
