"""A local Speechmatics-compatible server: ``smproto.ServerConnection`` over ``websockets``.

One engine and one recogniser session per connection; the pump reads a message, feeds
the engine, hands its events to the recogniser, turns the recogniser's outputs into
protocol messages, and writes the engine's actions. Audio is acknowledged only once the
recogniser has taken it, and the pump reads nothing while the recogniser is busy, so a
slow recogniser back-pressures the client through TCP, as the real service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import logging
import socket
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from websockets.asyncio.server import Server
from websockets.asyncio.server import ServerConnection as WSConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from smproto import (
    CloseTransport,
    LocalProtocolError,
    SendText,
    ServerConnection,
    ServerState,
)
from smproto.server_events import (
    AudioReceived,
    ChannelEnded,
    ClientDisconnected,
    ForceEndOfUtteranceRequested,
    RecognitionConfigChanged,
    SessionFailed,
    SpeakersRequested,
    StartRequested,
    StreamEnded,
)
from smproto_io.log import redacting_logger

from .recognizer import (
    Output,
    Recognizer,
    RecognizerError,
    RecognizerSession,
    send_output,
)

__all__ = ["LocalServer", "ServerOptions", "default_recognizer", "serve"]

logger = logging.getLogger("smproto_server")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Protocol limits applied to every session (see :class:`smproto.ServerConnection`)."""

    start_timeout: float = 60.0
    idle_timeout: float = 3600.0
    idle_warnings: tuple[float, ...] = (900.0, 600.0, 300.0)
    session_timeout: float = 48 * 3600.0
    session_warnings: tuple[float, ...] = (2700.0, 1800.0, 900.0)
    max_audio_seconds: float | None = None
    close_timeout: float = 0.0
    allow_unknown_config: bool = False
    #: The largest message accepted, text or binary (bytes).
    max_message_bytes: int = 4 * 1024 * 1024
    #: The longest one write may wait for a client that does not read what it is sent
    #: (its TCP window stays shut); then the connection is aborted and its session slot
    #: freed. Neither the protocol's timers nor keepalive pings can act meanwhile.
    write_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("write_timeout", "max_message_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"ServerOptions.{name} must be a positive number, got {value!r}")


def _key_checker(api_keys: Iterable[str]) -> Callable[[str], bool]:
    keys = [k.encode() for k in api_keys if k]
    if not keys:
        raise ValueError("api_keys is empty: pass None to accept any client")

    def authorize(token: str) -> bool:
        given = token.encode()
        found = False
        for key in keys:  # every key is compared, in constant time
            found |= hmac.compare_digest(given, key)
        return found

    return authorize


@dataclass
class _Stats:
    sessions_total: int = 0
    sessions_active: int = 0
    frames: int = 0


@dataclass
class LocalServer:
    """A running local server. Use it as an async context manager, or call :meth:`aclose`."""

    host: str
    port: int
    recognizer: Recognizer
    _server: Server = field(repr=False)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _stats: _Stats = field(default_factory=_Stats, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The URL clients connect to, e.g. ``ws://127.0.0.1:9000/v2``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/v2"

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets, e.g. to set socket options (on Linux, an accepted
        connection inherits the listening socket's ``SO_SNDBUF`` and ``SO_RCVBUF``)."""
        return tuple(self._server.sockets)

    @property
    def active_sessions(self) -> int:
        """Sessions currently open."""
        return self._stats.sessions_active

    @property
    def total_sessions(self) -> int:
        """Sessions started since the server started."""
        return self._stats.sessions_total

    async def serve_forever(self) -> None:
        """Run until cancelled (then shut down gracefully)."""
        try:
            await self._server.serve_forever()
        finally:
            await self.aclose()

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop accepting connections, give open sessions ``grace`` seconds to finish,
        close the rest with 1001 (going away), and release the recogniser."""
        if self._closed:
            return
        self._closed = True
        # Stop accepting first (websockets' own close() is once-only, so it comes last).
        self._server.server.close()
        handlers = [t for t in self._handlers if not t.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=grace)
        self._server.close(close_connections=True, code=1001, reason="server shutdown")
        await self._server.wait_closed()
        await self.recognizer.aclose()

    async def __aenter__(self) -> LocalServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def default_recognizer() -> Recognizer:
    """The embedded default: offline speech recognition (pocketsphinx, extra ``asr``) when
    it is installed, otherwise the scripted recogniser (with a warning in the log)."""
    from .recognizers import ScriptedRecognizer
    from .recognizers.offline import OfflineRecognizer, offline_available

    if offline_available():
        return OfflineRecognizer()
    logger.warning(
        "pocketsphinx is not installed (pip install 'smproto[asr]'): "
        "using the scripted recogniser, which only understands tone-coded test audio"
    )
    return ScriptedRecognizer()


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    recognizer: Recognizer | None = None,
    api_keys: Iterable[str] | None = None,
    auth_failure: Literal["in_band", "handshake"] = "in_band",
    max_sessions: int | None = None,
    options: ServerOptions | None = None,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
) -> LocalServer:
    """Start a local Speechmatics-compatible server and return it once it listens.

    Args:
        host: the address to bind; 127.0.0.1 unless told otherwise.
        port: the port; 0 picks a free one (see :attr:`LocalServer.port`).
        recognizer: what turns audio into words (default: :func:`default_recognizer`,
            offline speech recognition when pocketsphinx is installed).
        api_keys: keys a client may present (``Authorization: Bearer`` or ``?jwt=``);
            ``None`` accepts any client. Keys are compared in constant time and never
            logged.
        auth_failure: a refused key gets ``Error not_authorised`` and close 4001
            (``"in_band"``, the default) or HTTP 401 (``"handshake"``). A missing key
            is always HTTP 401.
        max_sessions: concurrent sessions beyond this get ``Error quota_exceeded``.
        options: protocol limits (timeouts, message sizes, ...).
        ping_interval: keepalive pings (the server also answers the client's);
            ``None`` sends none.
        ping_timeout: a client that does not answer a ping within this long is
            disconnected; ``None`` waits for ever.
    """
    if recognizer is None:
        recognizer = default_recognizer()
    opts = options or ServerOptions()
    authorize = _key_checker(api_keys) if api_keys is not None else None
    stats = _Stats()
    engines: weakref.WeakKeyDictionary[WSConnection, ServerConnection] = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()

    def process_request(connection: WSConnection, request: Request) -> Response | None:
        engine = ServerConnection(
            authorize=authorize,
            auth_failure=auth_failure,
            start_timeout=opts.start_timeout,
            idle_timeout=opts.idle_timeout,
            idle_warnings=opts.idle_warnings,
            session_timeout=opts.session_timeout,
            session_warnings=opts.session_warnings,
            max_audio_seconds=opts.max_audio_seconds,
            close_timeout=opts.close_timeout,
            allow_unknown_config=opts.allow_unknown_config,
            max_message_bytes=opts.max_message_bytes,
        )
        decision = engine.handshake(request.path, request.headers.raw_items(), now=loop.time())
        if not decision.accepted:
            path = request.path.split("?")[0]
            logger.info("refused %s: HTTP %d %s", path, decision.status, decision.reason)
            return connection.respond(decision.status, decision.reason + "\n")
        engines[connection] = engine
        return None

    server_box: list[LocalServer] = []

    async def handler(connection: WSConnection) -> None:
        engine = engines.pop(connection)
        task = asyncio.current_task()
        assert task is not None
        local = server_box[0]
        local._handlers.add(task)
        try:
            await _Session(connection, engine, local, max_sessions, opts).run()
        finally:
            local._handlers.discard(task)

    ws_server = await ws_serve(
        handler,
        host,
        port,
        process_request=process_request,
        max_size=opts.max_message_bytes,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        server_header="smproto-server",
        # websockets logs the handshake headers at DEBUG: mask the clients' keys.
        logger=redacting_logger("smproto_server.websockets"),
    )
    sockname = next(iter(ws_server.sockets)).getsockname()
    local = LocalServer(host, int(sockname[1]), recognizer, ws_server, _stats=stats)
    server_box.append(local)
    logger.info("listening on %s (recogniser: %s)", local.url, recognizer.name)
    return local


class _Session:
    """The pump of one connection."""

    def __init__(
        self,
        ws: WSConnection,
        engine: ServerConnection,
        server: LocalServer,
        max_sessions: int | None,
        options: ServerOptions,
    ) -> None:
        self.ws = ws
        self.engine = engine
        self.server = server
        self.max_sessions = max_sessions
        self.options = options
        self.recognizer_session: RecognizerSession | None = None
        self.final_speakers = False
        self.counted = False
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    async def run(self) -> None:
        engine = self.engine
        stats = self.server._stats
        try:
            if engine.state is ServerState.AWAITING_START:
                active = stats.sessions_active + 1
                quota = self.max_sessions
                usage = {"usage": active}
                if quota is not None:
                    usage["quota"] = quota
                engine.send_info(
                    "concurrent_session_usage",
                    f"{active} concurrent sessions active"
                    + (f" out of quota {quota}" if quota is not None else ""),
                    last_updated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    **usage,
                )
            await self.flush()
            steps = 0
            while await self.step():
                steps += 1
                if steps % 64 == 0:
                    # recv() returns at once while messages are queued: a client that
                    # floods must not keep the other sessions from the event loop.
                    await asyncio.sleep(0)
        finally:
            if self.counted:
                stats.sessions_active -= 1
            if self.recognizer_session is not None:
                with contextlib.suppress(Exception):
                    await self.recognizer_session.close()

    async def step(self) -> bool:
        """Read one message (or wait for a timer), process it. False when finished."""
        engine = self.engine
        deadline = engine.get_timer()
        try:
            if deadline is None:
                message = await self.ws.recv()
            elif deadline <= self.now():
                # Due now: a client that never stops sending must not keep the session's
                # limits (its warnings, its timeouts) from ever being checked.
                raise TimeoutError
            else:
                async with asyncio.timeout(deadline - self.now()):
                    message = await self.ws.recv()
        except TimeoutError:
            engine.handle_timer(now=self.now())
        except ConnectionClosed as exc:
            received = exc.rcvd
            code = received.code if received is not None else None
            reason = received.reason if received is not None else ""
            engine.connection_closed(code, reason, now=self.now())
        else:
            engine.receive_message(message, now=self.now())
        finished = await self.dispatch()
        await self.flush()
        return not finished

    async def flush(self) -> None:
        for action in self.engine.actions():
            # A client that does not read blocks the write, and with it this pump: no timer
            # and no keepalive ping can act, so the write itself is bounded.
            try:
                async with asyncio.timeout(self.options.write_timeout):
                    if isinstance(action, SendText):
                        await self.ws.send(action.text)
                    elif isinstance(action, CloseTransport):
                        await self.close(action)
                    else:  # the server never sends binary
                        await self.ws.send(action.data)
            except ConnectionClosed:
                return
            except TimeoutError:
                logger.info(
                    "the client read nothing for %gs: connection aborted",
                    self.options.write_timeout,
                )
                self.ws.transport.abort()
                self.engine.connection_closed(None, "write timeout", now=self.now())
                self.engine.actions()  # nothing more can be written
                return

    async def close(self, action: CloseTransport) -> None:
        """The closing handshake. What the client sent and the session did not take
        (audio after an Error, say) is read and dropped meanwhile: websockets stops
        reading once its queue is full, and the client's close frame, behind that audio,
        would go unseen until the client gave up waiting (its close_timeout)."""

        async def discard() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in self.ws:
                    pass

        drain = asyncio.create_task(discard())
        try:
            await self.ws.close(action.code, action.reason)
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

    async def dispatch(self) -> bool:
        """Hand the engine's events to the recogniser. True once the client is gone."""
        engine = self.engine
        while (event := engine.next_event()) is not None:
            try:
                if isinstance(event, AudioReceived):
                    if self.recognizer_session is not None:
                        self.server._stats.frames += 1
                        await self.send(
                            await self.recognizer_session.feed(event.data, event.channel)
                        )
                        # Write the acknowledgement (queued when the event was taken) now,
                        # so acks follow the recogniser's pace.
                        await self.flush()
                elif isinstance(event, StartRequested):
                    await self.start(event)
                elif isinstance(event, StreamEnded):
                    await self.finish(None)
                elif isinstance(event, ChannelEnded):
                    await self.finish(event.channel, last=event.last)
                elif isinstance(event, RecognitionConfigChanged):
                    if self.recognizer_session is not None:
                        await self.send(await self.recognizer_session.reconfigure(event.config))
                elif isinstance(event, ForceEndOfUtteranceRequested):
                    if self.recognizer_session is not None:
                        outputs = await self.recognizer_session.force_end_of_utterance(
                            event.timestamp, event.channel
                        )
                        await self.send(outputs)
                elif isinstance(event, SpeakersRequested):
                    if event.final:
                        self.final_speakers = True
                    elif self.recognizer_session is not None:
                        engine.send_speakers(await self.recognizer_session.speakers())
                elif isinstance(event, SessionFailed):
                    logger.info("session failed: %s (%s)", event.error_type, event.reason)
                elif isinstance(event, ClientDisconnected):
                    return True
            except RecognizerError as exc:
                logger.info("recogniser refused: %s", exc)
                engine.send_error(exc.error_type, exc.reason)
            except LocalProtocolError as exc:
                # The session ended meanwhile (e.g. the client went away mid-feed).
                logger.debug("dropped output: %s", exc)
            except Exception:
                logger.exception("recogniser failed")
                engine.send_error("job_error", "the recogniser failed")
        return False

    async def start(self, event: StartRequested) -> None:
        stats = self.server._stats
        if self.max_sessions is not None and stats.sessions_active >= self.max_sessions:
            self.engine.send_error(
                "quota_exceeded",
                f"maximum number of concurrent sessions ({self.max_sessions}) reached",
            )
            return
        stats.sessions_active += 1
        stats.sessions_total += 1
        self.counted = True
        session = await self.server.recognizer.open_session(event.config)
        self.recognizer_session = session
        if self.engine.state is not ServerState.STARTING:  # the client left meanwhile
            return
        tc = event.config.transcription_config
        self.final_speakers = bool(
            tc.speaker_diarization_config and tc.speaker_diarization_config.get_speakers
        )
        self.engine.start_recognition(
            session_id=str(uuid.uuid4()),
            language_pack_info=session.language_pack_info,
            orchestrator_version="smproto-server",
            now=self.now(),
        )
        logger.info(
            "session started: language=%s sdk=%s recogniser=%s",
            tc.language,
            event.sdk,
            self.server.recognizer.name,
        )

    async def finish(self, channel: str | None, *, last: bool = True) -> None:
        session = self.recognizer_session
        if session is None:
            return
        await self.send(await session.end_of_stream(channel))
        if not last:
            return
        if self.final_speakers:
            self.engine.send_speakers(await session.speakers())
        if self.engine.state is ServerState.DRAINING:
            self.engine.end_of_transcript()

    async def send(self, outputs: Sequence[Output]) -> None:
        engine = self.engine
        for out in outputs:
            try:
                send_output(engine, out)
            except LocalProtocolError as exc:
                if engine.state not in (ServerState.STREAMING, ServerState.DRAINING):
                    return
                logger.debug("dropped %s: %s", type(out).__name__, exc)
