"""Helpers shared by the end-to-end benchmarks: the local server in a process of its own,
tone-coded speech, the machine's description and markdown tables.

    python bench/_common.py [--stamp]   # what ServerProcess runs: serve(), then answer "mark"

The server (``serve()`` with :class:`ScriptedRecognizer`) runs in its own process, so
that its CPU (``time.process_time()`` inside it, read over a pipe before and after a run)
is the server's alone, and the benchmark's own CPU is the client's alone.

With ``--stamp`` (``ServerProcess.start(stamp=True)``), the server stamps each
``AddTranscript`` it writes with the time of the write: a top-level field
:data:`STAMP` holding :func:`clock_ns`, put into the message's text at the last moment
before ``websockets`` frames it and writes it to the socket (in the same step of the
event loop). The server itself is unchanged: the benchmark wraps ``websockets``'
``send()`` in the server's process only. ``bench/bench_latency.py`` reads the stamp in
the client's process when the application gets the event.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
import os
import platform
import random
import resource
import sys
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT / "drivers"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from smproto_server import serve  # noqa: E402
from smproto_server.recognizers import VOCABULARY, ScriptedRecognizer, synthesize  # noqa: E402

__all__ = [
    "BYTES_PER_SECOND",
    "ROOT",
    "STAMP",
    "ServerProcess",
    "chunks",
    "clock_ns",
    "machine",
    "machine_busy",
    "ms",
    "speech",
    "table",
]

SAMPLE_RATE = 16000
BYTES_PER_SECOND = 2 * SAMPLE_RATE  # pcm_s16le, one channel


# ------------------------------------------------------------------------- the server process

#: The field the stamping server adds to each ``AddTranscript``: :func:`clock_ns` at its write.
STAMP = "bench_sent_ns"
_STAMPED = '{"message":"AddTranscript",'


def clock_ns() -> int:
    """The clock the stamps are in: ``time.monotonic_ns()``, which on Linux is
    ``CLOCK_MONOTONIC``, one clock for every process of the machine (as on macOS and
    Windows), so a stamp taken in the server's process compares with a reading in a
    client's."""
    return time.monotonic_ns()


def _stamp_transcripts() -> None:
    """Make this process's ``websockets`` servers stamp every ``AddTranscript`` they write.

    The server engine serialises with ``separators=(",", ":")``, so each final's text
    starts with ``_STAMPED``; the stamp goes in right after it. ``send()`` frames the text
    and writes it to the transport before it first awaits, so the stamp is taken in the
    same step of the event loop as the write (a few microseconds before it).
    """
    from websockets.asyncio.server import ServerConnection

    send = ServerConnection.send
    cut = len(_STAMPED)

    async def stamped_send(
        self: ServerConnection, message: Any, *, text: bool | None = None
    ) -> None:
        if type(message) is str and message.startswith(_STAMPED):
            message = f'{_STAMPED}"{STAMP}":{clock_ns()},{message[cut:]}'
        await send(self, message, text=text)

    ServerConnection.send = stamped_send  # type: ignore[method-assign]


async def _server_process() -> None:
    """Serve; answer ``mark`` on stdin with the process's CPU time and loop lag."""
    loop = asyncio.get_running_loop()
    server = await serve("127.0.0.1", 0, recognizer=ScriptedRecognizer())
    lags: list[float] = []

    async def watch_lag() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)

    watcher = asyncio.create_task(watch_lag())
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"port": server.port}), flush=True)
    while line := (await reader.readline()).strip():
        if line != b"mark":
            break
        lag = sorted(lags) or [0.0]
        lags.clear()
        mark = {
            "cpu": time.process_time(),
            "active": server.active_sessions,
            "lag_p99": lag[min(len(lag) - 1, int(len(lag) * 0.99))],
            "lag_max": lag[-1],
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        print(json.dumps(mark), flush=True)
    watcher.cancel()
    await server.aclose(grace=1.0)


class ServerProcess:
    """The server, in a child process, and the pipe to ask it for its CPU time."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"ws://127.0.0.1:{port}/v2"

    @classmethod
    async def start(cls, *, stamp: bool = False) -> ServerProcess:
        """Start a server; with ``stamp``, one that stamps its ``AddTranscript`` writes."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            *(["--stamp"] if stamp else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        hello = json.loads(await proc.stdout.readline())
        return cls(proc, int(hello["port"]))

    async def mark(self) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"mark\n")
        await self.proc.stdin.drain()
        mark: dict[str, float] = json.loads(await self.proc.stdout.readline())
        return mark

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ------------------------------------------------------------------------------ the audio


def speech(seconds: float, *, noise: float = 0.0) -> tuple[bytes, int]:
    """16 kHz ``pcm_s16le`` tone-coded words (0.3 s each, 0.2 s apart, two a second)
    filling ``seconds``; and how many words they say.

    ``noise`` adds uniform white noise of that amplitude (of full scale) to every
    sample, like a microphone's noise floor: pure tones and digital silence compress
    about 10:1 under ``permessage-deflate``, real audio hardly at all. Below the
    recogniser's silence threshold (0.02), it changes none of the words.
    """
    n = max(1, round((seconds - 0.4) / 0.5))
    words = [VOCABULARY[i % len(VOCABULARY)] for i in range(n)]
    pcm = synthesize(words)
    if noise:
        peak = round(noise * 32767)
        rng = random.Random(0)
        # A block longer than deflate's 32 KiB window, so that it cannot find repeats.
        block = [rng.randint(-peak, peak) for _ in range(40009)]
        samples = array("h", pcm)
        pcm = array("h", map(operator.add, samples, itertools.cycle(block))).tobytes()
    return pcm, n


def chunks(pcm: bytes, chunk_seconds: float) -> list[bytes]:
    """``pcm`` cut into chunks of ``chunk_seconds`` (the last one may be shorter)."""
    size = round(chunk_seconds * SAMPLE_RATE) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


# ------------------------------------------------------------------------------- reporting


def machine_busy() -> float:
    """CPU-seconds the whole machine (every process, every CPU) has spent busy since boot,
    from ``/proc/stat``; ``nan`` where there is none. The difference over a run, less the
    client's and the servers' own CPU, is what other processes took meanwhile."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """The interpreter and machine, for a table's header."""
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()} ({platform.machine()}), "
        f"{os.cpu_count()} CPUs"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


if __name__ == "__main__":
    if "--stamp" in sys.argv[1:]:
        _stamp_transcripts()
    asyncio.run(_server_process())
