"""``bench/run_all.py``: the summary table assembled from the scripts' summaries (a pure
function of them), the document and the README block; and the whole quick suite, end to
end (2 to 3 minutes on a 2-CPU machine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._summary import figure, write_summary
from bench.run_all import (
    END_MARK,
    PARTS,
    START_MARK,
    Header,
    Outcome,
    demote,
    document,
    readme_block,
    replace_block,
    summary_rows,
    summary_table,
)
from tests.support import REPO

PART = {p.key: p for p in PARTS}
HEADER = Header(
    date="2026-01-02 03:04 UTC",
    machine="CPython 3.11.7, Linux (x86_64), 2 CPUs",
    commit="abc1234",
    command="python bench/run_all.py",
    quick=False,
    wall=123.0,
    load_before=(0.5, 0.4, 0.3),
)


def outcome(key: str, figures: dict[str, dict[str, Any]] | None, returncode: int | None = 0,
            stderr: list[str] | None = None, stdout: str = "") -> Outcome:  # fmt: skip
    summary = None if figures is None else {"script": key, "quick": False, "figures": figures}
    return Outcome(
        part=PART[key],
        command=f"python bench/{PART[key].script}",
        returncode=returncode,
        wall=1.5,
        stdout=stdout,
        stderr_tail=stderr or [],
        summary=summary,
    )


def row(rows: list[list[str]], measure: str) -> list[str]:
    """The row whose measure starts with ``measure`` (the part column dropped)."""
    found = [r[1:] for r in rows if r[1].startswith(measure)]
    assert len(found) == 1, (measure, rows)
    return found[0]


CORE = {
    "frame_us": figure("per audio frame", 2.0, "µs"),
    "frame_websockets_us": figure("websockets framing", 4.0, "µs"),
    "parse_us": figure("AddTranscript → typed event", 4.5, "µs"),
    "parse_json_us": figure("json.loads", 2.5, "µs"),
    "construct_us": figure("construct", 1.39, "µs"),
    "memory_kib": figure("memory", 3.81, "KiB"),
}


def test_core_rows_and_ratios() -> None:
    rows = summary_rows([outcome("core", CORE)])
    assert rows[0][0] == PART["core"].title  # the part's name on its first row only
    assert all(r[0] == "" for r in rows[1:])
    assert row(rows, "per audio frame") == [
        "per audio frame: send + ack", "2.00 µs", "websockets framing 4.00 µs", "0.50x",
        "goal < 1x",
    ]  # fmt: skip
    assert row(rows, "per message")[1:4] == ["4.50 µs", "json.loads 2.50 µs", "1.80x"]
    assert row(rows, "construct")[1] == "1.39 µs"
    assert row(rows, "memory")[1] == "3.81 KiB"


def test_client_rows_ratio_against_the_official_send_audio() -> None:
    figures = {
        f"cpu/noisy/0.02/{client}": figure(client, cost, "ms / audio-s")
        for client, cost in [
            ("asyncio", 3.0),
            ("trio", 4.5),
            ("official", 6.0),
            ("official-transcribe", 12.0),
            ("websockets", 1.25),
            ("websockets-trio", 3.5),
            ("sync", 2.4),
            ("websockets-sync", 1.6),
        ]
    }
    figures["long/0.1"] = figure("a 10-minute file, 0.1 s chunks", 262.4, "x", "server-limited")
    figures["realtime/held"] = figure("held", 300, "sessions", "80% of a core")
    figures["realtime/per_core"] = figure("per core", 371.6, "sessions")
    figures["realtime/limit"] = figure("limit", 400, "sessions", "client behind")
    rows = summary_rows([outcome("clients", figures)])
    asyncio_row = row(rows, "client CPU per audio-s, noisy audio, 0.02 s chunks: smproto_asyncio")
    assert asyncio_row[1:4] == ["3.00 ms", "speechmatics-rt send_audio() 6.00 ms", "0.50x"]
    assert "speechmatics-rt transcribe() 12.0 ms" in asyncio_row[4]
    assert "floor bare websockets 1.25 ms (ours 2.40x)" in asyncio_row[4]
    trio_row = row(rows, "client CPU per audio-s, noisy audio, 0.02 s chunks: smproto_trio")
    assert trio_row[3] == "0.75x"
    assert trio_row[4] == "floor bare websockets on trio 3.50 ms (ours 1.29x)"  # under trio
    sync_row = row(rows, "client CPU per audio-s, noisy audio, 0.02 s chunks: smproto_sync")
    assert sync_row[1:4] == ["2.40 ms", "speechmatics-rt send_audio() 6.00 ms", "0.40x"]
    assert sync_row[4] == "floor bare websockets.sync 1.60 ms (ours 1.50x)"  # under sync
    # The floors have no rows of their own: they are in the notes of the driver above them.
    assert not [r for r in rows if r[1].endswith(("bare websockets", "bare websockets.sync"))]
    long_row = row(rows, "faster than real time: a 10-minute file, 0.1 s chunks")
    assert long_row[1] == "262x real time"
    assert long_row[4] == "server-limited"
    held = row(rows, "real-time sessions held by one client process")
    assert held[1] == "300"
    assert "about 372 on a full core" in held[4]
    assert "at 400: client behind" in held[4]


def test_latency_rows_against_bare_websockets_and_the_limit() -> None:
    figures: dict[str, dict[str, Any]] = {}
    for n, client, p50, p99 in [
        (1, "asyncio", 0.3, 0.45),
        (1, "trio", 0.31, 0.6),
        (1, "sync", 0.33, 2.0),
        (1, "official", 0.18, 0.25),
        (1, "websockets", 0.16, 0.4),
        (1, "websockets-trio", 0.3, 0.5),
        (300, "asyncio", 0.2, 4.0),
        (300, "websockets", 0.16, 3.5),
    ]:
        key = f"latency/{n}/{client}"
        figures[f"{key}/p50"] = figure("p50", p50, "ms")
        figures[f"{key}/p99"] = figure("p99", p99, "ms")
        figures[f"{key}/max"] = figure("max", p99 * 2, "ms")
        figures[f"{key}/count"] = figure("count", 120, "events")
    figures["latency/goal/asyncio"] = figure("goal", 0.05, "ms", "met")
    figures["latency/goal/trio"] = figure("goal", 0.2, "ms", "met")
    figures["latency/goal/sync"] = figure("goal", 1.6, "ms", "not met")
    figures["latency/300/limit"] = figure("limit", 1, "server processes", "server behind")
    rows = summary_rows([outcome("latency", figures)])
    assert rows[0][0] == PART["latency"].title
    one = row(rows, "AddTranscript latency p50 / p99, 1 session: smproto_asyncio")
    assert one[1:4] == ["0.300 / 0.450 ms", "bare websockets p99 0.400 ms", "1.12x"]
    assert one[4] == "goal p99 within 1 ms of bare websockets: met; speechmatics-rt p99 0.250 ms"
    trio_row = row(rows, "AddTranscript latency p50 / p99, 1 session: smproto_trio")
    assert "floor bare websockets on trio p99 0.500 ms" in trio_row[4]
    sync_row = row(rows, "AddTranscript latency p50 / p99, 1 session: smproto_sync")
    assert sync_row[4].startswith("goal p99 within 1 ms of bare websockets: not met")
    many = row(rows, "AddTranscript latency p50 / p99, 300 sessions: smproto_asyncio")
    assert many[1:4] == ["0.200 / 4.00 ms", "bare websockets p99 3.50 ms", "1.14x"]
    assert "goal" not in many[4]  # the goal is at one session
    limit = row(rows, "what limited the 300-session latency runs")
    assert limit[1] == "server behind"
    assert limit[4].startswith("1 server process on ")
    assert not [r for r in rows if "300 sessions: smproto_trio" in r[1]]  # not measured


def test_a_ratio_needs_its_baseline() -> None:
    figures = {"cpu/tones/0.1/asyncio": figure("asyncio", 3.0, "ms / audio-s")}
    rows = summary_rows([outcome("clients", figures)])
    assert row(rows, "client CPU per audio-s")[2:4] == ["", ""]
    core = summary_rows([outcome("core", {"frame_us": figure("frame", 2.0, "µs")})])
    assert row(core, "per audio frame")[2:4] == ["", ""]


def test_server_recognizer_and_load_rows() -> None:
    server = {
        "sessions_held": figure("held", 400, "sessions", "behind at 500"),
        "server_share": figure("share", 0.87, "of a core"),
        "ack_p99_ms": figure("ack p99", 12.34, "ms"),
        "sessions_per_core": figure("per core", 455.2, "sessions"),
        "cpu_ms_per_session_s": figure("cpu", 2.2, "ms"),
    }
    recognizer = {
        "wer/audio_01/default": figure("WER, audio_01 (real), default decoder", 0.569, ""),
        "rtf/audio_01/default": figure("rtf, audio_01 (real), default decoder", 0.2, ""),
        "cpu/audio_01/default": figure("cpu", 0.15, ""),
        "wer/weather/default": figure("WER, weather", 0.24, ""),
        "wer/report/default": figure("WER, report", 0.1, ""),
        "wer/audio_01/pocketsphinx": figure("WER", 0.6, ""),
        "rtf/audio_01/pocketsphinx": figure("rtf", 0.4, ""),
        "wer/audio_01/whisper": figure("WER", 0.138, ""),
        "rtf/audio_01/whisper": figure("rtf", 0.31, ""),
        "cpu/audio_01/whisper": figure("cpu", 0.25, ""),
        "capacity/1": figure("1", 5.5, "sessions"),
        "capacity/2": figure("2", 7.25, "sessions"),
    }
    load = {
        "sessions": figure("sessions of 60 s", 100, "sessions"),
        "complete": figure("complete", 99, "sessions"),
        "words": figure("words", 11900, "words"),
        "lost": figure("lost", 3, "words"),
        "duplicated": figure("duplicated", 0, "words"),
        "client_rss_peak": figure("peak", 12.0, "MiB"),
        "client_rss_end": figure("end", 1.5, "MiB"),
        "client_fds": figure("fds", 0, "fds"),
    }
    rows = summary_rows(
        [outcome("server", server), outcome("recognizer", recognizer), outcome("load", load)]
    )
    held = row(rows, "real-time sessions held by the server")
    assert held[1] == "400"
    assert held[4] == "87% of a core; ack p99 12.3 ms; about 455 at 100 % of a core; behind at 500"
    rtf = row(rows, "recogniser real-time factor")
    assert rtf[0].endswith("audio_01 (real), default decoder")
    assert rtf[1:4] == ["0.200", "pocketsphinx's own settings 0.400", "0.50x"]
    assert row(rows, "recogniser WER, audio_01")[1] == "0.569"
    whisper = row(rows, "whisper recogniser (tiny.en finals), WER, audio_01")
    assert whisper[0] == "whisper recogniser (tiny.en finals), WER, audio_01 (real)"
    assert whisper[1:3] == ["0.138", "offline 0.569"]
    assert whisper[4] == "real-time factor 0.310, worker CPU 0.250 s / audio s"
    synthetic = row(rows, "recogniser WER, synthetic speech (mean of 2)")
    assert synthetic[1] == "0.170"
    assert synthetic[4] == "weather 0.240, report 0.100"
    capacity = row(rows, "recogniser: real-time sessions")
    assert capacity[1] == "7.25"
    assert "at 2 concurrent sessions" in capacity[4]
    assert row(rows, "load: sessions complete")[1:2] == ["99 of 100"]
    assert row(rows, "load: sessions complete")[4].startswith("60 s of real-time audio")
    assert row(rows, "load: words lost / duplicated")[1::3] == ["3 / 0", "of 11900 words"]
    rss = row(rows, "load: RSS growth")
    assert rss[1] == "client +12.0 / +1.5"
    assert rss[4] == "fds left open: client +0"


def test_a_failed_part_shows_as_failed_and_the_others_still_show() -> None:
    outcomes = [
        outcome("core", CORE),
        outcome("clients", None, returncode=1, stderr=["Traceback ...", "SystemExit: boom"]),
        outcome("server", None, returncode=None),  # killed at the timeout
        outcome("load", None, returncode=0),  # exited 0 without a summary
    ]
    rows = summary_rows(outcomes)
    failed = {r[0]: r[1] for r in rows if "failed" in r[1]}
    assert failed == {
        PART["clients"].title: "**failed** (exit status 1)",
        PART["server"].title: "**failed** (timed out after 2 s)",
        PART["load"].title: "**failed** (it wrote no summary)",
    }
    assert row(rows, "per audio frame")[3] == "0.50x"  # the part that ran is still there
    text = document(HEADER, outcomes)
    clients = text.split(f"## 2. {PART['clients'].title}")[1].split("## 3.")[0]
    assert "**Failed**: exit status 1" in clients
    assert "SystemExit: boom" in clients
    assert "## 1. Sans-IO core" in text


def test_the_document_header_and_sections() -> None:
    stdout = "## A heading\n\n| a |\n|---|\n| 1 |\n\n### Below\n"
    text = document(HEADER, [outcome("core", CORE, stdout=stdout)])
    assert text.startswith("# smproto benchmarks\n")
    for line in [
        "- Date: 2026-01-02 03:04 UTC",
        "- Machine: CPython 3.11.7, Linux (x86_64), 2 CPUs",
        "- Commit: abc1234",
        "- Command: `python bench/run_all.py`",
        "- Wall time: 2 min 03 s in all (core 1.5 s); load average before the run: 0.50, 0.40, "
        "0.30",
        summary_table([outcome("core", CORE)]),
        "`python bench/bench_core.py`: 1.5 s wall.",
        "### A heading",  # the script's headings sit under the part's
        "#### Below",
    ]:
        assert line in text
    assert text.index("## Summary") < text.index("## 1. Sans-IO core")
    assert "--quick" not in text
    assert "only indicative" in document(
        Header(**{**HEADER.__dict__, "quick": True}), [outcome("core", CORE)]
    )


def test_demote() -> None:
    assert demote("## a\n### b\nnot # a heading", 3) == "### a\n#### b\nnot # a heading"
    assert demote("no headings", 3) == "no headings"
    assert demote("#### deep", 3) == "#### deep"  # never promoted


def test_readme_block_replaces_only_between_the_markers() -> None:
    readme = (
        f"# Title\n\n## Benchmarks\n\nintro\n\n{START_MARK}\nold table\n{END_MARK}\n\n## Layout\n"
    )
    block = readme_block(HEADER, [outcome("core", CORE)], "bench/RESULTS.md")
    new = replace_block(readme, block)
    assert new.startswith("# Title\n\n## Benchmarks\n\nintro\n\n" + START_MARK + "\n")
    assert new.endswith(f"\n{END_MARK}\n\n## Layout\n")
    assert "old table" not in new
    assert "CPython 3.11.7, Linux (x86_64), 2 CPUs" in new
    assert "| per audio frame: send + ack | 2.00 µs |" in new
    assert "[`bench/RESULTS.md`](bench/RESULTS.md)" in new
    assert replace_block(new, block) == new  # idempotent
    with pytest.raises(ValueError):
        replace_block("# no markers\n", block)


def test_the_readme_has_the_markers() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count(START_MARK) == 1
    assert text.count(END_MARK) == 1
    assert text.index(START_MARK) < text.index(END_MARK)


def test_write_summary_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_summary(path, "bench_core.py", {"frame_us": figure("f", 2.0, "µs", "n")}, quick=True)
    loaded = Outcome(PART["core"], "", 0, 0.0, summary=json.loads(path.read_text()))
    assert loaded.value("frame_us") == 2.0
    assert loaded.note("frame_us") == "n"
    write_summary(None, "bench_core.py", {}, quick=True)  # no path: nothing written


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_quick_suite_end_to_end(tmp_path: Path, fixtures: Path) -> None:
    """Every script's quick run, through run_all: each part runs, writes its summary, and
    its headline figures reach the table (the README is left alone)."""
    pytest.importorskip("pocketsphinx", reason="the recogniser needs the asr extra")
    pytest.importorskip("speechmatics.rt", reason="the client comparison needs speechmatics-rt")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "SMPROTO_FIXTURES": str(fixtures)},
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    text = out.read_text(encoding="utf-8")
    summary = text.split("## Summary")[1].split("\n## 1.")[0]
    assert "failed" not in summary
    assert "(no headline figures)" not in summary
    for part in PARTS:
        assert f"| {part.title} |" in summary
        assert re.search(rf"^## \d\. {re.escape(part.title)}$", text, re.M), part.key
    for measure in [
        "per audio frame: send + ack",
        "client CPU per audio-s, noisy audio, 0.1 s chunks: smproto_asyncio",
        "client CPU per audio-s, tones audio, 0.02 s chunks: smproto_trio",
        "client CPU per audio-s, tones audio, 0.1 s chunks: smproto_sync",
        "AddTranscript latency p50 / p99, 1 session: smproto_asyncio",
        "AddTranscript latency p50 / p99, 1 session: smproto_sync",
        "faster than real time",
        "real-time sessions held by one client process",
        "real-time sessions held by the server on one core",
        "recogniser real-time factor",
        "recogniser WER",
        "load: words lost / duplicated | 0 / 0",
    ]:
        assert measure in summary, measure
    assert re.search(r"smproto_asyncio \| [\d.]+ ms \| speechmatics-rt send_audio\(\) [\d.]+ ms \| "
                     r"[\d.]+x \|", summary)  # fmt: skip
    assert "`--quick`" in text
    assert f"[{len(PARTS)}/{len(PARTS)}]" in done.stderr  # progress on standard error
    assert (REPO / "README.md").read_text(encoding="utf-8") == readme
