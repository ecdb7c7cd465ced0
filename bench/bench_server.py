"""How many real-time sessions the local server holds, with the scripted recogniser.

    python bench/bench_server.py [--quick] [--duration S] [--sessions 10,25,50,...]

The server (``serve()`` with :class:`ScriptedRecognizer`) runs in its own process, so
that its CPU (``time.process_time()`` inside it, read over a pipe before and after each
run) is the server's alone. This process runs N client sessions at once over real
WebSockets on 127.0.0.1, as light as a client can be (bare ``websockets``, acks parsed
by prefix), each sending 0.1 s frames of 16 kHz ``pcm_s16le`` tone-coded speech (two
words a second, partials on) paced at real time for ``--duration`` seconds, then
``EndOfStream``, and waiting for ``EndOfTranscript``. The sessions start spread over one
frame period (0.1 s), as independent clients would.

For N in a rising series it reports the server's CPU per session-second of audio and its
share of one core, the ack latency (from sending a frame to reading its ``AudioAdded``)
percentiles, how late the client got to send (the server's TCP back-pressure shows up
there), the server's event-loop lag, and this process's CPU share (when the client
nears a full core, the figures are the client's limit, not the server's). The series
stops once the server falls behind (ack p99 or send lag above ``--max-lag``, a session
that did not finish with every word) or saturates (95 % of a core). The server is one
asyncio process: the sessions it holds are the sessions per core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "drivers")]

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench._common import ServerProcess, chunks, machine, ms, speech, table  # noqa: E402
from bench._summary import figure, write_summary  # noqa: E402

FRAME_SECONDS = 0.1
ACK_PREFIX = '{"message":"AudioAdded","seq_no":'  # the server writes acks compactly
SATURATED = 0.95  # of one core
START = json.dumps(
    {
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "transcription_config": {"language": "en", "enable_partials": True},
    }
)


# ------------------------------------------------------------------------------- the clients


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    send_lag: float = 0.0
    words: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def session(
    url: str,
    frames: Sequence[bytes],
    ready: asyncio.Barrier,
    go: asyncio.Event,
    phase: float,
    stats: Stats,
) -> None:
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []
    words = 0
    try:
        async with connect(url, compression=None, ping_interval=None, max_size=None) as ws:
            await ws.send(START)
            while '"RecognitionStarted"' not in (reply := str(await ws.recv())):
                if reply.startswith('{"message":"Error"'):
                    raise RuntimeError(reply)

            async def read() -> None:
                nonlocal words
                async for message in ws:
                    assert isinstance(message, str)
                    if message.startswith(ACK_PREFIX):
                        seq_no = int(message[len(ACK_PREFIX) : -1])
                        stats.latencies.append(loop.time() - sent_at[seq_no - 1])
                    elif message.startswith('{"message":"AddTranscript"'):
                        words += message.count('"type":"word"')
                    elif message.startswith('{"message":"EndOfTranscript"'):
                        return
                    elif message.startswith('{"message":"Error"'):
                        raise RuntimeError(message)

            await ready.wait()
            await go.wait()
            reader = asyncio.create_task(read())
            start = loop.time() + phase
            for i, frame in enumerate(frames):
                due = start + i * FRAME_SECONDS
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    stats.send_lag = max(stats.send_lag, -delay)
                sent_at.append(loop.time())
                await ws.send(frame)
            await ws.send(json.dumps({"message": "EndOfStream", "last_seq_no": len(frames)}))
            await reader
    except (ConnectionClosed, OSError, RuntimeError, AssertionError) as exc:
        stats.failures.append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        stats.words.append(words)


@dataclass
class Run:
    sessions: int
    idle_cpu_per_second: float
    audio_seconds: float
    wall: float
    server_cpu: float
    client_cpu: float
    latencies: list[float]
    send_lag: float
    lag_p99: float
    lag_max: float
    rss_mb: float
    incomplete: int
    failures: list[str]

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.wall

    @property
    def client_share(self) -> float:
        return self.client_cpu / self.wall

    def latency(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    @property
    def cpu_ms_per_session_second(self) -> float:
        """The server's CPU per second of one session's audio, net of its idle CPU."""
        net = self.server_cpu - self.idle_cpu_per_second * self.wall
        return 1000 * net / (self.sessions * self.audio_seconds)

    def verdict(self, max_lag: float) -> str:
        if self.failures or self.incomplete:
            return "failed"
        if self.latency(0.99) > max_lag or self.send_lag > max_lag:
            return "behind"
        if self.server_share >= SATURATED:
            return "saturated"
        return "held"


async def idle_cpu(server: ServerProcess, seconds: float) -> float:
    """The server's CPU per second with no session (its keepalive and lag watcher)."""
    before = await server.mark()
    await asyncio.sleep(seconds)
    after = await server.mark()
    return (after["cpu"] - before["cpu"]) / seconds


async def run_sessions(server: ServerProcess, n: int, seconds: float, idle: float) -> Run:
    pcm, expected_words = speech(seconds)
    frames = chunks(pcm, FRAME_SECONDS)
    audio_seconds = len(frames) * FRAME_SECONDS
    stats = Stats()
    ready = asyncio.Barrier(n + 1)
    go = asyncio.Event()
    rng = random.Random(n)
    tasks = [
        asyncio.create_task(
            session(server.url, frames, ready, go, rng.uniform(0, FRAME_SECONDS), stats)
        )
        for _ in range(n)
    ]
    try:
        async with asyncio.timeout(60):
            await ready.wait()  # every session connected and started
    except TimeoutError:
        for task in tasks:
            task.cancel()
        raise SystemExit(
            f"{n} sessions did not all start within 60 s: {stats.failures[:3]}"
        ) from None
    before = await server.mark()
    client0, wall0 = time.process_time(), time.perf_counter()
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds * 4 + 60)
    wall = time.perf_counter() - wall0
    client_cpu = time.process_time() - client0
    after = await server.mark()
    return Run(
        sessions=n,
        idle_cpu_per_second=idle,
        audio_seconds=audio_seconds,
        wall=wall,
        server_cpu=after["cpu"] - before["cpu"],
        client_cpu=client_cpu,
        latencies=stats.latencies,
        send_lag=stats.send_lag,
        lag_p99=after["lag_p99"],
        lag_max=after["lag_max"],
        rss_mb=after["rss_mb"],
        incomplete=sum(1 for w in stats.words if w != expected_words),
        failures=stats.failures,
    )


# ------------------------------------------------------------------------------- reporting


def row(run: Run, max_lag: float) -> list[str]:
    return [
        str(run.sessions),
        f"{run.sessions * run.audio_seconds:.0f}",
        f"{run.server_cpu:.2f}",
        f"{run.cpu_ms_per_session_second:.2f}",
        f"{run.server_share:.0%}",
        ms(run.latency(0.50)),
        ms(run.latency(0.95)),
        ms(run.latency(0.99)),
        ms(max(run.latencies, default=float("nan"))),
        ms(run.send_lag),
        ms(run.lag_max),
        f"{run.rss_mb:.0f}",
        f"{run.client_share:.0%}",
        run.verdict(max_lag),
    ]


async def main(
    counts: Sequence[int],
    seconds: float,
    max_lag: float,
    summary: str | None = None,
    quick: bool = False,
) -> None:
    print(f"smproto_server, scripted recogniser, on {machine()}\n")
    print(
        f"Each session: {seconds:g} s of 16 kHz pcm_s16le in 0.1 s frames at real time, "
        "partials on, two words a second. Latencies in ms.\n",
        flush=True,
    )
    server = await ServerProcess.start()
    runs: list[Run] = []
    try:
        await asyncio.sleep(0.5)
        idle = await idle_cpu(server, min(5.0, seconds))
        for n in counts:
            run = await run_sessions(server, n, seconds, idle)
            runs.append(run)
            print(
                f"  {n} sessions: {run.verdict(max_lag)} "
                f"(server {run.server_share:.0%} of a core, ack p99 {ms(run.latency(0.99))} ms)",
                file=sys.stderr,
            )
            for failure in run.failures[:3]:
                print(f"    {failure}", file=sys.stderr)
            if run.verdict(max_lag) != "held":
                break
            await asyncio.sleep(1.0)  # let the server settle between runs
    finally:
        await server.stop()

    header = [
        "sessions",
        "audio s",
        "server CPU s",
        "server CPU ms / session-s (net of idle)",
        "server share of a core",
        "ack p50",
        "ack p95",
        "ack p99",
        "ack max",
        "send lag max",
        "server loop lag max",
        "server max RSS MB",
        "client share of a core",
        "verdict",
    ]
    print(table(header, [row(r, max_lag) for r in runs]))
    held = [r for r in runs if r.verdict(max_lag) == "held"]
    print()
    print(f"- Idle server: {idle * 1000:.1f} ms of CPU per second (keepalive, lag watcher).")
    if held:
        best = held[-1]
        per_core = 1000 / best.cpu_ms_per_session_second
        print(
            f"- Held at real time: {best.sessions} sessions on one core "
            f"({best.server_share:.0%} of it), ack p99 {ms(best.latency(0.99))} ms."
        )
        print(
            f"- Server CPU per session-second: {best.cpu_ms_per_session_second:.2f} ms at "
            f"{best.sessions} sessions (net of idle), so one core holds about "
            f"{per_core:.0f} sessions at 100 %; the fewer the sessions, the more each "
            "costs (fewer events per loop wake-up), e.g. "
            f"{held[0].cpu_ms_per_session_second:.2f} ms at {held[0].sessions}."
        )
    limit = runs[-1] if runs and runs[-1].verdict(max_lag) != "held" else None
    if limit is not None:
        print(
            f"- At {limit.sessions} sessions: {limit.verdict(max_lag)} "
            f"(server {limit.server_share:.0%} of a core, ack p99 "
            f"{ms(limit.latency(0.99))} ms, send lag {ms(limit.send_lag)} ms, "
            f"{limit.incomplete} sessions incomplete, {len(limit.failures)} failed)."
        )
    elif runs:
        print("- The series ended before the server fell behind: try larger --sessions.")
    if any(r.client_share >= 0.9 for r in runs):
        print("- Warning: the client neared a full core; those rows measure the client.")
    figures: dict[str, dict[str, Any]] = {}
    if held:
        best = held[-1]
        until = (
            f"{limit.verdict(max_lag)} at {limit.sessions}"
            if limit is not None
            else "the series ended before the server fell behind"
        )
        figures["sessions_held"] = figure(
            "real-time sessions held on one core", best.sessions, "sessions", until
        )
        figures["server_share"] = figure("server share of a core", best.server_share, "of a core")
        figures["ack_p99_ms"] = figure("ack p99", 1000 * best.latency(0.99), "ms")
        figures["cpu_ms_per_session_s"] = figure(
            "server CPU per session-second", best.cpu_ms_per_session_second, "ms"
        )
        figures["sessions_per_core"] = figure(
            "sessions a full core would hold (extrapolated)",
            1000 / best.cpu_ms_per_session_second,
            "sessions",
        )
    write_summary(summary, "bench_server.py", figures, quick=quick)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--duration", type=float, help="seconds of audio per session")
    parser.add_argument("--sessions", help="comma-separated session counts, rising")
    parser.add_argument(
        "--max-lag", type=float, default=1.0, help="seconds of ack or send lag that is behind"
    )
    parser.add_argument("--summary", metavar="PATH", help="write the headline figures as JSON")
    args = parser.parse_args()
    default_counts = "5,20" if args.quick else "10,25,50,100,200,300,400,500,600,800"
    counts = [int(n) for n in (args.sessions or default_counts).split(",")]
    seconds = args.duration or (3.0 if args.quick else 20.0)
    asyncio.run(main(counts, seconds, args.max_lag, args.summary, args.quick))


if __name__ == "__main__":
    cli()
