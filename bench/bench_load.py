"""Load: many concurrent real-time sessions from one process, nothing lost, nothing leaked.

    python bench/bench_load.py [--quick] [--sessions 100] [--seconds 60] [--thread]

One client process (this one) runs ``--sessions`` sessions at once with the asyncio
driver (``smproto_asyncio.connect``), each sending ``--seconds`` of tone-coded speech
(two words a second, 16 kHz ``pcm_s16le``) in 0.1 s chunks paced at real time, then
``EndOfStream``, and reading every event until ``EndOfTranscript``. Connections open
over the first two seconds and the sessions' chunks are spread over one chunk period,
as independent clients would be. The server is ``serve()`` with the scripted recogniser,
in a process of its own (``bench/_common.py``), or with ``--thread`` in a thread of this
process.

It checks, for every session, that the finals hold exactly the words said at exactly
the times :func:`expected_timings` gives (none lost, none duplicated), and it measures:

- RSS (``VmRSS`` from ``/proc/<pid>/status``, sampled every 0.25 s) of the client
  process, and of the server process: at the start, the peak, and once the sessions
  have ended;
- the open file descriptors (``/proc/<pid>/fd``) before and after, and the asyncio
  tasks still alive after (other than the one measuring);
- how late the client got to send a chunk (its worst lateness across all sessions).

It prints a markdown table. The CI test ``tests/reliability/test_load.py`` runs the same
code for 20 sessions of 6 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT / "drivers"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import smproto_asyncio  # noqa: E402
from bench._common import ServerProcess, machine, table  # noqa: E402
from bench._summary import figure, write_summary  # noqa: E402
from smproto import AudioFormat, TranscriptionConfig  # noqa: E402
from smproto.audio import pcm_chunks  # noqa: E402
from smproto.events import AddTranscript, EndOfTranscript  # noqa: E402
from smproto.session import SessionError  # noqa: E402
from smproto_server.recognizers import VOCABULARY, ScriptedRecognizer  # noqa: E402
from smproto_server.recognizers.scripted import expected_timings, synthesize  # noqa: E402

__all__ = [
    "LoadResult",
    "Script",
    "SessionResult",
    "open_fds",
    "rss_kib",
    "run_load",
    "scripts",
]

FORMAT = AudioFormat()  # 16 kHz pcm_s16le
CHUNK_SECONDS = 0.1
CONFIG = TranscriptionConfig(language="en", enable_partials=True)
#: Distinct scripts (word sequences): sessions share them round-robin, so that the audio
#: held in memory does not grow with the number of sessions.
VARIANTS = 8

Word = tuple[str, float, float]
#: The headline figures of the last run of the series, for ``--summary``.
FIGURES: dict[str, dict[str, Any]] = {}


def rss_kib(pid: int | str = "self") -> int:
    """The resident set size of a process, in KiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/<pid>/status")


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Script:
    """What one session says: its audio, and the words the recogniser must find."""

    audio: bytes
    words: tuple[Word, ...]


def scripts(seconds: float, variants: int = VARIANTS) -> list[Script]:
    """``variants`` scripts of about ``seconds`` of speech (0.3 s words, 0.2 s apart),
    each a different sequence of vocabulary words."""
    n = max(1, round((seconds - 0.4) / 0.5))
    out = []
    for v in range(variants):
        said = [VOCABULARY[(v * 7 + i) % len(VOCABULARY)] for i in range(n)]
        words = tuple(
            (word, round(start, 6), round(end, 6))
            for word, (start, end) in zip(said, expected_timings(said), strict=True)
        )
        out.append(Script(synthesize(said), words))
    return out


@dataclass
class SessionResult:
    expected: tuple[Word, ...]
    received: list[Word] = field(default_factory=list)
    error: str | None = None
    complete: bool = False
    #: The worst lateness of a chunk against its real-time schedule (seconds).
    send_lag: float = 0.0

    @property
    def lost(self) -> int:
        return sum((Counter(self.expected) - Counter(self.received)).values())

    @property
    def duplicated(self) -> int:
        return sum((Counter(self.received) - Counter(self.expected)).values())

    @property
    def ok(self) -> bool:
        return self.complete and self.error is None and self.received == list(self.expected)


@dataclass
class LoadResult:
    sessions: list[SessionResult]
    wall: float
    #: Samples of (seconds since the start, client RSS KiB, server RSS KiB or 0).
    rss: list[tuple[float, int, int]]

    @property
    def words_expected(self) -> int:
        return sum(len(s.expected) for s in self.sessions)

    @property
    def words_received(self) -> int:
        return sum(len(s.received) for s in self.sessions)

    @property
    def failed(self) -> list[SessionResult]:
        return [s for s in self.sessions if not s.ok]


async def _session(
    url: str, script: Script, connect_delay: float, phase: float, result: SessionResult
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(connect_delay)
    try:
        async with smproto_asyncio.connect(
            url, transcription_config=CONFIG, audio_format=FORMAT
        ) as session:

            async def read() -> None:
                async for event in session:
                    if isinstance(event, AddTranscript):
                        result.received += [
                            (r.content, round(r.start_time, 6), round(r.end_time, 6))
                            for r in event.results
                            if r.type == "word"
                        ]
                    elif isinstance(event, EndOfTranscript):
                        result.complete = True

            reader = asyncio.create_task(read(), name="bench-load-reader")
            try:
                start = loop.time() + phase
                for i, chunk in enumerate(pcm_chunks(script.audio, FORMAT, CHUNK_SECONDS)):
                    due = start + i * CHUNK_SECONDS
                    if (ahead := due - loop.time()) > 0:
                        await asyncio.sleep(ahead)
                    result.send_lag = max(result.send_lag, loop.time() - due)
                    await session.send_audio(chunk)
                await session.end_of_stream()
            finally:
                await reader
    except SessionError as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    except Exception as exc:  # reported, not raised: one session must not hide the rest
        result.error = f"unexpected {type(exc).__name__}: {exc}"[:200]


async def run_load(
    url: str,
    sessions: int,
    seconds: float,
    *,
    server_pid: int | None = None,
    connect_spread: float = 2.0,
) -> LoadResult:
    """Run ``sessions`` real-time sessions of ``seconds`` against ``url`` at once."""
    plans = scripts(seconds, min(sessions, VARIANTS))
    results = [SessionResult(plans[k % len(plans)].words) for k in range(sessions)]
    samples: list[tuple[float, int, int]] = []
    start = time.monotonic()

    async def sample() -> None:
        while True:
            server = rss_kib(server_pid) if server_pid is not None else 0
            samples.append((time.monotonic() - start, rss_kib(), server))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample(), name="bench-load-rss")
    try:
        await asyncio.gather(
            *(
                _session(
                    url,
                    plans[k % len(plans)],
                    connect_spread * k / sessions,
                    CHUNK_SECONDS * k / sessions,
                    results[k],
                )
                for k in range(sessions)
            )
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    wall = time.monotonic() - start
    server = rss_kib(server_pid) if server_pid is not None else 0
    samples.append((wall, rss_kib(), server))
    return LoadResult(results, wall, samples)


def _mib(values: Sequence[int]) -> str:
    """Start / peak / end of RSS samples (KiB), in MiB."""
    return " / ".join(f"{v / 1024:.0f}" for v in (values[0], max(values), values[-1]))


async def _settle(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Give closing sockets and finishing tasks a moment (until ``check()`` or timeout)."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


HEADER = [
    "sessions",
    "audio s",
    "complete",
    "words expected / received",
    "lost / duplicated",
    "client RSS MiB start / peak / end",
    "server RSS MiB start / peak / end",
    "client fds before / after",
    "server fds before / after",
    "client tasks after",
    "worst send lateness",
    "wall s",
]


async def bench(sessions: int, seconds: float, in_thread: bool) -> tuple[list[str], list[str]]:
    """One run: its table row, and the errors seen (if any)."""
    server_pid: int | None = None
    process: ServerProcess | None = None
    thread = None
    if in_thread:
        from tests.drivers.netutil import ServerThread

        thread = ServerThread()
        url = thread.serve(recognizer=ScriptedRecognizer()).url
    else:
        process = await ServerProcess.start()
        server_pid = process.proc.pid
        url = process.url
    gc.collect()
    fds_before = open_fds()
    server_fds_before = open_fds(server_pid) if server_pid is not None else 0
    result = await run_load(url, sessions, seconds, server_pid=server_pid)
    me = asyncio.current_task()
    await _settle(lambda: open_fds() <= fds_before)
    if server_pid is not None:
        pid = server_pid
        await _settle(lambda: open_fds(pid) <= server_fds_before)
    gc.collect()
    fds_after = open_fds()
    server_fds_after = open_fds(server_pid) if server_pid is not None else 0
    tasks_after = len([t for t in asyncio.all_tasks() if t is not me])
    if process is not None:
        await process.stop()
    if thread is not None:
        thread.close()

    sessions_ok = sessions - len(result.failed)
    lost = sum(s.lost for s in result.sessions)
    duplicated = sum(s.duplicated for s in result.sessions)
    client_rss = [c for _, c, _ in result.rss]
    server_rss = [s for _, _, s in result.rss]
    FIGURES.clear()
    FIGURES.update(
        sessions=figure(f"sessions of {seconds:g} s", sessions, "sessions"),
        complete=figure("sessions complete, every word right", sessions_ok, "sessions"),
        words=figure("words expected", result.words_expected, "words"),
        lost=figure("words lost", lost, "words"),
        duplicated=figure("words duplicated", duplicated, "words"),
        client_rss_peak=figure(
            "client RSS growth, start to peak", (max(client_rss) - client_rss[0]) / 1024, "MiB"
        ),
        client_rss_end=figure(
            "client RSS growth, start to end", (client_rss[-1] - client_rss[0]) / 1024, "MiB"
        ),
        client_fds=figure("client fds left open", fds_after - fds_before, "fds"),
        send_lag_ms=figure(
            "worst send lateness", max(s.send_lag for s in result.sessions) * 1000, "ms"
        ),
    )
    if server_pid is not None:
        FIGURES.update(
            server_rss_peak=figure(
                "server RSS growth, start to peak",
                (max(server_rss) - server_rss[0]) / 1024,
                "MiB",
            ),
            server_rss_end=figure(
                "server RSS growth, start to end", (server_rss[-1] - server_rss[0]) / 1024, "MiB"
            ),
            server_fds=figure("server fds left open", server_fds_after - server_fds_before, "fds"),
        )
    row = [
        str(sessions),
        f"{seconds:g}",
        f"{sessions_ok}",
        f"{result.words_expected} / {result.words_received}",
        f"{lost} / {duplicated}",
        _mib([c for _, c, _ in result.rss]),
        _mib([s for _, _, s in result.rss]) if server_pid is not None else "(in thread)",
        f"{fds_before} / {fds_after}",
        f"{server_fds_before} / {server_fds_after}" if server_pid is not None else "-",
        str(tasks_after),
        f"{max(s.send_lag for s in result.sessions) * 1000:.0f} ms",
        f"{result.wall:.1f}",
    ]
    return row, [s.error for s in result.sessions if s.error]


async def run(series: Sequence[int], seconds: float, in_thread: bool) -> str:
    rows = []
    errors: list[str] = []
    for sessions in series:
        row, errs = await bench(sessions, seconds, in_thread)
        rows.append(row)
        errors += errs
    where = "a thread of this process" if in_thread else "a process of its own"
    lines = [
        f"### Load: concurrent real-time sessions (asyncio driver; server in {where})",
        "",
        machine(),
        "",
        table(HEADER, rows),
    ]
    if errors:
        lines += ["", f"Errors ({len(errors)}; first 5):", *(f"- {e}" for e in errors[:5])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sessions", help="concurrent sessions, or a series: 100,200 (100; --quick 20)"
    )
    parser.add_argument("--seconds", type=float, help="audio per session (60; --quick 5)")
    parser.add_argument(
        "--thread", action="store_true", help="run the server in a thread of this process"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--summary", metavar="PATH", help="write the headline figures as JSON")
    args = parser.parse_args(argv)
    series = [int(n) for n in (args.sessions or ("20" if args.quick else "100")).split(",")]
    seconds = args.seconds or (5.0 if args.quick else 60.0)
    print(asyncio.run(run(series, seconds, args.thread)))
    write_summary(args.summary, "bench_load.py", FIGURES, quick=args.quick)


if __name__ == "__main__":
    main()
