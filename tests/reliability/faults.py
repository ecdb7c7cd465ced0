"""A fault-injection TCP proxy for tests (127.0.0.1 only).

It sits between a client and a server and, for each connection in turn, applies one
:class:`Fault`: drop the connection once some bytes have passed in one direction (which
can cut a WebSocket frame in half), stall one direction for a while, or go silent
(forward nothing, close nothing: a half-open connection). Connections past the planned
faults are forwarded faithfully.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down"]  # up: client to server; down: server to client
Kind = Literal["drop", "stall", "silence", "none"]


@dataclass(frozen=True)
class Fault:
    """What happens to one connection."""

    kind: Kind = "none"
    direction: Direction = "down"
    #: The fault fires once this many bytes have passed in ``direction``.
    after_bytes: int = 0
    #: For ``stall``: how long that direction stops.
    seconds: float = 0.0


@dataclass
class Record:
    fault: Fault
    fired: bool = False
    handshake_end: int | None = None


@dataclass
class FaultProxy:
    target_port: int
    plan: list[Fault] = field(default_factory=list)
    port: int = 0
    connections: int = 0
    #: For each connection (updated live): its fault, whether it fired, and where the
    #: server's HTTP answer ended in the downstream bytes (``None`` until it does).
    log: list[Record] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        fault = self.plan[index] if index < len(self.plan) else Fault()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        counts = {"up": 0, "down": 0}
        state = {"fired": False, "silent": False}
        record = Record(fault)
        self.log.append(record)
        seen = bytearray()

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: Direction
        ) -> None:
            while True:
                data = await src.read(4096)
                if not data:
                    return
                if state["silent"]:
                    continue
                if direction == "down" and record.handshake_end is None:
                    seen.extend(data)
                    end = seen.find(b"\r\n\r\n")
                    if end >= 0:
                        record.handshake_end = end + 4
                if fault.kind != "none" and direction == fault.direction and not state["fired"]:
                    room = fault.after_bytes - counts[direction]
                    if len(data) >= room:
                        state["fired"] = record.fired = True
                        head, tail = data[: max(room, 0)], data[max(room, 0) :]
                        dst.write(head)
                        counts[direction] += len(head)
                        await dst.drain()
                        if fault.kind == "drop":
                            return  # both sockets are aborted below: a frame may be cut
                        if fault.kind == "silence":
                            state["silent"] = True
                            continue
                        await asyncio.sleep(fault.seconds)  # stall this direction
                        data = tail
                counts[direction] += len(data)
                dst.write(data)
                await dst.drain()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer, "up")),
            asyncio.ensure_future(pipe(up_reader, writer, "down")),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
