"""What our client drivers cost, against the official ``speechmatics-rt`` client, end to end.

    python bench/bench_clients.py [--quick] [--parts 1,2,3] [--audio tones|noisy] [--profile]

One run, one local server (``serve()`` with :class:`ScriptedRecognizer`, in a process of
its own: see ``bench/_common.py``), the same audio for every client: tone-coded speech
(two words a second, partials on), 16 kHz ``pcm_s16le``, in two kinds: ``tones``, the
words in digital silence (about 10:1 under ``permessage-deflate``), and ``noisy``, the
same words over a noise floor of 0.5 % of full scale, which deflates about as badly as
real audio does. Each client runs in a fresh process of its own (a warm-up session
first, then the measured ones), whose ``time.process_time()`` (user + system, every
thread) around the session is the client's CPU, nothing subtracted; the server's CPU is
read from its process just before and after each session, and the whole machine's busy
time from ``/proc/stat`` (the rest is other processes': the figures are only as clean as
the machine is quiet).

1. **Client CPU per second of audio**, streaming ``--seconds`` of audio as fast as the
   client goes, in 0.1 s chunks and in the 0.02 s chunks voice agents send, both audio
   kinds, median of ``--repeats`` sessions run interleaved (client A, B, C, A, B, C, ...
   in a rotating order, so that a busy moment of the machine hits every client alike):

   - ``smproto_asyncio``: ``connect()``, a task calling ``send_audio()`` (flow control:
     at most 10 s of audio in flight, the default) then ``end_of_stream()``, and the
     session's events iterated to ``EndOfTranscript``;
   - ``smproto_trio``: the same on trio;
   - ``smproto_sync``: the same on threads (``websockets.sync``): ``connect()``, a thread
     calling ``send_audio()`` then ``end_of_stream()``, the main thread iterating the
     session's events;
   - ``speechmatics-rt`` ``AsyncClient``, with ``send_audio()`` in a loop then
     ``stop_session()`` (its streaming path for live audio), and with ``transcribe()``
     of a file-like object (its path for files: each chunk is read in a worker thread).
     It has no flow control: it writes as fast as TCP takes the audio;
   - bare ``websockets`` (the floor under any client on it): send the frames, parse
     every message, no protocol engine; the same on ``websockets``' trio
     implementation (the floor under ``smproto_trio``), and on its threaded one,
     ``websockets.sync``, with a thread reading and parsing while another sends, as
     ``smproto_sync`` has (the floor under ``smproto_sync``).

   Each driver's row gives its ratio to the official client's ``send_audio()`` loop and
   to its own floor (bare ``websockets`` on the same concurrency model).

   Every client does the same with what it receives: it counts the acknowledgements,
   keeps the latest partial's text, and keeps each final's text and counts its words
   (checked against the words said). The official client negotiates
   ``permessage-deflate`` with the server (``websockets``' default), so each of its audio
   frames is deflated; ours and the bare floor do not compress (audio hardly deflates:
   it costs CPU for nothing).

2. **Faster than real time**: a ``--long``-second file (10 minutes) through
   ``smproto_asyncio`` with flow control; the speed-up is audio seconds over wall
   seconds; the processes' shares of a core (and other processes' load) say what limits
   it.

3. **Real-time sessions per client core**: N sessions at once from one client process
   (``smproto_asyncio``), each sending ``--session-seconds`` of audio in 0.1 s chunks
   paced at real time (starts spread over one chunk period), for rising N, until the
   client falls behind (its event loop more than ``--max-lag`` late, or a session that
   did not get every word) or saturates a core. The sessions are spread over the server
   processes (as many as there are spare cores, ``--servers``); when a server gives out
   first (90 % of a core, or its loop, its acks or, through TCP back-pressure, the
   client's sends more than ``--max-lag`` late) and there is no spare core for another
   one, the series stops there and says so: the client's own limit is then above it.

``--profile`` runs ``cProfile`` (on CPU time) over one ``smproto_asyncio`` session in
each chunk size instead, and prints where its CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import os
import pstats
import random
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

with warnings.catch_warnings():  # the legacy speechmatics-python, if installed, warns
    warnings.simplefilter("ignore", DeprecationWarning)
    import speechmatics.rt as rt
from websockets.asyncio.client import connect as ws_connect
from websockets.sync.client import connect as ws_sync_connect
from websockets.trio.client import connect as ws_trio_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "drivers")]

import smproto_asyncio  # noqa: E402
import smproto_sync  # noqa: E402
import smproto_trio  # noqa: E402
from bench._common import (  # noqa: E402
    ServerProcess,
    chunks,
    machine,
    machine_busy,
    ms,
    speech,
    table,
)
from bench._summary import figure, write_summary  # noqa: E402
from smproto import AudioFormat, TranscriptionConfig  # noqa: E402
from smproto.events import AddPartialTranscript, AddTranscript, AudioAdded, Event  # noqa: E402

KEY = "bench"
CONFIG = TranscriptionConfig(language="en", enable_partials=True)
FORMAT = AudioFormat(encoding="pcm_s16le", sample_rate=16000)
RT_CONFIG = rt.TranscriptionConfig(language="en", enable_partials=True)
START_FIELDS = {
    "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
    "transcription_config": {"language": "en", "enable_partials": True},
}
SATURATED = 0.95  # of one core
#: A server process this busy is saturated: it shares its core with the kernel's network
#: work (and, on a small machine, with the other processes), so it never shows 100 %.
SERVER_SATURATED = 0.9
CLIENTS = {
    "asyncio": "smproto_asyncio",
    "trio": "smproto_trio",
    "sync": "smproto_sync",
    "official": "speechmatics-rt send_audio()",
    "official-transcribe": "speechmatics-rt transcribe()",
    "websockets": "bare websockets (floor)",
    "websockets-trio": "bare websockets on trio (floor)",
    "websockets-sync": "bare websockets.sync (floor)",
}
#: The floor under each of our drivers: bare ``websockets`` on the same concurrency model.
FLOORS = {"asyncio": "websockets", "trio": "websockets-trio", "sync": "websockets-sync"}
#: The audio: pure tone-coded words in digital silence, and the same words over a noise
#: floor of 0.5 % of full scale (about -46 dBFS), which deflates like real audio (hardly).
AUDIO = {"tones": 0.0, "noisy": 0.005}
#: The headline figures of this run, for ``--summary``.
FIGURES: dict[str, dict[str, Any]] = {}


# ======================================================================== the client process


@dataclass
class Tally:
    """What a client does with what it receives: the same for every client."""

    acks: int = 0
    partial: str = ""
    finals: list[str] = field(default_factory=list)
    words: int = 0

    def final(self, transcript: str, words: int) -> None:
        self.finals.append(transcript)
        self.words += words
        self.partial = ""

    def event(self, event: Event) -> None:
        """An ``smproto`` event."""
        if isinstance(event, AudioAdded):
            self.acks += 1
        elif isinstance(event, AddPartialTranscript):
            self.partial = event.transcript
        elif isinstance(event, AddTranscript):
            self.final(event.transcript, sum(1 for r in event.results if r.type == "word"))

    def message(self, message: dict[str, Any]) -> None:
        """A ``speechmatics-rt`` message (its handlers get the parsed JSON)."""
        kind = message["message"]
        if kind == "AudioAdded":
            self.acks += 1
        elif kind == "AddPartialTranscript":
            self.partial = message["metadata"]["transcript"]
        elif kind == "AddTranscript":
            words = sum(1 for r in message["results"] if r["type"] == "word")
            self.final(message["metadata"]["transcript"], words)


async def asyncio_session(url: str, frames: Sequence[bytes]) -> Tally:
    tally = Tally()
    async with smproto_asyncio.connect(
        url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
    ) as session:

        async def send() -> None:
            for frame in frames:
                await session.send_audio(frame)
            await session.end_of_stream()

        sender = asyncio.create_task(send())
        async for event in session:
            tally.event(event)
        await sender
    return tally


async def trio_session(url: str, frames: Sequence[bytes]) -> Tally:
    tally = Tally()
    async with smproto_trio.connect(
        url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
    ) as session:

        async def send() -> None:
            for frame in frames:
                await session.send_audio(frame)
            await session.end_of_stream()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            async for event in session:
                tally.event(event)
    return tally


def rt_client(url: str, tally: Tally) -> rt.AsyncClient:
    client = rt.AsyncClient(api_key=KEY, url=url)
    for kind in (
        rt.ServerMessageType.AUDIO_ADDED,
        rt.ServerMessageType.ADD_PARTIAL_TRANSCRIPT,
        rt.ServerMessageType.ADD_TRANSCRIPT,
    ):
        client.on(kind, tally.message)
    return client


def rt_format(frames: Sequence[bytes]) -> rt.AudioFormat:
    return rt.AudioFormat(
        encoding=rt.AudioEncoding.PCM_S16LE, sample_rate=16000, chunk_size=len(frames[0])
    )


async def official_session(url: str, frames: Sequence[bytes]) -> Tally:
    tally = Tally()
    async with rt_client(url, tally) as client:
        await client.start_session(transcription_config=RT_CONFIG, audio_format=rt_format(frames))
        for frame in frames:
            await client.send_audio(frame)
        await client.stop_session()  # EndOfStream, then waits for EndOfTranscript
    return tally


async def official_transcribe_session(url: str, frames: Sequence[bytes]) -> Tally:
    tally = Tally()
    async with rt_client(url, tally) as client:
        source = io.BytesIO(b"".join(frames))
        await client.transcribe(
            source, transcription_config=RT_CONFIG, audio_format=rt_format(frames)
        )
    return tally


async def bare_start(ws: Any) -> None:
    """StartRecognition, then wait for RecognitionStarted (either websockets flavour)."""
    await ws.send(json.dumps({"message": "StartRecognition", **START_FIELDS}))
    while json.loads(await ws.recv())["message"] != "RecognitionStarted":
        pass


async def _bare_read(ws: Any, tally: Tally) -> None:
    """Parse every message until EndOfTranscript (either websockets flavour)."""
    async for raw in ws:
        message = json.loads(raw)
        tally.message(message)
        if message["message"] == "EndOfTranscript":
            return
        if message["message"] == "Error":
            raise RuntimeError(message)


async def _bare_send(ws: Any, frames: Sequence[bytes]) -> None:
    for frame in frames:
        await ws.send(frame)
    await ws.send(json.dumps({"message": "EndOfStream", "last_seq_no": len(frames)}))


async def websockets_session(url: str, frames: Sequence[bytes]) -> Tally:
    """The least a client can do over ``websockets`` (with its defaults, as the official
    client): send, and parse every message; no protocol engine, no flow control."""
    tally = Tally()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with ws_connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        await bare_start(ws)
        reader = asyncio.create_task(_bare_read(ws, tally))
        await _bare_send(ws, frames)
        await reader
    return tally


async def websockets_trio_session(url: str, frames: Sequence[bytes]) -> Tally:
    """:func:`websockets_session` on ``websockets``' trio implementation."""
    tally = Tally()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with ws_trio_connect(
        url, additional_headers=headers, max_size=None, compression=None
    ) as ws:
        await bare_start(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_bare_read, ws, tally)
            await _bare_send(ws, frames)
    return tally


def sync_session(url: str, frames: Sequence[bytes]) -> Tally:
    """:func:`asyncio_session` on threads: a thread sends, this one iterates the events."""
    tally = Tally()
    failed: list[BaseException] = []
    with smproto_sync.connect(
        url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
    ) as session:

        def send() -> None:
            try:
                for frame in frames:
                    session.send_audio(frame)
                session.end_of_stream()
            except BaseException as exc:  # the iteration raises the session's failure
                failed.append(exc)

        sender = threading.Thread(target=send, name="bench sender")
        sender.start()
        for event in session:
            tally.event(event)
        sender.join()
    if failed:
        raise failed[0]
    return tally


def bare_sync_start(ws: Any) -> None:
    """:func:`bare_start` on ``websockets.sync``."""
    ws.send(json.dumps({"message": "StartRecognition", **START_FIELDS}))
    while json.loads(ws.recv())["message"] != "RecognitionStarted":
        pass


def bare_sync_read(ws: Any, tally: Tally, failed: list[BaseException]) -> None:
    """:func:`_bare_read` on ``websockets.sync`` (in a thread of its own)."""
    try:
        for raw in ws:
            message = json.loads(raw)
            tally.message(message)
            if message["message"] == "EndOfTranscript":
                return
            if message["message"] == "Error":
                raise RuntimeError(message)
    except BaseException as exc:
        failed.append(exc)


def websockets_sync_session(url: str, frames: Sequence[bytes]) -> Tally:
    """:func:`websockets_session` on ``websockets.sync``: a thread reads and parses every
    message while this one sends (the threads ``smproto_sync`` has, without its engine)."""
    tally = Tally()
    failed: list[BaseException] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with ws_sync_connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        bare_sync_start(ws)
        reader = threading.Thread(target=bare_sync_read, args=(ws, tally, failed))
        reader.start()
        for frame in frames:
            ws.send(frame)
        ws.send(json.dumps({"message": "EndOfStream", "last_seq_no": len(frames)}))
        reader.join()
    if failed:
        raise failed[0]
    return tally


SYNC_SESSIONS: dict[str, Callable[[str, Sequence[bytes]], Tally]] = {
    "sync": sync_session,
    "websockets-sync": websockets_sync_session,
}


TRIO_SESSIONS: dict[str, Callable[[str, Sequence[bytes]], Awaitable[Tally]]] = {
    "trio": trio_session,
    "websockets-trio": websockets_trio_session,
}


ASYNCIO_SESSIONS: dict[str, Callable[[str, Sequence[bytes]], Awaitable[Tally]]] = {
    "asyncio": asyncio_session,
    "official": official_session,
    "official-transcribe": official_transcribe_session,
    "websockets": websockets_session,
}


def run_session(client: str, url: str, frames: Sequence[bytes]) -> tuple[Tally, float, float]:
    """One session in a fresh event loop: what it got, its CPU seconds and wall seconds."""
    result: list[tuple[Tally, float, float]] = []

    async def measured_asyncio() -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        tally = await ASYNCIO_SESSIONS[client](url, frames)
        result.append((tally, time.process_time() - cpu, time.perf_counter() - wall))

    async def measured_trio() -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        tally = await TRIO_SESSIONS[client](url, frames)
        result.append((tally, time.process_time() - cpu, time.perf_counter() - wall))

    if client in SYNC_SESSIONS:
        cpu, wall = time.process_time(), time.perf_counter()
        tally = SYNC_SESSIONS[client](url, frames)
        result.append((tally, time.process_time() - cpu, time.perf_counter() - wall))
    elif client in TRIO_SESSIONS:
        trio.run(measured_trio)
    else:
        asyncio.run(measured_asyncio())
    return result[0]


def say(message: dict[str, Any]) -> None:
    """A line to the benchmark's main process."""
    print(json.dumps(message), flush=True)


def wait_for_go() -> None:
    """Tell the main process a measured run is about to start; wait for its go-ahead
    (it reads the servers' CPU in between)."""
    say({"ready": True})
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the main process went away")


def stream_worker(spec: dict[str, Any]) -> None:
    """A warm-up session, then ``repeats`` measured ones, each in a fresh event loop."""
    client, url, chunk = spec["client"], spec["urls"][0], spec["chunk"]
    pcm, expected = speech(spec["seconds"], noise=spec["noise"])
    frames = chunks(pcm, chunk)
    warm_pcm, warm_expected = speech(min(5.0, spec["seconds"]), noise=spec["noise"])
    tally, _, _ = run_session(client, url, chunks(warm_pcm, chunk))
    if tally.words != warm_expected:
        raise SystemExit(f"{client}: the warm-up got {tally.words} of {warm_expected} words")
    for _ in range(spec["repeats"]):
        wait_for_go()
        tally, cpu, wall = run_session(client, url, frames)
        say(
            {
                "result": {
                    "cpu": cpu,
                    "wall": wall,
                    "audio": len(pcm) / 32000,
                    "frames": len(frames),
                    "acks": tally.acks,
                    "words": tally.words,
                    "expected": expected,
                }
            }
        )


@dataclass
class Realtime:
    """What the real-time sessions of one run saw."""

    send_lags: list[float] = field(default_factory=list)  # per session: its worst
    acks: list[float] = field(default_factory=list)  # ack latencies
    words: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def realtime_session(
    url: str,
    frames: Sequence[bytes],
    chunk: float,
    delay: float,
    phase: float,
    ready: asyncio.Barrier,
    go: asyncio.Event,
    start: list[float],
    stats: Realtime,
) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    worst = 0.0
    waited = False
    try:
        await asyncio.sleep(delay)  # connections opened over a few seconds, not all at once
        async with smproto_asyncio.connect(
            url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
        ) as session:
            sent_at: dict[int, float] = {}

            async def read() -> None:
                async for event in session:
                    if isinstance(event, AudioAdded) and event.seq_no in sent_at:
                        stats.acks.append(loop.time() - sent_at.pop(event.seq_no))
                    tally.event(event)

            waited = True
            await ready.wait()
            await go.wait()
            reader = asyncio.create_task(read())
            for i, frame in enumerate(frames):
                due = start[0] + phase + i * chunk
                if (ahead := due - loop.time()) > 0:
                    await asyncio.sleep(ahead)
                before = loop.time()
                seq_no = await session.send_audio(frame)
                sent_at[seq_no] = before
                worst = max(worst, loop.time() - due)
            await session.end_of_stream()
            await reader
    except Exception as exc:
        stats.failures.append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        if not waited:
            await ready.wait()
        stats.words.append(tally.words)
        stats.send_lags.append(worst)


async def realtime_run(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    n, urls, chunk = spec["sessions"], spec["urls"], spec["chunk"]
    pcm, expected = speech(spec["seconds"], noise=spec["noise"])
    frames = chunks(pcm, chunk)
    stats = Realtime()
    ready = asyncio.Barrier(n + 1)
    go = asyncio.Event()
    start = [math.inf]
    rng = random.Random(n)
    spread = min(5.0, n * 0.01)
    tasks = [
        asyncio.create_task(
            realtime_session(
                urls[i % len(urls)],
                frames,
                chunk,
                spread * i / n,
                rng.uniform(0, chunk),  # starts spread over one chunk, as independent clients'
                ready,
                go,
                start,
                stats,
            )
        )
        for i in range(n)
    ]
    await ready.wait()  # every session started (or failed to)
    await loop.run_in_executor(None, wait_for_go)
    loop_lags: list[float] = []

    async def watch_lag() -> None:  # how late this process's event loop runs
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            loop_lags.append(loop.time() - before - 0.05)

    cpu, wall = time.process_time(), time.perf_counter()
    watcher = asyncio.create_task(watch_lag())
    start[0] = loop.time()
    go.set()
    await asyncio.gather(*tasks)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    watcher.cancel()
    loop_lags.sort()
    lags = sorted(stats.send_lags)
    acks = sorted(stats.acks) or [math.nan]
    say(
        {
            "result": {
                "cpu": cpu,
                "wall": wall,
                "audio": len(pcm) / 32000,
                "sessions": n,
                "send_lag_max": lags[-1],
                "send_lag_p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
                "ack_p50": acks[len(acks) // 2],
                "ack_p99": acks[min(len(acks) - 1, int(len(acks) * 0.99))],
                "loop_lag_max": loop_lags[-1] if loop_lags else 0.0,
                "incomplete": sum(1 for w in stats.words if w != expected),
                "failures": stats.failures[:5],
                "failed": len(stats.failures),
            }
        }
    )


def profile_worker(spec: dict[str, Any]) -> None:
    """cProfile over one ``smproto_asyncio`` session (after a warm-up), to stderr."""
    url, chunk = spec["urls"][0], spec["chunk"]
    pcm, _ = speech(spec["seconds"], noise=spec["noise"])
    frames = chunks(pcm, chunk)
    run_session("asyncio", url, chunks(speech(5.0, noise=spec["noise"])[0], chunk))
    profiler = cProfile.Profile(time.process_time)  # CPU time: other processes do not count
    profiler.enable()
    _, cpu, wall = run_session("asyncio", url, frames)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    print(
        f"\n## cProfile: smproto_asyncio, {len(pcm) / 32000:.0f} s of audio in {chunk:g} s "
        f"chunks ({cpu:.2f} CPU-s under the profiler, {wall:.2f} s wall)\n",
        file=sys.stderr,
    )
    print(out.getvalue(), file=sys.stderr, flush=True)


def worker(spec: dict[str, Any]) -> None:
    if spec["mode"] == "stream":
        stream_worker(spec)
    elif spec["mode"] == "realtime":
        asyncio.run(realtime_run(spec))
    elif spec["mode"] == "profile":
        profile_worker(spec)


# ========================================================================== the main process


@dataclass
class Measured:
    """One measured run: the client's report and each server's CPU over it."""

    result: dict[str, Any]
    server_cpu: list[float]
    server_lag: list[float] = field(default_factory=list)  # each server's worst loop lag
    machine_cpu: float = math.nan  # the whole machine's busy CPU-seconds over the run

    @property
    def audio(self) -> float:
        return float(self.result["audio"])

    @property
    def cpu(self) -> float:
        return float(self.result["cpu"])

    @property
    def wall(self) -> float:
        return float(self.result["wall"])

    @property
    def client_share(self) -> float:
        return self.cpu / self.wall

    @property
    def others(self) -> float:
        """The cores other processes kept busy meanwhile (the machine's busy time less
        the client's and the servers')."""
        return max(0.0, self.machine_cpu - self.cpu - sum(self.server_cpu)) / self.wall

    @property
    def machine_share(self) -> float:
        """The share of all the machine's CPUs busy over the run (every process)."""
        return self.machine_cpu / self.wall / (os.cpu_count() or 1)

    @property
    def sessions(self) -> int:
        return int(self.result.get("sessions", 1))

    @property
    def server_share(self) -> float:
        """The busiest server's share of a core."""
        return max(self.server_cpu) / self.wall


class Worker:
    """A client process: it warms up, then runs a measured session each time it is told
    to; the servers' CPU is read just before and just after."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        spec: dict[str, Any],
        servers: Sequence[ServerProcess],
    ) -> None:
        self.proc = proc
        self.spec = spec
        self.servers = servers

    @classmethod
    async def start(
        cls, spec: dict[str, Any], servers: Sequence[ServerProcess], script: str = __file__
    ) -> Worker:
        """Start ``script --worker SPEC`` (this script's worker, unless told otherwise)."""
        spec = {**spec, "urls": [s.url for s in servers]}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            script,
            "--worker",
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,  # a result line may be long (bench_latency.py's latencies)
        )
        return cls(proc, spec, servers)

    async def _expect(self, key: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                message: dict[str, Any] = json.loads(line)
            except ValueError:
                sys.stderr.write(line.decode(errors="replace"))
                continue
            if key in message:
                return message
        await self.close()
        raise SystemExit(f"the {self.spec['mode']} worker ended early")

    async def run(self) -> Measured:
        assert self.proc.stdin is not None
        await self._expect("ready")
        before = [await s.mark() for s in self.servers]
        busy = machine_busy()
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()
        result = (await self._expect("result"))["result"]
        busy = machine_busy() - busy
        after = [await s.mark() for s in self.servers]
        cpu = [a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True)]
        return Measured(result, cpu, [a["lag_max"] for a in after], busy)

    async def close(self) -> None:
        if await self.proc.wait() != 0:
            what = self.spec.get("client", "")
            raise SystemExit(f"the {self.spec['mode']} worker failed ({what})")


async def run_worker(
    spec: dict[str, Any], servers: Sequence[ServerProcess], runs: int = 1
) -> list[Measured]:
    worker = await Worker.start({**spec, "repeats": runs}, servers)
    measured = [await worker.run() for _ in range(runs)]
    await worker.close()
    return measured


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def check_words(runs: Sequence[Measured], what: str) -> None:
    for run in runs:
        if run.result["words"] != run.result["expected"]:
            raise SystemExit(f"{what}: got {run.result['words']} of {run.result['expected']} words")


async def part1(
    server: ServerProcess,
    seconds: float,
    chunk_sizes: Sequence[float],
    repeats: int,
    clients: Sequence[str],
) -> None:
    rows: list[list[str]] = []
    notes: list[str] = []
    others: list[float] = []
    for audio, noise in AUDIO.items():
        for chunk in chunk_sizes:
            cost: dict[str, float] = {}
            chunk_rows: dict[str, list[str]] = {}
            spec = {
                "mode": "stream",
                "seconds": seconds,
                "chunk": chunk,
                "noise": noise,
                "repeats": repeats,
            }
            workers = [await Worker.start({**spec, "client": c}, [server]) for c in clients]
            runs: dict[str, list[Measured]] = {client: [] for client in clients}
            for i in range(repeats):
                # Interleaved, in a rotating order: whatever else the machine does is
                # spread over every client alike.
                for j in range(len(clients)):
                    k = (i + j) % len(clients)
                    runs[clients[k]].append(await workers[k].run())
            for worker in workers:
                await worker.close()
            others += [r.others for rs in runs.values() for r in rs]
            for client in clients:
                name = CLIENTS[client]
                check_words(runs[client], name)
                per_audio = [r.cpu / r.audio for r in runs[client]]
                cost[client] = median(per_audio)
                wall = median([r.wall for r in runs[client]])
                first = runs[client][0]
                print(
                    f"  {audio}, {chunk:g} s chunks, {name}: "
                    f"{cost[client] * 1000:.2f} ms CPU per audio-s",
                    file=sys.stderr,
                    flush=True,
                )
                FIGURES[f"cpu/{audio}/{chunk:g}/{client}"] = figure(
                    f"{name}, {audio}, {chunk:g} s chunks", cost[client] * 1000, "ms / audio-s"
                )
                chunk_rows[client] = [
                    audio,
                    f"{chunk:g} s ({first.result['frames']})",
                    name,
                    f"{cost[client] * 1000:.2f}",
                    f"{min(per_audio) * 1000:.2f} to {max(per_audio) * 1000:.2f}",
                    f"{1e6 * cost[client] * chunk:.0f}",
                    f"{first.audio / wall:.0f}x",
                    f"{median([r.server_cpu[0] / r.audio for r in runs[client]]) * 1000:.2f}",
                ]
            for client, row in chunk_rows.items():
                official = ratio(cost[client], cost["official"]) if "official" in cost else ""
                floor = FLOORS.get(client, "")
                below = ratio(cost[client], cost[floor]) if floor in cost else ""
                rows.append([*row, official, below])
            for ours in FLOORS:
                if ours not in cost or "official" not in cost:
                    continue
                verdict = "met" if cost[ours] <= 0.5 * cost["official"] else "NOT met"
                also = (
                    f" and {ratio(cost[ours], cost['official-transcribe'])} of its transcribe()"
                    if "official-transcribe" in cost
                    else ""
                )
                notes.append(
                    f"- {audio}, {chunk:g} s chunks: {CLIENTS[ours]} costs "
                    f"{ratio(cost[ours], cost['official'])} of speechmatics-rt's send_audio() "
                    f"loop (goal <= 0.5x: {verdict}){also}."
                )
    print(
        f"\n### 1. Client CPU per second of audio ({seconds:g} s of audio, as fast as the "
        f"client goes, median of {repeats}, interleaved)\n"
    )
    header = [
        "audio",
        "chunks (frames)",
        "client",
        "client CPU ms / audio-s",
        "range",
        "client CPU us / chunk",
        "x real time",
        "server CPU ms / audio-s",
        "vs speechmatics-rt send_audio()",
        "vs its floor",
    ]
    print(table(header, rows))
    print()
    print("\n".join(notes))
    print(
        "- *vs its floor*: each of our drivers against bare websockets on the same "
        "concurrency model (smproto_asyncio: asyncio; smproto_trio: websockets' trio "
        "implementation; smproto_sync: websockets.sync, a reading thread and a sending "
        "thread)."
    )
    print(
        "- The official client has no flow control: it writes as fast as TCP takes the "
        "audio; ours keep at most 10 s of audio unacknowledged (the default window). "
        "The official client negotiates permessage-deflate (websockets' default), so "
        "each of its audio frames is deflated; ours and the bare floor send uncompressed."
    )
    print(
        f"- Other processes kept {median(others):.2f} cores busy during the median "
        f"session (the machine has {os.cpu_count()})."
    )
    FIGURES["cpu/others"] = figure("other processes' load, part 1", median(others), "cores")


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x"


async def part2(
    server: ServerProcess, seconds: float, chunk_sizes: Sequence[float], audio: str
) -> None:
    rows: list[list[str]] = []
    for chunk in chunk_sizes:
        spec = {
            "mode": "stream",
            "client": "asyncio",
            "seconds": seconds,
            "chunk": chunk,
            "noise": AUDIO[audio],
        }
        (run,) = await run_worker(spec, [server])
        check_words([run], "the long file")
        client, srv = run.client_share, run.server_share
        cpus = os.cpu_count() or 1
        if srv >= SERVER_SATURATED and srv >= client:
            limit = "server-limited"
        elif client >= SERVER_SATURATED:
            limit = "client-limited"
        elif client + srv + run.others >= 0.9 * cpus:
            limit = "CPU-starved: the machine's cores were all busy"
        else:
            limit = "neither saturated (latency-bound)"
        print(
            f"  {seconds:g} s file in {chunk:g} s chunks: {run.audio / run.wall:.0f}x real time",
            file=sys.stderr,
            flush=True,
        )
        FIGURES[f"long/{chunk:g}"] = figure(
            f"a {seconds / 60:g}-minute file, {chunk:g} s chunks",
            run.audio / run.wall,
            "x real time",
            limit,
        )
        rows.append(
            [
                f"{chunk:g} s",
                f"{run.audio:.0f}",
                f"{run.wall:.2f}",
                f"{run.audio / run.wall:.0f}x",
                f"{client:.0%}",
                f"{srv:.0%}",
                f"{1000 * run.cpu / run.audio:.2f}",
                f"{1000 * run.server_cpu[0] / run.audio:.2f}",
                f"{run.others:.2f}",
                limit,
            ]
        )
    print(
        f"\n### 2. Faster than real time: a {seconds / 60:g}-minute file ({audio}) through "
        "smproto_asyncio (flow control on, 10 s window)\n"
    )
    header = [
        "chunks",
        "audio s",
        "wall s",
        "speed-up",
        "client share of a core",
        "server share of a core",
        "client CPU ms / audio-s",
        "server CPU ms / audio-s",
        "other processes, cores",
        "limited by",
    ]
    print(table(header, rows))


def verdict(run: Measured, max_lag: float) -> str:
    """``held``, or what gave out first.

    The client is behind when its own event loop ran late or it saturated its core; the
    server, when it saturated its core, its loop ran late, or it acknowledged late (a
    client whose sends are late while its own loop is on time is held back by the
    server's TCP back-pressure).
    """
    r = run.result
    if r["failed"] or r["incomplete"]:
        return "failed"
    if run.client_share >= SATURATED:
        return "client saturated"
    if r["loop_lag_max"] > max_lag:
        return "client behind"
    if run.server_share >= SERVER_SATURATED:
        return "server saturated"
    if max(run.server_lag) > max_lag or r["ack_p99"] > max_lag or r["send_lag_max"] > max_lag:
        return "server behind"
    return "held"


def server_bound(run: Measured, max_lag: float) -> bool:
    """Whether the server, not the client, is what gave out."""
    return verdict(run, max_lag).startswith("server")


async def part3(
    servers: list[ServerProcess],
    max_servers: int,
    counts: Sequence[int],
    seconds: float,
    max_lag: float,
    audio: str,
) -> None:
    rows: list[list[str]] = []
    held: list[Measured] = []
    last: Measured | None = None
    queue = list(counts)
    while queue:
        n = queue[0]
        spec = {
            "mode": "realtime",
            "sessions": n,
            "seconds": seconds,
            "chunk": 0.1,
            "noise": AUDIO[audio],
        }
        (run,) = await run_worker(spec, servers)
        r = run.result
        v = verdict(run, max_lag)
        bound = server_bound(run, max_lag)
        print(
            f"  {n} sessions on {len(servers)} server(s): {v} (client {run.client_share:.0%}, "
            f"busiest server {run.server_share:.0%} of a core, send lag max "
            f"{ms(r['send_lag_max'])} ms)",
            file=sys.stderr,
            flush=True,
        )
        for failure in r["failures"][:3]:
            print(f"    {failure}", file=sys.stderr)
        if bound and len(servers) < max_servers:
            print("    the server gave out first: one more server process", file=sys.stderr)
            servers.append(await ServerProcess.start())
            await asyncio.sleep(0.5)
            continue  # the same N again, spread wider
        queue.pop(0)
        last = run
        rows.append(
            [
                str(n),
                str(len(servers)),
                f"{n * run.audio:.0f}",
                f"{run.cpu:.2f}",
                f"{1000 * run.cpu / (n * run.audio):.2f}",
                f"{run.client_share:.0%}",
                ms(r["send_lag_p99"]),
                ms(r["send_lag_max"]),
                ms(r["ack_p50"]),
                ms(r["ack_p99"]),
                ms(r["loop_lag_max"]),
                " / ".join(f"{c / run.wall:.0%}" for c in run.server_cpu),
                ms(max(run.server_lag)),
                f"{run.others:.2f}",
                f"{run.machine_share:.0%}",
                f"{r['incomplete'] + r['failed']}",
                v
                + (" (server-bound)" if bound else "")
                + (" (machine full)" if run.machine_share >= 0.9 else ""),
            ]
        )
        if v != "held":
            break
        held.append(run)
        await asyncio.sleep(1.0)
    print(
        f"\n### 3. Real-time sessions per client core (smproto_asyncio, {seconds:g} s of "
        f"{audio} audio each, 0.1 s chunks at real time, all from one process)\n"
    )
    header = [
        "sessions",
        "server processes",
        "session-s",
        "client CPU s",
        "client CPU ms / session-s",
        "client share of a core",
        "send lag p99 ms",
        "send lag max ms",
        "ack p50 ms",
        "ack p99 ms",
        "client loop lag max ms",
        "server share of a core (each)",
        "server loop lag max ms",
        "other processes, cores",
        "machine busy, all CPUs",
        "sessions short of words",
        "verdict",
    ]
    print(table(header, rows))
    print()
    if held:
        best = held[-1]
        per = 1000 * best.cpu / (best.sessions * best.audio)
        FIGURES["realtime/held"] = figure(
            "real-time sessions held by one client process",
            best.sessions,
            "sessions",
            f"{best.client_share:.0%} of a core",
        )
        FIGURES["realtime/per_core"] = figure(
            "sessions a full client core would hold (extrapolated)", 1000 / per, "sessions"
        )
        print(
            f"- Held at real time from one client process: {best.sessions} sessions "
            f"({best.client_share:.0%} of a core, send lag max "
            f"{ms(best.result['send_lag_max'])} ms); at {per:.2f} ms of client CPU per "
            f"session-second, a full core would be about {1000 / per:.0f} sessions."
        )
    if last is not None and verdict(last, max_lag) != "held":
        r = last.result
        FIGURES["realtime/limit"] = figure(
            "sessions at which the series stopped",
            last.sessions,
            "sessions",
            verdict(last, max_lag) + (" (server-bound)" if server_bound(last, max_lag) else ""),
        )
        print(
            f"- At {last.sessions} sessions: {verdict(last, max_lag)} (client "
            f"{last.client_share:.0%} of a core, busiest server {last.server_share:.0%}, send "
            f"lag max {ms(r['send_lag_max'])} ms, {r['incomplete']} sessions short of "
            f"words, {r['failed']} failed; the machine's CPUs {last.machine_share:.0%} busy, "
            f"other processes {last.others:.2f} cores)."
        )
        if server_bound(last, max_lag):
            per_last = 1000 * last.cpu / (last.sessions * last.audio)
            print(
                f"- The server gave out before the client, and there was no spare core for "
                f"another server process ({os.cpu_count()} CPUs: one for the client, "
                f"{max_servers} for servers): the client's own limit is above this. At "
                f"{last.sessions} sessions it took {per_last:.2f} ms of CPU per "
                f"session-second, so a core of its own would hold about "
                f"{1000 / per_last:.0f}, if the server kept up."
            )
    elif rows:
        print("- The series ended before the client fell behind: try larger --sessions.")


async def main(args: argparse.Namespace) -> None:
    print(f"## smproto client drivers vs speechmatics-rt {rt.__version__} — {machine()}\n")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average before the run: {load} (other processes share these CPUs).\n")
    print(
        "Server: smproto_server, scripted recogniser, in its own process on 127.0.0.1. "
        "Audio: tone-coded speech, two words a second, 16 kHz pcm_s16le, partials on; "
        "'tones' is the words in digital silence, 'noisy' the same over a noise floor "
        "of 0.5 % of full scale (it deflates like real audio). "
        "Client CPU: `time.process_time()` of the client's own process around each "
        "session (user + system, all threads).\n",
        flush=True,
    )
    chunk_sizes = [float(c) for c in args.chunks.split(",")]
    max_servers = args.servers or max(1, min(4, (os.cpu_count() or 2) - 1))
    servers = [await ServerProcess.start()]
    try:
        await asyncio.sleep(0.5)
        if args.profile:
            for chunk in chunk_sizes:
                spec = {
                    "mode": "profile",
                    "seconds": args.seconds,
                    "chunk": chunk,
                    "noise": AUDIO[args.audio],
                }
                await (await Worker.start(spec, servers)).close()  # it prints to stderr
            return
        parts = {int(p) for p in args.parts.split(",")}
        if 1 in parts:
            clients = args.clients.split(",")
            await part1(servers[0], args.seconds, chunk_sizes, args.repeats, clients)
        if 2 in parts:
            await part2(servers[0], args.long, chunk_sizes, args.audio)
        if 3 in parts:
            counts = [int(n) for n in args.sessions.split(",")]
            servers += [await ServerProcess.start() for _ in range(max_servers - 1)]
            await part3(
                servers, max_servers, counts, args.session_seconds, args.max_lag, args.audio
            )
    finally:
        for server in servers:
            await server.stop()
    write_summary(args.summary, "bench_clients.py", FIGURES, quick=args.quick)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 30 s)")
    parser.add_argument("--profile", action="store_true", help="cProfile smproto_asyncio")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (1,2,3)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="which clients, part 1")
    parser.add_argument(
        "--audio", choices=list(AUDIO), default="tones", help="the audio of parts 2 and 3"
    )
    parser.add_argument("--seconds", type=float, help="audio per session in part 1 (60)")
    parser.add_argument("--chunks", help="chunk sizes in seconds (0.1,0.02)")
    parser.add_argument("--repeats", type=int, help="measured sessions per client (5)")
    parser.add_argument("--long", type=float, help="the long file's seconds, part 2 (600)")
    parser.add_argument("--sessions", help="rising session counts, part 3")
    parser.add_argument("--session-seconds", type=float, help="seconds per session, part 3 (20)")
    parser.add_argument("--servers", type=int, help="most server processes in part 3")
    parser.add_argument(
        "--max-lag", type=float, default=0.5, help="seconds late a send may be (part 3)"
    )
    parser.add_argument("--summary", metavar="PATH", help="write the headline figures as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    quick = args.quick
    args.seconds = args.seconds or (5.0 if quick else 60.0)
    args.chunks = args.chunks or "0.1,0.02"
    args.repeats = args.repeats or (1 if quick else 5)
    args.long = args.long or (30.0 if quick else 600.0)
    args.sessions = args.sessions or ("5,20" if quick else "50,100,200,300,400,500,600,800")
    args.session_seconds = args.session_seconds or (3.0 if quick else 20.0)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
