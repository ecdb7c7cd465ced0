"""A client engine and a server engine joined by an in-memory link (h11's ConnectionPair)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smproto import (
    ClientConnection,
    CloseTransport,
    SendBinary,
    SendText,
    ServerConnection,
    TranscriptionConfig,
)
from smproto.events import Event
from smproto.server_events import ServerEvent


@dataclass
class Pair:
    """Moves every action of one engine into the other, until both are quiet."""

    client: ClientConnection
    server: ServerConnection
    now: float = 0.0
    client_events: list[Event] = field(default_factory=list)
    server_events: list[ServerEvent] = field(default_factory=list)
    #: Every text message the server sent, as sent (for conformance checks).
    server_sent: list[str] = field(default_factory=list)
    #: Every text message the client sent.
    client_sent: list[str] = field(default_factory=list)
    client_closed: bool = False
    server_closed: bool = False

    @classmethod
    def open(
        cls,
        config: TranscriptionConfig | None = None,
        *,
        path: str = "/v2",
        headers: dict[str, str] | None = None,
        client: ClientConnection | None = None,
        **server_options: Any,
    ) -> Pair:
        pair = cls(
            client or ClientConnection(config or TranscriptionConfig(language="en")),
            ServerConnection(**server_options),
        )
        decision = pair.server.handshake(path, headers or {}, now=pair.now)
        assert decision.accepted, decision
        pair.client.connection_opened(now=pair.now)
        pair.pump()
        return pair

    def pump(self, *, take_audio: bool = True) -> None:
        """Deliver actions both ways until nothing moves. Server events are collected
        (taking them is what acknowledges audio), unless ``take_audio`` is false, in
        which case audio events stay queued in the server."""
        for _ in range(10_000):
            moved = False
            for action in self.client.actions():
                moved = True
                if self.client_closed or self.server_closed:
                    continue
                if isinstance(action, SendText):
                    self.client_sent.append(action.text)
                    self.server.receive_message(action.text, now=self.now)
                elif isinstance(action, SendBinary):
                    self.server.receive_message(action.data, now=self.now)
                elif isinstance(action, CloseTransport):
                    self._close(action)
            for action in self.server.actions():
                moved = True
                if self.client_closed or self.server_closed:
                    continue
                if isinstance(action, SendText):
                    self.server_sent.append(action.text)
                    self.client.receive_message(action.text, now=self.now)
                elif isinstance(action, CloseTransport):
                    self._close(action)
            if take_audio:
                while (event := self.server.next_event()) is not None:
                    self.server_events.append(event)
                    moved = True
            self.client_events.extend(self.client.events())
            if not moved:
                return
        raise AssertionError("the link never went quiet")

    def _close(self, action: CloseTransport) -> None:
        self.client_closed = self.server_closed = True
        self.client.connection_closed(action.code, action.reason, now=self.now)
        self.server.connection_closed(action.code, action.reason, now=self.now)

    def advance(self, seconds: float) -> None:
        """Let time pass, firing both engines' timers."""
        self.now += seconds
        self.client.handle_timer(now=self.now)
        self.server.handle_timer(now=self.now)
        self.pump()
