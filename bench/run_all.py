"""Run every benchmark, one after another, and write one markdown document of the results.

    python bench/run_all.py [--quick] [--out bench/RESULTS.md] [--update-readme]
                            [--parts core,clients,latency,server,recognizer,load]

Each script (``bench/bench_core.py``, ``bench_clients.py``, ``bench_latency.py``,
``bench_server.py``, ``bench_recognizer.py``, ``bench_load.py``) runs in a process of its
own, in sequence,
never two at once (they measure CPU), with ``--quick`` passed on when given and
``--summary`` to a temporary file for its headline figures. The document holds a header
(the date in UTC, the machine, the git commit, the command), one table of the headline
figures of every part, then each script's full output under a heading of its own, with
its wall time. A script that fails is reported as failed, with the last lines of its
standard error, and the others still run; the command then exits with status 1.

``--update-readme`` puts the summary table, the machine it was measured on and a link
to the document between the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` lines
of ``README.md``. Progress goes to standard error.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT / "drivers"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench._common import machine, table  # noqa: E402

__all__ = [
    "PARTS",
    "Outcome",
    "Part",
    "document",
    "readme_block",
    "replace_block",
    "summary_rows",
    "summary_table",
]

README = ROOT / "README.md"
START_MARK = "<!-- bench:start -->"
END_MARK = "<!-- bench:end -->"
#: The last lines of a failed script's standard error shown in the document.
STDERR_LINES = 20
CLIENTS = {
    "asyncio": "smproto_asyncio",
    "trio": "smproto_trio",
    "sync": "smproto_sync",
    "official": "speechmatics-rt send_audio()",
    "official-transcribe": "speechmatics-rt transcribe()",
    "websockets": "bare websockets",
    "websockets-trio": "bare websockets on trio",
    "websockets-sync": "bare websockets.sync",
}
#: Our drivers, each with the floor under it (bare websockets on its concurrency model).
FLOORS = {"asyncio": "websockets", "trio": "websockets-trio", "sync": "websockets-sync"}


@dataclass(frozen=True)
class Part:
    """One benchmark script."""

    key: str
    script: str
    title: str


PARTS = (
    Part("core", "bench_core.py", "Sans-IO core"),
    Part("clients", "bench_clients.py", "Client drivers against speechmatics-rt"),
    Part("latency", "bench_latency.py", "Event delivery latency"),
    Part("server", "bench_server.py", "Local server: real-time sessions per core"),
    Part("recognizer", "bench_recognizer.py", "Offline recogniser (pocketsphinx)"),
    Part("load", "bench_load.py", "Load: concurrent sessions, nothing lost or leaked"),
)


@dataclass
class Outcome:
    """What one script's run gave."""

    part: Part
    command: str
    returncode: int | None  # None: killed at the timeout
    wall: float
    stdout: str = ""
    stderr_tail: list[str] = field(default_factory=list)
    summary: Mapping[str, Any] | None = None
    load_before: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.summary is not None

    @property
    def failure(self) -> str:
        """Why the part failed ("" if it did not)."""
        if self.returncode is None:
            return f"timed out after {self.wall:.0f} s"
        if self.returncode != 0:
            return f"exit status {self.returncode}"
        if self.summary is None:
            return "it wrote no summary"
        return ""

    def figure(self, key: str) -> Mapping[str, Any] | None:
        figures: Mapping[str, Any] = (self.summary or {}).get("figures", {})
        found: Mapping[str, Any] | None = figures.get(key)
        return found

    def value(self, key: str) -> float | None:
        found = self.figure(key)
        return None if found is None else float(found["value"])

    def note(self, key: str) -> str:
        found = self.figure(key)
        return "" if found is None else str(found.get("note", ""))

    def keys(self, prefix: str) -> list[str]:
        """The figure keys that start with ``prefix``, in the order the script wrote them."""
        figures: Mapping[str, Any] = (self.summary or {}).get("figures", {})
        return [key for key in figures if key.startswith(prefix)]


# ============================================================================ formatting


def num(value: float) -> str:
    """A figure to about three significant digits."""
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs``, as ``0.38x``; empty when either is missing or ``theirs`` is 0."""
    if ours is None or theirs is None or theirs == 0:
        return ""
    return f"{ours / theirs:.2f}x"


def wall_time(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


# ====================================================================== the summary table

Row = list[str]
SUMMARY_HEADER = ["part", "measure", "smproto", "baseline", "ratio", "notes"]


def _core(o: Outcome) -> list[Row]:
    rows: list[Row] = []
    frame, framing = o.value("frame_us"), o.value("frame_websockets_us")
    if frame is not None:
        base = f"websockets framing {num(framing)} µs" if framing is not None else ""
        rows.append(
            [
                "per audio frame: send + ack",
                f"{num(frame)} µs",
                base,
                ratio(frame, framing),
                "goal < 1x",
            ]
        )
    parse, bare = o.value("parse_us"), o.value("parse_json_us")
    if parse is not None:
        base = f"json.loads {num(bare)} µs" if bare is not None else ""
        rows.append(
            [
                "per message: AddTranscript → typed event",
                f"{num(parse)} µs",
                base,
                ratio(parse, bare),
                "goal ≤ 2x",
            ]
        )
    if (construct := o.value("construct_us")) is not None:
        rows.append(
            ["construct a ClientConnection", f"{num(construct)} µs", "", "", "goal ≤ 100 µs"]
        )
    if (memory := o.value("memory_kib")) is not None:
        rows.append(["memory of a ClientConnection", f"{num(memory)} KiB", "", "", "goal ≤ 32 KiB"])
    return rows


def _clients(o: Outcome) -> list[Row]:
    rows: list[Row] = []
    configs: list[tuple[str, str]] = []  # (audio, chunk), in the order measured
    for key in o.keys("cpu/"):
        parts = key.split("/")
        if len(parts) == 4 and (parts[1], parts[2]) not in configs:
            configs.append((parts[1], parts[2]))
    for audio, chunk in configs:
        cost = {c: o.value(f"cpu/{audio}/{chunk}/{c}") for c in CLIENTS}
        official = cost["official"]
        for ours, floor in FLOORS.items():
            mine = cost[ours]
            if mine is None:
                continue
            # Beside each driver: the floor under it (bare websockets on its concurrency
            # model) and our ratio to it; beside the first, the official client's other path.
            others = []
            if ours == "asyncio" and (other := cost["official-transcribe"]) is not None:
                others.append(f"{CLIENTS['official-transcribe']} {num(other)} ms")
            if (bare := cost[floor]) is not None:
                others.append(f"floor {CLIENTS[floor]} {num(bare)} ms (ours {ratio(mine, bare)})")
            rows.append(
                [
                    f"client CPU per audio-s, {audio} audio, {chunk} s chunks: {CLIENTS[ours]}",
                    f"{num(mine)} ms",
                    f"{CLIENTS['official']} {num(official)} ms" if official is not None else "",
                    ratio(mine, official),
                    "; ".join(others),
                ]
            )
    if (others_load := o.value("cpu/others")) is not None:
        rows.append(
            [
                "other processes' load during the client CPU runs",
                f"{num(others_load)} cores",
                "",
                "",
                f"of {os.cpu_count()} CPUs: the busier, the noisier",
            ]
        )
    for key in o.keys("long/"):
        found = o.figure(key)
        speed = o.value(key)
        if found is None or speed is None:
            continue
        rows.append(
            [
                f"faster than real time: {found['label']}, smproto_asyncio",
                f"{speed:.0f}x real time",
                "",
                "",
                o.note(key),
            ]
        )
    if (held := o.value("realtime/held")) is not None:
        notes = [o.note("realtime/held")]
        if (per_core := o.value("realtime/per_core")) is not None:
            notes.append(f"about {per_core:.0f} on a full core")
        if (limit := o.value("realtime/limit")) is not None:
            notes.append(f"at {limit:.0f}: {o.note('realtime/limit')}")
        else:
            notes.append("the series ended before the client fell behind")
        rows.append(
            [
                "real-time sessions held by one client process (smproto_asyncio)",
                f"{held:.0f}",
                "",
                "",
                "; ".join(n for n in notes if n),
            ]
        )
    return rows


def _latency(o: Outcome) -> list[Row]:
    rows: list[Row] = []
    counts = sorted(
        {int(part) for key in o.keys("latency/") if (part := key.split("/")[1]).isdigit()}
    )
    for n in counts:
        base = o.value(f"latency/{n}/websockets/p99")
        official = o.value(f"latency/{n}/official/p99")
        for ours, floor in FLOORS.items():
            p50, p99 = o.value(f"latency/{n}/{ours}/p50"), o.value(f"latency/{n}/{ours}/p99")
            if p50 is None or p99 is None:
                continue
            notes = []
            goal = o.figure(f"latency/goal/{ours}") if n == 1 else None
            if goal is not None:
                notes.append(f"goal p99 within 1 ms of bare websockets: {goal.get('note', '')}")
            own = o.value(f"latency/{n}/{floor}/p99") if floor != "websockets" else None
            if own is not None:
                notes.append(f"floor {CLIENTS[floor]} p99 {num(own)} ms")
            if official is not None:
                notes.append(f"speechmatics-rt p99 {num(official)} ms")
            rows.append(
                [
                    f"AddTranscript latency p50 / p99, {n} session{'s' if n > 1 else ''}: "
                    f"{CLIENTS[ours]}",
                    f"{num(p50)} / {num(p99)} ms",
                    f"{CLIENTS['websockets']} p99 {num(base)} ms" if base is not None else "",
                    ratio(p99, base),
                    "; ".join(notes),
                ]
            )
        limit = o.figure(f"latency/{n}/limit")
        if n > 1 and limit is not None:
            servers = float(limit["value"])
            rows.append(
                [
                    f"what limited the {n}-session latency runs",
                    o.note(f"latency/{n}/limit"),
                    "",
                    "",
                    f"{servers:.0f} server process{'es' if servers != 1 else ''} "
                    f"on {os.cpu_count()} CPUs, with the client",
                ]
            )
    return rows


def _server(o: Outcome) -> list[Row]:
    held = o.value("sessions_held")
    if held is None:
        return []
    notes = []
    if (share := o.value("server_share")) is not None:
        notes.append(f"{share:.0%} of a core")
    if (ack := o.value("ack_p99_ms")) is not None:
        notes.append(f"ack p99 {num(ack)} ms")
    if (per_core := o.value("sessions_per_core")) is not None:
        notes.append(f"about {per_core:.0f} at 100 % of a core")
    notes.append(o.note("sessions_held"))
    rows = [
        [
            "real-time sessions held by the server on one core (scripted recogniser)",
            f"{held:.0f}",
            "",
            "",
            "; ".join(n for n in notes if n),
        ]
    ]
    if (cpu := o.value("cpu_ms_per_session_s")) is not None:
        rows.append(["server CPU per session-second", f"{num(cpu)} ms", "", "", ""])
    return rows


def _recognizer(o: Outcome) -> list[Row]:
    rows: list[Row] = []
    clips = [key.split("/")[1] for key in o.keys("wer/") if key.endswith("/default")]
    if clips:
        headline = clips[0]  # the real clip, when the shared fixtures are there
        found = o.figure(f"rtf/{headline}/default")
        label = str(found["label"]) if found else headline
        what = label.split(", ", 1)[1] if ", " in label else label
        rtf, rtf_ps = o.value(f"rtf/{headline}/default"), o.value(f"rtf/{headline}/pocketsphinx")
        if rtf is not None:
            cpu = o.value(f"cpu/{headline}/default")
            rows.append(
                [
                    f"recogniser real-time factor (wall s / audio s), {what}",
                    num(rtf),
                    f"pocketsphinx's own settings {num(rtf_ps)}" if rtf_ps is not None else "",
                    ratio(rtf, rtf_ps),
                    f"worker CPU {num(cpu)} s / audio s" if cpu is not None else "",
                ]
            )
        error, error_ps = (
            o.value(f"wer/{headline}/default"),
            o.value(f"wer/{headline}/pocketsphinx"),
        )
        if error is not None:
            rows.append(
                [
                    f"recogniser WER, {what}",
                    num(error),
                    f"pocketsphinx's own settings {num(error_ps)}" if error_ps is not None else "",
                    "",
                    "",
                ]
            )
        whisper_rtf = o.value(f"rtf/{headline}/whisper")
        whisper_wer = o.value(f"wer/{headline}/whisper")
        if whisper_rtf is not None and whisper_wer is not None:
            whisper_cpu = o.value(f"cpu/{headline}/whisper")
            rows.append(
                [
                    f"whisper recogniser (tiny.en finals), WER, {what.rsplit(', ', 1)[0]}",
                    num(whisper_wer),
                    f"offline {num(error)}" if error is not None else "",
                    "",
                    f"real-time factor {num(whisper_rtf)}"
                    + (f", worker CPU {num(whisper_cpu)} s / audio s" if whisper_cpu else ""),
                ]
            )
        rest = [(clip, o.value(f"wer/{clip}/default")) for clip in clips[1:]]
        werr = [(clip, v) for clip, v in rest if v is not None]
        if werr:
            mean = sum(v for _, v in werr) / len(werr)
            rows.append(
                [
                    f"recogniser WER, synthetic speech (mean of {len(werr)})",
                    num(mean),
                    "",
                    "",
                    ", ".join(f"{clip} {num(v)}" for clip, v in werr),
                ]
            )
    capacity = [(key, v) for key in o.keys("capacity/") if (v := o.value(key)) is not None]
    if capacity:
        key, best = max(capacity, key=lambda kv: kv[1])
        rows.append(
            [
                "recogniser: real-time sessions the machine holds (audio s per wall s)",
                num(best),
                "",
                "",
                f"at {key.split('/')[1]} concurrent sessions, unpaced",
            ]
        )
    return rows


def _load(o: Outcome) -> list[Row]:
    sessions = o.value("sessions")
    if sessions is None:
        return []
    found = o.figure("sessions")
    each = str(found["label"]).removeprefix("sessions of ") if found else ""
    complete, words = o.value("complete"), o.value("words")
    lost, duplicated = o.value("lost"), o.value("duplicated")
    rows = [
        [
            "load: sessions complete, every word right",
            f"{complete or 0:.0f} of {sessions:.0f}",
            "",
            "",
            f"{each} of real-time audio each, from one client process",
        ],
        [
            "load: words lost / duplicated",
            f"{lost or 0:.0f} / {duplicated or 0:.0f}",
            "",
            "",
            f"of {words:.0f} words" if words is not None else "",
        ],
    ]
    growth = []
    for who in ("client", "server"):
        peak, end = o.value(f"{who}_rss_peak"), o.value(f"{who}_rss_end")
        if peak is not None and end is not None:
            growth.append(f"{who} +{peak:.1f} / {end:+.1f}")
    if growth:
        fds = [
            f"{who} {v:+.0f}"
            for who in ("client", "server")
            if (v := o.value(f"{who}_fds")) is not None
        ]
        rows.append(
            [
                "load: RSS growth, start to peak / to end (MiB)",
                "; ".join(growth),
                "",
                "",
                ("fds left open: " + ", ".join(fds)) if fds else "",
            ]
        )
    return rows


ROWS = {
    "core": _core,
    "clients": _clients,
    "latency": _latency,
    "server": _server,
    "recognizer": _recognizer,
    "load": _load,
}


def summary_rows(outcomes: Sequence[Outcome]) -> list[Row]:
    """The summary table's rows: each part's headline figures, or that it failed."""
    rows: list[Row] = []
    for outcome in outcomes:
        title = outcome.part.title
        if not outcome.ok:
            rows.append(
                [title, f"**failed** ({outcome.failure})", "", "", "", "see its section below"]
            )
            continue
        part_rows = ROWS[outcome.part.key](outcome)
        if not part_rows:
            rows.append([title, "(no headline figures)", "", "", "", ""])
        for i, row in enumerate(part_rows):
            rows.append([title if i == 0 else "", *row])
    return rows


def summary_table(outcomes: Sequence[Outcome]) -> str:
    return table(SUMMARY_HEADER, summary_rows(outcomes))


# ========================================================================== the document


def demote(markdown: str, to_level: int) -> str:
    """Shift the headings of ``markdown`` so that the highest is at ``to_level``."""
    heading = re.compile(r"^(#{1,6}) ", re.M)
    levels = [len(m.group(1)) for m in heading.finditer(markdown)]
    if not levels:
        return markdown
    shift = max(0, to_level - min(levels))
    return heading.sub(lambda m: "#" * min(6, len(m.group(1)) + shift) + " ", markdown)


def part_section(number: int, outcome: Outcome) -> str:
    lines = [f"## {number}. {outcome.part.title}", ""]
    load = ", ".join(f"{x:.2f}" for x in outcome.load_before)
    lines.append(
        f"`{outcome.command}`: {wall_time(outcome.wall)} wall"
        + (f"; load average before: {load}" if load else "")
        + "."
    )
    lines.append("")
    if not outcome.ok:
        lines.append(f"**Failed**: {outcome.failure}. The last lines of its standard error:")
        lines += ["", "```text", *outcome.stderr_tail, "```", ""]
        if outcome.stdout.strip():
            lines += ["Its output up to then:", ""]
    if outcome.stdout.strip():
        lines += [demote(outcome.stdout.strip(), 3), ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Header:
    date: str
    machine: str
    commit: str
    command: str
    quick: bool
    wall: float
    load_before: tuple[float, ...] = ()


def document(header: Header, outcomes: Sequence[Outcome]) -> str:
    load = ", ".join(f"{x:.2f}" for x in header.load_before)
    parts = [f"{o.part.key} {wall_time(o.wall)}" for o in outcomes]
    lines = [
        "# smproto benchmarks",
        "",
        f"- Date: {header.date}",
        f"- Machine: {header.machine}",
        f"- Commit: {header.commit}",
        f"- Command: `{header.command}`",
        f"- Wall time: {wall_time(header.wall)} in all"
        + (f" ({each})" if (each := ", ".join(parts)) else "")
        + (f"; load average before the run: {load}" if load else ""),
        "",
    ]
    if header.quick:
        lines += [
            "`--quick`: a smoke run, with short audio and few repeats; its figures are only "
            "indicative.",
            "",
        ]
    lines += [
        "What each row means: `docs/benchmarks.md`. Each part's full output follows the summary.",
        "",
        "## Summary",
        "",
        summary_table(outcomes),
        "",
    ]
    for i, outcome in enumerate(outcomes, 1):
        lines.append(part_section(i, outcome))
    return "\n".join(lines).rstrip() + "\n"


def readme_block(header: Header, outcomes: Sequence[Outcome], results_link: str) -> str:
    """What goes between the README's markers."""
    quick = " (`--quick`: only indicative)" if header.quick else ""
    return "\n".join(
        [
            f"`{header.command}`{quick}, {header.date}, on {header.machine}, "
            f"commit {header.commit}:",
            "",
            summary_table(outcomes),
            "",
            f"Every part's full output: [`{results_link}`]({results_link}).",
        ]
    )


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the bench markers replaced by ``block``."""
    start, end = text.find(START_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise ValueError(f"no {START_MARK} ... {END_MARK} block")
    return text[: start + len(START_MARK)] + "\n" + block.strip() + "\n" + text[end:]


# ============================================================================== running


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_average() -> tuple[float, ...]:
    try:
        return tuple(os.getloadavg())
    except OSError:
        return ()


def run_part(part: Part, quick: bool, timeout: float, tmp: Path) -> Outcome:
    """Run one script to its end (or the timeout), echoing its standard error."""
    summary_path = tmp / f"{part.key}.json"
    argv = [str(ROOT / "bench" / part.script), *(["--quick"] if quick else [])]
    shown = shlex.join(["python", f"bench/{part.script}", *argv[1:]])
    load = load_average()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *argv, "--summary", str(summary_path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group: a timeout ends its children too
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line.rstrip("\n"))
        progress(f"    {line.rstrip()}")
    returncode = proc.wait()
    timer.cancel()
    reader.join()
    wall = time.perf_counter() - started
    summary: Mapping[str, Any] | None = None
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            tail.append(f"(run_all: its summary is not JSON: {exc})")
    return Outcome(
        part=part,
        command=shown,
        returncode=None if timed_out.is_set() else returncode,
        wall=wall,
        stdout="".join(out),
        stderr_tail=list(tail),
        summary=summary,
        load_before=load,
    )


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" (with uncommitted changes)" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script's short smoke run")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "RESULTS.md", help="the document to write"
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="put the summary table in README.md"
    )
    parser.add_argument(
        "--parts",
        default=",".join(p.key for p in PARTS),
        help="which parts, in order: " + ",".join(p.key for p in PARTS),
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds a script may take (600 with --quick, else 3600)"
    )
    args = parser.parse_args(argv)
    by_key = {p.key: p for p in PARTS}
    wanted = [k.strip() for k in args.parts.split(",") if k.strip()]
    if unknown := [k for k in wanted if k not in by_key]:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    timeout = args.timeout or (600.0 if args.quick else 3600.0)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "bench/run_all.py", *given])
    if args.update_readme and START_MARK not in README.read_text(encoding="utf-8"):
        parser.error(f"README.md has no {START_MARK} ... {END_MARK} block to update")

    load = load_average()
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="smproto-bench-") as tmp:
        for i, key in enumerate(wanted, 1):
            part = by_key[key]
            progress(f"[{i}/{len(wanted)}] {part.title}: bench/{part.script}")
            outcome = run_part(part, args.quick, timeout, Path(tmp))
            verdict = "done" if outcome.ok else f"FAILED ({outcome.failure})"
            progress(f"[{i}/{len(wanted)}] {part.key}: {verdict} in {wall_time(outcome.wall)}")
            outcomes.append(outcome)
    header = Header(
        date=date,
        machine=machine(),
        commit=git_commit(),
        command=command,
        quick=args.quick,
        wall=time.perf_counter() - started,
        load_before=load,
    )
    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document(header, outcomes), encoding="utf-8")
    progress(f"wrote {out} ({wall_time(header.wall)} in all)")
    if args.update_readme:
        link = Path(os.path.relpath(out, README.parent)).as_posix()
        README.write_text(
            replace_block(README.read_text(encoding="utf-8"), readme_block(header, outcomes, link)),
            encoding="utf-8",
        )
        progress(f"updated the benchmark table in {README}")
    failed = [o.part.key for o in outcomes if not o.ok]
    if failed:
        progress(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
