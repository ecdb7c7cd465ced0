"""Event delivery latency: from the server's write of an ``AddTranscript`` to the
application holding the event, for each client, at 1 and at many concurrent sessions.

    python bench/bench_latency.py [--quick] [--sessions 1,300] [--clients ...]
                                  [--seconds S] [--concurrent-seconds S] [--repeats N]

**What is measured.** The local server (``serve()`` with :class:`ScriptedRecognizer`, in
a process of its own, ``bench/_common.py``) stamps each ``AddTranscript`` it writes with
the time of the write: a top-level field ``bench_sent_ns`` holding
``time.monotonic_ns()``, put into the message's text by a wrapper around ``websockets``'
``send()`` in the server's process, in the same step of its event loop as the frame is
written to the socket (the server itself is not changed). The client reads the same
clock the moment the application gets the event, and the difference is the latency:
the write, loopback TCP, the client's wake-up, ``websockets``' reading and framing, the
client's parsing, its engine and session, and the hand-over to the application's code.
On Linux ``time.monotonic_ns()`` is ``CLOCK_MONOTONIC``, one clock for every process of
the machine (so are macOS's and Windows'); the script refuses clocks it does not know,
and a negative latency (clocks not shared) stops the run.

Where "the application gets the event" is, for each client:

- ``smproto_asyncio``, ``smproto_trio``: the ``async for event in session`` loop body
  (``event.raw["bench_sent_ns"]``), with a task sending the audio;
- ``smproto_sync``: the ``for event in session`` loop body, in the thread iterating,
  with another thread sending (one such pair per session);
- ``speechmatics-rt``: its ``AddTranscript`` handler (``AsyncClient.on()``), with
  ``send_audio()`` in a loop and ``stop_session()``;
- bare ``websockets`` (asyncio, trio, and ``websockets.sync`` with a reading thread):
  right after ``json.loads`` of the message, no protocol engine: the floor under any
  client on that stack.

Every client does the same with what it receives as in ``bench_clients.py`` (counts the
acks, keeps the latest partial, counts each final's words, checked against the words
said), after reading the clock.

**The sessions.** Tone-coded speech (``bench/_common.py``'s ``speech()``: a 0.3 s word
every 0.5 s, partials on, 16 kHz ``pcm_s16le``) in 0.1 s chunks paced at real time;
the scripted recogniser sends an ``AddTranscript`` for each word, in the reply to the chunk
in which the word's trailing silence reaches 0.1 s (two a second per session, each
written right after that chunk's ``AudioAdded``). ``--seconds`` (60) of audio at one
session, ``--concurrent-seconds`` (20) each at more; the sessions of a run start their
audio together (each at a random phase within one chunk, as independent clients would),
after opening their connections over ``min(5, N / 100)`` seconds. Each run is a fresh
client process with one short unpaced warm-up session first; ``--repeats`` runs per
client and session count are pooled (interleaved, in a rotating order).

**What limited a run.** Server and clients share the machine. For each run the output
gives the client's and the busiest server's share of a core, each event loop's worst
lateness (for ``smproto_sync`` and the ``websockets.sync`` floor, a thread's oversleep),
the machine's busy share and other processes' load; a run whose client or server
saturated a core or fell behind (its event loop more than 0.5 s late), or whose machine
was full, says so. At many sessions the sessions are spread over several server
processes when one server gives out and there is a spare core (at most one server per
CPU but one, up to four, or ``--servers``, as ``bench_clients.py`` part 3 does); where
there is none, the output says the server (or the machine) was the limit. One client's
sessions run at a time: each run's client process is started for it.

The goal line compares each of our drivers' p99 at one session with bare
``websockets``' (asyncio): within 1 ms is met.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "drivers")]

import smproto_asyncio  # noqa: E402
import smproto_sync  # noqa: E402
import smproto_trio  # noqa: E402
from bench._common import (  # noqa: E402
    STAMP,
    ServerProcess,
    chunks,
    clock_ns,
    machine,
    ms,
    speech,
    table,
)
from bench._summary import figure, write_summary  # noqa: E402
from bench.bench_clients import (  # noqa: E402  # the same clients and worker machinery
    CONFIG,
    FORMAT,
    KEY,
    RT_CONFIG,
    SATURATED,
    SERVER_SATURATED,
    Measured,
    Tally,
    Worker,
    bare_start,
    bare_sync_start,
    rt,
    rt_format,
    say,
    wait_for_go,
    ws_connect,
    ws_sync_connect,
    ws_trio_connect,
)
from smproto.events import AddTranscript  # noqa: E402

CLIENTS = {
    "asyncio": "smproto_asyncio",
    "trio": "smproto_trio",
    "sync": "smproto_sync",
    "official": "speechmatics-rt AsyncClient",
    "websockets": "bare websockets (floor)",
    "websockets-trio": "bare websockets on trio (floor)",
    "websockets-sync": "bare websockets.sync (floor)",
}
#: Our drivers, each with the floor under it (bare websockets on its concurrency model).
FLOORS = {"asyncio": "websockets", "trio": "websockets-trio", "sync": "websockets-sync"}
CHUNK = 0.1
#: The goal: each driver's p99 at one session at most this far above bare websockets'.
GOAL_MS = 1.0
#: An event loop (or a sleeping thread) this late, in seconds, has fallen behind.
MAX_LAG = 0.5
#: The clocks known to be one clock for every process of the machine.
SHARED_CLOCKS = (
    "clock_gettime(CLOCK_MONOTONIC)",
    "mach_absolute_time()",
    "QueryPerformanceCounter()",
)
FIGURES: dict[str, dict[str, Any]] = {}


# ======================================================================== the client process


@dataclass
class Run:
    """What the sessions of one run saw."""

    latencies: list[int] = field(default_factory=list)  # ns, every AddTranscript
    words: list[int] = field(default_factory=list)  # per session
    send_lags: list[float] = field(default_factory=list)  # per session: its worst
    failures: list[str] = field(default_factory=list)

    def final(self, stamp: int) -> None:
        """An ``AddTranscript`` in the application's hands now, written at ``stamp``."""
        self.latencies.append(clock_ns() - stamp)


class Gate:
    """Every session opens its connection, then waits here; the audio starts once all
    have (or failed to), at ``start`` (a ``time.monotonic()``)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.arrived: set[int] = set()
        self.start = math.inf

    def arrive(self, i: int) -> bool:
        """Session ``i`` is here (once); True when it was the last."""
        if i in self.arrived:
            return False
        self.arrived.add(i)
        self.left -= 1
        return self.left == 0


class AsyncioGate(Gate):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.all_in, self.go = asyncio.Event(), asyncio.Event()

    def leave(self, i: int) -> None:
        if self.arrive(i):
            self.all_in.set()

    async def wait(self, i: int) -> float:
        self.leave(i)
        await self.go.wait()
        return self.start


class TrioGate(Gate):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.all_in, self.go = trio.Event(), trio.Event()

    def leave(self, i: int) -> None:
        if self.arrive(i):
            self.all_in.set()

    async def wait(self, i: int) -> float:
        self.leave(i)
        await self.go.wait()
        return self.start


class ThreadGate(Gate):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.lock = threading.Lock()
        self.all_in, self.go = threading.Event(), threading.Event()

    def leave(self, i: int) -> None:
        with self.lock:
            last = self.arrive(i)
        if last:
            self.all_in.set()

    def wait(self, i: int) -> float:
        self.leave(i)
        self.go.wait()
        return self.start


def frames_spec(spec: dict[str, Any]) -> tuple[list[bytes], int]:
    pcm, expected = speech(spec["seconds"])
    return chunks(pcm, CHUNK), expected


async def pace(
    frames: Sequence[bytes],
    start: float,
    phase: float,
    send: Callable[[bytes], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[Any]],
) -> float:
    """Send each frame at its real time (``start + phase + i * CHUNK``; every frame at
    once when ``start`` is ``-inf``, the warm-up); the worst lateness of a send."""
    worst = 0.0
    for i, frame in enumerate(frames):
        due = start + phase + i * CHUNK
        if (ahead := due - time.monotonic()) > 0:
            await sleep(ahead)
        await send(frame)
        worst = max(worst, time.monotonic() - due)
    return worst if math.isfinite(start) else 0.0


def pace_sync(
    frames: Sequence[bytes], start: float, phase: float, send: Callable[[bytes], Any]
) -> float:
    """:func:`pace` on a thread."""
    worst = 0.0
    for i, frame in enumerate(frames):
        due = start + phase + i * CHUNK
        if (ahead := due - time.monotonic()) > 0:
            time.sleep(ahead)
        send(frame)
        worst = max(worst, time.monotonic() - due)
    return worst if math.isfinite(start) else 0.0


def end_of_stream(frames: Sequence[bytes]) -> str:
    return json.dumps({"message": "EndOfStream", "last_seq_no": len(frames)})


def bare_message(raw: str | bytes, tally: Tally, run: Run) -> bool:
    """What a bare client does with a message; True at ``EndOfTranscript``."""
    message = json.loads(raw)
    kind = message["message"]
    if kind == "AddTranscript":
        run.final(message[STAMP])
    tally.message(message)
    if kind == "Error":
        raise RuntimeError(message)
    return bool(kind == "EndOfTranscript")


# ----------------------------------------------------------------------------- asyncio

AsyncioSession = Callable[[str, Sequence[bytes], float, AsyncioGate, int, Run], Awaitable[Tally]]


async def asyncio_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: AsyncioGate, i: int, run: Run
) -> Tally:
    tally = Tally()
    async with smproto_asyncio.connect(
        url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
    ) as session:
        start = await gate.wait(i)

        async def send() -> float:
            lag = await pace(frames, start, phase, session.send_audio, asyncio.sleep)
            await session.end_of_stream()
            return lag

        sender = asyncio.create_task(send())
        async for event in session:
            if type(event) is AddTranscript:
                run.final(event.raw[STAMP])
            tally.event(event)
        run.send_lags.append(await sender)
    return tally


async def official_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: AsyncioGate, i: int, run: Run
) -> Tally:
    tally = Tally()

    def on_final(message: dict[str, Any]) -> None:
        run.final(message[STAMP])
        tally.message(message)

    async with rt.AsyncClient(api_key=KEY, url=url) as client:
        client.on(rt.ServerMessageType.AUDIO_ADDED, tally.message)
        client.on(rt.ServerMessageType.ADD_PARTIAL_TRANSCRIPT, tally.message)
        client.on(rt.ServerMessageType.ADD_TRANSCRIPT, on_final)
        await client.start_session(transcription_config=RT_CONFIG, audio_format=rt_format(frames))
        start = await gate.wait(i)
        run.send_lags.append(await pace(frames, start, phase, client.send_audio, asyncio.sleep))
        await client.stop_session()  # EndOfStream, then waits for EndOfTranscript
    return tally


async def websockets_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: AsyncioGate, i: int, run: Run
) -> Tally:
    tally = Tally()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with ws_connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        await bare_start(ws)
        start = await gate.wait(i)

        async def read() -> None:
            async for raw in ws:
                if bare_message(raw, tally, run):
                    return

        reader = asyncio.create_task(read())
        run.send_lags.append(await pace(frames, start, phase, ws.send, asyncio.sleep))
        await ws.send(end_of_stream(frames))
        await reader
    return tally


ASYNCIO: dict[str, AsyncioSession] = {
    "asyncio": asyncio_latency,
    "official": official_latency,
    "websockets": websockets_latency,
}


async def asyncio_run(spec: dict[str, Any], *, warm_up: bool = False) -> dict[str, Any]:
    session, urls, n = ASYNCIO[spec["client"]], spec["urls"], spec["sessions"]
    frames, expected = frames_spec(spec)
    run, gate, rng = Run(), AsyncioGate(n), random.Random(n)
    spread = spec["spread"]

    async def one(i: int, phase: float) -> None:
        tally = Tally()
        try:
            await asyncio.sleep(spread * i / n)
            tally = await session(urls[i % len(urls)], frames, phase, gate, i, run)
        except Exception as exc:
            run.failures.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            gate.leave(i)
            run.words.append(tally.words)

    phases = [rng.uniform(0, CHUNK) if n > 1 else 0.0 for _ in range(n)]
    tasks = [asyncio.create_task(one(i, phases[i])) for i in range(n)]
    await gate.all_in.wait()
    if not warm_up:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_go)
    lags: list[float] = []

    async def watch() -> None:  # how late this process's event loop runs
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - before - 0.05)

    cpu, wall = time.process_time(), time.perf_counter()
    watcher = asyncio.create_task(watch())
    gate.start = -math.inf if warm_up else time.monotonic() + 0.05
    gate.go.set()
    await asyncio.gather(*tasks)
    watcher.cancel()
    return report(spec, run, expected, lags, time.process_time() - cpu, time.perf_counter() - wall)


# -------------------------------------------------------------------------------- trio

TrioSession = Callable[[str, Sequence[bytes], float, TrioGate, int, Run], Awaitable[Tally]]


async def trio_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: TrioGate, i: int, run: Run
) -> Tally:
    tally = Tally()
    async with smproto_trio.connect(
        url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
    ) as session:
        start = await gate.wait(i)

        async def send() -> None:
            run.send_lags.append(await pace(frames, start, phase, session.send_audio, trio.sleep))
            await session.end_of_stream()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            async for event in session:
                if type(event) is AddTranscript:
                    run.final(event.raw[STAMP])
                tally.event(event)
    return tally


async def websockets_trio_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: TrioGate, i: int, run: Run
) -> Tally:
    tally = Tally()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with ws_trio_connect(
        url, additional_headers=headers, max_size=None, compression=None
    ) as ws:
        await bare_start(ws)
        start = await gate.wait(i)

        async def read() -> None:
            async for raw in ws:
                if bare_message(raw, tally, run):
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            run.send_lags.append(await pace(frames, start, phase, ws.send, trio.sleep))
            await ws.send(end_of_stream(frames))
    return tally


TRIO: dict[str, TrioSession] = {"trio": trio_latency, "websockets-trio": websockets_trio_latency}


async def trio_run(spec: dict[str, Any], *, warm_up: bool = False) -> dict[str, Any]:
    session, urls, n = TRIO[spec["client"]], spec["urls"], spec["sessions"]
    frames, expected = frames_spec(spec)
    run, gate, rng = Run(), TrioGate(n), random.Random(n)
    spread = spec["spread"]
    lags: list[float] = []
    measured: list[tuple[float, float]] = []

    async def one(i: int, phase: float) -> None:
        tally = Tally()
        try:
            await trio.sleep(spread * i / n)
            tally = await session(urls[i % len(urls)], frames, phase, gate, i, run)
        except Exception as exc:
            run.failures.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            gate.leave(i)
            run.words.append(tally.words)

    async def watch() -> None:
        while True:
            before = time.monotonic()
            await trio.sleep(0.05)
            lags.append(time.monotonic() - before - 0.05)

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as sessions:
            for i in range(n):
                sessions.start_soon(one, i, rng.uniform(0, CHUNK) if n > 1 else 0.0)
            await gate.all_in.wait()
            if not warm_up:
                await trio.to_thread.run_sync(wait_for_go)
            measured.append((time.process_time(), time.perf_counter()))
            outer.start_soon(watch)
            gate.start = -math.inf if warm_up else time.monotonic() + 0.05
            gate.go.set()
        cpu, wall = time.process_time() - measured[0][0], time.perf_counter() - measured[0][1]
        outer.cancel_scope.cancel()
    return report(spec, run, expected, lags, cpu, wall)


# ----------------------------------------------------------------------------- threads

SyncSession = Callable[[str, Sequence[bytes], float, ThreadGate, int, Run], Tally]


def sync_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: ThreadGate, i: int, run: Run
) -> Tally:
    tally = Tally()
    failed: list[BaseException] = []
    with smproto_sync.connect(
        url, api_key=KEY, transcription_config=CONFIG, audio_format=FORMAT
    ) as session:
        start = gate.wait(i)

        def send() -> None:
            try:
                run.send_lags.append(pace_sync(frames, start, phase, session.send_audio))
                session.end_of_stream()
            except BaseException as exc:  # the iteration raises the session's failure
                failed.append(exc)

        sender = threading.Thread(target=send, name=f"bench sender {i}")
        sender.start()
        for event in session:
            if type(event) is AddTranscript:
                run.final(event.raw[STAMP])
            tally.event(event)
        sender.join()
    if failed:
        raise failed[0]
    return tally


def websockets_sync_latency(
    url: str, frames: Sequence[bytes], phase: float, gate: ThreadGate, i: int, run: Run
) -> Tally:
    tally = Tally()
    failed: list[BaseException] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with ws_sync_connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        bare_sync_start(ws)
        start = gate.wait(i)

        def send() -> None:
            try:
                run.send_lags.append(pace_sync(frames, start, phase, ws.send))
                ws.send(end_of_stream(frames))
            except BaseException as exc:
                failed.append(exc)

        sender = threading.Thread(target=send, name=f"bench sender {i}")
        sender.start()
        for raw in ws:  # this thread reads, as smproto_sync's application thread does
            if bare_message(raw, tally, run):
                break
        sender.join()
    if failed:
        raise failed[0]
    return tally


SYNC: dict[str, SyncSession] = {"sync": sync_latency, "websockets-sync": websockets_sync_latency}


def sync_run(spec: dict[str, Any], *, warm_up: bool = False) -> dict[str, Any]:
    session, urls, n = SYNC[spec["client"]], spec["urls"], spec["sessions"]
    frames, expected = frames_spec(spec)
    run, gate, rng = Run(), ThreadGate(n), random.Random(n)
    spread, opened = spec["spread"], time.monotonic()
    lock = threading.Lock()

    def one(i: int, phase: float) -> None:
        tally = Tally()
        try:
            if (ahead := opened + spread * i / n - time.monotonic()) > 0:
                time.sleep(ahead)
            tally = session(urls[i % len(urls)], frames, phase, gate, i, run)
        except Exception as exc:
            with lock:
                run.failures.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            gate.leave(i)
            with lock:
                run.words.append(tally.words)

    threads = [
        threading.Thread(
            target=one, args=(i, rng.uniform(0, CHUNK) if n > 1 else 0.0), name=f"bench {i}"
        )
        for i in range(n)
    ]
    for thread in threads:
        thread.start()
    gate.all_in.wait()
    if not warm_up:
        wait_for_go()
    lags: list[float] = []
    done = threading.Event()

    def watch() -> None:  # how late a thread that sleeps 50 ms wakes up
        while not done.is_set():
            before = time.monotonic()
            time.sleep(0.05)
            lags.append(time.monotonic() - before - 0.05)

    cpu, wall = time.process_time(), time.perf_counter()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    gate.start = -math.inf if warm_up else time.monotonic() + 0.05
    gate.go.set()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done.set()
    watcher.join()
    return report(spec, run, expected, lags, cpu, wall)


# ------------------------------------------------------------------------------ reporting


def report(
    spec: dict[str, Any],
    run: Run,
    expected: int,
    loop_lags: Sequence[float],
    cpu: float,
    wall: float,
) -> dict[str, Any]:
    return {
        "cpu": cpu,
        "wall": wall,
        "audio": spec["seconds"],
        "sessions": spec["sessions"],
        "latencies_us": [round(x / 1000, 1) for x in run.latencies],
        "send_lag_max": max(run.send_lags, default=0.0),
        "loop_lag_max": max(loop_lags, default=0.0),
        "incomplete": sum(1 for w in run.words if w != expected),
        "failed": len(run.failures),
        "failures": run.failures[:5],
    }


def execute(spec: dict[str, Any], *, warm_up: bool = False) -> dict[str, Any]:
    client = spec["client"]
    if client in SYNC:
        return sync_run(spec, warm_up=warm_up)
    if client in TRIO:
        return trio.run(functools.partial(trio_run, spec, warm_up=warm_up))
    return asyncio.run(asyncio_run(spec, warm_up=warm_up))


def worker(spec: dict[str, Any]) -> None:
    """A warm-up session (one, unpaced, short), then ``repeats`` measured runs (the main
    process starts a worker for each run: one)."""
    warm = execute({**spec, "sessions": 1, "seconds": 2.0, "spread": 0.0}, warm_up=True)
    if warm["failed"] or warm["incomplete"]:
        raise SystemExit(f"{spec['client']}: the warm-up failed: {warm['failures']}")
    for _ in range(spec["repeats"]):
        say({"result": execute(spec)})


# ========================================================================== the main process


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of sorted values (``q`` in 0..1)."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Series:
    """One client at one session count: its pooled latencies and its runs."""

    client: str
    sessions: int
    runs: list[Measured] = field(default_factory=list)
    servers: int = 1

    @property
    def latencies(self) -> list[float]:
        return sorted(x for r in self.runs for x in r.result["latencies_us"])

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) / 1000  # ms

    @property
    def limit(self) -> str:
        """What gave out during its runs, or that nothing did."""
        found: list[str] = []
        for run in self.runs:
            r = run.result
            if r["failed"] or r["incomplete"]:
                found.append(f"{r['failed']} failed, {r['incomplete']} short of words")
            found += limits(run)
        return ", ".join(dict.fromkeys(found)) or "nothing saturated or behind"

    def worst(self, what: Callable[[Measured], float]) -> float:
        return max(what(r) for r in self.runs)


def limits(run: Measured) -> list[str]:
    """What gave out in a run: a process that saturated its core or fell behind (its
    event loop, or a sleeping thread, more than ``MAX_LAG`` late), or a full machine."""
    found = []
    if run.client_share >= SATURATED:
        found.append("client saturated")
    if run.result["loop_lag_max"] > MAX_LAG:
        found.append("client behind")
    if run.server_share >= SERVER_SATURATED:
        found.append("server saturated")
    if max(run.server_lag) > MAX_LAG:
        found.append("server behind")
    if run.machine_share >= 0.9:
        found.append("machine full")
    return found


def server_bound(run: Measured) -> bool:
    """The server saturated its core or fell behind: more server processes may help."""
    return any(x.startswith("server") for x in limits(run))


async def measure(
    counts: Sequence[int],
    clients: Sequence[str],
    args: argparse.Namespace,
    servers: list[ServerProcess],
    max_servers: int,
) -> list[Series]:
    done: list[Series] = []
    for n in counts:
        seconds = args.seconds if n == 1 else args.concurrent_seconds
        while True:
            series = {c: Series(c, n, servers=len(servers)) for c in clients}
            spec = {
                "mode": "latency",
                "sessions": n,
                "seconds": seconds,
                "spread": min(5.0, n / 100),
                "repeats": 1,
            }
            for i in range(args.repeats):
                for j in range(len(clients)):  # interleaved, in a rotating order
                    client = clients[(i + j) % len(clients)]
                    # One client process at a time, started for its run: no other
                    # client's connections wait on the server meanwhile.
                    worker = await Worker.start({**spec, "client": client}, servers, __file__)
                    run = await worker.run()
                    await worker.close()
                    series[client].runs.append(run)
                    lat = sorted(run.result["latencies_us"])
                    print(
                        f"  {n} session(s), {CLIENTS[client]}: p50 "
                        f"{percentile(lat, 0.5) / 1000:.2f} ms, p99 "
                        f"{percentile(lat, 0.99) / 1000:.2f} ms over {len(lat)} finals "
                        f"(client {run.client_share:.0%}, busiest server "
                        f"{run.server_share:.0%} of a core)",
                        file=sys.stderr,
                        flush=True,
                    )
                    for failure in run.result["failures"][:3]:
                        print(f"    {failure}", file=sys.stderr, flush=True)
                    if n > 1:
                        await asyncio.sleep(1.0)  # the server closes the last sessions
            bound = [r for s in series.values() for r in s.runs if server_bound(r)]
            if bound and n > 1 and len(servers) < max_servers:
                print(
                    f"    a server gave out at {n} sessions: again on {len(servers) + 1} "
                    "server processes",
                    file=sys.stderr,
                    flush=True,
                )
                servers.append(await ServerProcess.start(stamp=True))
                await asyncio.sleep(0.5)
                continue
            break
        done += series.values()
    return done


def show(results: Sequence[Series], max_servers: int) -> None:
    rows: list[list[str]] = []
    by = {(s.client, s.sessions): s for s in results}
    for s in results:
        if not s.runs:
            continue
        lat = s.latencies
        floor = by.get((FLOORS.get(s.client, ""), s.sessions))
        versus = ""
        if floor is not None and floor.latencies:
            versus = f"{(s.p(0.99) - floor.p(0.99)):+.2f}"
        base = by.get(("websockets", s.sessions))
        versus_ws = ""
        if base is not None and base.latencies and s.client != "websockets":
            versus_ws = f"{(s.p(0.99) - base.p(0.99)):+.2f}"
        rows.append(
            [
                str(s.sessions),
                CLIENTS[s.client],
                str(len(lat)),
                f"{s.p(0.5):.2f}",
                f"{s.p(0.99):.2f}",
                f"{lat[-1] / 1000:.2f}" if lat else "",
                versus_ws,
                versus,
                f"{s.worst(lambda r: r.client_share):.0%}",
                f"{s.worst(lambda r: r.server_share):.0%} ({s.servers})",
                ms(s.worst(lambda r: r.result["loop_lag_max"])),
                ms(s.worst(lambda r: max(r.server_lag))),
                ms(s.worst(lambda r: r.result["send_lag_max"])),
                f"{s.worst(lambda r: r.machine_share):.0%}",
                f"{s.worst(lambda r: r.others):.2f}",
                s.limit,
            ]
        )
        key = f"latency/{s.sessions}/{s.client}"
        label = f"{CLIENTS[s.client]}, {s.sessions} session(s)"
        FIGURES[f"{key}/p50"] = figure(f"{label}: p50", s.p(0.5), "ms")
        FIGURES[f"{key}/p99"] = figure(f"{label}: p99", s.p(0.99), "ms", s.limit)
        FIGURES[f"{key}/max"] = figure(f"{label}: max", lat[-1] / 1000 if lat else math.nan, "ms")
        FIGURES[f"{key}/count"] = figure(f"{label}: AddTranscripts", len(lat), "events")
    print(
        "\n### AddTranscript delivery latency: from the server's write to the application's hands\n"
    )
    header = [
        "sessions",
        "client",
        "AddTranscripts",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 vs bare websockets, ms",
        "p99 vs its floor, ms",
        "client share of a core",
        "busiest server share (servers)",
        "client loop lag max ms",
        "server loop lag max ms",
        "send lag max ms",
        "machine busy, all CPUs",
        "other processes, cores",
        "limited by",
    ]
    print(table(header, rows))
    print()
    for ours, floor_name in FLOORS.items():
        mine, base = by.get((ours, 1)), by.get(("websockets", 1))
        if mine is None or base is None or not mine.latencies or not base.latencies:
            continue
        gap = mine.p(0.99) - base.p(0.99)
        met = "met" if gap <= GOAL_MS else "not met"
        own = by.get((floor_name, 1))
        floor_label = CLIENTS[floor_name].removesuffix(" (floor)")
        also = (
            f"; against its own floor ({floor_label}, p99 {own.p(0.99):.2f} ms): "
            f"{mine.p(0.99) - own.p(0.99):+.2f} ms"
            if own is not None and own.latencies and floor_name != "websockets"
            else ""
        )
        print(
            f"- {CLIENTS[ours]}: p99 within {GOAL_MS:g} ms of bare websockets at 1 session: "
            f"**{met}** (p99 {mine.p(0.99):.2f} ms vs {base.p(0.99):.2f} ms, {gap:+.2f} ms)"
            f"{also}."
        )
        FIGURES[f"latency/goal/{ours}"] = figure(
            f"{CLIENTS[ours]}: p99 minus bare websockets' at 1 session", gap, "ms", met
        )
    many = sorted({s.sessions for s in results if s.sessions > 1})
    cpus = os.cpu_count() or 1
    for n in many:
        at_n = [s for s in results if s.sessions == n]
        servers = max(s.servers for s in at_n)
        found = sorted({x for s in at_n for r in s.runs for x in limits(r)})
        who = [CLIENTS[s.client] for s in at_n if any(limits(r) for r in s.runs)]
        note = (
            f"{', '.join(found)} (in the runs of {', '.join(who)})"
            if found
            else "nothing saturated or behind"
        )
        extra = ""
        if any(x.startswith("server") for x in found) and servers >= max_servers:
            extra = (
                f" A server gave out and there was no spare core for another (at most "
                f"{max_servers} server process(es) on {cpus} CPUs, --servers): those runs "
                "were limited by the server and the machine, not only by the client. A "
                "server that falls behind writes its finals late, but each is stamped "
                "when written, so the latency still starts at the write; its catching "
                "up then comes to the client in bursts."
            )
        print(
            f"- At {n} sessions ({servers} server process(es), sharing the machine's {cpus} "
            f"CPUs with the client): {note}.{extra}"
        )
        FIGURES[f"latency/{n}/limit"] = figure(
            f"what limited the {n}-session runs",
            servers,
            "server processes",
            ", ".join(found) or "nothing saturated or behind",
        )
    print(
        "- Latency is the server's write (stamped in its process) to the application's "
        "hands (read in the client's), on one machine's CLOCK_MONOTONIC. p99 is the "
        "nearest rank over every AddTranscript of the runs pooled; with few finals (one "
        "session, about two a second) the p99 is one of the largest few and moves from "
        "run to run."
    )


async def main(args: argparse.Namespace) -> None:
    info = time.get_clock_info("monotonic")
    if info.implementation not in SHARED_CLOCKS:
        raise SystemExit(
            f"time.monotonic() is {info.implementation}: not known to be one clock for "
            "every process, so a server's stamp cannot be compared with a client's reading"
        )
    print(f"## Event delivery latency: smproto vs speechmatics-rt {rt.__version__} — {machine()}\n")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average before the run: {load} (other processes share these CPUs).\n")
    print(
        "Server: smproto_server, scripted recogniser, in its own process(es) on 127.0.0.1, "
        "stamping each AddTranscript as it writes it. Sessions: tone-coded speech (a word "
        "every 0.5 s, one AddTranscript per word), partials on, 0.1 s chunks paced at "
        f"real time; {args.seconds:g} s of audio at one session, {args.concurrent_seconds:g} "
        f"s each at more; {args.repeats} run(s) per client pooled. Clock: "
        f"{info.implementation}, shared by every process.\n",
        flush=True,
    )
    counts = [int(n) for n in args.sessions.split(",")]
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if unknown := [c for c in clients if c not in CLIENTS]:
        raise SystemExit(f"unknown clients: {', '.join(unknown)}")
    max_servers = args.servers or max(1, min(4, (os.cpu_count() or 2) - 1))
    servers = [await ServerProcess.start(stamp=True)]
    try:
        await asyncio.sleep(0.5)
        results = await measure(counts, clients, args, servers, max_servers)
    finally:
        for server in servers:
            await server.stop()
    for s in results:
        if any(x < 0 for r in s.runs for x in r.result["latencies_us"]):
            raise SystemExit(f"{CLIENTS[s.client]}: a negative latency: the clocks differ")
    show(results, max_servers)
    write_summary(args.summary, "bench_latency.py", FIGURES, quick=args.quick)


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--sessions", help="concurrent session counts (1,300)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="which clients")
    parser.add_argument("--seconds", type=float, help="audio of the one-session runs (60)")
    parser.add_argument(
        "--concurrent-seconds", type=float, help="audio per session when more than one (20)"
    )
    parser.add_argument("--repeats", type=int, help="runs per client and count, pooled (1)")
    parser.add_argument("--servers", type=int, help="most server processes")
    parser.add_argument("--summary", metavar="PATH", help="write the headline figures as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    quick = args.quick
    args.sessions = args.sessions or ("1,20" if quick else "1,300")
    args.seconds = args.seconds or (4.0 if quick else 60.0)
    args.concurrent_seconds = args.concurrent_seconds or (3.0 if quick else 20.0)
    args.repeats = args.repeats or 1
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
