"""Hostile servers against our client drivers (asyncio and trio), hostile clients against
our server, and the security promises of both.

Every hostile server must give a clear typed error (:mod:`smproto.session`) within a
bounded time, with the client's memory bounded; every hostile client must get a clear
``Error`` (its close code from :data:`smproto.ERROR_CLOSE_CODES`) or a close within a
bounded time, with the server's memory bounded, while a well-behaved session on the same
server completes normally. Nothing may hang: a session that outlives its bound fails
the test (it is cancelled, not waited for), and every test has a timeout.

Memory is ``tracemalloc``'s peak above the level at the start of the session, over every
thread of the process (the hostile peers are built not to allocate much themselves).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

import smproto_asyncio
from smproto import ERROR_CLOSE_CODES, AudioFormat, TranscriptionConfig
from smproto.audio import pcm_chunks
from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionLost,
    ProtocolViolation,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    TranscriptionError,
)
from smproto_server import ServerOptions, serve
from smproto_server.recognizers import ScriptedRecognizer
from smproto_server.recognizers.scripted import expected_timings, synthesize
from smproto_server.server import _key_checker
from tests.drivers.netutil import ServerThread
from tests.drivers.test_client_drivers import run_session
from tests.reliability.hostile import (
    Behaviour,
    HostileThread,
    MemoryProbe,
    RawClient,
    ServerReply,
    TlsFront,
    enormous_vocab,
    flood_audio,
    goes_idle,
    never_starts,
    oversized_start,
    self_signed_certificate,
    start_recognition,
)
from tests.support import REPO, secret

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MiB = 1024 * 1024
FORMAT = AudioFormat()
#: Short deadlines, so that each case is quick; the bounds below are generous on top.
SHORT: dict[str, Any] = {
    "reconnect": False,
    "open_timeout": 1.0,
    "recognition_started_timeout": 1.0,
    "ack_timeout": 1.0,
    "drain_timeout": 2.0,
    "close_timeout": 0.5,
    "ping_interval": 0.5,
    "ping_timeout": 1.0,
}
#: Seconds allowed beyond the deadline that applies (scheduling, closing handshakes).
SLACK = 4.0
#: Peak memory growth allowed during a session against a hostile server (measured: under
#: 0.8 MiB in most cases, 1.6 MiB under the Info flood, 1.3 MiB for a 20 MB frame; 5 MiB
#: for 20 MB in fragments, which has a bound of its own).
MEMORY_BOUND = 6 * MiB
#: The client's default max_message_size.
MAX_MESSAGE = 4 * MiB
TEN_SECONDS = synthesize(["hello", "world"] * 10)  # 10.4 s: the whole default window
MINUTE = synthesize(["hello", "world"] * 60)  # more than the window: send_audio must wait
WORDS = ["good", "morning", "thank", "you"]


def config() -> TranscriptionConfig:
    return TranscriptionConfig(language="en", enable_partials=True)


#: websockets' loggers (ours, and the hostile servers' default one).
WS_LOGGERS = (
    "smproto_asyncio.websockets",
    "smproto_trio.websockets",
    "smproto_server.websockets",
    "websockets",
)


@pytest.fixture
def quiet_websockets() -> Iterator[None]:
    """websockets logs every frame at DEBUG, and the whole run logs at DEBUG (for the
    secret scan, tests/conftest.py), with pytest keeping every record: under a flood of
    frames the memory measured would be pytest's. For the tests that measure memory (none
    of which involves a key), frames are not logged."""
    saved = {name: logging.getLogger(name).level for name in WS_LOGGERS}
    for name in WS_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


quiet = pytest.mark.usefixtures("quiet_websockets")


@pytest.fixture
def hostile() -> Iterator[HostileThread]:
    thread = HostileThread()
    try:
        yield thread
    finally:
        thread.close()


@dataclass
class Run:
    """How a session against a hostile server went."""

    error: BaseException | None
    elapsed: float
    memory: int
    events: int
    hung: bool
    max_in_flight: float


async def drive(
    driver: ModuleType,
    url: str,
    *,
    bound: float,
    audio: bytes = TEN_SECONDS,
    reader: str = "prompt",
    **options: Any,
) -> Run:
    """One session: send ``audio`` (0.1 s chunks, as fast as flow control allows) and
    read the events, until it fails or ends; cancelled after ``bound`` seconds (a hang).

    ``reader``: ``"prompt"`` reads every event at once, in a task of its own;
    ``"slow"`` takes 20 ms per event; ``"after"`` sends everything first, then reads
    (an application that does not read while it sends).
    """
    error: BaseException | None = None
    events = 0
    max_in_flight = 0.0
    start = time.monotonic()
    with MemoryProbe() as probe, anyio.move_on_after(bound) as scope:
        try:
            async with driver.connect(
                url, transcription_config=config(), audio_format=FORMAT, **(SHORT | options)
            ) as session:

                async def send() -> None:
                    nonlocal error, max_in_flight
                    try:
                        for chunk in pcm_chunks(audio, FORMAT, 0.1):
                            await session.send_audio(chunk)
                            max_in_flight = max(max_in_flight, session.audio_in_flight.seconds)
                        await session.end_of_stream()
                    except SessionError as exc:
                        error = error or exc

                async def read() -> None:
                    nonlocal error, events
                    try:
                        async for _ in session:
                            events += 1
                            if events % 256 == 0:
                                probe.sample()
                            if reader == "slow":
                                await anyio.sleep(0.02)
                    except SessionError as exc:
                        error = error or exc

                if reader == "after":
                    await send()
                    await read()
                else:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(send)
                        await read()
                        tg.cancel_scope.cancel()
        except SessionError as exc:
            error = error or exc
    return Run(
        error, time.monotonic() - start, probe.growth, events, scope.cancelled_caught, max_in_flight
    )


def check_bounded(run: Run, deadline: float, memory: int = MEMORY_BOUND) -> None:
    assert not run.hung, (
        f"no error within {deadline + SLACK:g}s: the session hangs "
        f"({run.events} events read, last error {run.error!r})"
    )
    assert run.elapsed < deadline + SLACK, f"the error took {run.elapsed:.1f}s"
    assert run.memory < memory, f"memory grew by {run.memory / MiB:.1f} MiB"
    # The flow-control window holds: never more than 10 s (+ one chunk) in flight.
    assert run.max_in_flight <= 10.0 + 0.1 + 1e-9


# ------------------------------------------------------------------------ hostile servers

#: (behaviour, server options, the error, its attributes, the deadline that applies)
SERVER_CASES: list[tuple[str, Behaviour, dict[str, Any], type[SessionError], dict[str, Any]]] = [
    ("no-recognition-started", Behaviour.NO_RECOGNITION_STARTED, {}, SessionTimeout,
     {"timer": "recognition_started", "retryable": True}),
    ("never-acks", Behaviour.NEVER_ACK, {}, SessionTimeout, {"timer": "ack", "retryable": True}),
    ("acks-too-far", Behaviour.ACK_TOO_FAR, {}, ProtocolViolation, {"retryable": False}),
    ("garbage-binary", Behaviour.GARBAGE_BINARY, {}, ProtocolViolation, {"retryable": False}),
    ("garbage-text", Behaviour.GARBAGE_TEXT, {}, ProtocolViolation, {"retryable": False}),
    ("close-1002", Behaviour.CLOSE, {"close_code": 1002}, ConnectionLost,
     {"code": 1002, "retryable": False}),
    ("close-1003", Behaviour.CLOSE, {"close_code": 1003}, ConnectionLost,
     {"code": 1003, "retryable": False}),
    ("close-1009", Behaviour.CLOSE, {"close_code": 1009}, ConnectionLost,
     {"code": 1009, "retryable": False}),
    ("close-3000", Behaviour.CLOSE, {"close_code": 3000}, ConnectionLost,
     {"code": 3000, "retryable": True}),
    ("close-4999", Behaviour.CLOSE, {"close_code": 4999}, ConnectionLost,
     {"code": 4999, "retryable": True}),
    ("tcp-abort", Behaviour.ABORT, {}, ConnectionLost, {"code": None, "retryable": True}),
    ("no-upgrade", Behaviour.NO_UPGRADE, {}, SessionTimeout, {"timer": "open", "retryable": True}),
]  # fmt: skip


@quiet
@pytest.mark.parametrize(
    ("behaviour", "server_options", "error", "attributes"),
    [pytest.param(*case[1:], id=case[0]) for case in SERVER_CASES],
)
async def test_hostile_server(
    driver: ModuleType,
    hostile: HostileThread,
    behaviour: Behaviour,
    server_options: dict[str, Any],
    error: type[SessionError],
    attributes: dict[str, Any],
) -> None:
    server = hostile.serve(behaviour, **server_options)
    run = await drive(driver, server.url, bound=1.0 + SLACK)
    assert type(run.error) is error, f"{behaviour}: {run.error!r} after {run.elapsed:.1f}s"
    for name, value in attributes.items():
        assert getattr(run.error, name) == value, (name, run.error)
    check_bounded(run, 1.0)


@quiet
async def test_a_server_that_stops_reading_then_closes(
    driver: ModuleType, hostile: HostileThread
) -> None:
    """The server stops reading, then closes (1002). A minute of audio with a window
    as long keeps the client writing into full TCP buffers: its writes wait until the
    connection ends. The close must still be reported as itself, within
    ``close_timeout`` of the close frame. (trio: websockets' reading task writes the
    reply to the close before it processes anything it read; had it waited behind
    the blocked writer, nothing would be processed until the ack timeout: a wrong
    error, later.)
    """
    server = hostile.serve(Behaviour.STOP_READING_THEN_CLOSE, close_code=1002)
    run = await drive(
        driver, server.url, bound=1.0 + SLACK, audio=MINUTE, max_audio_in_flight_seconds=60.0
    )
    assert type(run.error) is ConnectionLost, f"{run.error!r} after {run.elapsed:.1f}s"
    assert (run.error.code, run.error.retryable) == (1002, False), run.error
    assert not run.hung
    assert run.elapsed < 1.0 + SLACK, f"the error took {run.elapsed:.1f}s"


@quiet
@pytest.mark.parametrize("behaviour", [Behaviour.HUGE_MESSAGE, Behaviour.HUGE_FRAGMENTED])
async def test_huge_message_is_refused_unread(
    driver: ModuleType, hostile: HostileThread, behaviour: Behaviour
) -> None:
    """A 20 MB message (one frame, or 64 KiB fragments) against the client's 4 MiB
    ``max_message_size``: the client closes with 1009 (message too big) without ever
    holding the message. The error must say so and must not invite a retry: the same
    server would send the same message again.
    """
    server = hostile.serve(behaviour)
    run = await drive(driver, server.url, bound=1.0 + SLACK)
    # The client did start receiving it (aiohttp refuses it from its header, before most
    # of it is written; websockets once it has read max_message_size of it).
    assert server.huge_written > 0
    assert isinstance(run.error, ConnectionLost), run.error
    assert (run.error.code, run.error.retryable) == (1009, False), run.error
    # Memory: at most one max_message_size of fragments (and nothing for one frame).
    check_bounded(run, 1.0, memory=MAX_MESSAGE + MEMORY_BOUND)


@quiet
@pytest.mark.parametrize("after_frames", [0, 3])
async def test_reconnecting_against_a_hostile_server_gives_up(
    driver: ModuleType, hostile: HostileThread, after_frames: int
) -> None:
    """With reconnect on, a server that aborts every connection is tried again as the
    policy says (two more attempts here), then the same typed error comes out. With
    ``after_frames=3`` each connection acknowledges its first three frames: the first
    connection made progress, but the next ones only acknowledge the replay of the same
    audio, which is no progress, so the attempt count does not start again (the server
    waits a little before aborting, so that the client reads its acknowledgements)."""
    server = hostile.serve(Behaviour.ABORT, after_frames=after_frames, delay=0.1)
    policy = ReconnectPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05, jitter=0.0)
    run = await drive(driver, server.url, bound=2 * SLACK, reconnect=policy)
    assert isinstance(run.error, ConnectionLost) and run.error.code is None, run.error
    assert server.connections == 3
    check_bounded(run, SLACK)


# An endless Info flood. The server stops acknowledging audio when it starts flooding,
# so the ack timeout (1 s) must end the session, whatever the application does.


@quiet
@pytest.mark.slow
@pytest.mark.parametrize("reader", ["prompt", "slow", "after"])
async def test_endless_info_flood(driver: ModuleType, hostile: HostileThread, reader: str) -> None:
    """``prompt``: the application reads every event; ``slow``: 20 ms per event (a busy
    application); ``after``: it sends a minute of audio before it reads anything (more
    than the window: ``send_audio`` waits for acknowledgements that never come).
    """
    server = hostile.serve(Behaviour.INFO_FLOOD)
    audio = MINUTE if reader == "after" else TEN_SECONDS
    # The events queued before the failure are read first: with event_queue_size=10 the
    # backlog holds at most 80 (overfull), 1.6 s for the slow reader.
    deadline = 1.0 + (1.6 if reader == "slow" else 0.0)
    run = await drive(
        driver,
        server.url,
        bound=deadline + SLACK,
        audio=audio,
        reader=reader,
        event_queue_size=10,
    )
    assert server.flood_messages > 0
    assert isinstance(run.error, SessionTimeout) and run.error.timer == "ack", (
        f"{run.error!r} after {run.elapsed:.1f}s ({server.flood_messages} Info sent, "
        f"{run.events} events read)"
    )
    check_bounded(run, deadline)


@pytest.mark.slow
@quiet
async def test_reading_after_sending_never_deadlocks(
    driver: ModuleType, servers: ServerThread
) -> None:
    """Against a well-behaved server: an application that sends a minute of audio before
    reading any event, with a small ``event_queue_size`` (10: the backlog is overfull at
    80 unread events, and finals are never dropped). It must complete, or fail with a
    typed error in bounded time; it must not wait for ever.
    """
    server = servers.serve(recognizer=ScriptedRecognizer())
    run = await drive(driver, server.url, bound=8.0, audio=MINUTE, reader="after",
                      event_queue_size=10)  # fmt: skip
    assert not run.hung, f"send-then-read hangs ({run.error!r}, {run.events} events)"
    assert run.error is None or isinstance(run.error, SessionTimeout), run.error


# ------------------------------------------------------------------------ hostile clients
# The server runs in a thread of its own (ServerThread); the hostile clients are raw
# asyncio sockets, so these tests run on the asyncio backend only.

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])
#: Short server limits, so that each case is quick.
LIMITS = ServerOptions(
    start_timeout=1.0,
    idle_timeout=2.0,
    idle_warnings=(1.0,),
    close_timeout=1.0,
    max_message_bytes=256 * 1024,
    # A client that does not read is cut off this long after a write blocks (it cannot
    # even be sent its Error).
    write_timeout=3.0,
)
#: The server's peak memory growth allowed while a hostile client runs (with one
#: well-behaved session alongside). The audio flood is the most: websockets parses one
#: socket read (256 KiB) at once, about 43,000 empty frames of 6 bytes, and each costs a
#: few hundred bytes until the pump has taken it (measured: 7 MiB, up to 18 MiB).
SERVER_MEMORY_BOUND = 32 * MiB


async def well_behaved(url: str) -> None:
    """A normal session on the same server: every word, at the right time."""
    outcome = await run_session(smproto_asyncio, url, synthesize(WORDS))
    expected = [
        (word, round(start, 6), round(end, 6))
        for word, (start, end) in zip(WORDS, expected_timings(WORDS), strict=True)
    ]
    assert [f for f in outcome.finals() if f[0] != "."] == expected


async def wait_released(servers: ServerThread, bound: float) -> float:
    """Seconds until the server has no session left (``bound`` at most)."""
    server = servers.servers[0]
    start = time.monotonic()
    while server.active_sessions or server._handlers:
        if time.monotonic() - start > bound:
            break
        await anyio.sleep(0.05)
    return time.monotonic() - start


@asyncio_only
@quiet
@pytest.mark.slow
async def test_client_floods_audio_and_never_reads(servers: ServerThread) -> None:
    """A client writes empty audio frames (each one acknowledged) as fast as the socket
    takes them and never reads a byte. The server's acknowledgements back up, its writes
    block, it stops reading, and TCP pushes back on the client: the server's memory stays
    bounded whatever the client sends. Meanwhile another session completes normally. The
    server must then let go of the connection: a client that no longer sends audio
    reaches the idle timeout (2 s), and one that does not read (not even its Error) is
    cut off ``write_timeout`` (3 s) after a write blocks.

    The server's kernel buffers are made small (as the client's are): left to Linux's
    autotuning they absorb 5-8 MB of acknowledgements first, 120,000-200,000 frames,
    which a slow machine (one CI run: 5,000 frames a second) does not flood in 15 s.
    """
    server = servers.serve(recognizer=ScriptedRecognizer(), options=LIMITS, ping_interval=0.5)
    for sock in server.sockets:  # accepted connections inherit these
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    with MemoryProbe() as probe:
        client, flood = await flood_audio(server.url, seconds=15.0)
        try:
            assert flood.stalled or flood.cut_off, f"the server kept reading: {flood}"
            await well_behaved(server.url)
            probe.sample()
            bound = LIMITS.idle_timeout + LIMITS.write_timeout + SLACK
            released = await wait_released(servers, bound)
        finally:
            client.abort()
    assert probe.growth < SERVER_MEMORY_BOUND, f"memory grew by {probe.growth / MiB:.1f} MiB"
    assert released < bound, (
        f"the server still holds the session {released:.0f}s after the client stopped "
        f"({flood.frames} frames, {flood.bytes_written} bytes written in "
        f"{flood.seconds:.1f}s before TCP pushed back)"
    )


@asyncio_only
@quiet
async def test_client_sends_an_oversized_start_recognition(servers: ServerThread) -> None:
    """A StartRecognition larger than ``max_message_bytes``: refused by the WebSocket
    layer before it is parsed (close 1009, message too big; no Error message, no
    session)."""
    server = servers.serve(recognizer=ScriptedRecognizer(), options=LIMITS)
    probe = MemoryProbe()
    async with anyio.create_task_group() as tg:
        tg.start_soon(well_behaved, server.url)
        reply = await oversized_start(
            server.url, size=LIMITS.max_message_bytes + 1024, timeout=SLACK, probe=probe
        )
    assert reply.closed and reply.close_code == 1009, reply
    assert "RecognitionStarted" not in reply.types()
    assert reply.elapsed < SLACK
    assert probe.growth < SERVER_MEMORY_BOUND
    assert server.total_sessions == 1  # the well-behaved one only


@asyncio_only
@quiet
async def test_client_sends_an_enormous_vocabulary(servers: ServerThread) -> None:
    """A StartRecognition just under ``max_message_bytes`` (256 KiB) that is one huge
    ``additional_vocab`` list (about 4,000 entries with ``sounds_like``): the server
    parses it within bounded time and memory (answering RecognitionStarted, or
    ``Error invalid_config``), and the other session is unaffected."""
    server = servers.serve(recognizer=ScriptedRecognizer(), options=LIMITS)
    size = LIMITS.max_message_bytes - 1024
    probe = MemoryProbe()
    async with anyio.create_task_group() as tg:
        tg.start_soon(well_behaved, server.url)
        reply, entries = await enormous_vocab(server.url, size=size, timeout=SLACK, probe=probe)
    assert entries > 3000
    error = reply.error()
    if error is not None:
        assert error["type"] == "invalid_config"
        assert reply.close_code == ERROR_CLOSE_CODES["invalid_config"]
    else:
        assert reply.types()[-1] == "EndOfTranscript", reply.types()
    assert reply.elapsed < SLACK
    # The parsed JSON and config objects: about 11 times the message's size (measured:
    # 2.8 MB), plus the other session's.
    assert probe.growth < 16 * size + MiB, f"memory grew by {probe.growth / MiB:.1f} MiB"


@asyncio_only
@quiet
async def test_client_never_sends_end_of_stream(servers: ServerThread) -> None:
    """A client that sends three frames and then nothing, no EndOfStream: a Warning
    ``idle_timeout`` at 1 s, then ``Error idle_timeout`` and close 1008 at 2 s."""
    server = servers.serve(recognizer=ScriptedRecognizer(), options=LIMITS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(well_behaved, server.url)
        reply = await goes_idle(server.url, timeout=LIMITS.idle_timeout + SLACK)
    warnings = [m for m in reply.messages if m.get("message") == "Warning"]
    assert [w["type"] for w in warnings] == ["idle_timeout"]
    error = reply.error()
    assert error is not None and error["type"] == "idle_timeout", reply.types()
    assert reply.close_code == ERROR_CLOSE_CODES["idle_timeout"] == 1008
    assert LIMITS.idle_timeout - 0.1 < reply.elapsed < LIMITS.idle_timeout + SLACK
    assert await wait_released(servers, SLACK) < SLACK


@asyncio_only
@quiet
async def test_client_never_starts(servers: ServerThread) -> None:
    """A client that opens the WebSocket and never sends StartRecognition:
    ``Error protocol_error`` and close 1003 after ``start_timeout`` (1 s)."""
    server = servers.serve(recognizer=ScriptedRecognizer(), options=LIMITS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(well_behaved, server.url)
        reply = await never_starts(server.url, timeout=LIMITS.start_timeout + SLACK)
    error = reply.error()
    assert error is not None and error["type"] == "protocol_error", reply.types()
    assert reply.close_code == ERROR_CLOSE_CODES["protocol_error"] == 1003
    assert reply.elapsed < LIMITS.start_timeout + SLACK


# ------------------------------------------------------------------------ security


async def test_max_sessions_is_enforced(driver: ModuleType, servers: ServerThread) -> None:
    """Beyond ``max_sessions`` concurrent sessions: ``Error quota_exceeded``, close 4005,
    a retryable TranscriptionError; a slot freed is a slot usable again."""
    server = servers.serve(recognizer=ScriptedRecognizer(), max_sessions=2)
    options = {"transcription_config": config(), "audio_format": FORMAT, "reconnect": False}
    async with (
        driver.connect(server.url, **options) as first,
        driver.connect(server.url, **options),
    ):
        assert server.active_sessions == 2
        with pytest.raises(TranscriptionError) as info:
            async with driver.connect(server.url, **options):
                pass
        assert info.value.type == "quota_exceeded" and info.value.retryable
        raw = await anyio.to_thread.run_sync(_raw_start, server.url)
        error = raw.error()
        assert error is not None and error["type"] == "quota_exceeded", raw
        assert raw.close_code == ERROR_CLOSE_CODES["quota_exceeded"] == 4005
        await first.end_of_stream()
        assert [e async for e in first][-1].__class__.__name__ == "EndOfTranscript"
    deadline = time.monotonic() + SLACK
    while server.active_sessions and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    await run_session(driver, server.url, synthesize(["hello"]))  # admitted again


def _raw_start(url: str) -> ServerReply:
    """StartRecognition from a raw client (in a thread, with its own asyncio loop)."""
    import asyncio

    async def go() -> ServerReply:
        client = await RawClient.connect(url)
        client.send_text(start_recognition())
        try:
            return await client.read(SLACK)
        finally:
            client.abort()

    return asyncio.run(go())


def _listeners(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                    found.add(address)
    return found


LOOPBACK_HEX = "0100007F"  # 127.0.0.1, as /proc/net/tcp writes it


async def test_serve_binds_loopback_by_default(driver: ModuleType, servers: ServerThread) -> None:
    """``serve()`` with no host listens on 127.0.0.1 only."""

    async def start() -> Any:
        return await serve(port=0, recognizer=ScriptedRecognizer())

    server = servers.call(start)
    servers.servers.append(server)
    assert server.host == "127.0.0.1"
    assert {s.getsockname()[0] for s in server._server.sockets} == {"127.0.0.1"}
    if Path("/proc/net/tcp").exists():
        assert _listeners(server.port) == {LOOPBACK_HEX}
    await run_session(driver, server.url, synthesize(["hello"]))


@pytest.mark.slow
def test_smproto_serve_binds_loopback_by_default() -> None:
    """``smproto serve`` with no ``--host`` listens on 127.0.0.1 only."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "drivers"), str(REPO)])}
    process = subprocess.Popen(
        [sys.executable, "-m", "smproto_asyncio", "serve", "--port", "0", "--recognizer",
         "scripted"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"ws://([^:/]+):(\d+)/v2", line)
        assert match, line + (process.stderr.read() if process.stderr else "")
        assert match.group(1) == "127.0.0.1"
        if Path("/proc/net/tcp").exists():
            assert _listeners(int(match.group(2))) == {LOOPBACK_HEX}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared with ``hmac.compare_digest`` on every attempt,
    whether the key given is the first, the last, or none of them (so the time taken
    does not say which key matched, nor how much of one)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    keys = [secret("k1"), secret("k2"), secret("k3")]
    authorize = _key_checker([*keys, ""])  # an empty key is never accepted
    monkeypatch.setattr(hmac, "compare_digest", counting)
    for given, accepted in [
        (keys[0], True),
        (keys[2], True),
        (keys[1], True),
        ("wrong", False),
        ("", False),
        (keys[0][:-1], False),  # a prefix
        (keys[0] + "x", False),
        ("ünïcode", False),
    ]:
        calls.clear()
        assert authorize(given) is accepted, given
        assert len(calls) == len(keys), f"{len(calls)} comparisons for {given[:12]!r}"
        assert {b for _, b in calls} == {k.encode() for k in keys}
        assert all(a == given.encode() for a, _ in calls)
    with pytest.raises(ValueError, match="empty"):
        _key_checker([])
    with pytest.raises(ValueError, match="empty"):
        _key_checker([""])


async def test_the_server_uses_the_constant_time_checker(
    driver: ModuleType, servers: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the server: a refused key is compared with every configured key."""
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    keys = [secret("a"), secret("b")]
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=keys)
    monkeypatch.setattr(hmac, "compare_digest", counting)
    with pytest.raises(AuthenticationError):
        async with driver.connect(
            server.url, api_key=secret("wrong"), transcription_config=config(), reconnect=False
        ):
            pass
    assert sorted(calls) == sorted(k.encode() for k in keys)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    made = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    return made


async def test_tls_is_verified_by_default(
    driver: ModuleType, servers: ServerThread, certificate: tuple[Path, Path]
) -> None:
    """Against a local ``wss://`` server with a self-signed certificate, ``connect()``
    fails with ConnectionFailed (certificate verify failed) by default, also when
    ``ssl=None`` is passed explicitly; only an explicit context that trusts the
    certificate connects.
    """
    cert, key = certificate
    server = servers.serve(recognizer=ScriptedRecognizer())
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    front = TlsFront(server.port, server_context)
    servers.call(front.start)
    try:
        for options in ({}, {"ssl": None}):
            with pytest.raises(ConnectionFailed) as info:
                async with driver.connect(
                    front.url, transcription_config=config(), reconnect=False, **options
                ):
                    pass
            assert "certificate" in str(info.value).lower(), info.value
        trusting = ssl.create_default_context(cafile=str(cert))
        outcome = await run_session(driver, front.url, synthesize(WORDS), ssl=trusting)
        assert outcome.text() == "good morning thank you."
    finally:
        servers.call(front.stop)


@pytest.mark.parametrize("value", [False, 0, "no"])
async def test_tls_cannot_be_switched_off_by_a_false_value(
    driver: ModuleType, hostile: HostileThread, value: Any
) -> None:
    """``ssl`` takes an ``SSLContext`` (or ``None``: the default, verifying one). A value
    such as ``ssl=False`` (how some libraries turn verification off) must be refused
    with a clear ``TypeError``, and never taken to mean "no TLS": against a ``wss://``
    URL that would send the upgrade, ``Authorization`` header included, in clear text.
    The listener here records what reaches it and never answers.
    """
    listener = hostile.serve(Behaviour.NO_UPGRADE)
    url = f"wss://127.0.0.1:{listener.port}/v2"
    key = secret("cleartext")
    with pytest.raises(TypeError, match="ssl"):
        async with driver.connect(
            url, api_key=key, transcription_config=config(), ssl=value, **SHORT
        ):
            pass
    assert b"GET /v2" not in listener.received and key.encode() not in listener.received


async def test_tls_is_attempted_by_default(driver: ModuleType, hostile: HostileThread) -> None:
    """With no ``ssl`` argument, a ``wss://`` URL starts a TLS handshake (a ClientHello:
    a TLS handshake record, first byte 0x16), and nothing in clear text."""
    listener = hostile.serve(Behaviour.NO_UPGRADE)
    url = f"wss://127.0.0.1:{listener.port}/v2"
    key = secret("tls-default")
    with pytest.raises(SessionTimeout):  # the listener never answers
        async with driver.connect(url, api_key=key, transcription_config=config(), **SHORT):
            pass
    assert listener.received[:1] == b"\x16", bytes(listener.received[:16])
    assert b"GET /v2" not in listener.received and key.encode() not in listener.received
