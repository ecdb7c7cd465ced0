"""Client sessions over asyncio and ``websockets``, around ``smproto.ClientConnection``.

    async with connect(url, api_key=..., transcription_config=..., audio_format=...) as session:
        async def send():
            async for chunk in audio:
                await session.send_audio(chunk)   # waits while the in-flight window is full
            await session.end_of_stream()
        task = asyncio.create_task(send())
        async for event in session:               # ends after EndOfTranscript
            ...

Each message the server sends is fed to the engine as it is read, its events queued for
the iterator; the engine's timers are loop callbacks; the application's calls go through
the same engine. On a retryable failure a supervising task opens a new connection from
the old engine
(``ClientConnection.resume_from``), which replays the audio no final transcript covered:
the application sees one continuous session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import OPEN

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

from ._http import post
from ._logging import redacting_logger
from ._messages import MessageHook, MessageIntake

__all__ = ["Session", "connect", "transcribe"]

logger = logging.getLogger("smproto_asyncio")
# websockets logs handshake headers at DEBUG: through this logger, credentials are masked.
_WS_LOGGER = redacting_logger("smproto_asyncio.websockets")

SDK = "smproto-asyncio/0.1.0"
#: Close codes websockets sends when it fails a connection for what the peer sent.
_PEER_FAULTS = frozenset({1002, 1007, 1009})


class _WebSocket(MessageHook, WebSocket):
    """websockets' asyncio client connection, handing each message to the session as it
    is parsed, in ``data_received`` (see :mod:`smproto_asyncio._messages`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing_paused = False
        self._writable: asyncio.Future[None] | None = None

    # The session writes through ``protocol`` and ``transport`` itself; these tell it
    # when the socket's buffer is over websockets' high-water mark.

    def pause_writing(self) -> None:
        super().pause_writing()
        self.writing_paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.writing_paused = False
        self._wake_writers()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.writing_paused = False
        self._wake_writers()

    def send_data(self) -> None:
        """Write what the protocol has to send in one call (websockets writes each frame
        on its own: its ``data_received`` would otherwise turn a burst of audio the
        session queued into a system call per frame)."""
        data = self.protocol.data_to_send()
        if not data:
            return
        transport = self.transport
        if transport.is_closing():
            return
        if all(data):
            transport.writelines(data)
            return
        for chunk in data:  # b"" is the end of the stream, after the closing handshake
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                with contextlib.suppress(Exception):  # as websockets: plausibly OSError
                    transport.write_eof()
            else:
                transport.close()

    def _wake_writers(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_writable(self) -> None:
        """Wait until the socket's buffer is below the low-water mark (or it closed)."""
        while self.writing_paused:
            waiter = self._writable = self.loop.create_future()
            try:
                await waiter
            finally:
                self._writable = None


class Session(MessageIntake):
    """One transcription session, possibly over several connections.

    Created by :func:`connect`. Iterate it for events; the iteration ends after
    ``EndOfTranscript`` and raises a :class:`smproto.session.SessionError` on failure.

    How it runs: each message the server sends is fed to the engine as it is read (in
    the connection's ``data_received``), its events go to a bounded backlog, and only a
    task waiting for them is woken: the application's iterator when there are events,
    a sender waiting in :meth:`send_audio` once a quarter of the window is free again.
    The engine's timers are ``call_at`` callbacks. A supervising task waits for the
    connection to end and reconnects after a retryable failure.
    """

    def __init__(
        self,
        opener: _Opener,
        engine: ClientConnection,
        policy: ReconnectPolicy,
        event_queue_size: int,
    ) -> None:
        self._opener = opener
        self._engine = engine
        self._policy = policy
        self._ws: _WebSocket | None = None
        self._backlog = EventBacklog(event_queue_size)
        self._changed = asyncio.Event()  # state changes: set() then clear() wakes all
        self._write_lock = asyncio.Lock()
        self._outbox: deque[Action] = deque()  # a close and what follows it, unwritten
        self._write_scheduled = False
        self._failure: SessionError | None = None
        self._failure_reported = False
        self._done = False
        self._ended = False  # the application ended the stream
        self._pump: asyncio.Task[None] | None = None  # the supervising task
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None  # armed at the engine's deadline
        self._readable: asyncio.Future[None] | None = None  # the iterator, waiting
        self._room: asyncio.Future[None] | None = None  # a sender, waiting for room
        self._over: asyncio.Future[None] | None = None  # the connection reached its end
        self._flusher: asyncio.Task[None] | None = None
        self._state = engine.state
        self._reading_paused = False
        self._held: deque[str | bytes | None] = deque()  # read while paused, not fed yet
        self._now = self._loop.time
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
        reconnecting). Returns the frame's ``seq_no`` in the current connection."""
        engine = self._engine
        if engine.state is not State.STREAMING or engine.audio_window_full:
            await self._wait_for_room()
            engine = self._engine
        seq_no = engine.send_audio(chunk, now=self._loop.time())
        if self._timer is None:
            self._arm_timer(engine)  # the ack deadline starts with the first frame unacked
        self._write()
        ws = self._ws
        if self._outbox or (ws is not None and ws.writing_paused):
            await self._flush()
        return seq_no

    async def send_channel_audio(self, channel: str, chunk: bytes) -> int:
        """Send a chunk of one channel's audio (multichannel sessions)."""
        await self._wait_for_room()
        engine = self._engine
        seq_no = engine.send_channel_audio(channel, chunk, now=self._loop.time())
        if self._timer is None:
            self._arm_timer(engine)
        await self._flush()
        return seq_no

    async def end_of_stream(self) -> None:
        """No more audio. Transcripts keep coming until ``EndOfTranscript``."""
        self._raise_failure()
        self._ended = True
        engine = self._engine
        if engine.state is State.STREAMING:
            engine.end_of_stream(now=self._loop.time())
            self._after(engine)
            await self._flush()
        # Otherwise a reconnect is under way: the new connection ends the stream.

    async def end_of_channel(self, channel: str) -> None:
        """No more audio on ``channel``."""
        await self._wait_streaming()
        engine = self._engine
        engine.end_of_channel(channel, now=self._loop.time())
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
        with contextlib.suppress(SessionError):
            await self._flush()
        await self._stop_pump()

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
            waiter = self._readable = self._loop.create_future()
            try:
                await waiter
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
            waiter = self._room = self._loop.create_future()
            try:
                await waiter
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
        self._changed.clear()  # set() then clear(): a broadcast to the tasks waiting now
        for waiter in (self._readable, self._room, self._over):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _write(self) -> None:
        """Hand the engine's queued messages to the WebSocket protocol, now.

        The frames reach the socket together at the end of this turn of the event loop
        (:meth:`_write_out`): a burst of ``send_audio()`` calls costs one system call,
        not one each. A close, which has to wait for the closing handshake, goes to
        the outbox with whatever follows it, for :meth:`_flush` to write in order.
        """
        engine = self._engine
        if not engine.has_actions:
            return
        outbox = self._outbox
        if outbox:  # a close is being written: keep the order
            outbox.extend(engine.actions())
            self._flush_soon()
            return
        ws = self._ws
        actions = engine.actions()
        if ws is None:
            return
        protocol = ws.protocol
        for i, action in enumerate(actions):
            if type(action) is SendBinary:
                if protocol.state is OPEN:  # otherwise it is closing: the supervisor reports
                    protocol.send_binary(action.data)
            elif type(action) is SendText:
                if protocol.state is OPEN:
                    protocol.send_text(action.text.encode())
            else:
                outbox.extend(actions[i:])
                self._flush_soon()
                break
        if not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        """Write what the WebSocket protocol has to send, in one go."""
        self._write_scheduled = False
        ws = self._ws
        if ws is not None:
            ws.send_data()

    async def _flush(self) -> None:
        """Write the engine's queued messages, and wait while a close is written or the
        socket's buffer is full."""
        self._write()
        if self._outbox:
            await self._flush_outbox()
        ws = self._ws
        if ws is not None and ws.writing_paused:
            await ws.wait_writable()

    async def _flush_outbox(self) -> None:
        """Write the outbox: a close (it waits for the closing handshake, at most
        ``close_timeout``), and what the engine queued after it, in order."""
        async with self._write_lock:
            outbox = self._outbox
            while outbox:
                action = outbox.popleft()
                ws = self._ws
                if ws is None:
                    continue
                if isinstance(action, CloseTransport):
                    self._write_out()
                    with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
                        await asyncio.wait_for(
                            ws.close(action.code, action.reason), self._opener.close_timeout
                        )
                elif ws.protocol.state is OPEN:
                    if isinstance(action, SendBinary):
                        ws.protocol.send_binary(action.data)
                    else:
                        ws.protocol.send_text(action.text.encode())
                    self._write_out()
                outbox.extend(self._engine.actions())

    def _flush_soon(self) -> None:
        """Write the outbox from a callback (no task to await in)."""
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = self._loop.create_task(
                self._flush_outbox(), name="smproto-asyncio-flush"
            )

    # ---------------------------------------------- the engine, from callbacks

    def _after(self, engine: ClientConnection) -> None:
        """After the engine took an input: deliver its events, write what it queued,
        wake who can now go on, and keep the timer at its deadline."""
        self._deliver(engine)
        if engine.has_actions:
            self._write()
        state = engine.state
        if state is not self._state:
            self._state = state
            self._arm_timer(engine)  # a new state may have an earlier deadline
            self._wake_all()  # the supervisor, too
        else:
            room = self._room
            # A sender waits until a quarter of the window is free: fewer wake-ups than
            # one per ack when audio streams faster than real time (as websockets'
            # drain() waits for its low-water mark).
            if (
                room is not None
                and not room.done()
                and not engine.audio_window_full
                and engine.audio_in_flight.seconds <= 0.75 * engine.max_audio_in_flight_seconds
            ):
                room.set_result(None)
        if self._timer is None:
            self._arm_timer(engine)

    def _arm_timer(self, engine: ClientConnection) -> None:
        """Keep a ``call_at`` at the engine's deadline. The timer is lazy: it is moved
        only for an earlier deadline; one that fires early (the ack deadline moves later
        with every ack) re-arms itself. So a streaming session arms about one timer per
        ``ack_timeout``, not one per message."""
        deadline = engine.get_timer()
        if deadline is not None:
            timer = self._timer
            if timer is None or deadline < timer.when():
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(deadline, self._on_timer)

    def _deliver(self, engine: ClientConnection) -> None:
        """Queue the engine's events for the iterator (never waiting)."""
        events = engine.events()
        if not events:
            return
        backlog = self._backlog
        backlog.push_all(events)
        readable = self._readable
        if readable is not None and not readable.done():
            readable.set_result(None)
        if backlog.overfull and not self._reading_paused:
            # A flood the application does not read: stop reading the server until it
            # catches up (timers still run), so memory stays bounded.
            ws = self._ws
            if ws is not None and ws.transport is not None:
                self._reading_paused = True
                ws.transport.pause_reading()

    def _resume_reading(self) -> None:
        """The application caught up: feed the held messages, then read on."""
        self._feed_held()
        ws = self._ws
        if (
            not self._reading_paused
            and ws is not None
            and ws.transport is not None
            and not ws.transport.is_closing()
        ):
            ws.transport.resume_reading()

    def _on_timer(self) -> None:
        self._timer = None
        engine = self._engine
        deadline = engine.get_timer()
        if deadline is None:
            return
        if deadline > self._loop.time():  # it moved later: sleep on
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        engine.handle_timer(now=self._loop.time())
        self._after(engine)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _stop_pump(self) -> None:
        self._stop_timer()
        pump = self._pump
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    # ------------------------------------------------------------------ the supervisor

    async def _start(self) -> None:
        """Open the first connection and wait for RecognitionStarted (errors raise here)."""
        self._ws = await self._opener.open()
        failure = await self._run_until(State.STREAMING)
        if failure is not None:
            raise failure
        self._pump = asyncio.create_task(self._supervise(), name="smproto-asyncio-pump")

    async def _run_until(self, goal: State) -> SessionError | None:
        """Run the current connection until the engine reaches ``goal`` (or ends);
        return its failure, if any."""
        engine = self._engine
        ws = self._ws
        assert ws is not None
        if engine.state is State.CONNECTING:
            engine.connection_opened(now=self._loop.time())
        self._state = engine.state
        ws.attach(self._on_message)  # first what arrived already
        self._after(engine)
        await self._flush()
        closed = asyncio.ensure_future(ws.wait_closed())
        over = False
        try:
            while engine.state is not goal and engine.state not in (State.CLOSED, State.FAILED):
                if closed.done():
                    close = ws.protocol.close_rcvd
                    sent = ws.protocol.close_sent
                    if close is None and sent is not None and sent.code in _PEER_FAULTS:
                        close = sent  # websockets failed the connection for what it received
                    engine.connection_closed(
                        close.code if close else None,
                        close.reason if close else "",
                        now=self._loop.time(),
                    )
                    self._after(engine)
                    break
                waiter = self._over = self._loop.create_future()
                try:
                    await asyncio.wait((waiter, closed), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._over = None
            over = engine.state is not goal or goal is State.CLOSED
        finally:
            closed.cancel()
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
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), self._opener.close_timeout)

    async def _supervise(self) -> None:
        attempts = ReconnectAttempts()
        try:
            failure = await self._run_until(State.CLOSED)
            while failure is not None:
                old = self._engine
                attempt = attempts.after_failure(old)
                if self._done or not self._policy.should_retry(failure, attempt):
                    self._failure = failure
                    return
                delay = self._policy.delay(failure, attempt)
                logger.info("reconnecting in %.1fs (attempt %d): %s", delay, attempt, failure)
                await asyncio.sleep(delay)
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
                self._outbox.clear()  # the old connection's: the new engine replays
                try:
                    ws = await self._opener.open()
                except SessionError as exc:
                    logger.info("reconnect attempt %d failed: %s", attempt, exc)
                    # The new engine never opened: fail it, so the next attempt resumes it.
                    engine.connection_closed(None, str(exc), now=self._loop.time())
                    engine.events()
                    failure = exc
                    continue
                self._ws = ws
                self.reconnects += 1
                self._backlog.push(Reconnected(self.reconnects, str(failure), {}))
                self._wake_all()
                failure = await self._run_until(State.CLOSED)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: never leave the application hanging
            logger.exception("the session supervisor failed")
            self._failure = SessionError(f"internal error in the asyncio driver: {exc}")
        finally:
            self._stop_timer()
            await self._close_ws()
            self._backlog.end()
            self._wake_all()

    async def _finish(self, exc: BaseException | None) -> None:
        """Leave the ``connect()`` block: abort if the session is not over, stop the pump.

        The cleanup runs in a task of its own, shielded: when the caller was cancelled,
        the connection is still closed promptly (bounded by ``close_timeout``).
        """
        cleanup = asyncio.ensure_future(self._cleanup(aborted=exc is not None))
        await asyncio.shield(cleanup)
        if exc is None and self._failure is not None and not self._failure_reported:
            self._failure_reported = True
            raise self._failure

    async def _cleanup(self, aborted: bool) -> None:
        pump = self._pump
        if not aborted and self._engine.state is State.CLOSED and pump is not None:
            # Complete: let the supervisor finish the closing handshake.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pump), self._opener.close_timeout + 1)
        if aborted or self._engine.state not in (State.CLOSED, State.FAILED):
            self._done = True
            if self._engine.state not in (State.CLOSED, State.FAILED):
                logger.debug("session left before EndOfTranscript: closing")
                self._engine.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._flush(), self._opener.close_timeout)
        await self._stop_pump()
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
            status, body = await asyncio.wait_for(
                asyncio.to_thread(post, request, self.open_timeout), self.open_timeout + 1
            )
        except (OSError, TimeoutError) as exc:
            message = redact(f"the temporary-key endpoint is unreachable: {exc}", [self._api_key])
            raise ConnectionFailed(message) from None
        try:
            return parse_temporary_key_response(status, body, redact_secrets=[self._api_key])
        except TemporaryKeyError as exc:
            if exc.status in (401, 403):
                raise AuthenticationError(str(exc), status=exc.status) from None
            raise ConnectionFailed(str(exc), retryable=exc.retryable) from None

    async def open(self) -> _WebSocket:
        key = await self._key()
        headers = handshake_headers(key, self._extra)
        try:
            ws = await ws_connect(
                self.url,
                create_connection=_WebSocket,
                additional_headers=headers,
                ssl=(self._ssl or ssl_module.create_default_context())
                if self.url.startswith("wss:")
                else None,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                max_size=self._max_size,
                compression=None,  # deflating audio costs CPU and saves nothing
                user_agent_header=SDK,
                logger=_WS_LOGGER,
            )
            assert isinstance(ws, _WebSocket)
            return ws
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = redact(exc.response.body.decode("utf-8", "replace")[:200], [key, self._api_key])
            text = f"the server refused the connection with HTTP {status}: {body.strip()}"
            if status in (401, 403):
                raise AuthenticationError(text, status=status) from None
            raise HandshakeRejected(status, text) from None
        except TimeoutError:
            raise SessionTimeout(
                f"could not open {self.url} within {self.open_timeout:g}s", timer="open"
            ) from None
        except (OSError, InvalidHandshake) as exc:
            message = redact(f"could not connect to {self.url}: {exc}", [key, self._api_key])
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

    Args:
        url: the real-time endpoint (``wss://eu2.rt.speechmatics.com/v2`` by default; a
            local ``smproto serve`` is ``ws://127.0.0.1:PORT/v2``).
        api_key: the key; from ``SPEECHMATICS_API_KEY`` when not given. ``None`` and no
            environment variable connects without credentials (local servers).
        temporary_key: exchange the key for a short-lived one (``temporary_key_ttl``
            seconds) at ``management_url`` before each connection.
        extra_headers: more handshake headers (they can never set ``Authorization``).
        ssl: the TLS context for ``wss://`` (default: verify certificates; verification
            can only be turned off by passing a context that does so).
        reconnect: ``True`` (the default policy), ``False``, or a
            :class:`smproto.session.ReconnectPolicy`.
        open_timeout, close_timeout: WebSocket opening and closing handshakes.
        recognition_started_timeout, ack_timeout, drain_timeout: the engine's timers.
        ping_interval, ping_timeout: keepalive; a half-open connection is detected after
            at most their sum and treated as a lost connection.
        max_audio_in_flight_seconds: the flow-control window ``send_audio`` honours.
        retain_audio_seconds: the most audio kept for replay after a failure.
        event_queue_size: how many unread events may wait before the session starts
            dropping the ones that do not matter to a late reader: acknowledgement events,
            and partials superseded by newer ones (counted in ``Session.dropped_events``;
            finals are never dropped). The pump never waits for the reader, so acks and
            errors keep being processed however slowly events are read.

    Raises:
        smproto.session.SessionError: a subclass saying why the session could not start,
            and from the block, why it failed (never a bare library exception).
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
    session = Session(opener, engine, policy, event_queue_size)
    try:
        await session._start()
    except BaseException:
        session._stop_timer()
        await session._close_ws()
        raise
    try:
        yield session
    except BaseException as exc:
        await session._finish(exc)
        raise
    else:
        await session._finish(None)


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
    ``audio_format``, and return the final transcript's text.

    A WAV file's own format is used (16-bit PCM is sent raw; other files are sent whole
    as ``AudioFormat.file()``). ``realtime`` paces the audio at real time; otherwise it
    streams as fast as flow control allows. Other keyword arguments go to :func:`connect`.
    """
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
            start = asyncio.get_running_loop().time()
            sent = 0
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    await session.send_audio(chunk)
                    sent += len(chunk)
            else:
                for chunk in chunks:
                    await session.send_audio(chunk)
                    sent += len(chunk)
                    if realtime and bps:
                        ahead = start + sent / bps - asyncio.get_running_loop().time()
                        if ahead > 0:
                            await asyncio.sleep(ahead)
            await session.end_of_stream()

        sender = asyncio.create_task(send())
        try:
            async for event in session:
                assembler.add(event)
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    return assembler.final_text
