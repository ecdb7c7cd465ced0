"""The whisper recogniser: pocketsphinx's partials and endpointing, Whisper tiny.en's finals.

The clips are the committed synthetic speech of ``tests/data/speech`` (see
``test_offline.py``). The tests that decode need the ``whisper`` extra (installed by
``.[dev]``, so they run in CI) and skip without it; the others run everywhere.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from smproto_server.recognizer import Transcript, Utterance
from smproto_server.recognizers import whisper
from smproto_server.recognizers._whisper_decoder import split_word
from smproto_server.recognizers.whisper import WhisperRecognizer, whisper_available
from tests.drivers.smproto_asyncio.test_cli import ENV
from tests.drivers.smproto_server.test_offline import (
    Timed,
    check_word_results,
    config,
    finals,
    recognise,
    run,
    speech,
    words,
)
from tests.support import REPO

needs_whisper = pytest.mark.skipif(
    not whisper_available(), reason="the whisper recogniser needs the 'whisper' extra"
)

pytestmark = pytest.mark.timeout(180)


def word_error_rate(reference: str, hypothesis: str) -> float:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from _wer import normalise, wer
    finally:
        sys.path.remove(str(REPO / "bench"))
    return float(wer(normalise(reference), normalise(hypothesis)))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" server.", ("server", ".")),
        (" Hello,", ("Hello", ",")),
        (' "quoted?"', ("quoted", "?")),
        (" (aside)", ("aside", "")),
        (" don't", ("don't", "")),
        (" 10", ("10", "")),
        (" ...", ("", ".")),
        ("\u4f60\u597d\u3002", ("\u4f60\u597d", ".")),
        ("   ", ("", "")),
    ],
)
def test_split_word(raw: str, expected: tuple[str, str]) -> None:
    assert split_word(raw) == expected


def test_without_the_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whisper, "_installed", lambda module: module != "faster_whisper")
    assert not whisper_available()
    with pytest.raises(RuntimeError, match=r"faster_whisper.*pip install 'smproto\[whisper\]'"):
        WhisperRecognizer()

    from smproto_asyncio.cli import EXIT_USAGE, CliError, _speech_recognizer

    with pytest.raises(CliError, match=r"smproto\[whisper\]") as caught:
        _speech_recognizer("whisper", "--recognizer scripted", EXIT_USAGE)
    assert caught.value.code == EXIT_USAGE


@needs_whisper
def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="beam_size"):
        WhisperRecognizer(beam_size=0)


@needs_whisper
def test_finals_are_whispers_words_with_punctuation() -> None:
    pcm, text = speech("weather")

    async def go() -> Timed:
        async with WhisperRecognizer(spare_workers=0) as recognizer:
            return await recognise(recognizer, config(enable_partials=True), pcm)

    out = run(go, timeout=120)
    transcripts = finals(out)
    check_word_results(transcripts, len(pcm) / 32000)
    hypothesis = " ".join(r.content for t in transcripts for r in t.results if r.type == "word")
    # pocketsphinx alone gets 0.24 on this clip (test_offline.py); Whisper gets it right.
    assert word_error_rate(text, hypothesis) <= 0.1, hypothesis
    assert hypothesis.startswith("The weather")  # Whisper's capitals
    marks = [r for t in transcripts for r in t.results if r.type == "punctuation"]
    assert marks and all(r.attaches_to == "previous" for r in marks)
    assert transcripts[-1].results[-1].type == "punctuation"
    assert transcripts[-1].results[-1].is_eos
    # Partials are still pocketsphinx's, and come before the finals.
    partials = [o for _, o in out if isinstance(o, Transcript) and not o.final]
    assert partials and all(p.results for p in partials)


@needs_whisper
def test_max_delay_bounds_how_long_a_word_waits() -> None:
    pcm, text = speech("report")  # one 8 s sentence, no pause for the endpointer
    max_delay = 2.0

    async def go() -> Timed:
        async with WhisperRecognizer(spare_workers=0) as recognizer:
            return await recognise(recognizer, config(max_delay=max_delay), pcm)

    out = run(go, timeout=150)
    transcripts = finals(out)
    check_word_results(transcripts, len(pcm) / 32000)
    assert word_error_rate(text, " ".join(words(transcripts))) <= 0.1, words(transcripts)
    duration = len(pcm) / 32000
    early = [(at, t) for at, t in out if isinstance(t, Transcript) and t.final and t.results]
    early = [(at, t) for at, t in early if at < duration]
    assert len(early) >= 2  # the endpointer alone would give one final, at the end
    for at, t in early:
        for r in t.results:
            # No word waited longer than max_delay (plus one 0.1 s chunk of feeding).
            assert at - r.end_time <= max_delay + 0.1 + 1e-6, (at, r)


@needs_whisper
def test_noise_and_silence_give_no_words() -> None:
    import random

    rng = random.Random(7)
    noise = b"".join(
        rng.randint(-300, 300).to_bytes(2, "little", signed=True) for _ in range(48000)
    )
    silence = bytes(32000)

    async def go() -> Timed:
        async with WhisperRecognizer(spare_workers=0) as recognizer:
            return await recognise(recognizer, config(), silence + noise + silence)

    out = run(go, timeout=120)
    assert words(finals(out)) == []
    assert all(isinstance(o, Transcript | Utterance) for _, o in out)


@needs_whisper
def test_cli_transcribes_the_sample_through_the_local_server() -> None:
    """The whole stack over 127.0.0.1: the CLI's embedded server with --recognizer whisper."""
    command = ["transcribe", "samples/hello.wav", "--recognizer", "whisper"]
    result = subprocess.run(
        [sys.executable, "-m", "smproto_asyncio", *command],
        capture_output=True,
        env=ENV,
        timeout=150,
        cwd=REPO,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    expected = (REPO / "samples" / "hello.txt").read_text(encoding="utf-8")
    assert word_error_rate(expected, result.stdout) <= 0.15, result.stdout
    assert re.match(r"Welcome to the local speech server\.", result.stdout), result.stdout
