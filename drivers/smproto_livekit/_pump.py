"""The aiohttp driver: a pump around :class:`smproto.ClientConnection`.

The same loop as ``smproto_asyncio``'s, over aiohttp (LiveKit's HTTP client): read a
message (or sleep until the engine's timer) → feed the engine → write its actions →
deliver its events; beside it, a sender task takes audio from a source and gives it to the
engine while the flow-control window has room. When a connection fails and the
:class:`~smproto.session.ReconnectPolicy` allows, the pump opens a new one from the old
engine (:meth:`smproto.ClientConnection.resume_from`), which replays the audio no final
transcript covered yet: no word is lost.

Errors come out as :class:`smproto.session.SessionError` subclasses; the LiveKit layer
turns them into ``APIError`` s. No message built here contains a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

import aiohttp

from smproto import (
    ClientConnection,
    CloseTransport,
    LocalProtocolError,
    RemoteProtocolError,
    SendBinary,
    SendText,
    State,
)
from smproto.auth import (
    handshake_headers,
    mask_credentials,
    parse_temporary_key_response,
    redact,
    temporary_key_request,
)
from smproto.errors import TemporaryKeyError
from smproto.events import Event
from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    HandshakeRejected,
    ReconnectAttempts,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    error_for_failure,
)

from .log import logger

__all__ = ["END", "FLUSH", "AudioSource", "Connector", "Marker", "Pump", "chunks_source"]


#: The largest message accepted from the server.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
#: How long to wait for the server's close frame after a failure.
FAILED_CLOSE_TIMEOUT: Final = 1.0


class Marker:
    """A marker in an audio source (:data:`FLUSH`, :data:`END`)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: Finalise what was said so far (``ForceEndOfUtterance``).
FLUSH: Final = Marker("FLUSH")
#: No more audio (``EndOfStream``).
END: Final = Marker("END")


class AudioSource(Protocol):
    """Where the sender takes audio from."""

    async def next(self) -> bytes | Marker:
        """The next chunk, :data:`FLUSH` or :data:`END` (then :data:`END` forever).

        Must be cancel-safe: a cancelled call loses nothing.
        """
        ...


class Connector:
    """Opens WebSocket connections, with a fresh temporary key for each when asked.

    Everything (the key request and the handshake) must finish within ``timeout`` seconds.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        *,
        api_key: str | None,
        temporary_key: bool,
        management_url: str,
        temporary_key_ttl: int,
        ssl_context: ssl.SSLContext | None,
        extra_headers: Sequence[tuple[str, str]],
        timeout: float,
        close_timeout: float = 5.0,
        heartbeat: float | None = 20.0,
    ) -> None:
        self.http = http
        self.url = url
        self._api_key = api_key
        self._temporary_key = temporary_key
        self._management_url = management_url
        self._ttl = temporary_key_ttl
        self._ssl = ssl_context
        self._extra = list(handshake_headers(None, extra_headers))  # checked again here
        self.timeout = timeout
        self.close_timeout = close_timeout
        self._heartbeat = heartbeat

    def __repr__(self) -> str:  # never shows a key
        return f"<Connector url={mask_credentials(self.url)!r}>"

    def _redact(self, text: str, *keys: str | None) -> str:
        return mask_credentials(redact(text, [self._api_key, *keys]))

    async def _key(self) -> str | None:
        if not self._temporary_key or self._api_key is None:
            return self._api_key
        request = temporary_key_request(self._api_key, ttl=self._ttl, base_url=self._management_url)
        try:
            async with self.http.post(
                request.url, data=request.body, headers=request.header_dict()
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(
                self._redact(f"the temporary-key endpoint is unreachable: {exc}")
            ) from None
        try:
            return parse_temporary_key_response(status, body, redact_secrets=[self._api_key])
        except TemporaryKeyError as exc:
            message = self._redact(str(exc))
            if exc.status in (401, 403):
                raise AuthenticationError(message, status=exc.status) from None
            if exc.status is not None:
                raise HandshakeRejected(exc.status, message) from None
            raise ConnectionFailed(message, retryable=exc.retryable) from None

    async def open(self) -> aiohttp.ClientWebSocketResponse:
        """A new WebSocket connection to the real-time endpoint.

        Raises:
            SessionError: why it could not be opened (typed, retryable or not).
        """
        key: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                key = await self._key()
                headers = handshake_headers(key, self._extra)
                return await self.http.ws_connect(
                    self.url,
                    headers=headers,
                    ssl=self._ssl
                    if self._ssl is not None and self.url.startswith("wss:")
                    else True,
                    heartbeat=self._heartbeat,
                    max_msg_size=MAX_MESSAGE_BYTES,
                    autoclose=True,
                    autoping=True,
                )
        except TimeoutError:
            raise SessionTimeout(
                f"could not connect to {self._redact(self.url)} within {self.timeout:g}s",
                timer="open",
            ) from None
        except aiohttp.WSServerHandshakeError as exc:
            text = self._redact(
                f"the server refused the connection with HTTP {exc.status}: {exc.message}", key
            )
            if exc.status in (401, 403):
                raise AuthenticationError(text, status=exc.status) from None
            raise HandshakeRejected(exc.status, text) from None
        except (aiohttp.ClientError, OSError) as exc:
            text = self._redact(f"could not connect to {self.url}: {exc}", key)
            raise ConnectionFailed(text) from None


class Pump:
    """Runs one transcription session over as many connections as it takes.

    Args:
        connector: opens the connections.
        engine: the session's first engine (``CONNECTING``).
        source: the audio, flushes and the end of the input.
        on_event: called (synchronously, in order) with every engine event.
        policy: when to reconnect.
    """

    def __init__(
        self,
        connector: Connector,
        engine: ClientConnection,
        source: AudioSource,
        on_event: Callable[[Event], None],
        policy: ReconnectPolicy,
    ) -> None:
        self._connector = connector
        #: The current engine (a new one after each reconnect).
        self.engine = engine
        self._source = source
        self._on_event = on_event
        self._policy = policy
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._sender_error: BaseException | None = None
        # A chunk or marker taken from the source and not yet given to an engine: it
        # survives reconnects and the pump being run again.
        self._held: bytes | Marker | None = None
        self._input_ended = False
        self._dropping = False
        self._resumed = False
        self._loop = asyncio.get_running_loop()
        #: Seconds of the source's audio given to the engines (each second once).
        self.audio_seconds_sent = 0.0
        #: How many times the session reconnected (new connections that opened).
        self.reconnects = 0
        bps = engine.audio_format.bytes_per_second
        self._bps = float(bps) if bps else 32_000.0

    def __repr__(self) -> str:
        return f"<Pump state={self.engine.state.name} reconnects={self.reconnects}>"

    def _now(self) -> float:
        return self._loop.time()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ the session

    async def run(self) -> None:
        """Run until ``EndOfTranscript``; reconnect when the policy allows.

        May be called again after it raised: the session then resumes from its failed
        engine (still without losing audio), with a fresh reconnect budget.

        Raises:
            SessionError: the session failed and the policy gave up (or cannot help).
        """
        attempts = ReconnectAttempts()
        try:
            if self.engine.state is State.FAILED:
                self._resume()
            while True:
                error = await self._connection()
                if error is None:
                    return
                if self._sender_error is not None:
                    raise self._sender_error
                attempt = attempts.after_failure(self.engine)
                if not self._policy.should_retry(error, attempt):
                    raise error
                delay = self._policy.delay(error, attempt)
                logger.info("reconnecting in %.2fs (attempt %d): %s", delay, attempt, error)
                await asyncio.sleep(delay)
                self._resume()
        finally:
            await self._stop_sender()
            await self._close_ws()

    def _resume(self) -> None:
        """Replace the failed engine with one that continues it."""
        old = self.engine
        try:
            new = ClientConnection.resume_from(
                old, allow_loss=self._policy.allow_loss, end_stream=self._input_ended
            )
        except LocalProtocolError as exc:
            raise SessionError(f"cannot reconnect without losing audio: {exc}") from None
        self.engine = new
        self._resumed = True
        self._notify()

    async def _connection(self) -> SessionError | None:
        """Open a connection for the current engine and run it until it ends; return its
        failure, or ``None`` once the session is complete."""
        engine = self.engine
        if self._sender_error is not None:
            raise self._sender_error
        try:
            ws = await self._connector.open()
        except SessionError as exc:
            # The engine never opened: fail it, so that the next attempt resumes it.
            engine.connection_closed(None, str(exc), now=self._now())
            engine.events()
            return exc
        self._ws = ws
        if self._resumed:
            self._resumed = False
            self.reconnects += 1
            logger.info("reconnected (%d): replaying the audio no final covered", self.reconnects)
        engine.connection_opened(now=self._now())
        await self._flush()
        self._start_sender()
        while True:
            deadline = engine.get_timer()
            timeout = None if deadline is None else deadline - self._now()
            if timeout is not None and timeout <= 0:
                # Due now (aiohttp reads a timeout of 0 as "no timeout": never pass it one).
                engine.handle_timer(now=self._now())
            else:
                try:
                    message = await ws.receive(timeout=timeout)
                except TimeoutError:
                    engine.handle_timer(now=self._now())
                else:
                    self._feed(engine, ws, message)
            await self._flush()
            for event in engine.events():
                self._on_event(event)
            self._notify()
            if self._sender_error is not None:
                raise self._sender_error
            if engine.state is State.FAILED:
                await self._close_ws()
                assert engine.failure is not None
                return error_for_failure(engine.failure)
            if engine.state is State.CLOSED:
                await self._close_ws()
                return None

    def _feed(
        self,
        engine: ClientConnection,
        ws: aiohttp.ClientWebSocketResponse,
        message: aiohttp.WSMessage,
    ) -> None:
        now = self._now()
        kind = message.type
        if kind is aiohttp.WSMsgType.TEXT or kind is aiohttp.WSMsgType.BINARY:
            # A RemoteProtocolError has failed the engine and queued its close.
            with contextlib.suppress(RemoteProtocolError):
                engine.receive_message(message.data, now=now)
        elif kind is aiohttp.WSMsgType.CLOSE:
            engine.connection_closed(message.data, message.extra or "", now=now)
        elif kind is aiohttp.WSMsgType.ERROR:
            engine.connection_closed(None, mask_credentials(str(message.data)), now=now)
        else:  # CLOSING, CLOSED: the connection is gone
            code = ws.close_code
            engine.connection_closed(None if code == 1006 else code, "", now=now)

    async def _flush(self) -> None:
        """Write the engine's actions, in order (one writer at a time)."""
        async with self._write_lock:
            ws = self._ws
            for action in self.engine.actions():
                if ws is None or ws.closed:
                    continue
                try:
                    if isinstance(action, SendBinary):
                        await ws.send_bytes(action.data)
                    elif isinstance(action, SendText):
                        await ws.send_str(action.text)
                    elif isinstance(action, CloseTransport):
                        timeout = self._connector.close_timeout
                        if self.engine.state is State.FAILED:
                            # A failed server may never answer: do not hold up the reconnect.
                            timeout = min(timeout, FAILED_CLOSE_TIMEOUT)
                        await asyncio.wait_for(
                            ws.close(code=action.code, message=action.reason.encode()), timeout
                        )
                except (ConnectionError, aiohttp.ClientError, TimeoutError, RuntimeError):
                    pass  # the pump reads how the connection ended

    async def _close_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), self._connector.close_timeout)

    # ------------------------------------------------------------------ the sender

    def _start_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_loop(), name="smproto-livekit-sender")

    async def _stop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _wait(self, ready: Callable[[ClientConnection], bool]) -> ClientConnection:
        while not ready(self.engine):
            await self._changed.wait()
        return self.engine

    async def _send_loop(self) -> None:
        try:
            while True:
                item = self._held
                if item is None:
                    item = self._held = await self._source.next()
                if item is END:
                    self._input_ended = True
                    engine = await self._wait(_settled)
                    if engine.state is State.STREAMING:
                        engine.end_of_stream(now=self._now())
                        await self._flush()
                    self._held = None
                    return
                if item is FLUSH:
                    engine = await self._wait(_settled)
                    if engine.state is State.STREAMING:
                        engine.force_end_of_utterance()
                        await self._flush()
                    self._held = None
                    continue
                assert isinstance(item, bytes)
                engine = await self._wait(_has_room)
                if engine.state is State.STREAMING:
                    engine.send_audio(item, now=self._now())
                    self.audio_seconds_sent += len(item) / self._bps
                elif not self._dropping:
                    # The server ended the stream (duration limit): the rest is not sent.
                    self._dropping = True
                    logger.warning("the stream has ended: further audio is not transcribed")
                self._held = None
                await self._flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Wake the pump, which raises it.
            self._sender_error = exc
            ws = self._ws
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=1011), self._connector.close_timeout)


def _settled(engine: ClientConnection) -> bool:
    """Not waiting for a connection: streaming, or past it."""
    state = engine.state
    return state is State.STREAMING or state is State.DRAINING or state is State.CLOSED


def _has_room(engine: ClientConnection) -> bool:
    state = engine.state
    if state is State.STREAMING:
        return not engine.audio_window_full
    return state is State.DRAINING or state is State.CLOSED


def chunks_source(chunks: Iterable[bytes]) -> AudioSource:
    """A source of ready-made chunks, then :data:`END`."""
    return _ChunkSource(chunks)


class _ChunkSource:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)

    async def next(self) -> bytes | Marker:
        return next(self._chunks, END)
