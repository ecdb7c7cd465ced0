"""Client sessions on threads, over ``websockets.sync``: a pump around ``ClientSession``.

    with connect(url, api_key=..., transcription_config=..., audio_format=...) as session:
        def send():
            for chunk in audio:
                session.send_audio(chunk)          # blocks while the in-flight window is full
            session.end_of_stream()
        threading.Thread(target=send).start()
        for event in session:                      # ends after EndOfTranscript
            ...

Everything that decides is the sans-IO session's. One ``threading.Condition`` guards it:
whichever thread has an input for it (websockets' thread that reads a connection, the
timer thread, an application thread with a command) gives it under the lock, hands the
actions out without blocking, and notifies the waiters. Only a connection's writer
thread writes to its socket, outside every lock: a server that stops reading blocks that
thread and nothing else. See ``docs/sync.md``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar, cast

from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSING, OPEN
from websockets.sync.client import ClientConnection as WebSocket
from websockets.sync.client import connect as ws_connect

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
from smproto.session import ClientSession, ReconnectPolicy, SessionError
from smproto_io.http import post
from smproto_io.log import redacting_logger
from smproto_io.session import SessionView, open_session
from smproto_io.ws import MessageHook

__all__ = ["Session", "connect", "transcribe"]

logger = logging.getLogger("smproto_sync")
# websockets logs handshake headers at DEBUG: through this logger, credentials are masked.
_WS_LOGGER = redacting_logger("smproto_sync.websockets")

SDK = "smproto-sync/0.1.0"
#: Close codes websockets sends when it fails a connection for what the peer sent.
_PEER_FAULTS = frozenset({1002, 1007, 1009})
_now = time.monotonic
_T = TypeVar("_T")
#: The most audio the writer frames and writes at a time.
_BATCH_BYTES = 64 * 1024


class _WebSocket(MessageHook, WebSocket):
    """websockets' threaded client connection, with a writer thread of its own.

    websockets writes under its protocol lock, in whichever thread sends, and its reading
    thread takes that lock after each read: a server that stops reading would stop the
    reading too. Here the session queues the engine's actions (:meth:`push`, never
    blocking), ``send_data`` (websockets' own frames: the handshake, pongs, the reply to
    a close) only queues bytes, and the writer thread frames the actions and writes
    everything in order, holding no lock while it writes. Each message goes to the
    session where the reading thread parses it (``MessageHook``).
    """

    def __init__(
        self, sock: socket.socket, protocol: Any, *, session: Session, cid: int, **kwargs: Any
    ):
        self.session, self.cid = session, cid
        self.early: list[str | bytes | None] | None = []  # None once the session has it
        self.lost = False  # websockets' reading thread has ended
        self.close_by: float | None = None  # once closing: when to give up on the handshake
        self._actions: list[Action] = []  # the engine's, for the writer to frame
        self._out: list[bytes] = []  # framed, for the writer to write
        self._ready = threading.Condition(threading.Lock())  # guards the two lists
        super().__init__(sock, protocol, **kwargs)
        self.writer = threading.Thread(
            target=self._write_loop, daemon=True, name=f"smproto_sync writer {cid}"
        )
        self.writer.start()
        self.attach(lambda message: session._on_message(self, message))
        session._constructed(self)

    def threads(self) -> list[threading.Thread]:
        return [t for t in (self.recv_events_thread, self.writer, self.keepalive_thread) if t]

    def push(self, actions: list[Action]) -> None:
        """Queue the engine's actions for the writer thread."""
        with self._ready:
            self._actions += actions
            self._ready.notify()

    def send_data(self) -> None:
        """Queue what the protocol has to send (called under websockets' lock)."""
        data = self.protocol.data_to_send()
        if data:
            with self._ready:
                self._out += data
                self._ready.notify()

    def close_socket(self) -> None:
        # A shutdown wakes a write blocked on a server that does not read; close() alone
        # would leave it blocked.
        with suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        super().close_socket()

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if type(event) is Frame and event.opcode is Opcode.CLOSE:
            self.session._closing(self)  # the connection must end within close_timeout

    def recv_events(self) -> None:
        try:
            super().recv_events()
        finally:
            self.lost = True
            with self._ready:
                self._ready.notify()
            self.session._lost(self)

    def _write_loop(self) -> None:
        ready, protocol = self._ready, self.protocol
        while True:
            with ready:
                while not self._actions and not self._out and not self.lost:
                    ready.wait()
                if self.lost:
                    return  # the socket is closed: what is left cannot be written
                # What was queued while the last batch was written, up to 64 KiB: one
                # write, and websockets' lock (which its reading thread needs) held briefly.
                queued, size, n = self._actions, 0, 0
                while n < len(queued) and size < _BATCH_BYTES:
                    action = queued[n]
                    size += len(action.data) if isinstance(action, SendBinary) else 100
                    n += 1
                actions, self._actions = queued[:n], queued[n:]
            if actions:
                with self.protocol_mutex:
                    for action in actions:
                        if protocol.state is not OPEN:
                            break  # closing: its end is reported when the reading ends
                        kind = type(action)
                        if kind is SendBinary:
                            protocol.send_binary(action.data)  # type: ignore[union-attr]
                        elif kind is SendText:
                            protocol.send_text(action.text.encode())  # type: ignore[union-attr]
                        else:  # CloseTransport: the last action of a connection
                            protocol.send_close(action.code, action.reason)  # type: ignore[union-attr]
                    self.send_data()
            with ready:
                data, self._out = self._out, []
            try:
                self._write(data)
            except OSError:
                self.close_socket()  # as websockets does when a write fails
                return
            if protocol.state is CLOSING and self.close_by is None:
                self.session._closing(self)  # e.g. websockets failed it (1002, 1007, 1009)

    def _write(self, data: list[bytes]) -> None:
        run: list[bytes] = []
        for chunk in [*data, None]:
            if chunk:
                run.append(chunk)
                continue
            view = memoryview(b"".join(run))  # one system call for the batch (if it fits)
            while view:
                view = view[self.socket.send(view) :]
            run = []
            if chunk is not None:  # b"": the end of the stream, as websockets does
                with suppress(OSError):
                    self.socket.shutdown(socket.SHUT_WR)


class Session(SessionView):
    """One transcription session, possibly over several connections.

    Created by :func:`connect`. Iterate it for events (``for event in session``); the
    iteration ends after ``EndOfTranscript`` and raises a
    :class:`smproto.session.SessionError` on failure. Its methods may be called from any
    thread: one thread may send while another iterates. :attr:`core` is the sans-IO
    session that decides everything; this object does its IO.
    """

    def __init__(self, core: ClientSession, transport: dict[str, Any]) -> None:
        #: The sans-IO session (guarded by the session's lock: read it, do not drive it).
        self.core = core
        self._transport = transport
        self._close_timeout: float = transport["close_timeout"]
        # One lock guards core and everything below; each kind of waiter has a condition
        # of its own on it, so that a message wakes only who can go on (the iterator for
        # an event, a sender for room, the timer for an earlier deadline), not every
        # waiting thread: at hundreds of sessions, needless wake-ups are most of the cost.
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the state, pausing, the connections
        self._readable = threading.Condition(lock)  # the iterator
        self._room = threading.Condition(lock)  # senders waiting for the window
        self._timer_cv = threading.Condition(lock)  # the timer thread
        self._senders = 0  # waiting on _room
        self._sockets: dict[int, _WebSocket] = {}  # open, until websockets' thread ends
        self._opening: dict[int, _WebSocket | None] = {}  # a key or an open under way
        self._closing_ws: set[_WebSocket] = set()  # closing: aborted at close_by
        self._all: list[_WebSocket] = []
        self._threads: list[threading.Thread] = []
        self._state = core.state
        self._paused = False
        self._armed = math.inf  # the deadline the timer thread sleeps until
        self._stopped = False

    # ------------------------------------------------------------------ commands

    def send_audio(self, chunk: bytes) -> int:
        """Send a chunk of audio; blocks while the in-flight window is full (or while a
        connection is being made). Returns the frame's ``seq_no`` on its connection."""
        return self._command("send_audio", lambda: self.core.send_audio(chunk, now=_now()))

    def send_channel_audio(self, channel: str, chunk: bytes) -> int:
        """Send a chunk of one channel's audio (multichannel sessions)."""
        send = functools.partial(self.core.send_channel_audio, channel, chunk)
        return self._command("send_audio", lambda: send(now=_now()))

    def end_of_stream(self) -> None:
        """No more audio. Transcripts keep coming until ``EndOfTranscript``."""
        self._command("end_of_stream", lambda: self.core.end_of_stream(now=_now()))

    def end_of_channel(self, channel: str) -> None:
        """No more audio on ``channel``."""
        self._command("end_of_channel", lambda: self.core.end_of_channel(channel))

    def set_recognition_config(self, *args: Any, **changes: Any) -> TranscriptionConfig:
        """Change settings mid-session (see ``ClientConnection.set_recognition_config``)."""
        apply = functools.partial(self.core.set_recognition_config, *args, **changes)
        return self._command("set_recognition_config", apply)

    def force_end_of_utterance(
        self, timestamp: float | None = None, *, channel: str | None = None
    ) -> None:
        """Ask the server to finalise what it has now."""
        apply = functools.partial(self.core.force_end_of_utterance, timestamp, channel=channel)
        self._command("force_end_of_utterance", apply)

    def get_speakers(self, final: bool = False) -> None:
        """Ask for the speakers identified so far (answered by a ``SpeakersResult`` event)."""
        self._command("get_speakers", lambda: self.core.get_speakers(final))

    def close(self) -> None:
        """Abort the session now (transcripts not yet received are lost); returns once
        the connections are closed (at most ``close_timeout``)."""
        self._command("close", lambda: self.core.close(now=_now()))
        self._settle()

    def _command(self, name: str, apply: Callable[[], _T]) -> _T:
        """Wait until the session can take command ``name`` (room in the window, a
        connection made: the check raises when it never can), then apply it."""
        with self._cond:
            core = self.core
            if name == "send_audio":
                while not core.check_send_audio():
                    self._senders += 1
                    try:
                        self._room.wait()
                    finally:
                        self._senders -= 1
            else:
                while not core.check_command(name):
                    self._cond.wait()
            result = apply()
            self._after()
            return result

    # ------------------------------------------------------------------ events

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        with self._cond:
            core = self.core
            while True:
                paused = core.reading_paused
                event = core.next_event()
                if event is not None:
                    if paused:
                        self._after()  # what was held may have been fed; reading may resume
                    return event
                if core.finished:
                    core.raise_failure()
                    raise StopIteration
                self._readable.wait()

    # ------------------------------------------------------------------ the pump

    def _after(self) -> None:
        """After the session took an input (under the lock): hand its actions out, and
        wake the waiters if anything they wait for may have changed."""
        core = self.core
        if core.has_actions:
            self._perform(core.actions())
        if core.has_events:
            self._readable.notify()
        if self._senders and core.wake_sender:
            self._room.notify_all()
        state = core.state
        if state is not self._state or core.reading_paused is not self._paused:
            self._state, self._paused = state, core.reading_paused
            self._wake_all()
        deadline = core.get_timer()
        if deadline is not None and deadline < self._armed:
            self._timer_cv.notify()

    def _wake_all(self) -> None:
        """Wake every waiting thread (under the lock): the state changed, or the end."""
        for condition in (self._cond, self._readable, self._room, self._timer_cv):
            condition.notify_all()

    def _perform(self, actions: list[Any]) -> None:
        for action in actions:
            cid = action.connection
            if type(action) is Transmit:
                ws = self._sockets.get(cid)
                if ws is not None:
                    ws.push(action.actions)
                    if action.actions and type(action.actions[-1]) is CloseTransport:
                        self._closing(ws)
            elif isinstance(action, OpenConnection | RequestTemporaryKey):
                self._opening[cid] = None
                target = self._open if isinstance(action, OpenConnection) else self._key
                self._start_thread(target, action, name=f"smproto_sync opener {cid}")
            elif isinstance(action, AbortConnection):
                pending = self._opening.pop(cid, None)
                if pending is not None:
                    pending.close_socket()  # its handshake fails at once
                ws = self._sockets.get(cid)
                if ws is not None:
                    self._close(ws, 1000, "")

    def _start_thread(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _close(self, ws: _WebSocket, code: int, reason: str) -> None:
        """Begin the closing handshake of ``ws`` (it gets ``close_timeout`` to end)."""
        ws.push([CloseTransport(code, reason)])
        self._closing(ws)

    def _closing(self, ws: _WebSocket) -> None:
        """``ws`` began its closing handshake: it gets ``close_timeout`` to end."""
        with self._cond:
            if ws.close_by is None and not ws.lost:
                ws.close_by = _now() + self._close_timeout
                self._closing_ws.add(ws)
                self._timer_cv.notify()  # the timer thread enforces it
                self._cond.notify_all()  # a reader paused on it goes on

    def _run_timer(self) -> None:
        """The timer thread: sleeps until the session's deadline (or a closing
        connection's), woken whenever the deadline moves earlier."""
        cond, core = self._timer_cv, self.core
        with cond:
            while not self._stopped:
                now = _now()
                deadline = core.get_timer()
                if deadline is not None and deadline <= now:
                    core.handle_timer(now=now)
                    self._after()
                    continue
                closes = math.inf
                for ws in list(self._closing_ws):
                    close_by = ws.close_by or now
                    if close_by <= now:
                        self._closing_ws.discard(ws)
                        ws.close_socket()  # its closing handshake took too long
                    closes = min(closes, close_by)
                self._armed = min(closes, math.inf if deadline is None else deadline)
                cond.wait(None if self._armed == math.inf else self._armed - now)
            self._armed = math.inf

    # ------------------------------------------------------------------ connections

    def _key(self, action: RequestTemporaryKey) -> None:
        cid, timeout = action.connection, self._transport["open_timeout"]
        try:
            status, body = post(action.request, timeout)
            report = functools.partial(self.core.key_received, cid, status, body)
        except OSError as exc:
            report = functools.partial(self.core.key_failed, cid, str(exc) or type(exc).__name__)
        with self._cond:
            self._opening.pop(cid, None)
            report(now=_now())
            self._after()

    def _open(self, action: OpenConnection) -> None:
        cid, options, core = action.connection, self._transport, self.core
        factory = functools.partial(_WebSocket, session=self, cid=cid)
        try:
            ws = ws_connect(
                action.url,
                create_connection=cast("type[WebSocket]", factory),
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
                legacy=True,  # the session owns the connection's lifetime
            )
        except Exception as exc:  # never a bare library error: the session classifies it
            failed: dict[str, Any] = {
                "reason": str(exc) or str(exc.__cause__ or type(exc).__name__)
            }
            if isinstance(exc, InvalidStatus):
                response = exc.response
                failed = {
                    "reason": "",
                    "status": response.status_code,
                    "body": bytes(response.body),
                }
            elif isinstance(exc, TimeoutError):
                failed = {"reason": "timeout", "timed_out": True}
            with self._cond:
                self._opening.pop(cid, None)
                core.open_failed(cid, now=_now(), **failed)
                self._after()
            return
        assert isinstance(ws, _WebSocket)
        with self._cond:
            if cid not in self._opening or self._stopped:
                ws.close_socket()  # given up meanwhile
                return
            del self._opening[cid]
            if ws.request is not None and "Authorization" in ws.request.headers:
                del ws.request.headers["Authorization"]  # no repr of ws may show the key
            self._sockets[cid] = ws
            early, ws.early = ws.early or [], None
            core.connection_opened(cid, now=_now())
            for message in early:
                self._feed(ws, message)
            if ws.lost:  # it ended before the session had it
                self._report_lost(ws)
            self._after()

    def _constructed(self, ws: _WebSocket) -> None:
        """A connection object exists (its handshake is about to start): an abort of
        the opening can now stop it."""
        with self._cond:
            self._all = [w for w in self._all if any(t.is_alive() for t in w.threads())]
            self._all.append(ws)
            if ws.cid in self._opening and not self._stopped:
                self._opening[ws.cid] = ws
            else:
                ws.close_socket()

    def _on_message(self, ws: _WebSocket, message: str | bytes | None) -> None:
        """A message from the server, in websockets' thread that reads ``ws``."""
        with self._cond:
            if ws.early is not None:
                ws.early.append(message)  # the opening thread has not handed it over yet
                return
            if self._sockets.get(ws.cid) is not ws:
                return
            self._feed(ws, message)
            self._after()
            # A flood the application does not read: stop reading until it catches up
            # (TCP pushes back on the server), so memory stays bounded.
            while self.core.reading_paused and self._sockets.get(ws.cid) is ws:
                if ws.close_by is not None or self._stopped:
                    break
                self._cond.wait()

    def _feed(self, ws: _WebSocket, message: str | bytes | None) -> None:
        if message is None:  # text that is not UTF-8: what websockets would fail it for
            reason = "the server sent text that is not UTF-8"
            self.core.connection_closed(ws.cid, 1007, reason, now=_now())
            self._close(ws, 1007, reason)
        else:
            self.core.receive_message(ws.cid, message, now=_now())

    def _lost(self, ws: _WebSocket) -> None:
        """websockets' thread that read ``ws`` has ended: the connection is gone."""
        with self._cond:
            if ws.early is None and self._sockets.get(ws.cid) is ws:
                self._report_lost(ws)
                self._after()
            self._closing_ws.discard(ws)
            self._cond.notify_all()

    def _report_lost(self, ws: _WebSocket) -> None:
        del self._sockets[ws.cid]
        ws.detach()
        close, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if close is None and sent is not None and sent.code in _PEER_FAULTS:
            close = sent  # websockets failed the connection for what it received
        code, reason = (close.code, close.reason) if close is not None else (None, "")
        self.core.connection_closed(ws.cid, code, reason, now=_now())

    # ------------------------------------------------------------------ the end

    def _start(self) -> None:
        """Start the timer thread, ask for the first connection and wait for
        RecognitionStarted (errors raise)."""
        self._start_thread(self._run_timer, name="smproto_sync timer")
        with self._cond:
            self.core.start(now=_now())
            self._after()
            while not self.core.ready:
                self._cond.wait()
            if self.core.state is SessionState.FAILED:
                self.core.raise_failure()

    def _settle(self) -> None:
        """Give the connections ``close_timeout`` to close, abort what is left, stop the
        timer, and wait (briefly) for every thread of the session to end."""
        end = _now() + self._close_timeout
        with self._cond:
            while self._sockets and (left := end - _now()) > 0:
                self._cond.wait(left)
            for ws in [*self._sockets.values(), *self._opening.values()]:
                if ws is not None:
                    ws.close_socket()
            self._stopped = True
            self._wake_all()
            threads = [*self._threads, *(t for ws in self._all for t in ws.threads())]
        end = _now() + 1.0  # an opening still in its TCP connect ends by its open_timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - _now()))

    def _finish(self, aborted: bool) -> None:
        """Leave the ``connect()`` block: abort if the session is not over, close what
        is open."""
        with self._cond:
            core = self.core
            if not core.finished:
                logger.debug("session left before EndOfTranscript: closing")
            if aborted or not core.finished:
                core.close(now=_now())
                self._after()
        self._settle()


@contextmanager
def connect(
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
) -> Iterator[Session]:
    """Open a transcription session; on entry, recognition has started.

    The arguments are :func:`smproto_asyncio.connect`'s, with the same defaults.

    Args:
        url: the real-time endpoint (``wss://eu2.rt.speechmatics.com/v2`` by default; a
            local ``smproto serve`` is ``ws://127.0.0.1:PORT/v2``).
        api_key: the key; from ``SPEECHMATICS_API_KEY`` when not given. ``None`` and no
            environment variable connects without credentials (local servers).
        temporary_key: exchange the key for a short-lived one (``temporary_key_ttl``
            seconds) at ``management_url`` before each connection.
        extra_headers: more handshake headers (they can never set ``Authorization``).
        ssl: the TLS context for ``wss://`` (default: verify certificates).
        reconnect: ``True`` (the default policy), ``False``, or a
            :class:`smproto.session.ReconnectPolicy` (retries, retry budget, rollover).
        open_timeout, close_timeout: WebSocket opening (with the key) and closing;
            leaving the block waits ``close_timeout`` at most for the connections to close.
        recognition_started_timeout, ack_timeout, drain_timeout: the engine's timers.
        ping_interval, ping_timeout: keepalive; a half-open connection is detected after
            at most their sum and treated as a lost connection.
        max_audio_in_flight_seconds: the flow-control window ``send_audio`` honours.
        retain_audio_seconds: the most audio kept for replay after a failure.
        event_queue_size: how many unread events may wait before the session drops the
            ones a late reader does not need (counted in ``Session.dropped_events``).
        max_message_size: the largest message accepted from the server.
        max_session_seconds: roll over to a new connection after this long on one.

    Raises:
        smproto.session.SessionError: a subclass saying why the session could not start,
            and from the block, why it failed (never a bare library exception).
    """
    # Every argument (no local is defined above): the session's and the transport's.
    core, transport = open_session(SDK, locals())
    session = Session(core, transport)
    try:
        session._start()
        yield session
    except BaseException:
        session._finish(aborted=True)
        raise
    session._finish(aborted=False)
    if core.failure is not None and not core.failure_reported:
        core.raise_failure()


def transcribe(
    source: str | os.PathLike[str] | bytes | Iterable[bytes],
    *,
    url: str = DEFAULT_RT_URL,
    transcription_config: TranscriptionConfig | None = None,
    audio_format: AudioFormat | None = None,
    chunk_seconds: float = 0.1,
    realtime: bool = False,
    **options: Any,
) -> str:
    """Transcribe a WAV file (a path or its bytes), or an iterable of raw chunks in
    ``audio_format``, and return the final transcript's text.

    A WAV file's own format is used. A thread sends the audio (``realtime`` paces it at
    real time; otherwise as fast as flow control allows) while this one reads the
    events. Other keyword arguments go to :func:`connect`. An exception raised by the
    iterable comes out of this call.
    """
    config = transcription_config or TranscriptionConfig(language="en")
    chunks: Iterable[bytes]
    if isinstance(source, str | os.PathLike | bytes):
        data = Path(source).read_bytes() if not isinstance(source, bytes) else source
        audio_format, pcm = wav_to_pcm(data)
        chunks = list(pcm_chunks(pcm, audio_format, chunk_seconds))
    else:
        chunks = source
    fmt = audio_format or AudioFormat()
    assembler = TranscriptAssembler()
    problem: list[BaseException] = []
    with connect(url, transcription_config=config, audio_format=fmt, **options) as session:
        stop = threading.Event()

        def send() -> None:
            bps, start, sent = fmt.bytes_per_second, _now(), 0
            try:
                for chunk in chunks:
                    if stop.is_set():
                        return
                    session.send_audio(chunk)
                    sent += len(chunk)
                    if realtime and bps and (ahead := start + sent / bps - _now()) > 0:
                        stop.wait(ahead)
                session.end_of_stream()
            except SessionError:
                pass  # the iteration raises it
            except BaseException as exc:
                if not stop.is_set():  # not the session closing under it
                    problem.append(exc)
                    session.close()  # ends the iteration

        sender = threading.Thread(target=send, daemon=True, name="smproto_sync sender")
        sender.start()
        try:
            for event in session:
                assembler.add(event)
        except BaseException:
            stop.set()
            session.close()  # wakes a sender waiting for room
            sender.join(1.0)  # a sender blocked in the iterable ends at its next chunk
            raise
        stop.set()
        sender.join()
    if problem:
        raise problem[0]
    return assembler.final_text
