"""Hostile peers for the reliability tests: servers that misbehave towards our client
drivers, and clients that misbehave towards our server. Everything binds to 127.0.0.1.

**Hostile servers** (:class:`HostileServer`, run by :class:`HostileThread` in a loop
thread of their own, like ``tests.drivers.netutil.ServerThread``, so that trio tests can
use them too) are raw ``websockets.asyncio.server`` servers. They take the client's
``StartRecognition``, answer ``RecognitionStarted`` and acknowledge the first
``after_frames`` audio frames like a real server, then do their one bad thing
(:class:`Behaviour`): never start, never acknowledge, acknowledge beyond what was sent,
send a huge message (one 20 MB frame, or 20 MB in 64 KiB fragments), flood ``Info``
messages for ever, send garbage binary frames, close with an odd code, abort the TCP
connection with no close frame, or (:attr:`Behaviour.NO_UPGRADE`) accept TCP
connections and never answer the HTTP upgrade. They are cheap in memory themselves (the
huge message is written from one reused 64 KiB block), so that ``tracemalloc`` measures
the client, not them.

**Hostile clients** (:class:`RawClient`) speak WebSocket over a bare asyncio stream with
the ``websockets`` sans-IO protocol, so that they read only when they choose to: one can
flood audio and never read a byte of what the server says. The scenario functions
(:func:`flood_audio`, :func:`oversized_start`, :func:`enormous_vocab`,
:func:`goes_idle`, :func:`never_starts`) each run one against a server URL and report
what the server did.

Also here: :class:`MemoryProbe` (``tracemalloc`` peak growth), and for the TLS tests
:class:`TlsFront` (``wss://`` in front of a local server) and
:func:`self_signed_certificate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.uri import parse_uri

from tests.drivers.netutil import LoopThread

__all__ = [
    "Behaviour",
    "HostileServer",
    "HostileThread",
    "MemoryProbe",
    "RawClient",
    "ServerReply",
    "TlsFront",
    "enormous_vocab",
    "flood_audio",
    "goes_idle",
    "never_starts",
    "oversized_start",
    "self_signed_certificate",
    "start_recognition",
]

MiB = 1024 * 1024

RECOGNITION_STARTED = json.dumps(
    {
        "message": "RecognitionStarted",
        "id": "hostile-session",
        "language_pack_info": {"word_delimiter": " ", "language_description": "English"},
    }
)
INFO = json.dumps({"message": "Info", "type": "flood", "reason": "endless information"})
BLOCK = 64 * 1024  # the huge message is written in blocks of this size


class Behaviour(enum.StrEnum):
    """What a :class:`HostileServer` does wrong."""

    #: Reads everything, answers nothing: no ``RecognitionStarted``.
    NO_RECOGNITION_STARTED = "no_recognition_started"
    #: Starts recognition, then never acknowledges audio (after ``after_frames``).
    NEVER_ACK = "never_ack"
    #: Acknowledges a frame 1000 beyond the last one received (more than any window).
    ACK_TOO_FAR = "ack_too_far"
    #: Sends one text frame of ``huge_bytes`` (20 MB), written raw in 64 KiB blocks.
    HUGE_MESSAGE = "huge_message"
    #: Sends one text message of ``huge_bytes`` in 64 KiB fragments (continuation frames).
    HUGE_FRAGMENTED = "huge_fragmented"
    #: Sends ``Info`` messages as fast as the client takes them, for ever (and no more acks).
    INFO_FLOOD = "info_flood"
    #: Sends a binary frame of random bytes.
    GARBAGE_BINARY = "garbage_binary"
    #: Sends a text frame that is not JSON.
    GARBAGE_TEXT = "garbage_text"
    #: Closes the WebSocket with ``close_code``.
    CLOSE = "close"
    #: Stops reading (the client's writes fill TCP's buffers), then closes with
    #: ``close_code``: the client cannot even send the reply to the close.
    STOP_READING_THEN_CLOSE = "stop_reading_then_close"
    #: Aborts the TCP connection: no close frame, no FIN handshake.
    ABORT = "abort"
    #: Accepts the TCP connection and never answers the HTTP upgrade.
    NO_UPGRADE = "no_upgrade"


@dataclass
class HostileServer:
    """One hostile server on 127.0.0.1 (start it with :meth:`HostileThread.serve`)."""

    behaviour: Behaviour
    #: Audio frames acknowledged normally before the misbehaviour starts.
    after_frames: int = 3
    #: Seconds to wait, at the first frame after ``after_frames``, before misbehaving
    #: (so that the client has read the acknowledgements before, say, an abort).
    delay: float = 0.0
    #: The close code of :attr:`Behaviour.CLOSE`.
    close_code: int = 1002
    #: The size of the huge message.
    huge_bytes: int = 20 * MiB
    port: int = 0
    #: TCP connections accepted.
    connections: int = 0
    #: Messages sent by the flood, and bytes of the huge message written.
    flood_messages: int = 0
    huge_written: int = 0
    #: What :attr:`Behaviour.NO_UPGRADE` received (the first 64 KiB).
    received: bytearray = field(default_factory=bytearray, repr=False)
    _server: Server | None = field(default=None, repr=False)
    _raw: asyncio.Server | None = field(default=None, repr=False)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    async def start(self) -> None:
        if self.behaviour is Behaviour.NO_UPGRADE:
            self._raw = await asyncio.start_server(self._silent, "127.0.0.1", 0)
            self.port = self._raw.sockets[0].getsockname()[1]
            return
        self._server = await ws_serve(
            self._handle,
            "127.0.0.1",
            0,
            ping_interval=None,  # the client's pings are still answered
            max_size=MiB,
            close_timeout=1.0,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.transport.abort()
        if self._raw is not None:
            self._raw.close()
        if self._server is not None:
            self._server.close(close_connections=False)
            for connection in list(self._server.connections):
                connection.transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # ------------------------------------------------------------------ behaviours

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the upgrade request (and anything else) and never answer."""
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                if len(self.received) < BLOCK:
                    self.received += data

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._misbehave(ws)
        except ConnectionClosed:
            pass
        finally:
            self._tasks.discard(task)

    async def _misbehave(self, ws: ServerConnection) -> None:
        behaviour = self.behaviour
        await ws.recv()  # StartRecognition
        if behaviour is Behaviour.NO_RECOGNITION_STARTED:
            async for _ in ws:
                pass
            return
        await ws.send(RECOGNITION_STARTED)
        frames = 0
        async for message in ws:
            if isinstance(message, str):
                continue  # EndOfStream and the like: never answered
            frames += 1
            if frames <= self.after_frames:
                await ws.send(json.dumps({"message": "AudioAdded", "seq_no": frames}))
                continue
            if frames > self.after_frames + 1:
                continue  # the bad thing was done on the first frame after after_frames
            if self.delay:
                await asyncio.sleep(self.delay)
            if behaviour is Behaviour.NEVER_ACK:
                pass
            elif behaviour is Behaviour.ACK_TOO_FAR:
                await ws.send(json.dumps({"message": "AudioAdded", "seq_no": frames + 1000}))
            elif behaviour is Behaviour.HUGE_MESSAGE:
                self._spawn(self._huge_frame(ws))
            elif behaviour is Behaviour.HUGE_FRAGMENTED:
                self._spawn(self._huge_fragments(ws))
            elif behaviour is Behaviour.INFO_FLOOD:
                self._spawn(self._flood(ws))
            elif behaviour is Behaviour.GARBAGE_BINARY:
                await ws.send(os.urandom(1000))
            elif behaviour is Behaviour.GARBAGE_TEXT:
                await ws.send("\x00not json at all {{{")
            elif behaviour is Behaviour.CLOSE:
                await ws.close(self.close_code, "hostile close")
                return
            elif behaviour is Behaviour.STOP_READING_THEN_CLOSE:
                ws.transport.pause_reading()
                await asyncio.sleep(0.2)  # the client writes on, into full buffers
                await ws.close(self.close_code, "hostile close")
                return
            elif behaviour is Behaviour.ABORT:
                ws.transport.abort()
                return

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flood(self, ws: ServerConnection) -> None:
        """Info messages as fast as the client reads them, until it goes away."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(INFO)  # waits while the socket's buffer is full
                self.flood_messages += 1

    async def _huge_fragments(self, ws: ServerConnection) -> None:
        block = "x" * BLOCK

        def fragments() -> Iterator[str]:
            yield '{"message":"Info","type":"huge","reason":"'
            for _ in range(self.huge_bytes // BLOCK):
                self.huge_written += BLOCK
                yield block
            yield '"}'

        with contextlib.suppress(ConnectionClosed):
            await ws.send(fragments())

    async def _huge_frame(self, ws: ServerConnection) -> None:
        """One unmasked text frame of ``huge_bytes``, written straight to the socket
        (a 64-bit length in the header, then the same block over and over)."""
        transport = ws.transport
        transport.write(struct.pack("!BBQ", 0x81, 127, self.huge_bytes))
        block = memoryview(b"x" * BLOCK)
        with contextlib.suppress(RuntimeError):  # the client closed: write() after EOF
            while self.huge_written < self.huge_bytes and not transport.is_closing():
                transport.write(block)
                self.huge_written += BLOCK
                while transport.get_write_buffer_size() > 4 * BLOCK:
                    if transport.is_closing():
                        return
                    await asyncio.sleep(0.001)


class HostileThread:
    """Hostile servers in a loop thread of their own (usable from asyncio and trio)."""

    def __init__(self) -> None:
        self.loop_thread = LoopThread()
        self.servers: list[HostileServer] = []

    def serve(self, behaviour: Behaviour, **options: Any) -> HostileServer:
        server = HostileServer(behaviour, **options)
        self.loop_thread.run(server.start())
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                self.loop_thread.run(server.stop(), timeout=10)
        self.loop_thread.stop()


# --------------------------------------------------------------------------- TLS


@dataclass
class TlsFront:
    """A TLS-terminating TCP proxy on 127.0.0.1 in front of a plain server: ``wss://``
    to a local server, with whatever certificate ``context`` holds."""

    target_port: int
    context: ssl.SSLContext
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/v2"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def self_signed_certificate(folder: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for 127.0.0.1 (subjectAltName IP), made now: with the
    ``cryptography`` package if it is installed, otherwise the ``openssl`` command.
    ``None`` when neither is available."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        import cryptography  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        _self_signed_cryptography(cert, key)
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _self_signed_cryptography(cert_path: Path, key_path: Path) -> None:  # pragma: no cover
    import datetime
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives import (  # type: ignore[import-not-found, unused-ignore]
        hashes,
        serialization,
    )
    from cryptography.hazmat.primitives.asymmetric import (  # type: ignore[import-not-found, unused-ignore]
        ec,
    )
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


# --------------------------------------------------------------------------- memory


class MemoryProbe:
    """Peak Python memory (``tracemalloc``, every thread) above the level at entry.

    ``with MemoryProbe() as probe: ...`` then ``probe.growth`` (bytes). Starts tracing
    if needed and stops it again on exit.
    """

    def __init__(self) -> None:
        self.growth = 0
        self._base = 0
        self._started = False

    def __enter__(self) -> MemoryProbe:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started = True
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def sample(self) -> int:
        """The peak growth so far."""
        self.growth = max(self.growth, tracemalloc.get_traced_memory()[1] - self._base)
        return self.growth

    def __exit__(self, *exc: object) -> None:
        self.sample()
        if self._started:
            tracemalloc.stop()


# --------------------------------------------------------------------------- hostile clients


def start_recognition(**transcription: Any) -> str:
    return json.dumps(
        {
            "message": "StartRecognition",
            "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
            "transcription_config": {"language": "en", **transcription},
        }
    )


@dataclass
class ServerReply:
    """What the server said to a hostile client before the connection ended."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    #: The close code the server sent (``None``: no close frame, or not closed yet).
    close_code: int | None = None
    closed: bool = False
    elapsed: float = 0.0

    def types(self) -> list[str]:
        return [str(m.get("message")) for m in self.messages]

    def error(self) -> dict[str, Any] | None:
        return next((m for m in self.messages if m.get("message") == "Error"), None)


class RawClient:
    """A WebSocket client over a bare asyncio stream: it reads only when asked to."""

    def __init__(
        self,
        protocol: ClientProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self.bytes_written = 0
        self._early: Sequence[Request | Response | Frame] = []  # read with the upgrade

    @classmethod
    async def connect(
        cls, url: str, *, api_key: str | None = None, buffers: int | None = None
    ) -> RawClient:
        """Open the WebSocket (``buffers``: the socket's kernel buffer sizes, small to
        make back-pressure show sooner)."""
        uri = parse_uri(url)
        protocol = ClientProtocol(uri, max_size=None)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if buffers is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=BLOCK)
        request = protocol.connect()
        if api_key is not None:
            request.headers["Authorization"] = f"Bearer {api_key}"
        protocol.send_request(request)
        client = cls(protocol, reader, writer)
        client._write()
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the server closed during the handshake")
            protocol.receive_data(data)
            events = protocol.events_received()
            for i, event in enumerate(events):
                if isinstance(event, Response):
                    if event.status_code != 101:
                        raise ConnectionError(f"HTTP {event.status_code}")
                    client._early = list(events[i + 1 :])
                    return client

    def _write(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.bytes_written += len(data)
                self.writer.write(data)

    def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._write()

    def frame_text(self, text: str) -> list[bytes]:
        """``text`` as the bytes of a (masked) text frame, to :meth:`write` later."""
        self.protocol.send_text(text.encode())
        return self.protocol.data_to_send()

    def write(self, data: list[bytes]) -> None:
        for chunk in data:
            self.bytes_written += len(chunk)
            self.writer.write(chunk)

    def send_binary(self, data: bytes) -> None:
        self.protocol.send_binary(data)
        self._write()

    async def drain(self, timeout: float) -> bool:
        """Wait until the socket takes what was written; False if it did not in time.

        Raises:
            ConnectionError: the server closed the connection.
        """
        if self.writer.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            return False
        return True

    async def read(self, timeout: float, *, until: str | None = None) -> ServerReply:
        """Read the server's messages until it closes (or sends ``until``), at most
        ``timeout`` seconds."""
        reply = ServerReply()
        start = time.monotonic()
        deadline = start + timeout
        with contextlib.suppress(TimeoutError, ConnectionError):
            while not reply.closed:
                events, self._early = self._early, []
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    data = await asyncio.wait_for(self.reader.read(65536), remaining)
                    if not data:
                        self.protocol.receive_eof()
                        reply.closed = True
                        break
                    self.protocol.receive_data(data)
                    events = self.protocol.events_received()
                for event in events:
                    if not isinstance(event, Frame):
                        continue
                    if event.opcode is Opcode.TEXT:
                        reply.messages.append(json.loads(bytes(event.data)))
                        if until is not None and reply.messages[-1].get("message") == until:
                            reply.elapsed = time.monotonic() - start
                            return reply
                    elif event.opcode is Opcode.CLOSE:
                        close = self.protocol.close_rcvd
                        reply.close_code = close.code if close is not None else None
                        reply.closed = True
                self._write()  # pongs, the closing handshake
        reply.elapsed = time.monotonic() - start
        return reply

    def abort(self) -> None:
        self.writer.transport.abort()


@dataclass
class FloodResult:
    frames: int
    bytes_written: int
    #: Whether the server stopped reading (the socket stopped taking data).
    stalled: bool
    #: Whether the server closed the connection meanwhile.
    cut_off: bool
    seconds: float


async def flood_audio(
    url: str, *, seconds: float, frame: bytes = b"", stall_after: float = 1.0
) -> tuple[RawClient, FloodResult]:
    """Start a session and write audio frames as fast as the socket takes them, never
    reading a byte, for ``seconds`` or until the socket stops taking data for
    ``stall_after`` seconds. Empty frames (audio nonetheless: each is acknowledged) get
    the most acknowledgements per byte, so the server's writes back up soonest. The
    connection is left open, still unread."""
    client = await RawClient.connect(url, buffers=4096)
    client.send_text(start_recognition())
    start = time.monotonic()
    frames = 0
    stalled = cut_off = False
    while time.monotonic() - start < seconds:
        for _ in range(256):
            client.send_binary(frame)
            frames += 1
        try:
            if not await client.drain(stall_after):
                stalled = True
                break
        except ConnectionError:
            cut_off = True
            break
    elapsed = time.monotonic() - start
    return client, FloodResult(frames, client.bytes_written, stalled, cut_off, elapsed)


async def oversized_start(
    url: str, *, size: int, timeout: float, probe: MemoryProbe | None = None
) -> ServerReply:
    """A ``StartRecognition`` of ``size`` bytes (padded with an unknown field), built
    before ``probe`` (if given) starts measuring."""
    client = await RawClient.connect(url)
    base = start_recognition()
    padding = "x" * max(0, size - len(base) - 20)
    frames = client.frame_text(base[:-1] + f', "padding": "{padding}"}}')
    del padding
    with probe or contextlib.nullcontext():
        client.write(frames)
        del frames
        try:
            return await client.read(timeout)
        finally:
            client.abort()


async def enormous_vocab(
    url: str, *, size: int, timeout: float, probe: MemoryProbe | None = None
) -> tuple[ServerReply, int]:
    """A ``StartRecognition`` whose ``additional_vocab`` has as many entries (each with a
    ``sounds_like``) as fit in about ``size`` bytes; then one frame, ``EndOfStream``,
    and the server's answers up to ``EndOfTranscript``. Returns the entry count too.

    The message is built and framed before ``probe`` (if given) starts measuring, so
    that what it measures is the server's work."""
    entry = {"content": "gnocchi00000", "sounds_like": ["nyohki", "nokey"]}
    per_entry = len(json.dumps(entry)) + 2
    count = max(1, (size - 400) // per_entry)
    vocab = [
        {"content": f"gnocchi{i:05d}", "sounds_like": ["nyohki", "nokey"]} for i in range(count)
    ]
    client = await RawClient.connect(url)
    frames = client.frame_text(start_recognition(additional_vocab=vocab))
    del vocab
    with probe or contextlib.nullcontext():
        client.write(frames)
        del frames
        client.send_binary(b"\x00\x00" * 1600)
        client.send_text(json.dumps({"message": "EndOfStream", "last_seq_no": 1}))
        try:
            return await client.read(timeout, until="EndOfTranscript"), count
        finally:
            client.abort()


async def goes_idle(url: str, *, timeout: float) -> ServerReply:
    """Start, send three frames, then nothing (no ``EndOfStream``), reading all along."""
    client = await RawClient.connect(url)
    client.send_text(start_recognition())
    for _ in range(3):
        client.send_binary(b"\x00\x00" * 1600)
    try:
        return await client.read(timeout)
    finally:
        client.abort()


async def never_starts(url: str, *, timeout: float) -> ServerReply:
    """Open the WebSocket and never send ``StartRecognition``."""
    client = await RawClient.connect(url)
    try:
        return await client.read(timeout)
    finally:
        client.abort()
