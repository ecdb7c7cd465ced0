"""Benchmarks of the offline recogniser (pocketsphinx), printed as markdown tables.

    python bench/bench_recognizer.py [--quick]

(a) accuracy and cost per clip: word error rate of the finals, and CPU seconds per
    second of audio — of the worker process (``getrusage(RUSAGE_CHILDREN)`` once it is
    reaped, less the CPU of a worker that starts and stops with no audio) and of this
    process (the event loop, pipes and pickling) — and wall seconds per audio second,
    streaming 0.1 s chunks as fast as the recogniser takes them, with partials on. The
    clips: the recorded real session's audio (``audio_01_16kHz.wav``, against the words
    of its real Speechmatics ``AddTranscript`` messages in ``chat1.jsonl``) and the
    committed synthetic speech (``tests/data/speech``, ``samples/hello.wav``), against
    their text. Both decoder settings are measured: this recogniser's default
    (``fwdflat=False, maxhmmpf=3000``) and pocketsphinx's own; and, when the ``whisper``
    extra is installed, the whisper recogniser (the default's partials, Whisper tiny.en
    finals).
(b) capacity: N sessions at once, each streaming the real clip as fast as it can; the
    aggregate audio seconds recognised per wall second is how many real-time sessions
    the machine holds.
(c) start-up: opening a session with no warm worker and with one, and a worker's RSS.

WER is word-level Levenshtein distance over the reference length (``bench/_wer.py``),
after lower-casing and removing punctuation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "drivers"), str(ROOT / "bench")]

from _summary import figure, write_summary  # noqa: E402
from _wer import normalise, reference_from_jsonl, wer  # noqa: E402

from smproto.config import AudioFormat, StartRecognitionConfig, TranscriptionConfig  # noqa: E402
from smproto_server.recognizer import Transcript  # noqa: E402
from smproto_server.recognizers.offline import (  # noqa: E402
    OfflineRecognizer,
    offline_available,
)
from smproto_server.recognizers.whisper import (  # noqa: E402
    WhisperRecognizer,
    whisper_available,
)

FIXTURES = Path(
    os.environ.get("SMPROTO_FIXTURES", ROOT.parent / "shared" / "fixtures" / "speechmatics")
)
POCKETSPHINX_DEFAULTS = {"fwdflat": True, "maxhmmpf": 30000}
#: The headline figures of this run, for ``--summary``.
FIGURES: dict[str, dict[str, Any]] = {}


@dataclass
class Clip:
    name: str
    pcm: bytes
    reference: list[str]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 32000


def _read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            raise SystemExit(f"{path} is not 16 kHz mono s16")
        return w.readframes(w.getnframes())


def clips(quick: bool) -> list[Clip]:
    out = []
    real = FIXTURES / "audio_01_16kHz.wav"
    if real.is_file():
        out.append(
            Clip(
                "audio_01 (real, vs Speechmatics)",
                _read_wav(real),
                reference_from_jsonl(FIXTURES / "chat1.jsonl"),
            )
        )
    else:
        print(f"(no {real}: the real clip is left out)", file=sys.stderr)
    names = ["weather"] if quick else ["weather", "report", "commands", "weather_espeak"]
    for name in names:
        path = ROOT / "tests" / "data" / "speech" / f"{name}.wav"
        text = path.with_suffix(".txt").read_text(encoding="utf-8")
        out.append(Clip(f"{name} (synthetic)", _read_wav(path), normalise(text)))
    if not quick:
        hello = ROOT / "samples" / "hello.wav"
        text = hello.with_suffix(".txt").read_text(encoding="utf-8")
        out.append(Clip("samples/hello (synthetic)", _read_wav(hello), normalise(text)))
    return out


def _config() -> StartRecognitionConfig:
    return StartRecognitionConfig(
        transcription_config=TranscriptionConfig("en", enable_partials=True),
        audio_format=AudioFormat(),
    )


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def _stream(recognizer: OfflineRecognizer, pcm: bytes) -> list[str]:
    session = await recognizer.open_session(_config())
    words: list[str] = []
    try:
        for i in range(0, len(pcm), 3200):
            outputs = list(await session.feed(pcm[i : i + 3200]))
            outputs += [] if i + 3200 < len(pcm) else await session.end_of_stream()
            for o in outputs:
                if isinstance(o, Transcript) and o.final:
                    words += [r.content for r in o.results if r.type == "word"]
    finally:
        await session.close()
    return words


async def _startup_cpu(make: Any) -> float:
    """CPU of a worker that starts, builds its decoder, and stops."""
    samples = []
    for _ in range(3):
        before = _cpu(resource.RUSAGE_CHILDREN)
        async with make() as recognizer:
            session = await recognizer.open_session(_config())
            await session.close()
        samples.append(_cpu(resource.RUSAGE_CHILDREN) - before)
    return min(samples)


def _decoders(quick: bool) -> list[tuple[str, str, Any]]:
    """(label, figure key, recogniser factory) for each decoder measured."""
    decoders: list[tuple[str, str, Any]] = [
        (
            "default (fwdflat off, maxhmmpf 3000)",
            "default",
            lambda: OfflineRecognizer(spare_workers=0),
        ),
    ]
    if quick:
        return decoders
    decoders.append(
        (
            "pocketsphinx defaults",
            "pocketsphinx",
            lambda: OfflineRecognizer(spare_workers=0, decoder_options=POCKETSPHINX_DEFAULTS),
        )
    )
    if whisper_available():
        decoders.append(
            (
                "whisper (tiny.en finals)",
                "whisper",
                lambda: WhisperRecognizer(spare_workers=0),
            )
        )
    else:
        print("(the 'whisper' extra is not installed: no whisper rows)", file=sys.stderr)
    return decoders


async def accuracy_and_cost(clip_list: Sequence[Clip], quick: bool = False) -> list[list[str]]:
    rows = []
    for label, name, make in _decoders(quick):
        startup = await _startup_cpu(make)
        for clip in clip_list:
            child0, self0, wall0 = (
                _cpu(resource.RUSAGE_CHILDREN),
                _cpu(resource.RUSAGE_SELF),
                time.perf_counter(),
            )
            async with make() as rec:
                words = await _stream(rec, clip.pcm)
            wall = time.perf_counter() - wall0
            worker_cpu = _cpu(resource.RUSAGE_CHILDREN) - child0 - startup
            server_cpu = _cpu(resource.RUSAGE_SELF) - self0
            error = wer(clip.reference, normalise(" ".join(words)))
            key = f"{clip.name.split()[0]}/{name}"
            what = f"{clip.name}, {label.split()[0]} decoder"
            FIGURES[f"wer/{key}"] = figure(f"WER, {what}", error, "")
            FIGURES[f"rtf/{key}"] = figure(f"real-time factor, {what}", wall / clip.seconds, "")
            FIGURES[f"cpu/{key}"] = figure(
                f"worker CPU per audio-s, {what}", worker_cpu / clip.seconds, ""
            )
            rows.append(
                [
                    clip.name,
                    label,
                    f"{clip.seconds:.1f}",
                    f"{error:.3f}",
                    f"{worker_cpu / clip.seconds:.3f}",
                    f"{server_cpu / clip.seconds:.3f}",
                    f"{wall / clip.seconds:.3f}",
                ]
            )
    return rows


async def capacity(clip: Clip, counts: Sequence[int]) -> list[list[str]]:
    rows = []
    for n in counts:
        async with OfflineRecognizer(spare_workers=n, max_sessions=n) as recognizer:
            await recognizer.warm_up()
            started = time.perf_counter()
            await asyncio.gather(*(_stream(recognizer, clip.pcm) for _ in range(n)))
            wall = time.perf_counter() - started
        FIGURES[f"capacity/{n}"] = figure(
            f"{n} concurrent sessions: audio s per wall s", n * clip.seconds / wall, "sessions"
        )
        rows.append(
            [
                str(n),
                f"{n * clip.seconds:.1f}",
                f"{wall:.2f}",
                f"{n * clip.seconds / wall:.1f}",
            ]
        )
    return rows


async def startup() -> list[list[str]]:
    rows = []
    cases: list[tuple[str, dict[str, Any]]] = [
        ("language model", {}),
        ("grammar (3 sentences)", {"grammar": ["yes", "no", "turn the lights on"]}),
    ]
    for label, kwargs in cases:
        async with OfflineRecognizer(spare_workers=0, **kwargs) as recognizer:
            started = time.perf_counter()
            session = await recognizer.open_session(_config())
            cold = time.perf_counter() - started
            info = session._worker.info or {}
            await session.close()
        async with OfflineRecognizer(spare_workers=1, **kwargs) as recognizer:
            await recognizer.warm_up()
            started = time.perf_counter()
            session = await recognizer.open_session(_config())
            warm = time.perf_counter() - started
            await session.close()
        rows.append(
            [
                label,
                f"{cold * 1000:.0f} ms",
                f"{warm * 1000:.1f} ms",
                f"{info.get('build_seconds', 0) * 1000:.0f} ms",
                f"{info.get('rss_mb', 0):.0f} MB",
            ]
        )
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def run(quick: bool) -> None:
    clip_list = clips(quick)
    print(
        f"pocketsphinx offline recogniser on {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs\n"
    )
    print("## (a) Accuracy and cost per clip (partials on, 0.1 s chunks, unpaced)\n")
    print(
        table(
            [
                "clip",
                "decoder",
                "audio s",
                "WER",
                "worker CPU-s / audio-s",
                "server CPU-s / audio-s",
                "wall s / audio-s",
            ],
            await accuracy_and_cost(clip_list, quick),
        )
    )
    counts = [2] if quick else [1, 2, 4, 6]
    print(f"\n## (b) Capacity: N concurrent sessions streaming '{clip_list[0].name}'\n")
    print(
        table(
            ["sessions", "audio s", "wall s", "audio s per wall s (real-time sessions held)"],
            await capacity(clip_list[0], counts),
        )
    )
    print("\n## (c) Start-up\n")
    print(
        table(
            ["decoder", "open, no warm worker", "open, warm worker", "decoder build", "worker RSS"],
            await startup(),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer clips, decoders and session counts"
    )
    parser.add_argument("--summary", metavar="PATH", help="write the headline figures as JSON")
    args = parser.parse_args()
    if not offline_available():
        raise SystemExit("pocketsphinx is not installed: pip install 'smproto[asr]'")
    asyncio.run(run(args.quick))
    write_summary(args.summary, "bench_recognizer.py", FIGURES, quick=args.quick)


if __name__ == "__main__":
    main()
