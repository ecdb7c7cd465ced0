"""Client sessions over trio and ``websockets``: a pump around ``smproto.session.ClientSession``.

    async with connect(url, api_key=..., transcription_config=..., audio_format=...) as session:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all, session)   # send_audio() ... end_of_stream()
            async for event in session:             # ends after EndOfTranscript
                ...

The same API as ``smproto_asyncio``, trio-native. Everything that decides is the sans-IO
session's; this module does its IO in a nursery hidden inside ``connect()``: websockets'
task that reads each connection feeds the session as each message is parsed, one writer
task per connection writes what the session queues (in batches), and a timer task
sleeps until the session's deadline. A failure comes out as itself (a
:class:`smproto.session.SessionError`), never wrapped in an ExceptionGroup; cancelling
the caller closes the connections promptly.
"""

from __future__ import annotations

import logging
import math
import os
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.trio.client import ClientConnection as WebSocket
from websockets.trio.client import connect as ws_connect

from smproto import (
    AudioFormat,
    CloseTransport,
    SendBinary,
    SendText,
    TranscriptAssembler,
    TranscriptionConfig,
)
from smproto._state import SessionState
from smproto.actions import AbortConnection, Action, OpenConnection, RequestTemporaryKey, Transmit
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto.auth import DEFAULT_MANAGEMENT_URL, DEFAULT_RT_URL
from smproto.config import AudioEventsConfig, TranslationConfig
from smproto.events import Event
from smproto.session import ClientSession, ReconnectPolicy
from smproto_io.http import post
from smproto_io.log import redacting_logger
from smproto_io.session import SessionView, open_session
from smproto_io.ws import MessageHook

__all__ = ["Session", "connect", "transcribe"]

logger = logging.getLogger("smproto_trio")
# websockets logs handshake headers at DEBUG: through this logger, credentials are masked.
_WS_LOGGER = redacting_logger("smproto_trio.websockets")

SDK = "smproto-trio/0.1.0"
_PEER_FAULTS = frozenset({1002, 1007, 1009})
#: The most a write takes from the queue (and the most a sender queues before it waits
#: for the writer): bounded, so the reading task runs between writes.
_BATCH_BYTES = 64 * 1024
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _WebSocket(MessageHook, WebSocket):
    """websockets' trio client connection, handing each message to the session as its
    reading task parses it, and writing so that the reading task never waits on TCP for
    another task's data.

    websockets' reading task writes whatever the protocol holds (a pong, the reply to a
    close) before it processes what it read. Here a write is *combining*: the task that
    holds the send lock writes everything queued, including what others queue while it
    writes, before it lets go; another task finds the lock taken and returns at once.
    So a server that stops reading blocks only the connection's writer, never the
    reading task: acks, errors and the server's close keep being processed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Called when the server's close frame arrives (the closing handshake began).
        self.on_close_frame: Callable[[], None] | None = None

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if type(event) is Frame and event.opcode is Opcode.CLOSE and self.on_close_frame:
            self.on_close_frame()

    async def send_data(self) -> None:
        lock = self.send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            return  # the holder writes this too, before it lets go of the lock
        try:
            await self._write_out(None)
        finally:
            lock.release()

    async def write(self, fill: Callable[[ClientProtocol], None]) -> None:
        """Write what ``fill`` moves into the protocol (called while the connection is
        open, until it moves nothing), with whatever else is queued, holding the send
        lock throughout: one ``send_all()`` for each batch ``fill`` makes."""
        await self.send_lock.acquire()
        try:
            await self._write_out(fill)
        finally:
            self.send_lock.release()

    async def _write_out(self, fill: Callable[[ClientProtocol], None] | None) -> None:
        protocol, stream = self.protocol, self.stream
        while True:
            if fill is not None and protocol.state is OPEN:
                fill(protocol)
            data = protocol.data_to_send()
            if not data:
                return
            run: list[bytes] = []
            for chunk in data:
                if chunk:
                    run.append(chunk)
                    continue
                if run:
                    await stream.send_all(b"".join(run))
                    run = []
                # b"": the end of the stream, after the closing handshake (as websockets)
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    with suppress(Exception):
                        await stream.send_eof()
                else:
                    await stream.aclose()
            if run:
                await stream.send_all(run[0] if len(run) == 1 else b"".join(run))


class _Writer:
    """The one task that writes to one connection (see ``docs/trio.md``, "How it
    writes"): messages in batches of up to 64 KiB, one ``send_all()`` each; a close with
    its closing handshake (at most ``close_timeout``)."""

    def __init__(self, ws: _WebSocket, close_timeout: float) -> None:
        self.ws = ws
        self.close_timeout = close_timeout
        self.queue: deque[Action] = deque()
        self.queued_bytes = 0  # of the audio in the queue
        self.queued_count = 0  # actions ever queued
        self.done_count = 0  # actions ever written (or dropped with their connection)
        self.scope = trio.CancelScope()
        self._wanted: trio.Event | None = None  # the task, waiting for something to do
        self._progress = trio.Event()  # set (and replaced) when it gets on
        self._moved = 0

    def push(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is SendBinary:
                self.queued_bytes += len(action.data)
        self.queue.extend(actions)
        self.queued_count += len(actions)
        if self._wanted is not None:
            self._wanted.set()

    async def wait(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()``, or the writer is gone."""
        while not done() and not self.scope.cancel_called:
            await self._progress.wait()

    def stop(self) -> None:
        self.scope.cancel()
        self._progress.set()  # nobody waits for a writer that is gone

    def _got_on(self, count: int) -> None:
        self.done_count += count
        self._progress.set()
        self._progress = trio.Event()

    async def run(self) -> None:
        with self.scope:
            while True:
                await self._drain()
                if self.queue:
                    continue  # queued while this task was writing
                wanted = self._wanted = trio.Event()
                try:
                    await wanted.wait()
                finally:
                    self._wanted = None

    async def _drain(self) -> None:
        queue, ws = self.queue, self.ws
        while queue:
            action = queue[0]
            if type(action) is CloseTransport:
                queue.popleft()
                with trio.move_on_after(self.close_timeout), suppress(ConnectionClosed, *_BROKEN):
                    await ws.aclose(action.code, action.reason)
                self._got_on(1)
                continue
            if ws.protocol.state is not OPEN:
                self._got_on(self._drop())  # the connection is over: the session knows
                continue
            self._moved = 0
            try:
                await ws.write(self._fill)
            except _BROKEN as exc:
                ws.set_connection_exc(exc)  # as websockets' send() does
                with suppress(*_BROKEN):
                    await ws.close_stream()
                self._got_on(self._moved + self._drop())
            else:
                self._got_on(self._moved)

    def _fill(self, protocol: ClientProtocol) -> None:
        """Move a batch of queued messages (up to 64 KiB) into ``protocol``, stopping at
        a close (written on its own)."""
        queue, size = self.queue, 0
        while queue and size < _BATCH_BYTES:
            action = queue[0]
            if type(action) is SendBinary:
                size += len(action.data)
                self.queued_bytes -= len(action.data)
                protocol.send_binary(action.data)
            elif type(action) is SendText:
                size += len(action.text)
                protocol.send_text(action.text.encode())
            else:
                return
            queue.popleft()
            self._moved += 1

    def _drop(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return dropped


class Session(SessionView):
    """One transcription session, possibly over several connections.

    Created by :func:`connect`. Iterate it for events; the iteration ends after
    ``EndOfTranscript`` and raises a :class:`smproto.session.SessionError` on failure.
    :attr:`core` is the sans-IO session that decides everything; this object does its IO.
    """

    def __init__(self, core: ClientSession, transport: dict[str, Any], nursery: trio.Nursery):
        #: The sans-IO session.
        self.core = core
        self._transport = transport
        self._close_timeout: float = transport["close_timeout"]
        self._nursery = nursery
        self._sockets: dict[int, _WebSocket] = {}
        self._writers: dict[int, _Writer] = {}
        self._scopes: dict[int, trio.CancelScope] = {}  # opening, or a key request
        self._state = core.state
        self._paused = False
        self._armed = math.inf  # the deadline the timer task sleeps until
        self._timer_wake = trio.Event()
        self._readable: trio.Event | None = None  # the iterator, waiting
        self._room: trio.Event | None = None  # a sender, waiting for room
        self._changed = trio.Event()  # set (and replaced) when the state changes

    # ------------------------------------------------------------------ commands

    async def send_audio(self, chunk: bytes) -> int:
        """Send a chunk of audio; waits while the in-flight window is full (or while a
        connection is being made). Returns the frame's ``seq_no`` on its connection.

        A cancellation point. With room in the window it returns without a schedule
        point: the frame is queued, and the connection's writer task writes the frames
        queued meanwhile together (up to 64 KiB a write) once this task lets it run. A
        sender 64 KiB ahead of the writer waits for it (so, for TCP). Only the writer
        writes: cancelling a sender never leaves half a frame on the connection."""
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self.core
        if not core.check_send_audio():
            await self._wait(core.check_send_audio, room=True)
        seq_no = core.send_audio(chunk, now=trio.current_time())
        self._after()
        writer = self._writers.get(core.connection_id or 0)
        if writer is not None and writer.queued_bytes >= _BATCH_BYTES:
            await writer.wait(lambda: writer.queued_bytes < _BATCH_BYTES)
        return seq_no

    async def send_channel_audio(self, channel: str, chunk: bytes) -> int:
        """Send a chunk of one channel's audio (multichannel sessions); written as
        :meth:`send_audio` writes."""
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._wait(self.core.check_send_audio, room=True)
        seq_no = self.core.send_channel_audio(channel, chunk, now=trio.current_time())
        self._after()
        writer = self._writers.get(self.core.connection_id or 0)
        if writer is not None and writer.queued_bytes >= _BATCH_BYTES:
            await writer.wait(lambda: writer.queued_bytes < _BATCH_BYTES)
        return seq_no

    async def end_of_stream(self) -> None:
        """No more audio. Transcripts keep coming until ``EndOfTranscript``."""
        self.core.end_of_stream(now=trio.current_time())
        await self._flush()

    async def end_of_channel(self, channel: str) -> None:
        """No more audio on ``channel``."""
        await self._command("end_of_channel", lambda: self.core.end_of_channel(channel))

    async def set_recognition_config(self, *args: Any, **changes: Any) -> TranscriptionConfig:
        """Change settings mid-session (see ``ClientConnection.set_recognition_config``)."""
        await self._wait(lambda: self.core.check_command("set_recognition_config"))
        config = self.core.set_recognition_config(*args, **changes)
        await self._flush()
        return config

    async def force_end_of_utterance(
        self, timestamp: float | None = None, *, channel: str | None = None
    ) -> None:
        """Ask the server to finalise what it has now."""
        await self._command(
            "force_end_of_utterance",
            lambda: self.core.force_end_of_utterance(timestamp, channel=channel),
        )

    async def get_speakers(self, final: bool = False) -> None:
        """Ask for the speakers identified so far (answered by a ``SpeakersResult`` event)."""
        await self._command("get_speakers", lambda: self.core.get_speakers(final))

    async def close(self) -> None:
        """Abort the session now (transcripts not yet received are lost)."""
        self.core.close(now=trio.current_time())
        self._after()
        await self._settle()

    async def _command(self, name: str, apply: Callable[[], object]) -> None:
        await self._wait(lambda: self.core.check_command(name))
        apply()
        await self._flush()

    # ------------------------------------------------------------------ events

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        core = self.core
        while True:
            event = core.next_event()
            if event is not None:
                if self._paused:
                    self._after()  # what was held may have been fed; reading may resume
                return event
            if core.finished:
                core.raise_failure()
                raise StopAsyncIteration
            waiter = self._readable = trio.Event()
            try:
                await waiter.wait()
            finally:
                self._readable = None

    # ------------------------------------------------------------------ waiting

    async def _wait(self, ready: Callable[[], bool], *, room: bool = False) -> None:
        """Wait until ``ready()`` (which raises when it never will)."""
        while not ready():
            if room:
                waiter = self._room = trio.Event()
                try:
                    await waiter.wait()
                finally:
                    self._room = None
            else:
                await self._changed.wait()

    async def _flush(self) -> None:
        """Have what is queued written: wait until the writer has written it (or dropped
        it with its connection)."""
        self._after()
        writer = self._writers.get(self.core.connection_id or 0)
        if writer is not None:
            await _written(writer)

    # ------------------------------------------------------------------ the pump

    def _after(self) -> None:
        """After the session took an input: hand its actions out, wake who can go on,
        and wake the timer task if the deadline moved earlier."""
        core = self.core
        if core.has_actions:
            self._perform(core.actions())
        if self._readable is not None and (core.has_events or core.finished):
            self._readable.set()
        if self._room is not None and core.wake_sender:
            self._room.set()
        state = core.state
        if state is not self._state:
            self._state = state
            self._changed.set()
            self._changed = trio.Event()
        if core.reading_paused is not self._paused:
            self._paused = core.reading_paused
            for ws in self._sockets.values():
                if self._paused and ws.recv_flow_control is None:
                    ws.pause_reading()  # a flood the application does not read
                elif not self._paused and ws.recv_flow_control is not None:
                    ws.resume_reading()
        deadline = core.get_timer()
        if deadline is not None and deadline < self._armed:
            self._timer_wake.set()

    def _perform(self, actions: list[Any]) -> None:
        for action in actions:
            if type(action) is Transmit:
                writer = self._writers.get(action.connection)
                if writer is not None:
                    writer.push(action.actions)
            elif isinstance(action, OpenConnection | RequestTemporaryKey):
                scope = self._scopes[action.connection] = trio.CancelScope()
                self._nursery.start_soon(self._opening, action, scope)
            elif isinstance(action, AbortConnection):
                opening = self._scopes.pop(action.connection, None)
                if opening is not None:
                    opening.cancel()
                ws = self._sockets.get(action.connection)
                if ws is not None:
                    self._nursery.start_soon(self._close_ws, ws)

    async def _run_timer(self) -> None:
        """Sleep until the session's deadline (woken when it moves earlier)."""
        core = self.core
        while True:
            deadline = core.get_timer()
            self._armed = deadline if deadline is not None else math.inf
            wake = self._timer_wake = trio.Event()
            with trio.move_on_at(self._armed):
                await wake.wait()
                continue
            core.handle_timer(now=trio.current_time())
            self._after()

    # ------------------------------------------------------------------ connections

    async def _opening(
        self, action: OpenConnection | RequestTemporaryKey, scope: trio.CancelScope
    ) -> None:
        with scope:
            if isinstance(action, RequestTemporaryKey):
                await self._key(action)
            else:
                await self._open(action)
        self._scopes.pop(action.connection, None)
        self._after()

    async def _key(self, action: RequestTemporaryKey) -> None:
        cid, timeout = action.connection, self._transport["open_timeout"]
        try:
            with trio.fail_after(timeout + 1):
                status, body = await trio.to_thread.run_sync(
                    post, action.request, timeout, abandon_on_cancel=True
                )
        except (OSError, trio.TooSlowError) as exc:
            self.core.key_failed(cid, str(exc) or type(exc).__name__, now=trio.current_time())
        else:
            self.core.key_received(cid, status, body, now=trio.current_time())

    async def _open(self, action: OpenConnection) -> None:
        cid, options, core = action.connection, self._transport, self.core
        try:
            ws = await ws_connect(
                action.url,
                create_connection=_WebSocket,
                additional_headers=list(action.headers),
                ssl=options["ssl"] if action.url.startswith("wss:") else None,
                open_timeout=options["open_timeout"],
                close_timeout=options["close_timeout"],
                ping_interval=options["ping_interval"],
                ping_timeout=options["ping_timeout"],
                max_size=options["max_message_size"],
                compression=None,  # deflating audio costs CPU and saves nothing
                user_agent_header=SDK,
                logger=_WS_LOGGER,
            ).connect(self._nursery)
        except InvalidStatus as exc:
            response = exc.response
            status, body = response.status_code, bytes(response.body)
            core.open_failed(cid, "", now=trio.current_time(), status=status, body=body)
        except (TimeoutError, trio.TooSlowError):
            core.open_failed(cid, "timeout", now=trio.current_time(), timed_out=True)
        except (OSError, InvalidHandshake, trio.BrokenResourceError) as exc:
            detail = str(exc) or str(exc.__cause__ or exc.__context__ or type(exc).__name__)
            core.open_failed(cid, detail, now=trio.current_time())
        else:
            assert isinstance(ws, _WebSocket)
            writer = self._writers[cid] = _Writer(ws, self._close_timeout)
            self._sockets[cid] = ws
            self._nursery.start_soon(writer.run)
            self._nursery.start_soon(self._watch, cid, ws)
            ws.on_close_frame = lambda: self._nursery.start_soon(self._enforce_close, ws)
            if self._paused:
                ws.pause_reading()
            core.connection_opened(cid, now=trio.current_time())
            ws.attach(lambda message: self._on_message(cid, message))

    def _on_message(self, cid: int, message: str | bytes | None) -> None:
        """A message from the server (called by the task that reads the connection)."""
        if message is None:  # text that is not UTF-8: what websockets would fail it for
            reason = "the server sent text that is not UTF-8"
            self.core.connection_closed(cid, 1007, reason, now=trio.current_time())
            ws = self._sockets.get(cid)
            if ws is not None:
                self._nursery.start_soon(self._close_ws, ws)
        else:
            self.core.receive_message(cid, message, now=trio.current_time())
        self._after()

    async def _watch(self, cid: int, ws: _WebSocket) -> None:
        """Report how connection ``cid`` ended, once it has."""
        await ws.wait_closed()
        self._sockets.pop(cid, None)
        writer = self._writers.pop(cid, None)
        if writer is not None:
            writer.stop()
        ws.detach()
        close, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if close is None and sent is not None and sent.code in _PEER_FAULTS:
            close = sent  # websockets failed the connection for what it received
        code, reason = (close.code, close.reason) if close is not None else (None, "")
        self.core.connection_closed(cid, code, reason, now=trio.current_time())
        self._after()

    async def _enforce_close(self, ws: _WebSocket) -> None:
        """The server began the closing handshake: the connection ends within
        ``close_timeout`` (websockets' trio client enforces that only when it writes,
        and a writer may be waiting on a server that no longer reads)."""
        with trio.move_on_after(self._close_timeout):
            await ws.wait_closed()
            return
        await trio.aclose_forcefully(ws.stream)

    async def _close_ws(self, ws: _WebSocket) -> None:
        with trio.move_on_after(self._close_timeout) as scope:
            scope.shield = True
            with suppress(*_BROKEN, ConnectionClosed):
                await ws.aclose()
        if scope.cancelled_caught:
            await trio.aclose_forcefully(ws.stream)

    # ------------------------------------------------------------------ the end

    async def _start(self) -> None:
        """Ask for the first connection and wait for RecognitionStarted (errors raise)."""
        self._nursery.start_soon(self._run_timer)
        self.core.start(now=trio.current_time())
        self._after()
        await self._wait(lambda: self.core.ready)
        if self.core.state is SessionState.FAILED:
            self.core.raise_failure()

    async def _settle(self) -> None:
        """Let the writers write the closes queued (at most ``close_timeout``), then close
        what is still open."""
        with trio.move_on_after(self._close_timeout) as scope:
            scope.shield = True
            for writer in list(self._writers.values()):
                await _written(writer)
            for ws in list(self._sockets.values()):
                await self._close_ws(ws)
        for scope_ in list(self._scopes.values()):
            scope_.cancel()

    async def _finish(self, aborted: bool) -> None:
        """Leave the ``connect()`` block: abort if the session is not over, close what
        is open."""
        core = self.core
        if not core.finished:
            logger.debug("session left before EndOfTranscript: closing")
        if aborted or not core.finished:
            core.close(now=trio.current_time())
            self._after()
        await self._settle()


async def _written(writer: _Writer) -> None:
    """Wait until ``writer`` has written what is queued now (or is gone)."""
    target = writer.queued_count
    await writer.wait(lambda: writer.done_count >= target)


@asynccontextmanager
async def connect(
    url: str = DEFAULT_RT_URL,
    *,
    api_key: str | None = None,
    transcription_config: TranscriptionConfig,
    audio_format: AudioFormat | None = None,
    translation_config: TranslationConfig | None = None,
    audio_events_config: AudioEventsConfig | None = None,
    extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    temporary_key: bool = False,
    temporary_key_ttl: int = 60,
    management_url: str = DEFAULT_MANAGEMENT_URL,
    reconnect: ReconnectPolicy | bool = True,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    recognition_started_timeout: float = 30.0,
    ack_timeout: float = 30.0,
    drain_timeout: float = 60.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    max_audio_in_flight_seconds: float = 10.0,
    retain_audio_seconds: float = 60.0,
    event_queue_size: int = 1000,
    max_message_size: int = 4 * 1024 * 1024,
    max_session_seconds: float | None = None,
) -> AsyncIterator[Session]:
    """Open a transcription session; on entry, recognition has started.

    The arguments are those of ``smproto_asyncio.connect``. The session's tasks run in
    a nursery of their own, hidden inside this context manager: errors come out as a
    single :class:`smproto.session.SessionError`, never an ExceptionGroup.
    """
    # Every argument (no local is defined above): the session's and the transport's.
    core, transport = open_session(SDK, locals())
    start_error: BaseException | None = None
    body_error: BaseException | None = None
    # Exceptions are kept out of the nursery (and re-raised after it) so that they come
    # out as themselves rather than inside an ExceptionGroup.
    async with trio.open_nursery() as nursery:
        session = Session(core, transport, nursery)
        try:
            await session._start()
        except BaseException as exc:
            start_error = exc
        if start_error is None:
            try:
                yield session
            except BaseException as exc:
                body_error = exc
        await session._finish(start_error is not None or body_error is not None)
        nursery.cancel_scope.cancel()
    if start_error is not None:
        raise start_error
    if body_error is not None:
        raise body_error
    if core.failure is not None and not core.failure_reported:
        core.raise_failure()


async def transcribe(
    source: str | os.PathLike[str] | bytes | AsyncIterable[bytes] | Iterable[bytes],
    *,
    url: str = DEFAULT_RT_URL,
    transcription_config: TranscriptionConfig | None = None,
    audio_format: AudioFormat | None = None,
    chunk_seconds: float = 0.1,
    realtime: bool = False,
    **options: Any,
) -> str:
    """Transcribe a WAV file (a path or its bytes), or an (async) iterable of raw chunks in
    ``audio_format``, and return the final transcript's text (see
    ``smproto_asyncio.transcribe``)."""
    config = transcription_config or TranscriptionConfig(language="en")
    chunks: AsyncIterable[bytes] | Iterable[bytes]
    if isinstance(source, str | os.PathLike | bytes):
        data = Path(source).read_bytes() if not isinstance(source, bytes) else source
        audio_format, pcm = wav_to_pcm(data)
        chunks = list(pcm_chunks(pcm, audio_format, chunk_seconds))
    else:
        chunks = source
    fmt = audio_format or AudioFormat()
    assembler = TranscriptAssembler()
    async with connect(url, transcription_config=config, audio_format=fmt, **options) as session:

        async def send() -> None:
            bps, start, sent = fmt.bytes_per_second, trio.current_time(), 0
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    await session.send_audio(chunk)
            else:
                for chunk in chunks:
                    await session.send_audio(chunk)
                    sent += len(chunk)
                    if realtime and bps:
                        await trio.sleep_until(start + sent / bps)
            await session.end_of_stream()

        failure: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                async for event in session:
                    assembler.add(event)
            except BaseException as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
    return assembler.final_text
