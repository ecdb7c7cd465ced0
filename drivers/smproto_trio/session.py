"""Client sessions over trio and ``websockets``, around ``smproto.ClientConnection``.

    async with connect(url, api_key=..., transcription_config=..., audio_format=...) as session:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all, session)   # send_audio() ... end_of_stream()
            async for event in session:             # ends after EndOfTranscript
                ...

The same API as ``smproto_asyncio``, trio-native. Its tasks run in a nursery hidden
inside ``connect()``: websockets' task that reads the connection feeds the engine as each
message is parsed, a writer task writes what the session queues (in batches), and a
supervising task runs the engine's timers and reconnects. A
failure comes out as itself (a :class:`smproto.session.SessionError`), never wrapped in
an ExceptionGroup; cancelling the caller closes the connection promptly.
"""

from __future__ import annotations

import logging
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
    AudioInFlight,
    ClientConnection,
    CloseTransport,
    LocalProtocolError,
    SendBinary,
    SendText,
    State,
    TranscriptAssembler,
    TranscriptionConfig,
)
from smproto.actions import Action
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto.auth import (
    DEFAULT_MANAGEMENT_URL,
    DEFAULT_RT_URL,
    handshake_headers,
    parse_temporary_key_response,
    redact,
    session_url,
    temporary_key_request,
)
from smproto.config import AudioEventsConfig, TranslationConfig
from smproto.errors import TemporaryKeyError
from smproto.events import (
    Event,
    Reconnected,
)
from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    EventBacklog,
    HandshakeRejected,
    ReconnectAttempts,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    error_for_failure,
)
from smproto_asyncio._http import post
from smproto_asyncio._logging import redacting_logger
from smproto_asyncio._messages import MessageHook, MessageIntake

__all__ = ["Session", "connect", "transcribe"]

logger = logging.getLogger("smproto_trio")
# websockets logs handshake headers at DEBUG: through this logger, credentials are masked.
_WS_LOGGER = redacting_logger("smproto_trio.websockets")

SDK = "smproto-trio/0.1.0"
_PEER_FAULTS = frozenset({1002, 1007, 1009})
#: The most a write takes from the queue (and the most a sender queues before it writes
#: itself): bounded, so the reading task runs between writes.
_BATCH_BYTES = 64 * 1024


class _WebSocket(MessageHook, WebSocket):
    """websockets' trio client connection, handing each message to the session as its
    reading task parses it (see :mod:`smproto_asyncio._messages`), and writing so that
    the reading task never waits on TCP for another task's data.

    websockets' reading task writes whatever the protocol holds (a pong, the reply to
    a close) before it processes what it read. Here a write is *combining*: the task
    that holds the send lock writes everything queued, including what others queue
    while it writes, before it lets go; another task finds the lock taken and returns
    at once. So a server that stops reading blocks only the session's writer, never
    the reading task: acks, errors and the server's close keep being processed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Called when the server's close frame arrives (the closing handshake began).
        self.on_close_frame: Callable[[], None] | None = None

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if type(event) is Frame and event.opcode is Opcode.CLOSE:
            callback = self.on_close_frame
            if callback is not None:
                callback()

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
        protocol = self.protocol
        stream = self.stream
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


class Session(MessageIntake):
    """One transcription session, possibly over several connections.

    Created by :func:`connect`. Iterate it for events; the iteration ends after
    ``EndOfTranscript`` and raises a :class:`smproto.session.SessionError` on failure.

    How it runs: each message the server sends is fed to the engine by the task that
    reads the connection (websockets' own), its events go to a bounded backlog, and
    only a task waiting for them is woken: the application's iterator when there are
    events, a sender waiting in :meth:`send_audio` once a quarter of the window is free
    again. What the engine queues for the server goes to the session's queue, which
    one writer task writes (see ``docs/trio.md``, "How it writes"). A supervising task
    sleeps until the engine's deadline or the end of the connection, and reconnects
    after a retryable failure; it never waits for the writer.
    """

    def __init__(
        self,
        opener: _Opener,
        engine: ClientConnection,
        policy: ReconnectPolicy,
        event_queue_size: int,
        nursery: trio.Nursery,
    ) -> None:
        self._opener = opener
        self._engine = engine
        self._policy = policy
        self._nursery = nursery
        self._ws: _WebSocket | None = None
        self._backlog = EventBacklog(event_queue_size)
        self._changed = trio.Event()  # set (and replaced) when the state changes
        self._failure: SessionError | None = None
        self._failure_reported = False
        self._done = False
        self._ended = False
        self._pump_scope: trio.CancelScope | None = None
        # The writer: the one task that writes the engine's messages (see _write); only
        # a close given up on is written elsewhere (_close_ws). Its scope exists before
        # it starts, so stopping can never miss it.
        self._writer_scope = trio.CancelScope()
        self._wanted: trio.Event | None = None  # the writer, waiting for something to do
        self._queue: deque[Action] = deque()  # the engine's actions, not written yet
        self._queued_bytes = 0  # of the audio in the queue
        self._queued_count = 0  # actions ever queued
        self._moved = 0  # actions the current write took from the queue
        self._done_count = 0  # actions ever written (or dropped with their connection)
        self._progress = trio.Event()  # set (and replaced) when the writer gets on
        self._readable: trio.Event | None = None  # the iterator, waiting
        self._room: trio.Event | None = None  # a sender, waiting for room
        self._over: trio.Event | None = None  # the supervisor, waiting
        self._closed = False  # the current connection closed
        self._state = engine.state
        self._reading_paused = False
        self._held: deque[str | bytes | None] = deque()  # read while paused, not fed yet
        self._now = trio.current_time
        #: How many times the session reconnected.
        self.reconnects = 0

    def __repr__(self) -> str:
        return (
            f"<Session state={self._engine.state.name} reconnects={self.reconnects} "
            f"in_flight={self._engine.audio_in_flight.frames}>"
        )

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> State:
        """The current connection's state."""
        return self._engine.state

    @property
    def connection(self) -> ClientConnection:
        """The current sans-IO engine (a new one after each reconnect)."""
        return self._engine

    @property
    def audio_in_flight(self) -> AudioInFlight:
        """Audio sent but not yet acknowledged."""
        return self._engine.audio_in_flight

    @property
    def dropped_events(self) -> int:
        """Events dropped because the application read too slowly (acknowledgements, and
        partials superseded before they were read; never finals)."""
        return self._backlog.dropped

    # ------------------------------------------------------------------ commands

    async def send_audio(self, chunk: bytes) -> int:
        """Send a chunk of audio; waits while the in-flight window is full (or while
        reconnecting). Returns the frame's ``seq_no`` in the current connection.

        A cancellation point. With room in the window it returns without a schedule
        point: the frame is queued, and the session's writer task writes the frames
        queued meanwhile together (up to 64 KiB a write) once this task lets it run. A
        sender 64 KiB ahead of the writer waits for it (so, for TCP). Only the writer
        writes: cancelling a sender never leaves half a frame on the connection."""
        await trio.lowlevel.checkpoint_if_cancelled()
        engine = self._engine
        if engine.state is not State.STREAMING or engine.audio_window_full:
            await self._wait_for_room()
            engine = self._engine
        seq_no = engine.send_audio(chunk, now=trio.current_time())
        self._write()
        if self._queued_bytes >= _BATCH_BYTES:
            await self._wait_for_writer()
        return seq_no

    async def send_channel_audio(self, channel: str, chunk: bytes) -> int:
        """Send a chunk of one channel's audio (multichannel sessions); written as
        :meth:`send_audio` writes."""
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._wait_for_room()
        seq_no = self._engine.send_channel_audio(channel, chunk, now=trio.current_time())
        self._write()
        if self._queued_bytes >= _BATCH_BYTES:
            await self._wait_for_writer()
        return seq_no

    async def _wait_for_writer(self) -> None:
        """Wait while 64 KiB of audio are queued (the writer waits on TCP)."""
        while self._queued_bytes >= _BATCH_BYTES and not self._writer_scope.cancel_called:
            await self._progress.wait()

    async def end_of_stream(self) -> None:
        """No more audio. Transcripts keep coming until ``EndOfTranscript``."""
        self._raise_failure()
        self._ended = True
        engine = self._engine
        if engine.state is State.STREAMING:
            engine.end_of_stream(now=trio.current_time())
            self._after(engine)
            await self._flush()

    async def end_of_channel(self, channel: str) -> None:
        """No more audio on ``channel``."""
        await self._wait_streaming()
        engine = self._engine
        engine.end_of_channel(channel, now=trio.current_time())
        self._after(engine)
        await self._flush()

    async def set_recognition_config(self, *args: Any, **changes: Any) -> TranscriptionConfig:
        """Change settings mid-session (see ``ClientConnection.set_recognition_config``)."""
        await self._wait_streaming()
        config = self._engine.set_recognition_config(*args, **changes)
        await self._flush()
        return config

    async def force_end_of_utterance(
        self, timestamp: float | None = None, *, channel: str | None = None
    ) -> None:
        """Ask the server to finalise what it has now."""
        await self._wait_streaming()
        self._engine.force_end_of_utterance(timestamp, channel=channel)
        await self._flush()

    async def get_speakers(self, final: bool = False) -> None:
        """Ask for the speakers identified so far (answered by a ``SpeakersResult`` event)."""
        await self._wait_streaming()
        self._engine.get_speakers(final)
        await self._flush()

    async def close(self) -> None:
        """Abort the session now (transcripts not yet received are lost)."""
        self._done = True
        engine = self._engine
        engine.close()
        self._after(engine)
        await self._flush()
        self._stop_pump()

    # ------------------------------------------------------------------ events

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        backlog = self._backlog
        while True:
            event = backlog.pop()
            if event is not None:
                if self._reading_paused and len(backlog) < backlog.limit:
                    self._resume_reading()
                return event
            if backlog.ended:
                self._raise_failure()
                raise StopAsyncIteration
            waiter = self._readable = trio.Event()
            try:
                await waiter.wait()
            finally:
                self._readable = None

    # ------------------------------------------------------------------ internals

    def _raise_failure(self) -> None:
        if self._failure is not None:
            self._failure_reported = True
            raise self._failure

    async def _wait_for_room(self) -> None:
        while True:
            self._raise_failure()
            engine = self._engine
            if engine.state is State.STREAMING and not engine.audio_window_full:
                return
            if self._ended or self._done or engine.state in (State.DRAINING, State.CLOSED):
                raise LocalProtocolError(
                    f"send_audio() is not allowed after the end of the stream "
                    f"(state {engine.state.name})"
                )
            waiter = self._room = trio.Event()
            try:
                await waiter.wait()
            finally:
                self._room = None

    async def _wait_streaming(self) -> None:
        while True:
            self._raise_failure()
            state = self._engine.state
            if state is State.STREAMING or (
                state is not State.AWAITING_RECOGNITION_STARTED
                and state is not State.CONNECTING
                and state is not State.FAILED
            ):
                return
            await self._changed.wait()

    def _wake_all(self) -> None:
        """Wake every waiting task (the state changed, or the session is over)."""
        self._changed.set()
        self._changed = trio.Event()
        for waiter in (self._readable, self._room, self._over):
            if waiter is not None:
                waiter.set()

    def _write(self) -> None:
        """Queue the engine's actions for the writer task (no IO) and wake it.

        Audio is not handed to the WebSocket protocol until it is written: websockets'
        reading task writes whatever the protocol holds before it processes what it
        read, so frames queued there would make it write (and wait on TCP) in place of
        reading the server's close or acks.
        """
        engine = self._engine
        if not engine.has_actions:
            return
        queue = self._queue
        actions = engine.actions()
        for action in actions:
            if type(action) is SendBinary:
                self._queued_bytes += len(action.data)
            queue.append(action)
        self._queued_count += len(actions)
        wanted = self._wanted
        if wanted is not None:
            wanted.set()

    async def _flush(self) -> None:
        """Queue the engine's actions and wait until the writer has written them (or
        dropped them with their connection, or stopped)."""
        self._write()
        target = self._queued_count
        while self._done_count < target and not self._writer_scope.cancel_called:
            await self._progress.wait()

    def _got_on(self, actions: int) -> None:
        """The writer wrote (or dropped) ``actions`` more: wake who waits for it."""
        self._done_count += actions
        self._progress.set()
        self._progress = trio.Event()

    async def _drain(self) -> None:
        """Write everything queued, in order (the writer task only): messages in batches
        of up to 64 KiB, one ``send_all()`` each, with a schedule point between them so
        that the reading task keeps up with the server; a close with its closing
        handshake (at most ``close_timeout``)."""
        queue = self._queue
        while queue:
            ws = self._ws
            action = queue[0]
            if isinstance(action, CloseTransport):
                queue.popleft()
                if ws is not None:
                    with trio.move_on_after(self._opener.close_timeout):
                        with suppress(
                            ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError
                        ):
                            await ws.aclose(action.code, action.reason)
                self._got_on(1)
                continue
            if ws is None or ws.protocol.state is not OPEN:
                # The connection is over (the supervisor reports it); the engine keeps
                # the audio for a reconnect.
                self._got_on(self._drop_queued_messages())
                continue
            self._moved = 0
            try:
                await ws.write(self._fill)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                ws.set_connection_exc(exc)  # as websockets' send() does
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    await ws.close_stream()
                self._got_on(self._moved)
                self._got_on(self._drop_queued_messages())
            else:
                self._got_on(self._moved)

    def _fill(self, protocol: ClientProtocol) -> None:
        """Move a batch of queued messages (up to 64 KiB) into ``protocol``, stopping
        at a close (written on its own)."""
        queue = self._queue
        size = 0
        while queue and size < _BATCH_BYTES:
            action = queue[0]
            if type(action) is SendBinary:
                data = action.data
                size += len(data)
                self._queued_bytes -= len(data)
                protocol.send_binary(data)
            elif type(action) is SendText:
                size += len(action.text)
                protocol.send_text(action.text.encode())
            else:
                return
            queue.popleft()
            self._moved += 1

    def _drop_queued_messages(self, *, everything: bool = False) -> int:
        """Drop the messages queued before the next close (their connection is over),
        or ``everything`` queued; returns how many."""
        queue = self._queue
        dropped = 0
        while queue and (everything or not isinstance(queue[0], CloseTransport)):
            action = queue.popleft()
            dropped += 1
            if type(action) is SendBinary:
                self._queued_bytes -= len(action.data)
        return dropped

    async def _write_forever(self) -> None:
        """The writer task: writes what :meth:`send_audio` and the reading task queue."""
        with self._writer_scope:
            try:
                while True:
                    # It writes only what the others queued with _write(), each when the
                    # engine's connection was current: never a new engine's messages to
                    # the connection that is being replaced.
                    await self._drain()
                    if self._queue:
                        continue  # queued while this task was writing
                    waiter = self._wanted = trio.Event()
                    try:
                        await waiter.wait()
                    finally:
                        self._wanted = None
            except Exception as exc:  # a bug: never leave the application hanging
                logger.exception("the session writer failed")
                if self._failure is None:
                    self._failure = SessionError(f"internal error in the trio driver: {exc}")
                self._backlog.end()
                self._wake_all()
                self._stop_pump()

    # ---------------------------------------------- the engine, from the reading task

    def _after(self, engine: ClientConnection) -> None:
        """After the engine took an input: deliver its events, have what it queued
        written, and wake who can now go on."""
        self._deliver(engine)
        if engine.has_actions:
            self._write()  # the writer task writes it
        state = engine.state
        if state is not self._state:
            self._state = state
            self._wake_all()  # the supervisor, too: a new state may have a new deadline
            return
        room = self._room
        # A sender waits until a quarter of the window is free: fewer wake-ups than one
        # per ack when audio streams faster than real time.
        if (
            room is not None
            and not engine.audio_window_full
            and engine.audio_in_flight.seconds <= 0.75 * engine.max_audio_in_flight_seconds
        ):
            room.set()

    def _deliver(self, engine: ClientConnection) -> None:
        """Queue the engine's events for the iterator (never waiting)."""
        events = engine.events()
        if not events:
            return
        backlog = self._backlog
        backlog.push_all(events)
        if self._readable is not None:
            self._readable.set()
        if backlog.overfull and not self._reading_paused:
            # A flood the application does not read: stop reading the server until it
            # catches up (the supervisor still runs the timers), so memory stays bounded.
            self._reading_paused = True
            if self._ws is not None:
                self._ws.pause_reading()

    def _resume_reading(self) -> None:
        """The application caught up: feed the held messages, then read on."""
        self._feed_held()
        ws = self._ws
        if not self._reading_paused and ws is not None and ws.recv_flow_control is not None:
            ws.resume_reading()

    def _stop_pump(self) -> None:
        if self._pump_scope is not None:
            self._pump_scope.cancel()
        self._writer_scope.cancel()
        self._progress.set()  # nobody waits for a writer that is gone

    # ------------------------------------------------------------------ the supervisor

    async def _start(self) -> None:
        """Open the first connection and wait for RecognitionStarted (errors raise here)."""
        self._ws = await self._opener.open(self._nursery)
        self._nursery.start_soon(self._write_forever, name="smproto-trio-writer")
        failure = await self._run_until(State.STREAMING)
        if failure is not None:
            raise failure
        self._nursery.start_soon(self._pump_forever, name="smproto-trio-pump")

    async def _watch_closed(self, ws: _WebSocket) -> None:
        await ws.wait_closed()
        if ws is self._ws:
            self._closed = True
            if self._over is not None:
                self._over.set()

    async def _enforce_close(self, ws: _WebSocket) -> None:
        """The server began the closing handshake: the connection ends within
        ``close_timeout`` (websockets' trio client enforces that only when it writes,
        and a writer may be waiting on a server that no longer reads)."""
        with trio.move_on_after(self._opener.close_timeout):
            await ws.wait_closed()
            return
        await trio.aclose_forcefully(ws.stream)

    async def _run_until(self, goal: State) -> SessionError | None:
        """Run the current connection until the engine reaches ``goal`` (or ends);
        return its failure, if any. Sleeps until the engine's deadline, or the end of
        the connection, or a change of state (the reading task wakes it)."""
        engine = self._engine
        ws = self._ws
        assert ws is not None
        if engine.state is State.CONNECTING:
            engine.connection_opened(now=trio.current_time())
            self._closed = False
            self._nursery.start_soon(self._watch_closed, ws)
        self._state = engine.state
        ws.attach(self._on_message)  # first what arrived already
        ws.on_close_frame = lambda: self._nursery.start_soon(self._enforce_close, ws)
        self._after(engine)  # queues StartRecognition for the writer
        over = False
        try:
            while engine.state is not goal and engine.state not in (State.CLOSED, State.FAILED):
                if self._closed:
                    close = ws.protocol.close_rcvd
                    sent = ws.protocol.close_sent
                    if close is None and sent is not None and sent.code in _PEER_FAULTS:
                        close = sent  # websockets failed the connection for what it received
                    engine.connection_closed(
                        close.code if close else None,
                        close.reason if close else "",
                        now=trio.current_time(),
                    )
                    self._after(engine)
                    break
                deadline = engine.get_timer()
                if deadline is not None and trio.current_time() >= deadline:
                    # The supervisor never waits for the writer, which may be waiting on
                    # a server that does not read: a close queued here is written by the
                    # writer, or by _close_ws() when the connection is given up.
                    engine.handle_timer(now=trio.current_time())
                    self._after(engine)
                    continue
                # No deadline: an ack deadline can only start later than the ack timeout
                # from now, so sleeping that long never misses one.
                wake_at = (
                    deadline if deadline is not None else trio.current_time() + engine.ack_timeout
                )
                waiter = self._over = trio.Event()
                try:
                    with trio.move_on_at(wake_at):
                        await waiter.wait()
                finally:
                    self._over = None
            over = engine.state is not goal or goal is State.CLOSED
        finally:
            if over:
                ws.detach()
        if engine.state is State.FAILED:
            await self._close_ws()
            assert engine.failure is not None
            return error_for_failure(engine.failure)
        return None

    async def _close_ws(self) -> None:
        ws = self._ws
        if ws is not None:
            with trio.move_on_after(self._opener.close_timeout) as scope:
                scope.shield = True
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    await ws.aclose()

    async def _pump_forever(self) -> None:
        with trio.CancelScope() as scope:
            self._pump_scope = scope
            try:
                await self._pump()
            except Exception as exc:  # a bug: never leave the application hanging
                logger.exception("the session supervisor failed")
                self._failure = SessionError(f"internal error in the trio driver: {exc}")
        await self._close_ws()
        self._backlog.end()
        self._wake_all()

    async def _pump(self) -> None:
        attempts = ReconnectAttempts()
        failure = await self._run_until(State.CLOSED)
        while failure is not None:
            old = self._engine
            attempt = attempts.after_failure(old)
            if self._done or not self._policy.should_retry(failure, attempt):
                self._failure = failure
                return
            delay = self._policy.delay(failure, attempt)
            logger.info("reconnecting in %.1fs (attempt %d): %s", delay, attempt, failure)
            await trio.sleep(delay)
            try:
                engine = ClientConnection.resume_from(
                    old, allow_loss=self._policy.allow_loss, end_stream=self._ended
                )
            except LocalProtocolError as exc:
                logger.warning("cannot reconnect without loss: %s", exc)
                self._failure = failure
                return
            self._engine = engine
            self._state = engine.state
            self._reading_paused = False
            self._held.clear()  # the old connection's
            self._got_on(self._drop_queued_messages(everything=True))  # the old engine's
            try:
                ws = await self._opener.open(self._nursery)
            except SessionError as exc:
                logger.info("reconnect attempt %d failed: %s", attempt, exc)
                engine.connection_closed(None, str(exc), now=trio.current_time())
                engine.events()
                failure = exc
                continue
            self._ws = ws
            self.reconnects += 1
            self._backlog.push(Reconnected(self.reconnects, str(failure), {}))
            self._wake_all()
            failure = await self._run_until(State.CLOSED)

    async def _finish(self, aborted: bool) -> None:
        """Leave the ``connect()`` block: abort if the session is not over, stop the pump."""
        if aborted or self._engine.state not in (State.CLOSED, State.FAILED):
            self._done = True
            if self._engine.state not in (State.CLOSED, State.FAILED):
                self._engine.close()
                with trio.move_on_after(self._opener.close_timeout) as scope:
                    scope.shield = True
                    await self._flush()
        self._stop_pump()
        await self._close_ws()


class _Opener:
    """Opens WebSocket connections for a session (with a fresh temporary key each time)."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
        ssl: ssl_module.SSLContext | None,
        temporary_key: bool,
        temporary_key_ttl: int,
        management_url: str,
        open_timeout: float,
        close_timeout: float,
        ping_interval: float | None,
        ping_timeout: float | None,
        max_message_size: int,
    ) -> None:
        self.url = session_url(url, sdk=SDK)
        self._api_key = api_key
        self._extra = list(handshake_headers(None, extra_headers))  # validates them now
        self._ssl = ssl
        self._temporary_key = temporary_key
        self._ttl = temporary_key_ttl
        self._management_url = management_url
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_size = max_message_size

    def __repr__(self) -> str:  # never shows the key
        return f"<_Opener url={self.url!r}>"

    async def _key(self) -> str | None:
        if not self._temporary_key or self._api_key is None:
            return self._api_key
        request = temporary_key_request(self._api_key, ttl=self._ttl, base_url=self._management_url)
        try:
            with trio.fail_after(self.open_timeout + 1):
                status, body = await trio.to_thread.run_sync(
                    post, request, self.open_timeout, abandon_on_cancel=True
                )
        except (OSError, trio.TooSlowError) as exc:
            message = redact(f"the temporary-key endpoint is unreachable: {exc}", [self._api_key])
            raise ConnectionFailed(message) from None
        try:
            return parse_temporary_key_response(status, body, redact_secrets=[self._api_key])
        except TemporaryKeyError as exc:
            if exc.status in (401, 403):
                raise AuthenticationError(str(exc), status=exc.status) from None
            raise ConnectionFailed(str(exc), retryable=exc.retryable) from None

    async def open(self, nursery: trio.Nursery) -> _WebSocket:
        key = await self._key()
        headers = handshake_headers(key, self._extra)
        try:
            ws = await ws_connect(
                self.url,
                create_connection=_WebSocket,
                additional_headers=headers,
                ssl=self._ssl if self.url.startswith("wss:") else None,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                max_size=self._max_size,
                compression=None,  # deflating audio costs CPU and saves nothing
                user_agent_header=SDK,
                logger=_WS_LOGGER,
            ).connect(nursery)
            assert isinstance(ws, _WebSocket)
            return ws
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = redact(exc.response.body.decode("utf-8", "replace")[:200], [key, self._api_key])
            text = f"the server refused the connection with HTTP {status}: {body.strip()}"
            if status in (401, 403):
                raise AuthenticationError(text, status=status) from None
            raise HandshakeRejected(status, text) from None
        except (TimeoutError, trio.TooSlowError):
            raise SessionTimeout(
                f"could not open {self.url} within {self.open_timeout:g}s", timer="open"
            ) from None
        except (OSError, InvalidHandshake, trio.BrokenResourceError) as exc:
            detail = str(exc) or str(exc.__cause__ or exc.__context__ or type(exc).__name__)
            message = redact(f"could not connect to {self.url}: {detail}", [key, self._api_key])
            raise ConnectionFailed(message) from None


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
) -> AsyncIterator[Session]:
    """Open a transcription session; on entry, recognition has started.

    The arguments are those of ``smproto_asyncio.connect``. The session's tasks run in
    a nursery of their own, hidden inside this context manager: errors come out as a
    single :class:`smproto.session.SessionError`, never an ExceptionGroup.
    """
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise TypeError(
            f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}: certificates "
            "are always verified, unless the context given says otherwise"
        )
    if api_key is None:
        api_key = os.environ.get("SPEECHMATICS_API_KEY") or None
    if temporary_key and api_key is None:
        raise ValueError("temporary_key=True needs an API key (api_key or SPEECHMATICS_API_KEY)")
    policy = (
        reconnect
        if isinstance(reconnect, ReconnectPolicy)
        else ReconnectPolicy()
        if reconnect
        else ReconnectPolicy(max_attempts=0)
    )
    opener = _Opener(
        url,
        api_key,
        extra_headers,
        ssl,
        temporary_key,
        temporary_key_ttl,
        management_url,
        open_timeout,
        close_timeout,
        ping_interval,
        ping_timeout,
        max_message_size,
    )
    engine = ClientConnection(
        transcription_config,
        audio_format or AudioFormat(),
        translation_config=translation_config,
        audio_events_config=audio_events_config,
        max_audio_in_flight_seconds=max_audio_in_flight_seconds,
        retain_audio_seconds=retain_audio_seconds,
        recognition_started_timeout=recognition_started_timeout,
        ack_timeout=ack_timeout,
        drain_timeout=drain_timeout,
    )
    start_error: BaseException | None = None
    body_error: BaseException | None = None
    session: Session | None = None
    # Exceptions are kept out of the nursery (and re-raised after it) so that they come
    # out as themselves rather than inside an ExceptionGroup.
    async with trio.open_nursery() as nursery:
        session = Session(opener, engine, policy, event_queue_size, nursery)
        try:
            await session._start()
        except BaseException as exc:
            start_error = exc
        if start_error is None:
            try:
                yield session
            except BaseException as exc:
                body_error = exc
            await session._finish(body_error is not None)
        else:
            await session._close_ws()
        nursery.cancel_scope.cancel()
    if start_error is not None:
        raise start_error
    if body_error is not None:
        raise body_error
    if session._failure is not None and not session._failure_reported:
        session._failure_reported = True
        raise session._failure


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
        wav_format, pcm = wav_to_pcm(data)
        audio_format = wav_format
        chunks = list(pcm_chunks(pcm, wav_format, chunk_seconds))
    else:
        chunks = source
    fmt = audio_format or AudioFormat()
    assembler = TranscriptAssembler()
    async with connect(url, transcription_config=config, audio_format=fmt, **options) as session:

        async def send() -> None:
            bps = fmt.bytes_per_second
            start = trio.current_time()
            sent = 0
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
