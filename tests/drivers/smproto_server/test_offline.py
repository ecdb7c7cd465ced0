"""The offline recogniser (pocketsphinx in worker processes) on committed synthetic speech.

The speech in ``tests/data/speech`` was made by ``tests/data/speech/make_speech.py`` (piper
with the CC0 ``en_US-joe-medium`` voice). Grammar mode makes the words exact; free
decoding is checked against a word error rate bound. Every test that needs pocketsphinx
skips without it; the import-safety test runs everywhere.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from smproto.config import (
    AudioFormat,
    ConversationConfig,
    StartRecognitionConfig,
    TranscriptionConfig,
)
from smproto_server.recognizer import (
    Output,
    Recognizer,
    RecognizerError,
    RecognizerSession,
    Transcript,
    Utterance,
)
from smproto_server.recognizers.offline import OfflineRecognizer, offline_available
from tests.support import REPO

needs_pocketsphinx = pytest.mark.skipif(
    not offline_available(), reason="pocketsphinx is not installed (the 'asr' extra)"
)

SPEECH = REPO / "tests" / "data" / "speech"
#: Free decoding of weather.wav must stay under this word error rate. pocketsphinx 5's
#: US English model gets 0.24 on it (bench/bench_recognizer.py; it hears "sunny" and
#: "umbrella" wrong); the bound leaves room for other pocketsphinx versions.
WER_BOUND = 0.35
GRAMMAR = [
    "turn the kitchen lights on",
    "turn the kitchen lights off",
    "set a timer for ten minutes",
    "set a timer for five minutes",
    "what is the weather like today",
    "what time is it",
    "please remember to send the report to the finance team before the meeting on friday "
    "because they need time to check the numbers and prepare their questions for the board",
]
COMMAND_WORDS = [
    "turn",
    "the",
    "kitchen",
    "lights",
    "on",
    "set",
    "a",
    "timer",
    "for",
    "ten",
    "minutes",
    "what",
    "is",
    "the",
    "weather",
    "like",
    "today",
]

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run a test's coroutine on a fresh event loop, never longer than ``timeout``."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def speech(name: str) -> tuple[bytes, str]:
    """A committed clip's 16 kHz s16le samples and its text."""
    with wave.open(str(SPEECH / f"{name}.wav"), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        pcm = w.readframes(w.getnframes())
    return pcm, (SPEECH / f"{name}.txt").read_text(encoding="utf-8")


def config(
    audio_format: AudioFormat | None = None, language: str = "en", **tc: Any
) -> StartRecognitionConfig:
    return StartRecognitionConfig(
        transcription_config=TranscriptionConfig(language, **tc),
        audio_format=audio_format or AudioFormat(),
    )


Timed = list[tuple[float, Output]]


async def stream(
    session: RecognizerSession,
    audio: bytes,
    *,
    bytes_per_second: int = 32000,
    chunk_seconds: float = 0.1,
    end: bool = True,
    start_at: float = 0.0,
) -> Timed:
    """Feed ``audio`` in chunks; each output comes with the audio time fed when it came."""
    chunk = max(1, int(bytes_per_second * chunk_seconds))
    out: Timed = []
    for i in range(0, len(audio), chunk):
        piece = audio[i : i + chunk]
        fed = start_at + (i + len(piece)) / bytes_per_second
        out += [(fed, o) for o in await session.feed(piece)]
    if end:
        fed = start_at + len(audio) / bytes_per_second
        out += [(fed, o) for o in await session.end_of_stream()]
    return out


def finals(out: Timed) -> list[Transcript]:
    return [o for _, o in out if isinstance(o, Transcript) and o.final]


def words(transcripts: Sequence[Transcript]) -> list[str]:
    return [r.content.lower() for t in transcripts for r in t.results if r.type == "word"]


def child_pids() -> set[int]:
    """This process's children, from /proc (a reaped child is gone from the list)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with open(task / "children", encoding="ascii") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def check_word_results(transcripts: Sequence[Transcript], duration: float) -> None:
    """Word times are ordered and inside the audio; confidences are 0-1; no fillers."""
    last_end = 0.0
    for t in transcripts:
        for r in t.results:
            assert 0.0 <= r.start_time <= r.end_time <= duration + 0.05, r
            assert r.start_time >= last_end - 0.011, (r, last_end)
            last_end = r.end_time
            assert r.confidence is not None and 0.0 <= r.confidence <= 1.0
            assert r.language == "en"
            if r.type == "word":
                assert "(" not in r.content and not r.content.startswith(("<", "["))


async def recognise(
    recognizer: OfflineRecognizer, cfg: StartRecognitionConfig, audio: bytes, **kw: Any
) -> Timed:
    session = await recognizer.open_session(cfg)
    try:
        return await stream(session, audio, **kw)
    finally:
        await session.close()


# ---------------------------------------------------------------------------------------
# Audio in other formats, made without the code under test


def downsample_2x(pcm: bytes) -> bytes:
    """16 kHz → 8 kHz by averaging sample pairs."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    pairs = [(samples[i] + samples[i + 1]) // 2 for i in range(0, len(samples) - 1, 2)]
    return struct.pack(f"<{len(pairs)}h", *pairs)


def upsample_2x(pcm: bytes) -> bytes:
    """16 kHz → 32 kHz: each sample, then the mean with the next."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    out = []
    for a, b in zip(samples, samples[1:] + samples[-1:], strict=True):
        out += [a, (a + b) // 2]
    return struct.pack(f"<{len(out)}h", *out)


def mulaw_encode(sample: int) -> int:
    """G.711 µ-law, the textbook way."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = min(7, max(0, magnitude.bit_length() - 8))
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF


def to_mulaw(pcm: bytes) -> bytes:
    return bytes(mulaw_encode(s) for (s,) in struct.iter_unpack("<h", pcm))


def to_f32(pcm: bytes) -> bytes:
    return b"".join(struct.pack("<f", s / 32768) for (s,) in struct.iter_unpack("<h", pcm))


def stereo_24bit_wav(pcm: bytes, rate: int) -> bytes:
    """A WAVE_FORMAT_EXTENSIBLE-free 24-bit stereo file whose right channel is silent
    half the time (the mix-down must keep the words)."""
    frames = bytearray()
    for i, (s,) in enumerate(struct.iter_unpack("<h", pcm)):
        left = (s * 256).to_bytes(3, "little", signed=True)
        right = left if (i // rate) % 2 == 0 else b"\0\0\0"
        frames += left + right
    fmt = struct.pack("<HHIIHH", 1, 2, rate, rate * 6, 6, 24)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk to skip
    body += b"data" + struct.pack("<I", len(frames)) + bytes(frames)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# ---------------------------------------------------------------------------------------
# Import safety


def test_imports_and_explains_without_pocketsphinx() -> None:
    code = (
        "import sys; sys.modules['pocketsphinx'] = None\n"
        "import smproto_server\n"
        "from smproto_server.recognizers import offline\n"
        "assert offline.offline_available() is False\n"
        "try:\n"
        "    offline.OfflineRecognizer()\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no RuntimeError')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "drivers")])}
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "pocketsphinx" in result.stdout
    assert "pip install 'smproto[asr]'" in result.stdout


@needs_pocketsphinx
def test_is_a_recognizer() -> None:
    recognizer = OfflineRecognizer(spare_workers=0)
    assert isinstance(recognizer, Recognizer)
    assert recognizer.name == "offline"

    async def go() -> None:
        session = await recognizer.open_session(config())
        try:
            assert isinstance(session, RecognizerSession)
            assert session.language_pack_info.word_delimiter == " "
            assert await session.speakers() == ()
        finally:
            await recognizer.aclose()

    run(go)


@needs_pocketsphinx
def test_grammar_words_must_be_in_the_dictionary() -> None:
    with pytest.raises(ValueError, match="zorblax"):
        OfflineRecognizer(grammar=["turn the zorblax on"])
    with pytest.raises(TypeError):
        OfflineRecognizer(grammar="one string")


# ---------------------------------------------------------------------------------------
# Recognition


@needs_pocketsphinx
def test_grammar_mode_gives_the_exact_words() -> None:
    pcm, _ = speech("commands")

    async def go() -> Timed:
        async with OfflineRecognizer(grammar=GRAMMAR) as recognizer:
            return await recognise(recognizer, config(), pcm)

    out = run(go)
    transcripts = finals(out)
    assert words(transcripts) == COMMAND_WORDS
    check_word_results(transcripts, len(pcm) / 32000)
    # Punctuation: each of the three utterances starts with a capital and ends with ".".
    text = " ".join(r.content for t in transcripts for r in t.results)
    assert text == (
        "Turn the kitchen lights on . Set a timer for ten minutes . "
        "What is the weather like today ."
    )
    stops = [r for t in transcripts for r in t.results if r.type == "punctuation"]
    assert all(r.is_eos and r.attaches_to == "previous" for r in stops)


@needs_pocketsphinx
def test_free_decoding_word_error_rate() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from _wer import normalise, wer
    finally:
        sys.path.remove(str(REPO / "bench"))
    pcm, text = speech("weather")

    async def go() -> Timed:
        async with OfflineRecognizer(spare_workers=0) as recognizer:
            return await recognise(recognizer, config(), pcm)

    transcripts = finals(run(go))
    check_word_results(transcripts, len(pcm) / 32000)
    hypothesis = " ".join(words(transcripts))
    error_rate = wer(normalise(text), normalise(hypothesis))
    assert error_rate < WER_BOUND, (error_rate, hypothesis)
    # And the bound can fail: the transcript of another clip is far off.
    assert wer(normalise(speech("commands")[1]), normalise(hypothesis)) > 0.8


@needs_pocketsphinx
def test_partials_are_throttled() -> None:
    pcm, _ = speech("commands")

    async def go(interval: float, enable: bool) -> Timed:
        async with OfflineRecognizer(
            grammar=GRAMMAR, partial_interval=interval, spare_workers=0
        ) as recognizer:
            return await recognise(
                recognizer, config(enable_partials=enable), pcm, chunk_seconds=0.02
            )

    out = run(lambda: go(0.3, True))
    partials = [(at, o) for at, o in out if isinstance(o, Transcript) and not o.final]
    assert len(partials) >= 5
    # Between two finals, partials are at least 0.3 s of audio apart (one 30 ms
    # endpointer frame of slack: the worker counts whole frames) and never repeat.
    previous: tuple[float, tuple[str, ...]] | None = None
    for at, o in out:
        assert isinstance(o, Transcript | Utterance)
        if isinstance(o, Transcript) and not o.final:
            key = tuple(r.content for r in o.results)
            if previous is not None:
                assert at - previous[0] >= 0.3 - 0.03 - 1e-9
                assert key != previous[1]
            previous = (at, key)
        else:
            previous = None
    # Partials are the words still to come: the final that follows starts with them.
    assert all(o.end_time >= o.start_time for _, o in partials)
    slow = run(lambda: go(1.0, True))
    n_slow = sum(1 for _, o in slow if isinstance(o, Transcript) and not o.final)
    assert 0 < n_slow < len(partials)
    assert not [
        o for _, o in run(lambda: go(0.3, False)) if isinstance(o, Transcript) and not o.final
    ]


@needs_pocketsphinx
def test_max_delay_forces_finals() -> None:
    pcm, _ = speech("report")  # one 8 s sentence, no pause for the endpointer

    async def go(max_delay: float | None) -> Timed:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            return await recognise(recognizer, config(max_delay=max_delay), pcm)

    out = run(lambda: go(1.0))
    transcripts = finals(out)
    assert words(transcripts) == GRAMMAR[-1].split()
    check_word_results(transcripts, len(pcm) / 32000)
    with_words = [(at, t) for at, t in out if isinstance(t, Transcript) and t.final and t.results]
    assert len(with_words) >= 5  # the endpointer alone gives one final
    for at, t in with_words:
        if at >= len(pcm) / 32000:
            continue  # end of stream
        for r in t.results:
            # No word waited longer than max_delay (plus one 0.1 s chunk of feeding).
            assert at - r.end_time <= 1.0 + 0.1 + 1e-6, (at, r)
    # With the default (4 s) far fewer finals come before the end.
    default = run(lambda: go(None))
    assert words(finals(default)) == GRAMMAR[-1].split()
    n_default = sum(1 for _, t in default if isinstance(t, Transcript) and t.final and t.results)
    assert n_default < len(with_words)


@needs_pocketsphinx
def test_end_of_utterance() -> None:
    pcm, _ = speech("commands")  # three commands with 1.2 s pauses

    async def go(trigger: float | None) -> Timed:
        conversation = ConversationConfig(end_of_utterance_silence_trigger=trigger)
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            return await recognise(recognizer, config(conversation_config=conversation), pcm)

    out = run(lambda: go(0.5))
    utterances = [(at, o) for at, o in out if isinstance(o, Utterance)]
    assert len(utterances) == 3
    assert not any(u.forced for _, u in utterances)
    for at, u in utterances:
        # It follows a final whose last word ended at least 0.5 s before it.
        index = next(i for i, (_, o) in enumerate(out) if o is u)
        last_final = next(
            o for _, o in reversed(out[:index]) if isinstance(o, Transcript) and o.final
        )
        last_word = [r for r in last_final.results if r.type == "word"][-1]
        assert u.time >= last_word.end_time + 0.5 - 1e-6
        assert u.time <= at + 1e-6
    assert words(finals(out)) == COMMAND_WORDS
    # The pauses are shorter than 2 s: one end of utterance only, when the stream ends.
    long_trigger = [o for _, o in run(lambda: go(2.0)) if isinstance(o, Utterance)]
    assert len(long_trigger) == 1
    assert not [o for _, o in run(lambda: go(None)) if isinstance(o, Utterance)]


@needs_pocketsphinx
def test_force_end_of_utterance() -> None:
    pcm, _ = speech("weather")
    cut = 2 * 32000  # in the middle of the first sentence

    async def go() -> tuple[Timed, Sequence[Output], Timed]:
        async with OfflineRecognizer(spare_workers=0) as recognizer:
            session = await recognizer.open_session(config())
            before = await stream(session, pcm[:cut], end=False)
            forced = await session.force_end_of_utterance(None)
            after = await stream(session, pcm[cut:], start_at=2.0)
            return before, forced, after

    before, forced, after = run(go)
    assert not finals(before)  # the endpointer was still in the sentence
    assert len(forced) == 2
    final, utterance = forced
    assert isinstance(final, Transcript) and final.final and final.forced
    assert isinstance(utterance, Utterance) and utterance.forced
    assert utterance.time == pytest.approx(2.0, abs=0.001)
    forced_words = [r for r in final.results if r.type == "word"]
    assert len(forced_words) >= 3
    # The audio the endpointer held back was decoded too: the words reach the cut.
    assert 1.5 <= forced_words[-1].end_time <= 2.0 + 0.011
    later = finals(after)
    assert words(later)
    assert min(r.start_time for t in later for r in t.results) >= forced_words[-1].end_time - 0.011
    check_word_results([final, *later], len(pcm) / 32000)


@needs_pocketsphinx
def test_end_of_stream_finalises_everything() -> None:
    pcm, _ = speech("report")
    cut = 4 * 32000  # in the middle of the sentence

    async def go() -> Timed:
        async with OfflineRecognizer(spare_workers=0) as recognizer:
            session = await recognizer.open_session(config(enable_partials=True))
            before = await stream(session, pcm[:cut], end=False)
            return before + [(4.0, o) for o in await session.end_of_stream()]

    out = run(go)
    at_end = [o for at, o in out if at == 4.0]
    assert not [t for t in finals(out) if t not in at_end and t.results]
    last = [t for t in at_end if isinstance(t, Transcript)]
    assert len(last) == 1 and last[0].final
    result_words = [r for r in last[0].results if r.type == "word"]
    assert len(result_words) >= 6
    # Up to the cut: the ~0.27 s of audio the endpointer holds back was decoded too.
    assert 3.8 <= result_words[-1].end_time <= 4.0 + 0.011


@needs_pocketsphinx
@pytest.mark.parametrize(
    ("encoding", "rate", "convert"),
    [
        ("pcm_s16le", 8000, downsample_2x),
        ("mulaw", 8000, lambda pcm: to_mulaw(downsample_2x(pcm))),
        ("pcm_f32le", 16000, to_f32),
        ("pcm_s16le", 32000, upsample_2x),
    ],
    ids=["s16-8k", "mulaw-8k", "f32-16k", "s16-32k"],
)
def test_raw_formats_and_rates(encoding: str, rate: int, convert: Callable[[bytes], bytes]) -> None:
    pcm, _ = speech("commands")
    audio = convert(pcm)
    audio_format = AudioFormat(encoding=encoding, sample_rate=rate)  # type: ignore[arg-type]
    assert audio_format.bytes_per_second is not None

    async def go() -> Timed:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            return await recognise(
                recognizer,
                config(audio_format),
                audio,
                bytes_per_second=audio_format.bytes_per_second or 0,
            )

    transcripts = finals(run(go))
    assert words(transcripts) == COMMAND_WORDS
    check_word_results(transcripts, len(pcm) / 32000)


@needs_pocketsphinx
def test_wav_files() -> None:
    pcm, _ = speech("commands")
    plain = (SPEECH / "commands.wav").read_bytes()
    stereo = stereo_24bit_wav(downsample_2x(pcm), 8000)

    async def go(data: bytes) -> Timed:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            session = await recognizer.open_session(config(AudioFormat.file()))
            try:
                out: Timed = []
                for i in range(0, len(data), 999):  # chunks that split the header
                    out += [(0.0, o) for o in await session.feed(data[i : i + 999])]
                return out + [(0.0, o) for o in await session.end_of_stream()]
            finally:
                await session.close()

    assert words(finals(run(lambda: go(plain)))) == COMMAND_WORDS
    assert words(finals(run(lambda: go(stereo)))) == COMMAND_WORDS


@needs_pocketsphinx
def test_other_files_are_invalid_audio_type() -> None:
    async def go(data: bytes, eos: bool) -> RecognizerError:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            session = await recognizer.open_session(config(AudioFormat.file()))
            with pytest.raises(RecognizerError) as info:
                await session.feed(data)
                if eos:
                    await session.end_of_stream()
            return info.value

    mp3 = run(lambda: go(b"ID3\x04\x00" + bytes(600), False))
    assert mp3.error_type == "invalid_audio_type"
    assert "MP3" in mp3.reason
    truncated = run(lambda: go(b"RIFF\x24\x00\x00\x00WAVEfmt ", True))
    assert truncated.error_type == "invalid_audio_type"


@needs_pocketsphinx
def test_reconfigure_turns_partials_on() -> None:
    pcm, _ = speech("commands")
    half = len(pcm) // 2 // 2 * 2

    async def go() -> tuple[Timed, Timed]:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            session = await recognizer.open_session(config())
            before = await stream(session, pcm[:half], end=False)
            assert await session.reconfigure(TranscriptionConfig(enable_partials=True)) == []
            after = await stream(session, pcm[half:])
            return before, after

    before, after = run(go)
    assert not [o for _, o in before if isinstance(o, Transcript) and not o.final]
    assert [o for _, o in after if isinstance(o, Transcript) and not o.final]
    assert words(finals(before) + finals(after)) == COMMAND_WORDS


@needs_pocketsphinx
def test_channels_are_recognised_separately() -> None:
    pcm, _ = speech("commands")

    async def go() -> list[Output]:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            session = await recognizer.open_session(config())
            out: list[Output] = []
            for i in range(0, len(pcm), 6400):
                out += await session.feed(pcm[i : i + 6400], "left")
                out += await session.feed(bytes(len(pcm[i : i + 6400])), "right")
            out += await session.end_of_stream("left")
            out += await session.end_of_stream("right")
            return out

    out = run(go)
    left = [o for o in out if isinstance(o, Transcript) and o.final and o.channel == "left"]
    right = [o for o in out if isinstance(o, Transcript) and o.final and o.channel == "right"]
    assert words(left) == COMMAND_WORDS
    assert words(right) == []


# ---------------------------------------------------------------------------------------
# Limits, failures and processes


@needs_pocketsphinx
def test_unsupported_language() -> None:
    before = child_pids()  # other tests' children, if any

    async def go(language: str) -> None:
        async with OfflineRecognizer(spare_workers=0) as recognizer:
            await recognizer.open_session(config(language=language))

    for language in ("de", "fr", "cmn"):
        with pytest.raises(RecognizerError) as info:
            run(lambda: go(language))  # noqa: B023
        assert info.value.error_type == "invalid_language"
    assert child_pids() <= before


@needs_pocketsphinx
def test_session_cap_is_quota_exceeded() -> None:
    before = child_pids()  # other tests' children, if any

    async def go() -> None:
        async with OfflineRecognizer(
            grammar=GRAMMAR, max_sessions=2, spare_workers=0
        ) as recognizer:
            first = await recognizer.open_session(config())
            await recognizer.open_session(config())
            assert recognizer.active_sessions == 2
            with pytest.raises(RecognizerError) as info:
                await recognizer.open_session(config())
            assert info.value.error_type == "quota_exceeded"
            await first.close()
            assert recognizer.active_sessions == 1
            third = await recognizer.open_session(config())
            assert await third.feed(bytes(3200)) == []

    run(go)
    assert child_pids() <= before


@needs_pocketsphinx
def test_killed_worker_is_job_error() -> None:
    before = child_pids()  # other tests' children, if any

    async def go() -> None:
        async with OfflineRecognizer(grammar=GRAMMAR, spare_workers=0) as recognizer:
            session = await recognizer.open_session(config())
            assert await session.feed(bytes(3200)) == []
            os.kill(session.worker_pid, signal.SIGKILL)
            with pytest.raises(RecognizerError) as info:
                await session.feed(bytes(3200))
            assert info.value.error_type == "job_error"
            assert "SIGKILL" in info.value.reason
            with pytest.raises(RecognizerError, match="job_error"):
                await session.end_of_stream()
            await session.close()
            assert recognizer.active_sessions == 0

    run(go)
    assert child_pids() <= before


@needs_pocketsphinx
def test_stuck_worker_times_out_as_job_error() -> None:
    before = child_pids()  # other tests' children, if any

    async def go() -> float:
        async with OfflineRecognizer(
            grammar=GRAMMAR, spare_workers=0, request_timeout=1.0
        ) as recognizer:
            session = await recognizer.open_session(config())
            os.kill(session.worker_pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(RecognizerError) as info:
                await session.feed(bytes(3200))
            assert info.value.error_type == "job_error"
            assert "did not answer" in info.value.reason
            return time.monotonic() - started

    assert run(go) < 3.0
    assert child_pids() <= before


@needs_pocketsphinx
def test_close_and_aclose_leave_no_processes() -> None:
    before = child_pids()

    async def go() -> None:
        recognizer = OfflineRecognizer(grammar=GRAMMAR, spare_workers=2)
        await recognizer.warm_up()
        sessions = [await recognizer.open_session(config()) for _ in range(2)]
        pids = {s.worker_pid for s in sessions}
        assert pids <= child_pids()
        assert len(child_pids() - before) == 4  # two sessions, two spares
        await sessions[0].close()
        await sessions[0].close()  # idempotent
        assert sessions[0].worker_pid not in child_pids()
        await recognizer.aclose()
        assert child_pids() <= before
        with pytest.raises(RecognizerError):
            await recognizer.open_session(config())
        await recognizer.aclose()  # idempotent

    run(go)
    assert child_pids() <= before
