"""A minimal driver for the server tests: our client engine over ``websockets``.

The real drivers (``smproto_asyncio``, ``smproto_trio``) come with issue 4; until then
this loop is what runs :class:`smproto.ClientConnection` against ``serve()`` over real
WebSockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from smproto import (
    AudioFormat,
    ClientConnection,
    CloseTransport,
    SendBinary,
    SendText,
    State,
    TranscriptionConfig,
)
from smproto.events import ConnectionClosed as ClosedEvent
from smproto.events import Event

__all__ = ["FRAME", "run_client"]

#: 0.1 s of 16 kHz pcm_s16le audio (a constant, near-silent signal).
FRAME = b"\x01\x00" * 1600


async def run_client(
    url: str,
    frames: int | Sequence[bytes],
    *,
    config: TranscriptionConfig | None = None,
    audio_format: AudioFormat | None = None,
    headers: dict[str, str] | None = None,
    window: float = 10.0,
    recv_timeout: float = 10.0,
) -> tuple[ClientConnection, list[Event], float]:
    """Run one session: send ``frames`` (a count of :data:`FRAME`, or the frames
    themselves) as fast as the in-flight ``window`` allows, then ``EndOfStream``, and
    read until the connection closes.

    Returns the engine, every event it gave (ending with ``ConnectionClosed``) and the
    wall time the session took.
    """
    chunks: Sequence[bytes] = [FRAME] * frames if isinstance(frames, int) else frames
    loop = asyncio.get_running_loop()
    conn = ClientConnection(
        config or TranscriptionConfig(language="en"),
        audio_format or AudioFormat(),
        max_audio_in_flight_seconds=window,
    )
    events: list[Event] = []
    started = loop.time()
    async with connect(url, additional_headers=headers or {}) as ws:
        conn.connection_opened(now=loop.time())
        sent = 0
        ended = False

        async def flush() -> None:
            for action in conn.actions():
                try:
                    if isinstance(action, SendText):
                        await ws.send(action.text)
                    elif isinstance(action, SendBinary):
                        await ws.send(action.data)
                    elif isinstance(action, CloseTransport):
                        await ws.close(action.code, action.reason)
                except ConnectionClosed:
                    return  # recv() reports how it closed

        await flush()
        while True:
            if conn.state is State.STREAMING:
                while sent < len(chunks) and not conn.audio_window_full:
                    conn.send_audio(chunks[sent], now=loop.time())
                    sent += 1
                if sent == len(chunks) and not ended:
                    conn.end_of_stream(now=loop.time())
                    ended = True
            await flush()
            try:
                message = await asyncio.wait_for(ws.recv(), recv_timeout)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                conn.connection_closed(code, exc.rcvd.reason if exc.rcvd else "", now=loop.time())
                events.extend(conn.events())
                break
            conn.receive_message(message, now=loop.time())
            events.extend(conn.events())
    if not any(isinstance(e, ClosedEvent) for e in events):
        close = ws.protocol.close_rcvd or ws.protocol.close_sent
        conn.connection_closed(close.code if close else None, "", now=loop.time())
        events.extend(conn.events())
    return conn, events, loop.time() - started
