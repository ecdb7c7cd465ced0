"""The aiohttp driver: a pump around :class:`smproto.session.ClientSession`.

Everything that decides (which connection to open, whether and when to retry, resuming,
rolling over, which error a stream ends with) is the sans-IO session's, as in every
smproto driver. This module does its IO over aiohttp, LiveKit's HTTP client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final

import aiohttp

from smproto import LocalProtocolError, SendBinary, SendText
from smproto.actions import AbortConnection, Action, OpenConnection, RequestTemporaryKey, Transmit
from smproto.events import Event
from smproto.session import ClientSession, SessionError

from ._audio import END, FLUSH, AudioSource, Marker
from .log import logger

__all__ = ["Pump"]

#: The largest message accepted from the server.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
#: The longest a closing handshake may take, and the end of a stream waits for them;
#: after a failure, the end waits less, so that its error comes sooner.
CLOSE_TIMEOUT: Final = 5.0
FAILED_CLOSE_TIMEOUT: Final = 1.0
#: Seconds between keepalive pings.
HEARTBEAT: Final = 20.0


class _Conn:
    """One connection's IO: its socket once open, and what is still to be written."""

    __slots__ = ("outbox", "task", "writer", "ws")

    def __init__(self) -> None:
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None  # the key request, the opening
        self.writer: asyncio.Task[None] | None = None
        self.outbox: deque[Action] = deque()


class Pump:
    """Does the IO of one :class:`~smproto.session.ClientSession` (not started yet):
    opens the connections and makes the key requests it asks for with ``http``, feeds it
    what arrives, writes what it asks (in order, per connection), keeps one timer at its
    deadline, gives it ``source``'s audio, flushes and end as soon as it can take them,
    and calls ``on_event`` with each of its events (synchronously, in order).
    ``ssl_context`` is for ``wss://`` URLs (``None``: aiohttp's verifying default);
    ``heartbeat``, the seconds between keepalive pings (aiohttp waits half as long for
    the pong); ``close_timeout``, the longest a closing handshake may take.
    """

    def __init__(
        self,
        core: ClientSession,
        http: aiohttp.ClientSession,
        source: AudioSource,
        on_event: Callable[[Event], None],
        *,
        ssl_context: ssl.SSLContext | None = None,
        heartbeat: float | None = HEARTBEAT,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        #: The sans-IO session.
        self.core = core
        self._http, self._source, self._on_event, self._ssl = http, source, on_event, ssl_context
        self._heartbeat, self._close_timeout = heartbeat, close_timeout
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time
        self._conns: dict[int, _Conn] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the feeder, waiting for the session
        self._finished = asyncio.Event()
        self._error: BaseException | None = None  # a task's (the source's, say)
        self._held: bytes | Marker | None = None  # taken from the source, not yet given
        self._dropping = False
        #: Seconds of the source's audio given to the session (each second once).
        self.audio_seconds_sent = 0.0
        self._bps = float(core.connection.audio_format.bytes_per_second or 32_000)

    def __repr__(self) -> str:
        return f"<Pump {self.core!r}>"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A task that raised (the source, say) ends the stream with its exception."""
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None or self._error is not None:
            return
        self._error = exc
        self.core.close(now=self._now())
        self._finished.set()

    async def run(self) -> None:
        """Run the session until it ends. The first call starts it; a call once it has
        failed (LiveKit running the stream again) raises the same failure at once.

        Raises:
            SessionError: why the session failed.
        """
        core = self.core
        if self._feeder is None:
            core.start(now=self._now())
            self._feeder = self._spawn(self._feed())
            self._after()
        try:
            await self._finished.wait()
        finally:
            if not core.finished:  # cancelled: LiveKit is closing the stream
                core.close(now=self._now())
                self._after()
            await self._settle()
        if self._error is not None:
            raise self._error
        core.raise_failure()

    # ------------------------------------------------------------------ the pump

    def _after(self) -> None:
        """After the session took an input: do what it asks, deliver its events, wake
        the feeder if it can go on, keep the timer at the session's deadline."""
        core = self.core
        if core.has_actions:
            for action in core.actions():
                self._perform(action)
        while (event := core.next_event()) is not None:
            self._on_event(event)
        wake = self._wake
        if wake is not None and not wake.done() and core.wake_sender:
            wake.set_result(None)
        if core.finished:
            self._finished.set()
        deadline, timer = core.get_timer(), self._timer
        # Lazy: moved only for an earlier deadline (one that fires early does nothing).
        if deadline is not None and (timer is None or deadline < timer.when()):
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(now=self._now())
        self._after()

    def _perform(self, action: object) -> None:
        if type(action) is Transmit:
            conn = self._conns.get(action.connection)
            if conn is not None and conn.ws is not None:
                conn.outbox.extend(action.actions)
                if conn.writer is None:
                    conn.writer = self._spawn(self._write(conn, conn.ws))
        elif isinstance(action, OpenConnection | RequestTemporaryKey):
            coro = self._open(action) if isinstance(action, OpenConnection) else self._key(action)
            self._conns.setdefault(action.connection, _Conn()).task = self._spawn(coro)
        elif isinstance(action, AbortConnection) and (conn := self._conns.get(action.connection)):
            if conn.ws is None and conn.task is not None:
                conn.task.cancel()
                del self._conns[action.connection]
            elif conn.ws is not None and conn.writer is None:
                conn.writer = self._spawn(conn.ws.close())

    async def _write(self, conn: _Conn, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Write ``conn``'s outbox in order; a ``CloseTransport`` is its last action."""
        try:
            while conn.outbox:
                action = conn.outbox.popleft()
                if type(action) is SendBinary:
                    await ws.send_bytes(action.data)
                elif type(action) is SendText:
                    await ws.send_str(action.text)
                else:
                    conn.outbox.clear()
                    await ws.close(code=action.code, message=action.reason.encode())  # type: ignore[union-attr]
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            conn.outbox.clear()  # the reader reports how the connection ended
        finally:
            conn.writer = None

    # ------------------------------------------------------------------ connections

    async def _key(self, action: RequestTemporaryKey) -> None:
        cid, request = action.connection, action.request
        try:
            async with self._http.post(
                request.url, data=request.body, headers=request.header_dict()
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.core.key_failed(cid, str(exc) or type(exc).__name__, now=self._now())
        else:
            self.core.key_received(cid, status, body, now=self._now())
        self._after()

    async def _open(self, action: OpenConnection) -> None:
        cid, url, core = action.connection, action.url, self.core
        try:
            ws = await self._http.ws_connect(
                url,
                headers=list(action.headers),
                ssl=self._ssl if self._ssl is not None and url.startswith("wss:") else True,
                heartbeat=self._heartbeat,
                max_msg_size=MAX_MESSAGE_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self._close_timeout),
            )
        except aiohttp.WSServerHandshakeError as exc:  # an HTTP answer, or a bad upgrade
            status = exc.status if exc.status >= 400 else None
            core.open_failed(cid, exc.message, now=self._now(), status=status)
        except TimeoutError:
            core.open_failed(cid, "timeout", now=self._now(), timed_out=True)
        except (aiohttp.ClientError, OSError) as exc:
            core.open_failed(cid, str(exc) or type(exc).__name__, now=self._now())
        else:
            self._conns.setdefault(cid, _Conn()).ws = ws
            core.connection_opened(cid, now=self._now())
            self._after()
            await self._read(cid, ws)
            return
        self._after()

    async def _read(self, cid: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Feed the session every message of connection ``cid``, then how it ended."""
        core, text, binary = self.core, aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        yielded = self._now()
        while True:
            message = await ws.receive()  # no suspension while messages are buffered
            kind = message.type
            if kind is text or kind is binary:
                now = self._now()
                core.receive_message(cid, message.data, now=now)
                self._after()
                # A server that floods must not starve the timer (its deadline is checked
                # here too) nor the other tasks of the loop (a yield every 5 ms).
                if (deadline := core.get_timer()) is not None and deadline <= now:
                    self._on_timer()
                if now - yielded > 0.005:
                    await asyncio.sleep(0)
                    yielded = self._now()
                continue
            if kind is aiohttp.WSMsgType.CLOSE:  # the server's closing handshake
                code, reason = message.data, message.extra or ""
            elif kind is aiohttp.WSMsgType.ERROR:  # aiohttp failed it (1007, 1009; no pong)
                error = message.data
                code = error.code if isinstance(error, aiohttp.WebSocketError) else None
                reason = str(error) or type(error).__name__
            else:  # CLOSING, CLOSED: we are closing it, or it broke (no close code)
                code, reason = None, ""
            core.connection_closed(cid, code, reason, now=self._now())
            self._conns.pop(cid, None)  # its writer may still be closing it: a task of ours
            self._after()
            return

    # ------------------------------------------------------------------ the source

    async def _feed(self) -> None:
        """Give the session the source's audio, flushes and end when it can take them."""
        core = self.core
        while True:
            item = self._held
            if item is None:
                item = self._held = await self._source.next()
            try:
                if item is END:
                    core.end_of_stream(now=self._now())
                    self._after()
                    return
                ready = (
                    core.check_command("force_end_of_utterance")
                    if item is FLUSH
                    else core.check_send_audio()
                )
                if not ready:  # a connection is being made, or the window is full
                    self._wake = self._loop.create_future()
                    await self._wake
                    continue
                if isinstance(item, bytes):
                    core.send_audio(item, now=self._now())
                    self.audio_seconds_sent += len(item) / self._bps
                else:
                    core.force_end_of_utterance()
            except LocalProtocolError:
                if core.finished:
                    return
                if isinstance(item, bytes) and not self._dropping:
                    # The server ended the stream (duration limit): the rest is not sent.
                    self._dropping = True
                    logger.warning("the stream has ended: further audio is not transcribed")
            except SessionError:
                return  # the session failed: run() raises it
            self._held = None
            self._after()

    async def _settle(self) -> None:
        """Stop the feeder and the timer; let every connection close (at most
        ``close_timeout``, ``FAILED_CLOSE_TIMEOUT`` after a failure), then abort the rest."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._feeder is not None:
            self._feeder.cancel()
        for conn in self._conns.values():
            if conn.ws is None and conn.task is not None:
                conn.task.cancel()
            elif conn.ws is not None and not conn.ws.closed:
                self._spawn(conn.ws.close())  # cancelled after the timeout, it aborts
        self._conns.clear()
        if self._tasks:
            timeout = self._close_timeout
            if self.core.failure:
                timeout = min(timeout, FAILED_CLOSE_TIMEOUT)
            await asyncio.wait(set(self._tasks), timeout=timeout)
        rest = set(self._tasks)
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
