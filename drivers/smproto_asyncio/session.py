"""Client sessions over asyncio and ``websockets``: a pump around ``smproto.session.ClientSession``.

    async with connect(url, api_key=..., transcription_config=..., audio_format=...) as session:
        async def send():
            async for chunk in audio:
                await session.send_audio(chunk)   # waits while the in-flight window is full
            await session.end_of_stream()
        task = asyncio.create_task(send())
        async for event in session:               # ends after EndOfTranscript
            ...

Everything that decides (which connection to open, when to retry, how the next one
continues the stream, when to roll over, what the application sees) is the sans-IO
session's. This module opens the connections it asks for, feeds each message to it where
``websockets`` parses it, writes what it asks, keeps one ``call_at`` timer at its
deadline and wakes the tasks that wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as ssl_module
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.protocol import OPEN

from smproto import (
    AudioFormat,
    SendBinary,
    SendText,
    TranscriptAssembler,
    TranscriptionConfig,
)
from smproto._state import SessionState
from smproto.actions import AbortConnection, OpenConnection, RequestTemporaryKey, Transmit
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

logger = logging.getLogger("smproto_asyncio")
# websockets logs handshake headers at DEBUG: through this logger, credentials are masked.
_WS_LOGGER = redacting_logger("smproto_asyncio.websockets")

SDK = "smproto-asyncio/0.1.0"
#: Close codes websockets sends when it fails a connection for what the peer sent.
_PEER_FAULTS = frozenset({1002, 1007, 1009})


class _WebSocket(MessageHook, WebSocket):
    """websockets' asyncio client connection: each message goes to the session where it is
    parsed (``MessageHook``), a burst of frames is one write, and the end of the
    connection is reported as it happens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing_paused = False
        self._writable: asyncio.Future[None] | None = None
        #: Called once the transport is gone.
        self.on_lost: Callable[[], None] | None = None

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
        if self.on_lost is not None:
            self.on_lost()

    def send_data(self) -> None:
        """Write what the protocol has to send in one call (websockets writes each frame
        on its own: a burst of audio would be a system call per frame)."""
        data = self.protocol.data_to_send()
        if not data or self.transport.is_closing():
            return
        if all(data):
            self.transport.writelines(data)
            return
        for chunk in data:  # b"" is the end of the stream, after the closing handshake
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                with contextlib.suppress(Exception):  # as websockets: plausibly OSError
                    self.transport.write_eof()
            else:
                self.transport.close()

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


class Session(SessionView):
    """One transcription session, possibly over several connections.

    Created by :func:`connect`. Iterate it for events; the iteration ends after
    ``EndOfTranscript`` and raises a :class:`smproto.session.SessionError` on failure.
    :attr:`core` is the sans-IO session that decides everything; this object does its IO.
    """

    def __init__(self, core: ClientSession, transport: dict[str, Any]) -> None:
        #: The sans-IO session.
        self.core = core
        self._transport = transport
        self._close_timeout: float = transport["close_timeout"]
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time
        self._sockets: dict[int, _WebSocket] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}  # opening, or a key request
        self._closing: dict[int, asyncio.Task[None]] = {}  # connections being closed
        self._timer: asyncio.TimerHandle | None = None
        self._state = core.state
        self._paused = False
        self._write_scheduled = False
        self._readable: asyncio.Future[None] | None = None  # the iterator, waiting
        self._room: asyncio.Future[None] | None = None  # a sender, waiting for room
        self._changed = asyncio.Event()  # set() then clear(): wakes every other waiter

    # ------------------------------------------------------------------ commands

    async def send_audio(self, chunk: bytes) -> int:
        """Send a chunk of audio; waits while the in-flight window is full (or while a
        connection is being made). Returns the frame's ``seq_no`` on its connection."""
        core = self.core
        if not core.check_send_audio():
            await self._wait(core.check_send_audio, room=True)
        seq_no = core.send_audio(chunk, now=self._now())
        self._after()
        ws = self._sockets.get(core.connection_id or 0)
        if ws is not None and ws.writing_paused:
            await ws.wait_writable()
        return seq_no

    async def send_channel_audio(self, channel: str, chunk: bytes) -> int:
        """Send a chunk of one channel's audio (multichannel sessions)."""
        await self._wait(self.core.check_send_audio, room=True)
        seq_no = self.core.send_channel_audio(channel, chunk, now=self._now())
        await self._flush()
        return seq_no

    async def end_of_stream(self) -> None:
        """No more audio. Transcripts keep coming until ``EndOfTranscript``."""
        self.core.end_of_stream(now=self._now())
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
        self.core.close(now=self._now())
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
            waiter = self._readable = self._loop.create_future()
            try:
                await waiter
            finally:
                self._readable = None

    # ------------------------------------------------------------------ waiting

    async def _wait(self, ready: Callable[[], bool], *, room: bool = False) -> None:
        """Wait until ``ready()`` (which raises when it never will)."""
        while not ready():
            if room:
                waiter = self._room = self._loop.create_future()
                try:
                    await waiter
                finally:
                    self._room = None
            else:
                await self._changed.wait()

    async def _flush(self) -> None:
        """Write what is queued now; wait while the socket's buffer is full."""
        self._after()
        ws = self._sockets.get(self.core.connection_id or 0)
        if ws is not None and ws.writing_paused:
            await ws.wait_writable()

    # ------------------------------------------------------------------ the pump

    def _after(self) -> None:
        """After the session took an input: do what it asks, wake who can go on, keep
        the timer at its deadline."""
        core = self.core
        if core.has_actions:
            self._perform(core.actions())
        readable = self._readable
        if readable is not None and core.has_events and not readable.done():
            readable.set_result(None)
        room = self._room
        if room is not None and not room.done() and core.wake_sender:
            room.set_result(None)
        state = core.state
        if state is not self._state:
            self._state = state
            self._changed.set()
            self._changed.clear()  # a broadcast to the tasks waiting now
            if core.finished:
                if readable is not None and not readable.done():
                    readable.set_result(None)
                if room is not None and not room.done():
                    room.set_result(None)
        if core.reading_paused is not self._paused:
            self._pause_reading(core.reading_paused)
        deadline = core.get_timer()
        timer = self._timer
        # Lazy: moved only for an earlier deadline; one that fires early re-arms itself.
        if deadline is not None and (timer is None or deadline < timer.when()):
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _perform(self, actions: list[Any]) -> None:
        for action in actions:
            if type(action) is Transmit:
                self._transmit(action)
            elif isinstance(action, OpenConnection):
                self._tasks[action.connection] = self._loop.create_task(self._open(action))
            elif isinstance(action, RequestTemporaryKey):
                self._tasks[action.connection] = self._loop.create_task(self._key(action))
            elif isinstance(action, AbortConnection):
                task = self._tasks.pop(action.connection, None)
                if task is not None:
                    task.cancel()
                self._close(action.connection, 1000, "")

    def _transmit(self, transmit: Transmit) -> None:
        ws = self._sockets.get(transmit.connection)
        if ws is None:
            return  # gone: the session knows (or will)
        protocol = ws.protocol
        for action in transmit.actions:
            kind = type(action)
            if protocol.state is not OPEN:
                return  # closing: its end is reported by connection_lost
            if kind is SendBinary:
                protocol.send_binary(action.data)  # type: ignore[union-attr]
            elif kind is SendText:
                protocol.send_text(action.text.encode())  # type: ignore[union-attr]
            else:  # CloseTransport: the last action of a connection
                ws.send_data()
                self._close(transmit.connection, action.code, action.reason)  # type: ignore[union-attr]
                return
        if not self._write_scheduled:  # the frames go out together at the end of this turn
            self._write_scheduled = True
            self._loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self._write_scheduled = False
        for ws in self._sockets.values():
            ws.send_data()

    def _close(self, cid: int, code: int, reason: str) -> None:
        ws = self._sockets.get(cid)
        if ws is None or cid in self._closing:
            return

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code, reason), self._close_timeout)
            if ws.transport is not None:
                ws.transport.abort()  # at the latest after close_timeout

        task = self._closing[cid] = self._loop.create_task(close())
        task.add_done_callback(lambda _: self._closing.pop(cid, None))

    def _pause_reading(self, paused: bool) -> None:
        """A flood the application does not read: stop reading until it catches up
        (timers still run), so memory stays bounded."""
        self._paused = paused
        for ws in self._sockets.values():
            transport = ws.transport
            if transport is None or transport.is_closing():
                continue
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _on_timer(self) -> None:
        self._timer = None
        core = self.core
        deadline = core.get_timer()
        if deadline is None:
            return
        if deadline > self._loop.time():  # it moved later: sleep on
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        core.handle_timer(now=self._loop.time())
        self._after()

    # ------------------------------------------------------------------ connections

    async def _key(self, action: RequestTemporaryKey) -> None:
        cid, timeout = action.connection, self._transport["open_timeout"]
        try:
            status, body = await asyncio.wait_for(
                asyncio.to_thread(post, action.request, timeout), timeout + 1
            )
        except (OSError, TimeoutError) as exc:
            self.core.key_failed(cid, str(exc) or type(exc).__name__, now=self._now())
        else:
            self.core.key_received(cid, status, body, now=self._now())
        finally:
            self._tasks.pop(cid, None)
        self._after()

    async def _open(self, action: OpenConnection) -> None:
        cid, options, core = action.connection, self._transport, self.core
        try:
            ws = await ws_connect(
                action.url,
                create_connection=_WebSocket,
                additional_headers=list(action.headers),
                ssl=(options["ssl"] or ssl_module.create_default_context())
                if action.url.startswith("wss:")
                else None,
                open_timeout=options["open_timeout"],
                close_timeout=options["close_timeout"],
                ping_interval=options["ping_interval"],
                ping_timeout=options["ping_timeout"],
                max_size=options["max_message_size"],
                compression=None,  # deflating audio costs CPU and saves nothing
                user_agent_header=SDK,
                logger=_WS_LOGGER,
            )
        except InvalidStatus as exc:
            response = exc.response
            core.open_failed(
                cid, "", now=self._now(), status=response.status_code, body=bytes(response.body)
            )
        except TimeoutError:
            core.open_failed(cid, "timeout", now=self._now(), timed_out=True)
        except (OSError, InvalidHandshake) as exc:
            core.open_failed(cid, str(exc) or type(exc).__name__, now=self._now())
        else:
            assert isinstance(ws, _WebSocket)
            self._sockets[cid] = ws
            ws.on_lost = lambda: self._lost(cid, ws)
            if self._paused and ws.transport is not None:
                ws.transport.pause_reading()
            core.connection_opened(cid, now=self._now())
            ws.attach(lambda message: self._on_message(cid, ws, message))
        finally:
            self._tasks.pop(cid, None)
        self._after()

    def _on_message(self, cid: int, ws: _WebSocket, message: str | bytes | None) -> None:
        """A message from the server (called where the connection parses it)."""
        if message is None:  # text that is not UTF-8: what websockets would fail it for
            reason = "the server sent text that is not UTF-8"
            self.core.connection_closed(cid, 1007, reason, now=self._now())
            self._close(cid, 1007, reason)
        else:
            self.core.receive_message(cid, message, now=self._now())
        self._after()

    def _lost(self, cid: int, ws: _WebSocket) -> None:
        """The transport of connection ``cid`` is gone: how did it end?"""
        self._sockets.pop(cid, None)
        ws.detach()
        close, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if close is None and sent is not None and sent.code in _PEER_FAULTS:
            close = sent  # websockets failed the connection for what it received
        code, reason = (close.code, close.reason) if close is not None else (None, "")
        self.core.connection_closed(cid, code, reason, now=self._now())
        self._after()

    # ------------------------------------------------------------------ the end

    async def _settle(self) -> None:
        """Wait (at most ``close_timeout``) for every connection to close; stop the timer."""
        for task in list(self._tasks.values()):
            task.cancel()
        for cid in list(self._sockets):
            self._close(cid, 1000, "")
        if self._closing:
            await asyncio.wait(set(self._closing.values()), timeout=self._close_timeout + 1)
        for ws in list(self._sockets.values()):
            if ws.transport is not None:
                ws.transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _finish(self, aborted: bool) -> None:
        """Leave the ``connect()`` block: abort if the session is not over, close what is
        open. The cleanup runs shielded: a cancelled caller still closes promptly."""
        core = self.core
        if not core.finished or aborted:
            if not core.finished:
                logger.debug("session left before EndOfTranscript: closing")
            core.close(now=self._now())
            self._after()
        await asyncio.shield(self._loop.create_task(self._settle()))


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
            :class:`smproto.session.ReconnectPolicy` (retries, retry budget, rollover).
        open_timeout, close_timeout: WebSocket opening (with the key) and closing.
        recognition_started_timeout, ack_timeout, drain_timeout: the engine's timers.
        ping_interval, ping_timeout: keepalive; a half-open connection is detected after
            at most their sum and treated as a lost connection.
        max_audio_in_flight_seconds: the flow-control window ``send_audio`` honours.
        retain_audio_seconds: the most audio kept for replay after a failure.
        event_queue_size: how many unread events may wait before the session drops the
            ones a late reader does not need (acknowledgements and superseded partials,
            counted in ``Session.dropped_events``; never finals).
        max_message_size: the largest message accepted from the server.
        max_session_seconds: roll over to a new connection after this long on one (the
            server's own limit is handled without it, on its warning).

    Raises:
        smproto.session.SessionError: a subclass saying why the session could not start,
            and from the block, why it failed (never a bare library exception).
    """
    # Every argument (no local is defined above): the session's and the transport's.
    core, transport = open_session(SDK, locals())
    session = Session(core, transport)
    try:
        core.start(now=session._now())
        session._after()
        await session._wait(lambda: core.ready)
        if core.state is SessionState.FAILED:
            core.raise_failure()
    except BaseException:
        await session._finish(aborted=True)
        raise
    try:
        yield session
    except BaseException:
        await session._finish(aborted=True)
        raise
    await session._finish(aborted=False)
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
    ``audio_format``, and return the final transcript's text.

    A WAV file's own format is used (16-bit PCM is sent raw; other files are sent whole
    as ``AudioFormat.file()``). ``realtime`` paces the audio at real time; otherwise it
    streams as fast as flow control allows. Other keyword arguments go to :func:`connect`.
    """
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
            bps, loop = fmt.bytes_per_second, asyncio.get_running_loop()
            start, sent = loop.time(), 0
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    await session.send_audio(chunk)
            else:
                for chunk in chunks:
                    await session.send_audio(chunk)
                    sent += len(chunk)
                    if realtime and bps and (ahead := start + sent / bps - loop.time()) > 0:
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
