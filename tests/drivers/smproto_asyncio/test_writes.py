"""How the asyncio driver's connection writes: a burst of frames in one call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from smproto_asyncio.session import _WebSocket

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the connection class is asyncio's


class _Transport(asyncio.Transport):
    """Records each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[bytes]] = []
        self.eof = False

    def write(self, data: Any) -> None:
        self.calls.append([bytes(data)])

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append([bytes(d) for d in list_of_data])

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _open_connection() -> tuple[_WebSocket, _Transport]:
    protocol = ClientProtocol(parse_uri("ws://127.0.0.1/v2"), state=State.OPEN)
    ws = _WebSocket(protocol)
    transport = _Transport()
    ws.connection_made(transport)
    return ws, transport


async def test_frames_queued_before_a_read_go_out_in_one_write() -> None:
    # The session queues a burst of audio in the protocol and writes it at the end of
    # the loop's turn; a message read in between makes websockets' data_received() send
    # what is queued. That must still be one write, not a system call per frame.
    ws, transport = _open_connection()
    got: list[str | bytes | None] = []
    ws.attach(got.append)
    for i in range(3):
        ws.protocol.send_binary(bytes([i]) * 640)
    ack = Frame(Opcode.TEXT, b'{"message":"AudioAdded","seq_no":1}')
    ws.data_received(ack.serialize(mask=False, extensions=[]))
    assert got == ['{"message":"AudioAdded","seq_no":1}']
    assert len(transport.calls) == 1
    frames = transport.calls[0]
    assert len(frames) == 3 and all(len(f) == 640 + 8 for f in frames)  # header: 2+2+4
    ws.send_data()  # nothing left to write
    assert len(transport.calls) == 1


async def test_the_end_of_the_stream_is_written_after_the_frames_before_it() -> None:
    ws, transport = _open_connection()
    ws.protocol.send_binary(b"\x00" * 10)
    ws.protocol.send_eof()  # what websockets queues after the closing handshake
    ws.send_data()
    assert [len(c) for c in transport.calls] == [1]
    assert transport.eof
