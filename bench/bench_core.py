"""Benchmarks of the sans-IO core, measured in one run, printed as a markdown table.

    python bench/bench_core.py [--quick]

(a) engine cost per audio frame (``send_audio`` + ``actions()`` + its ``AudioAdded``
    through ``receive_message`` + ``next_event()``) against websockets' own sans-IO
    framing of the same traffic (a masked 3200-byte binary frame out, the ack's text
    frame in) — goal: the engine costs less than the framing beneath it;
(b) turning real ``AddTranscript`` messages from the recorded session (chat1.jsonl)
    into events with typed results, against bare ``json.loads`` of the same text —
    goal: at most 2x;
(c) constructing a ``ClientConnection`` (goal: at most 100 us) and its memory
    (goal: at most 32 KiB).

Times are the best of several repeats (``timeit``), so they are the cost of the code,
not of whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import timeit
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _summary import figure, write_summary  # bench/, the script's own folder
from websockets.protocol import Protocol, Side
from websockets.protocol import State as WSState

from smproto import ClientConnection, TranscriptionConfig

FIXTURES = Path(
    os.environ.get(
        "SMPROTO_FIXTURES",
        Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "speechmatics",
    )
)
FRAME = bytes(range(256)) * 12 + bytes(128)  # 3200 bytes: 0.1 s of 16 kHz 16-bit audio


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Seconds per call, best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def streaming_client() -> ClientConnection:
    conn = ClientConnection(TranscriptionConfig(language="en", enable_partials=True))
    conn.connection_opened(now=0.0)
    conn.receive_message('{"message": "RecognitionStarted", "id": "bench"}', now=0.0)
    conn.actions()
    conn.events()
    return conn


def bench_frame(number: int, repeat: int) -> tuple[float, float]:
    total = number * repeat + 10
    acks = [f'{{"message":"AudioAdded","seq_no":{i}}}' for i in range(1, total + 1)]
    conn = streaming_client()
    ack_iter = iter(acks)

    def engine() -> None:
        conn.send_audio(FRAME)
        conn.actions()
        conn.receive_message(next(ack_iter), now=1.0)
        conn.next_event()

    engine_cost = best(engine, number, repeat)

    client = Protocol(Side.CLIENT, state=WSState.OPEN)
    server = Protocol(Side.SERVER, state=WSState.OPEN)
    ack_frames = []
    for text in acks[:1000]:
        server.send_text(text.encode())
        ack_frames.append(b"".join(server.data_to_send()))
    counter = iter(range(10**9))

    def framing() -> None:
        client.send_binary(FRAME)
        client.data_to_send()
        client.receive_data(ack_frames[next(counter) % 1000])
        client.events_received()

    framing_cost = best(framing, number, repeat)
    return engine_cost, framing_cost


def bench_transcripts(number: int, repeat: int) -> tuple[float, float, int]:
    lines = (FIXTURES / "chat1.jsonl").read_text().splitlines()
    finals = [
        json.dumps(json.loads(line)["payload"])
        for line in lines
        if json.loads(line)["payload"].get("message") == "AddTranscript"
    ]
    conn = streaming_client()

    def engine() -> None:
        for text in finals:
            conn.receive_message(text, now=1.0)
            conn.next_event()

    def bare() -> None:
        for text in finals:
            json.loads(text)

    n = max(1, number // len(finals))
    return best(engine, n, repeat) / len(finals), best(bare, n, repeat) / len(finals), len(finals)


def bench_construct(number: int, repeat: int) -> tuple[float, float]:
    config = TranscriptionConfig(language="en", enable_partials=True)
    cost = best(lambda: ClientConnection(config), number, repeat)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns = [ClientConnection(config) for _ in range(200)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / len(conns)
    return cost, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--summary", metavar="PATH", help="write the headline figures as JSON")
    args = parser.parse_args()
    number, repeat = (2_000, 3) if args.quick else (50_000, 7)

    engine, framing = bench_frame(number, repeat)
    parsed, bare, n_finals = bench_transcripts(number, repeat)
    construct, memory = bench_construct(number // 5, repeat)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    print(f"smproto core benchmarks — Python {platform.python_version()} on {platform.machine()}")
    print()
    print("| measure | smproto | baseline | ratio | goal | |")
    print("|---|---|---|---|---|---|")
    print(
        f"| (a) per audio frame: send + ack | {engine * 1e6:.2f} µs | websockets framing "
        f"{framing * 1e6:.2f} µs | {engine / framing:.2f}x | < 1x | {verdict(engine < framing)} |"
    )
    print(
        f"| (b) AddTranscript → typed event ({n_finals} chat1 finals) | {parsed * 1e6:.2f} µs "
        f"| json.loads {bare * 1e6:.2f} µs | {parsed / bare:.2f}x | ≤ 2x | "
        f"{verdict(parsed <= 2 * bare)} |"
    )
    print(
        f"| (c) construct a ClientConnection | {construct * 1e6:.2f} µs | | | ≤ 100 µs | "
        f"{verdict(construct <= 100e-6)} |"
    )
    print(
        f"| (c) memory of a ClientConnection | {memory / 1024:.2f} KiB | | | ≤ 32 KiB | "
        f"{verdict(memory <= 32 * 1024)} |"
    )
    sys.stdout.flush()
    figures = {
        "frame_us": figure("per audio frame: send + ack", engine * 1e6, "µs"),
        "frame_websockets_us": figure("websockets framing, per frame", framing * 1e6, "µs"),
        "parse_us": figure(f"AddTranscript → typed event ({n_finals} finals)", parsed * 1e6, "µs"),
        "parse_json_us": figure("json.loads of the same message", bare * 1e6, "µs"),
        "construct_us": figure("construct a ClientConnection", construct * 1e6, "µs"),
        "memory_kib": figure("memory of a ClientConnection", memory / 1024, "KiB"),
    }
    write_summary(args.summary, "bench_core.py", figures, quick=args.quick)


if __name__ == "__main__":
    main()
