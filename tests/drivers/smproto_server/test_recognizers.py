"""The recognisers of the local server, driven directly (no server, no sockets).

- ``audio``: PCM/mu-law/WAV decoding, whole and in arbitrary pieces;
- ``ScriptedRecognizer``: exact words and times from tone-coded audio, chunking
  independence, resuming from a cut inside a silence, partials, end of utterance,
  forced ends, translations, audio events, multichannel, quota;
- ``ReplayRecognizer``: ``chat1.jsonl`` played back against its audio.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import struct
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import SendText, ServerConnection
from smproto.config import (
    AudioEventsConfig,
    AudioFormat,
    ConversationConfig,
    StartRecognitionConfig,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto.events import LanguagePackInfo, SpeakerIdentity
from smproto.transcript import Result, join_results
from smproto_server.audio import (
    MULAW_TABLE,
    AudioDecoder,
    decode_pcm,
    encode_pcm,
    mulaw_encode,
)
from smproto_server.recognizer import (
    AudioEvent,
    Output,
    Recognizer,
    RecognizerError,
    RecognizerSession,
    Transcript,
    Translation,
    Utterance,
    send_output,
)
from smproto_server.recognizers import ReplayRecognizer, ScriptedRecognizer
from smproto_server.recognizers.scripted import (
    BASE_HZ,
    MUSIC,
    MUSIC_HZ,
    STEP_HZ,
    VOCABULARY,
    WordSpec,
    expected_timings,
    frequency_of,
    synthesize,
    synthesize_wav,
    word_at,
)
from tests.support import require_fixtures, spec_schemas

ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw")
OutputT = TypeVar("OutputT", Transcript, Utterance, Translation, AudioEvent)
SAMPLE_SIZE = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}


# ---------------------------------------------------------------------------------------------
# Helpers


def config(
    *,
    encoding: Any = "pcm_s16le",
    sample_rate: int = 16000,
    file: bool = False,
    translation: TranslationConfig | None = None,
    events: AudioEventsConfig | None = None,
    eou: float | None = None,
    language: str = "en",
    **options: Any,
) -> StartRecognitionConfig:
    if eou is not None:
        options["conversation_config"] = ConversationConfig(end_of_utterance_silence_trigger=eou)
    return StartRecognitionConfig(
        transcription_config=TranscriptionConfig(language, **options),
        audio_format=AudioFormat.file()
        if file
        else AudioFormat(encoding=encoding, sample_rate=sample_rate),
        translation_config=translation,
        audio_events_config=events,
    )


@dataclass
class Run:
    """What a session said, call by call: ``steps`` holds (seconds fed so far, outputs)."""

    steps: list[tuple[float, list[Output]]] = field(default_factory=list)

    @property
    def outputs(self) -> list[Output]:
        return [o for _, step in self.steps for o in step]

    def transcripts(self, *, final: bool | None = None) -> list[Transcript]:
        return [
            o
            for o in self.outputs
            if isinstance(o, Transcript) and (final is None or o.final == final)
        ]

    def finals(self) -> list[Transcript]:
        return self.transcripts(final=True)

    def results(self) -> list[Result]:
        return [r for t in self.finals() for r in t.results]

    def words(self) -> list[str]:
        return [r.content for r in self.results() if r.type == "word"]

    def timed_words(self) -> list[tuple[str, float, float]]:
        return [(r.content, r.start_time, r.end_time) for r in self.results() if r.type == "word"]

    def text(self) -> str:
        return join_results(self.results())

    def of(self, kind: type[OutputT]) -> list[OutputT]:
        return [o for o in self.outputs if isinstance(o, kind)]

    def not_partial(self) -> list[Output]:
        """Everything but partials (which depend on the chunking)."""
        return [
            o for o in self.outputs if not (isinstance(o, Transcript | Translation) and not o.final)
        ]


def chunked(audio: bytes, sizes: Sequence[int] | int) -> list[bytes]:
    if isinstance(sizes, int):
        return [audio[k : k + sizes] for k in range(0, len(audio), sizes)]
    out, pos, k = [], 0, 0
    while pos < len(audio):
        size = sizes[k % len(sizes)]
        out.append(audio[pos : pos + size])
        pos += size
        k += 1
    return out


async def _transcribe(
    audio: bytes,
    cfg: StartRecognitionConfig,
    chunks: Sequence[int] | int,
    recognizer: ScriptedRecognizer | ReplayRecognizer | None = None,
    end: bool = True,
) -> Run:
    recognizer = recognizer or ScriptedRecognizer()
    session = await recognizer.open_session(cfg)
    bps = cfg.audio_format.bytes_per_second
    run, fed = Run(), 0
    try:
        for chunk in chunked(audio, chunks):
            fed += len(chunk)
            outputs = list(await session.feed(chunk))
            run.steps.append((fed / bps if bps else 0.0, outputs))
        if end:
            run.steps.append((fed / bps if bps else 0.0, list(await session.end_of_stream())))
    finally:
        await session.close()
    return run


def transcribe(
    audio: bytes,
    cfg: StartRecognitionConfig | None = None,
    chunks: Sequence[int] | int = 3200,
    **kwargs: Any,
) -> Run:
    return asyncio.run(_transcribe(audio, cfg or config(), chunks, **kwargs))


def check_finals(run: Run, *, fed_limit: bool = True) -> None:
    """Finals in time order, back to back, each result inside its final, never ending after
    the audio fed; partials never before the last final."""
    previous_end = 0.0
    for fed, outputs in run.steps:
        for o in outputs:
            if not isinstance(o, Transcript):
                continue
            assert o.start_time <= o.end_time
            if fed_limit:
                assert o.end_time <= fed + 1e-9, (o, fed)
            if o.final:
                assert o.start_time == pytest.approx(previous_end, abs=1e-9), o
                previous_end = o.end_time
            else:
                assert o.start_time == pytest.approx(previous_end, abs=1e-9), o
            for r in o.results:
                assert o.start_time - 1e-9 <= r.start_time <= r.end_time <= o.end_time + 1e-9, o


def compose(
    items: Sequence[tuple[str, float, float]],
    *,
    lead: float = 0.2,
    sample_rate: int = 16000,
    encoding: str = "pcm_s16le",
) -> tuple[bytes, list[tuple[str, float, float]], list[tuple[int, int]]]:
    """Audio of (word, seconds, silence after) items; the expected (word, start, end), and
    the silences (first sample, end sample) in which the audio may be cut."""
    audio = b""
    expected = []
    silences = []
    pos = round(lead * sample_rate)
    audio += synthesize(
        [], sample_rate=sample_rate, encoding=encoding, lead_seconds=lead, trail_seconds=0.0
    )
    silence_start = 0
    for word, seconds, after in items:
        silences.append((silence_start, pos))
        piece = synthesize(
            [(word, seconds)],
            sample_rate=sample_rate,
            encoding=encoding,
            lead_seconds=0.0,
            trail_seconds=after,
        )
        n = round(seconds * sample_rate)
        expected.append((word, pos / sample_rate, (pos + n) / sample_rate))
        silence_start = pos + n
        pos += len(piece) // SAMPLE_SIZE[encoding]
        audio += piece
    silences.append((silence_start, pos))
    return audio, expected, silences


# ---------------------------------------------------------------------------------------------
# audio.py


def test_mulaw_table_matches_g711() -> None:
    assert len(MULAW_TABLE) == 256
    assert MULAW_TABLE[0xFF] == 0.0 and MULAW_TABLE[0x7F] == 0.0
    assert MULAW_TABLE[0x80] == pytest.approx(32124 / 32768)
    assert MULAW_TABLE[0x00] == pytest.approx(-32124 / 32768)
    assert MULAW_TABLE[0xEF] == 132 / 32768
    # Monotonic within each sign half.
    positive = [MULAW_TABLE[b] for b in range(0xFF, 0x7F, -1)]
    assert positive == sorted(positive)


@given(st.floats(-1.0, 1.0))
def test_mulaw_round_trip_within_quantisation(x: float) -> None:
    back = MULAW_TABLE[mulaw_encode(x)]
    # Half a mu-law step (8/32768 near zero, about 1/16 of the value above), plus rounding.
    assert abs(back - x) <= max(abs(x) / 16, 5 / 32768) + 1e-9
    assert back == 0.0 or (back > 0) == (x > 0)


def test_decode_pcm_values() -> None:
    assert decode_pcm(struct.pack("<3h", 0, 16384, -32768), "pcm_s16le") == [0.0, 0.5, -1.0]
    assert decode_pcm(struct.pack("<2f", 0.25, -0.75), "pcm_f32le") == [0.25, -0.75]
    assert decode_pcm(bytes([0xFF, 0x80]), "mulaw") == [0.0, MULAW_TABLE[0x80]]
    with pytest.raises(ValueError, match="whole number"):
        decode_pcm(b"\x00\x01\x02", "pcm_s16le")
    with pytest.raises(ValueError, match="unknown encoding"):
        decode_pcm(b"", "pcm_s24le")


@given(
    st.sampled_from(ENCODINGS),
    st.lists(st.floats(-1.0, 1.0, width=32), max_size=60),
    st.lists(st.integers(1, 11), min_size=1, max_size=8),
)
def test_incremental_decoding_carries_split_samples(
    encoding: Any, samples: list[float], sizes: list[int]
) -> None:
    data = encode_pcm(samples, encoding)
    whole = decode_pcm(data, encoding)
    decoder = AudioDecoder(AudioFormat(encoding=encoding, sample_rate=8000))
    pieces = [x for chunk in chunked(data, sizes) for x in decoder.decode(chunk)]
    assert pieces == whole
    assert decoder.samples == len(samples) and decoder.sample_rate == 8000
    if encoding == "pcm_f32le":
        assert whole == samples


def wav_bytes(
    frames: bytes,
    *,
    channels: int = 1,
    rate: int = 16000,
    bits: int = 16,
    tag: int = 1,
    extra: bytes = b"",
    data_size: int | None = None,
) -> bytes:
    """A WAV file built by hand, with optional chunks before ``data``."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    size = len(frames) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", size) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


@given(
    st.lists(st.integers(-32768, 32767), max_size=40),
    st.sampled_from([1, 2, 3]),
    st.lists(st.integers(1, 13), min_size=1, max_size=6),
    st.booleans(),
)
def test_wav_decoding_in_pieces(
    ints: list[int], channels: int, sizes: list[int], list_chunk: bool
) -> None:
    ints = ints[: len(ints) - len(ints) % channels]
    frames = struct.pack(f"<{len(ints)}h", *ints)
    # An odd-sized LIST chunk (with its pad byte) before the data.
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde\x00" if list_chunk else b""
    data = wav_bytes(frames, channels=channels, rate=22050, extra=extra)
    if frames:  # (a data size of 0 means "unknown, up to the end", as streamed files have)
        data += b"LIST" + struct.pack("<I", 4) + b"junk"
    decoder = AudioDecoder(AudioFormat.file())
    assert decoder.sample_rate is None
    out = [x for chunk in chunked(data, sizes) for x in decoder.decode(chunk)]
    expected = [
        sum(ints[k : k + channels]) / channels / 32768 for k in range(0, len(ints), channels)
    ]
    assert out == pytest.approx(expected, abs=1e-12)
    assert decoder.sample_rate == 22050
    decoder.finish()


def test_wav_streamed_with_unknown_data_size() -> None:
    frames = struct.pack("<4h", 1, 2, 3, 4)
    decoder = AudioDecoder(AudioFormat.file())
    out = decoder.decode(wav_bytes(frames, data_size=0xFFFFFFFF))
    assert out == [1 / 32768, 2 / 32768, 3 / 32768, 4 / 32768]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"RIFX" + b"\x00" * 40, "not a RIFF/WAVE"),
        (wav_bytes(b"\x00" * 4, bits=8), "8 bits"),
        (wav_bytes(b"\x00" * 8, tag=3, bits=32), "not PCM"),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00", "before its fmt"),
    ],
)
def test_wav_rejected(data: bytes, match: str) -> None:
    decoder = AudioDecoder(AudioFormat.file())
    with pytest.raises(RecognizerError, match=match) as info:
        decoder.decode(data)
    assert info.value.error_type == "invalid_audio_type"


def test_wav_truncated_header_fails_at_the_end() -> None:
    decoder = AudioDecoder(AudioFormat.file())
    assert decoder.decode(wav_bytes(b"")[:30]) == []
    with pytest.raises(RecognizerError, match="ended before its audio"):
        decoder.finish()
    AudioDecoder(AudioFormat.file()).finish()  # nothing sent: nothing wrong


# ---------------------------------------------------------------------------------------------
# The scripted recogniser: the code


def test_vocabulary_and_frequencies() -> None:
    assert len(VOCABULARY) == 64 == len(set(VOCABULARY))
    assert {"hello", "world", "the"} <= set(VOCABULARY)
    assert frequency_of("hello") == BASE_HZ and frequency_of("world") == BASE_HZ + STEP_HZ
    assert frequency_of(MUSIC) == MUSIC_HZ > frequency_of(VOCABULARY[-1])
    assert frequency_of(VOCABULARY[-1]) < 8000 / 2 and MUSIC_HZ < 8000 / 2
    for word in VOCABULARY:
        f = frequency_of(word)
        assert word_at(f) == word_at(f + STEP_HZ * 0.45) == word_at(f - STEP_HZ * 0.45) == word
    assert word_at(MUSIC_HZ) == MUSIC
    with pytest.raises(ValueError, match="VOCABULARY"):
        synthesize(["supercalifragilistic"])
    with pytest.raises(ValueError, match="gap_seconds"):
        synthesize(["hello", "world"], gap_seconds=0.05)
    with pytest.raises(ValueError, match="sample_rate"):
        synthesize(["hello"], sample_rate=4000)


def test_words_and_exact_times() -> None:
    words: list[WordSpec] = ["hello", "world", ("the", 0.5), "my"]
    audio = synthesize(words)
    assert len(audio) == 2 * 16000 * 24 // 10  # lead, words and gaps, trail
    timings = expected_timings(words)
    assert timings == [(0.2, 0.5), (0.7, 1.0), (1.2, 1.7), (1.9, 2.2)]
    run = transcribe(audio)
    check_finals(run)
    assert run.timed_words() == [
        ("hello", 0.2, 0.5),
        ("world", 0.7, 1.0),
        ("the", 1.2, 1.7),
        ("my", 1.9, 2.2),
    ]
    finals = run.finals()
    # One final per word, from the end of the previous final to the end of the word...
    assert [(f.start_time, f.end_time) for f in finals[:4]] == [
        (0.0, 0.5),
        (0.5, 1.0),
        (1.0, 1.7),
        (1.7, 2.2),
    ]
    # ... then, at the end of the stream, the full stop, to the end of the audio.
    last = finals[4]
    assert (last.start_time, last.end_time) == (2.2, 2.4)
    (stop,) = last.results
    assert stop == Result(
        "punctuation",
        2.2,
        2.2,
        stop.alternatives,
        attaches_to="previous",
        is_eos=True,
    )
    assert stop.content == "." and stop.language == "en"
    assert len(finals) == 5
    assert run.text() == "hello world the my."
    alt = finals[0].results[0].alternatives[0]
    assert (alt.confidence, alt.language, alt.speaker) == (1.0, "en", None)
    assert not run.transcripts(final=False)  # partials are off by default
    assert not run.of(Utterance)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_off_grid_tones_decode_to_the_nearest_word(rate: int) -> None:
    """Short bursts (60 ms) a little off their word's frequency: the estimate is precise
    enough to stay within half a step."""
    words = ["hello", "world", "the", "my"]
    samples = [0.0] * (rate // 5)
    for word in words:
        for shift in (-0.35, 0.35):
            f = frequency_of(word) + shift * STEP_HZ
            samples += [0.3 * math.sin(2 * math.pi * f * i / rate) for i in range(rate * 6 // 100)]
            samples += [0.0] * (rate // 5)
    run = transcribe(encode_pcm(samples, "pcm_s16le"), config(sample_rate=rate))
    assert run.words() == [w for w in words for _ in (0, 1)]


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("mulaw", 8000), ("pcm_s16le", 8000), ("pcm_s16le", 16000), ("pcm_f32le", 44100)],
)
def test_every_word_at_every_format(encoding: str, rate: int) -> None:
    words: list[WordSpec] = [*VOCABULARY, MUSIC]
    audio = synthesize(
        words, sample_rate=rate, encoding=encoding, word_seconds=0.15, gap_seconds=0.1
    )
    cfg = config(encoding=encoding, sample_rate=rate, events=AudioEventsConfig())
    run = transcribe(audio, cfg, chunks=rate // 10 * SAMPLE_SIZE[encoding] + 1)
    check_finals(run)
    timings = expected_timings(words, sample_rate=rate, word_seconds=0.15, gap_seconds=0.1)
    assert run.timed_words() == [(w, s, e) for w, (s, e) in zip(VOCABULARY, timings, strict=False)]
    music_start, music_end = timings[-1]
    assert run.of(AudioEvent) == [
        AudioEvent("music", start_time=music_start),
        AudioEvent("music", end_time=music_end),
    ]


def test_wav_file_input_stereo_22khz() -> None:
    words: list[WordSpec] = ["good", "morning", "hello"]
    audio = synthesize_wav(words, sample_rate=22050, channels=2)
    with wave.open(io.BytesIO(audio)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 22050, 2)
    run = transcribe(audio, config(file=True), chunks=[1, 7, 4093, 10])
    timings = expected_timings(words, sample_rate=22050)
    assert run.timed_words() == [(w, s, e) for w, (s, e) in zip(words, timings, strict=True)]
    assert run.text() == "good morning hello."


def test_invalid_file_is_an_invalid_audio_type() -> None:
    with pytest.raises(RecognizerError) as info:
        transcribe(b"ID3\x03" + b"\x00" * 100, config(file=True))
    assert info.value.error_type == "invalid_audio_type"


@st.composite
def scripts(draw: st.DrawFn, *, music: bool = False) -> list[tuple[str, float, float]]:
    vocabulary = [*VOCABULARY, MUSIC] if music else list(VOCABULARY)
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(vocabulary),
                st.sampled_from([0.06, 0.1, 0.25, 0.4]),
                st.sampled_from([0.1, 0.15, 0.3, 0.65, 1.0]),
            ),
            max_size=5,
        )
    )


@given(
    scripts(music=True),
    st.sampled_from([("pcm_s16le", 16000), ("mulaw", 8000), ("pcm_f32le", 8000)]),
    st.lists(st.integers(1, 2000), min_size=1, max_size=5),
    st.booleans(),
)
def test_chunking_changes_nothing_but_partials(
    items: list[tuple[str, float, float]],
    fmt: tuple[str, int],
    sizes: list[int],
    partials: bool,
) -> None:
    encoding, rate = fmt
    audio, expected, _ = compose(items, sample_rate=rate, encoding=encoding)
    cfg = config(
        encoding=encoding,
        sample_rate=rate,
        enable_partials=partials,
        eou=0.25,
        diarization="speaker",
        translation=TranslationConfig(["de"], enable_partials=partials),
        events=AudioEventsConfig(["music"]),
    )
    reference = transcribe(audio, cfg, chunks=rate // 10 * SAMPLE_SIZE[encoding])
    run = transcribe(audio, cfg, chunks=sizes)
    check_finals(run)
    assert run.not_partial() == reference.not_partial()
    assert run.timed_words() == [w for w in expected if w[0] != MUSIC]
    if not partials:
        assert not run.transcripts(final=False)


@given(scripts(), st.data())
def test_resuming_inside_a_silence_gives_the_same_words(
    items: list[tuple[str, float, float]], data: st.DataObject
) -> None:
    """A fresh session fed the audio from a point inside a silence says the same as the
    first session did after that point, shifted by that point's time."""
    rate = data.draw(st.sampled_from([8000, 16000]), label="rate")
    audio, _, silences = compose(items, sample_rate=rate)
    first, end = data.draw(st.sampled_from(silences), label="silence")
    cut = data.draw(st.integers(first, end), label="cut sample")
    offset = cut / rate
    cfg = config(sample_rate=rate, diarization="speaker")
    full = transcribe(audio, cfg, chunks=data.draw(st.integers(1, 4000), label="chunk"))
    resumed = transcribe(audio[2 * cut :], cfg, chunks=data.draw(st.integers(1, 4000)))
    check_finals(resumed)

    def from_first_word(results: list[Result]) -> list[Result]:
        for i, r in enumerate(results):
            if r.type == "word":
                return results[i:]
        return []

    after = from_first_word([r for r in full.results() if r.end_time > offset])
    again = [r.shifted(offset) for r in from_first_word(resumed.results())]
    assert [(r.type, r.content) for r in again] == [(r.type, r.content) for r in after]
    for a, b in zip(again, after, strict=True):
        assert a.start_time == pytest.approx(b.start_time, abs=1e-9)
        assert a.end_time == pytest.approx(b.end_time, abs=1e-9)


def test_resuming_from_each_final_end() -> None:
    """The realistic reconnect: resume at the end of each final (a whole sample)."""
    words: list[WordSpec] = ["one", "two", "three", "four", "five"]
    audio = synthesize(words, gap_seconds=0.7, trail_seconds=1.0)
    full = transcribe(audio, config(eou=0.3))
    for final in full.finals()[:-1]:
        cut = round(final.end_time * 16000)
        resumed = transcribe(audio[2 * cut :], config(eou=0.3))
        shifted = [(w, s + final.end_time, e + final.end_time) for w, s, e in resumed.timed_words()]
        later = [w for w in full.timed_words() if w[1] >= final.end_time]
        assert [w for w, _, _ in shifted] == [w for w, _, _ in later]
        assert [s for _, s, _ in shifted] == pytest.approx([s for _, s, _ in later], abs=1e-9)


def test_cut_inside_a_word_gives_a_fragment_ending_where_the_word_did() -> None:
    """A client resuming from a chunk that began inside a word drops the fragment: it ends
    exactly (to float precision) where the word already delivered ended."""
    audio = synthesize(["hello", "world"])
    cut = round(0.377 * 16000) + 3  # inside "hello", not on a millisecond
    resumed = transcribe(audio[2 * cut :])
    first = resumed.results()[0]
    assert first.end_time + cut / 16000 == pytest.approx(0.5, abs=1e-12)
    assert resumed.timed_words()[-1][0] == "world"


# ---------------------------------------------------------------------------------------------
# Partials, silence, end of utterance, forcing


def test_partials_grow_then_finalise() -> None:
    audio = synthesize(["hello", ("world", 0.5)])
    run = transcribe(audio, config(enable_partials=True), chunks=320)  # 10 ms
    check_finals(run)
    partials = [
        (t.start_time, t.end_time, [r.content for r in t.results])
        for t in run.transcripts(final=False)
    ]
    assert partials == [
        (0.0, 0.3, ["hello"]),
        (0.0, 0.4, ["hello"]),
        (0.0, 0.5, ["hello"]),
        (0.5, 0.8, ["world"]),
        (0.5, 0.9, ["world"]),
        (0.5, 1.0, ["world"]),
        (0.5, 1.1, ["world"]),
        (0.5, 1.2, ["world"]),
    ]
    assert [r.start_time for t in run.transcripts(final=False) for r in t.results] == [0.2] * 3 + [
        0.7
    ] * 5
    # The final comes once the silence after the word reached 0.1 s.
    kinds = [(o.final, o.end_time) for o in run.transcripts()]
    assert kinds.index((True, 0.5)) == 3


def test_partials_superseded_within_one_feed_are_dropped() -> None:
    audio = synthesize(["hello", "world"])
    run = transcribe(audio, config(enable_partials=True), chunks=len(audio))
    assert not run.transcripts(final=False)
    assert run.words() == ["hello", "world"]
    # A feed that ends inside a word keeps its last partial.
    run = transcribe(audio[: 2 * 16000 * 45 // 100], config(enable_partials=True), end=False)
    assert [(t.final, t.end_time) for t in run.transcripts()] == [(False, 0.3), (False, 0.4)]


def test_silence_gives_empty_finals_and_a_full_stop() -> None:
    audio = synthesize(["hello"], trail_seconds=3.0)  # 0.2 + 0.3 + 3.0 s
    run = transcribe(audio)
    check_finals(run)
    spans = [(f.start_time, f.end_time, [r.content for r in f.results]) for f in run.finals()]
    assert spans == [
        (0.0, 0.5, ["hello"]),
        (0.5, 1.0, ["."]),  # 0.6 s of silence: a full stop, 0.1 s behind the audio
        (1.0, 1.7, []),  # then an empty final every max_delay (0.7 s)
        (1.7, 2.4, []),
        (2.4, 3.1, []),
        (3.1, 3.5, []),  # the end of the stream
    ]
    run = transcribe(audio, config(max_delay=2.0))
    assert [(f.start_time, f.end_time) for f in run.finals()][2:] == [(1.0, 3.0), (3.0, 3.5)]
    # Short silences end no sentence.
    assert transcribe(synthesize(["a", "test"], gap_seconds=0.59)).text() == "a test."
    assert transcribe(synthesize(["a", "test"], gap_seconds=0.6)).text() == "a. test."


def test_pure_silence() -> None:
    run = transcribe(bytes(2 * 16000 * 2), config(enable_partials=True))
    assert [(f.start_time, f.end_time, f.results) for f in run.finals()] == [
        (0.0, 0.7, ()),
        (0.7, 1.4, ()),
        (1.4, 2.0, ()),
    ]
    assert run.outputs == run.finals()
    assert transcribe(b"").outputs == []


def test_end_of_utterance_after_each_utterance() -> None:
    audio = synthesize(["yes", "please", "stop"], gap_seconds=0.5, trail_seconds=1.0)
    # yes 0.2-0.5, please 1.0-1.3, stop 1.8-2.1, end 3.1
    run = transcribe(audio, config(eou=0.3))
    assert run.of(Utterance) == [Utterance(0.8), Utterance(1.6), Utterance(2.4)]
    # Each after the final of its word.
    outputs = run.outputs
    for utterance, word_end in zip(run.of(Utterance), (0.5, 1.3, 2.1), strict=True):
        final = next(
            o for o in outputs if isinstance(o, Transcript) and o.final and o.end_time == word_end
        )
        assert outputs.index(final) < outputs.index(utterance)
    # Silences shorter than the trigger end no utterance; once per silence.
    assert transcribe(audio, config(eou=0.6)).of(Utterance) == [Utterance(2.7)]
    # A trigger below the word-end silence fires with the final.
    run = transcribe(audio, config(eou=0.05))
    assert run.of(Utterance) == [Utterance(0.55), Utterance(1.35), Utterance(2.15)]
    assert not transcribe(audio).of(Utterance)
    assert not transcribe(audio, config(eou=0.0)).of(Utterance)


async def _forced() -> tuple[list[Output], list[Output], list[Output], list[Output]]:
    session = await ScriptedRecognizer().open_session(config(enable_partials=True))
    audio = synthesize(["hello", ("world", 0.6)], gap_seconds=0.5, trail_seconds=0.8)
    # hello 0.2-0.5; world 1.0-1.6
    mid_word = await session.feed(audio[: 2 * 16000 * 13 // 10])  # 1.3 s: inside "world"
    forced = await session.force_end_of_utterance(None)
    rest = await session.feed(audio[2 * 16000 * 13 // 10 :])
    silence = await session.force_end_of_utterance(1.9)
    return list(mid_word), list(forced), list(rest), list(silence)


def test_force_end_of_utterance() -> None:
    mid_word, forced, rest, silence = asyncio.run(_forced())
    assert [o for o in mid_word if isinstance(o, Transcript) and o.final][-1].end_time == 0.5
    final, utterance = forced
    assert isinstance(final, Transcript) and final.final and final.forced
    assert (final.start_time, final.end_time) == (0.5, 1.3)
    assert [(r.content, r.start_time, r.end_time) for r in final.results] == [("world", 1.0, 1.3)]
    assert utterance == Utterance(1.3, forced=True)
    # The rest of the word is not a word again; the sentence ends after 0.6 s of silence.
    words = [r.content for o in rest if isinstance(o, Transcript) for r in o.results]
    assert words == ["."]
    # Forced in silence: an empty final up to the audio heard.
    last_final = [o for o in rest if isinstance(o, Transcript)][-1]
    assert last_final.end_time == 2.1
    assert silence == [
        Transcript((), 2.1, 2.4, final=True, forced=True),
        Utterance(2.4, forced=True),
    ]


def test_force_before_any_audio() -> None:
    async def go() -> list[Output]:
        session = await ScriptedRecognizer().open_session(config())
        return list(await session.force_end_of_utterance(None))

    assert asyncio.run(go()) == [
        Transcript((), 0.0, 0.0, final=True, forced=True),
        Utterance(0.0, forced=True),
    ]


async def _reconfigured() -> Run:
    session = await ScriptedRecognizer().open_session(config())
    audio = synthesize(["one", "two", "three"], gap_seconds=0.5)
    # one 0.2-0.5, two 1.0-1.3, three 1.8-2.1
    run = Run()
    first, second = audio[: 2 * 16000], audio[2 * 16000 :]
    run.steps.append((1.0, list(await session.feed(first[: 2 * 16000 * 8 // 10]))))
    # At 0.8 s, 0.3 s into the silence after "one": a trigger of 0.2 s is already due.
    cfg = TranscriptionConfig(
        "en",
        enable_partials=True,
        max_delay=1.5,
        conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.2),
    )
    run.steps.append((0.8, list(await session.reconfigure(cfg))))
    run.steps.append((1.0, list(await session.feed(first[2 * 16000 * 8 // 10 :]))))
    for chunk in chunked(second, 1600):
        run.steps.append((0.0, list(await session.feed(chunk))))
    run.steps.append((0.0, list(await session.end_of_stream())))
    return run


def test_reconfigure() -> None:
    run = asyncio.run(_reconfigured())
    assert run.steps[0][1] == [Transcript(run.finals()[0].results, 0.0, 0.5, final=True)]
    assert run.steps[1][1] == [Utterance(0.7)]
    assert run.of(Utterance) == [Utterance(0.7), Utterance(1.5), Utterance(2.3)]
    assert {tuple(r.content for r in t.results) for t in run.transcripts(final=False)} == {
        ("two",),
        ("three",),
    }
    assert run.words() == ["one", "two", "three"]


# ---------------------------------------------------------------------------------------------
# Translations, audio events, speakers, languages, channels, quota


def test_translations() -> None:
    audio = synthesize(["good", "morning"])
    cfg = config(
        diarization="speaker",
        translation=TranslationConfig(["de", "fr"], enable_partials=True),
    )
    run = transcribe(audio, cfg, chunks=1600)
    finals = [t for t in run.of(Translation) if t.final]
    assert [(t.language, [tuple(s) for s in t.sentences]) for t in finals] == [
        ("de", [("good-de", 0.2, 0.5, "S1")]),
        ("fr", [("good-fr", 0.2, 0.5, "S1")]),
        ("de", [("morning-de", 0.7, 1.0, "S1")]),
        ("fr", [("morning-fr", 0.7, 1.0, "S1")]),
    ]
    partials = [t for t in run.of(Translation) if not t.final]
    assert partials and {t.sentences[0].content for t in partials} == {
        "good-de",
        "good-fr",
        "morning-de",
        "morning-fr",
    }
    # Transcript partials are off: only the translation partials come.
    assert not run.transcripts(final=False)
    run = transcribe(audio, config(translation=TranslationConfig(["de"])), chunks=1600)
    assert all(t.final for t in run.of(Translation))


def test_audio_events() -> None:
    audio = synthesize(["hello", (MUSIC, 1.0), "world"])
    # hello 0.2-0.5, music 0.7-1.7, world 1.9-2.2
    for events in (AudioEventsConfig(), AudioEventsConfig(["music", "laughter"])):
        run = transcribe(audio, config(events=events), chunks=800)
        assert run.of(AudioEvent) == [
            AudioEvent("music", start_time=0.7),
            AudioEvent("music", end_time=1.7),
        ]
        assert run.words() == ["hello", "world"]
        fed = next(fed for fed, outputs in run.steps if AudioEvent("music", 0.7) in outputs)
        assert fed == pytest.approx(0.8)  # recognised 0.1 s in
    for no_music in (None, AudioEventsConfig(["applause"])):
        run = transcribe(audio, config(events=no_music))
        assert not run.of(AudioEvent)
        assert run.words() == ["hello", "world"]
    # Music is no word: the silence after it ends no utterance (nor does it end the
    # silence after the word before it: the music interrupted that).
    audio2 = synthesize(["hello", MUSIC], trail_seconds=0.5)
    run = transcribe(audio2, config(eou=0.3, events=AudioEventsConfig()))
    assert len(run.of(AudioEvent)) == 2 and not run.of(Utterance)
    # Music cut by the end of the stream still ends.
    run = transcribe(audio[: 2 * 16000], config(events=AudioEventsConfig()))
    assert run.of(AudioEvent) == [
        AudioEvent("music", start_time=0.7),
        AudioEvent("music", end_time=1.0),
    ]


def test_speakers_and_languages() -> None:
    async def go(
        cfg: StartRecognitionConfig,
    ) -> tuple[Run, list[SpeakerIdentity], LanguagePackInfo]:
        session = await ScriptedRecognizer().open_session(cfg)
        assert isinstance(session, RecognizerSession)
        before = list(await session.speakers())
        assert before == []
        run = Run([(0.0, list(await session.feed(synthesize(["yes"]))))])
        run.steps.append((0.0, list(await session.end_of_stream())))
        return run, list(await session.speakers()), session.language_pack_info

    run, speakers, info = asyncio.run(go(config(diarization="speaker")))
    assert speakers == [SpeakerIdentity("S1", ("scripted-S1",))]
    assert {r.speaker for r in run.results()} == {"S1"}
    assert info == LanguagePackInfo(" ", "Scripted (tone-coded)", "left-to-right", False, False)
    run, speakers, info = asyncio.run(go(config(language="ja", diarization="none")))
    assert speakers == [] and {r.speaker for r in run.results()} == {None}
    assert info.word_delimiter == "" and {r.language for r in run.results()} == {"ja"}
    run, speakers, info = asyncio.run(go(config(language="cy")))
    assert info.word_delimiter == " " and run.words() == ["yes"]
    assert asyncio.run(go(config(language="cmn")))[2].word_delimiter == ""


async def _two_channels() -> dict[str, Run]:
    cfg = config(
        diarization="channel_and_speaker",
        channel_diarization_labels=["left", "right"],
        eou=0.3,
    )
    session = await ScriptedRecognizer().open_session(cfg)
    left = synthesize(["hello", "there"], lead_seconds=0.5)
    right = synthesize(["yes", "no", "okay"], gap_seconds=0.4)
    runs = {"left": Run(), "right": Run()}
    for k in range(0, max(len(left), len(right)), 999):
        for name, audio in (("left", left), ("right", right)):
            if k < len(audio):
                runs[name].steps.append((0.0, list(await session.feed(audio[k : k + 999], name))))
    runs["left"].steps.append((0.0, list(await session.end_of_stream("left"))))
    # More audio on the right after the left ended: its timeline goes on alone.
    runs["right"].steps.append((0.0, list(await session.feed(synthesize(["stop"]), "right"))))
    runs["right"].steps.append((0.0, list(await session.end_of_stream())))
    return runs


def test_multichannel_has_independent_timelines() -> None:
    runs = asyncio.run(_two_channels())
    left, right = runs["left"], runs["right"]
    assert left.timed_words() == [("hello", 0.5, 0.8), ("there", 1.0, 1.3)]
    assert right.timed_words() == [
        ("yes", 0.2, 0.5),
        ("no", 0.9, 1.2),
        ("okay", 1.6, 1.9),
        ("stop", 2.3, 2.6),
    ]
    for name, run in runs.items():
        assert {getattr(o, "channel", name) for o in run.outputs} == {name}
        assert {r.speaker for r in run.results()} == {"S1"}
        check_finals(run, fed_limit=False)
    # The last silence (0.2 s) is too short for an end of utterance.
    assert right.of(Utterance) == [
        Utterance(0.8, "right"),
        Utterance(1.5, "right"),
        Utterance(2.2, "right"),
    ]


def test_quota_and_protocols() -> None:
    async def go() -> None:
        recognizer = ScriptedRecognizer(max_sessions=2)
        assert isinstance(recognizer, Recognizer) and recognizer.name == "scripted"
        first = await recognizer.open_session(config())
        second = await recognizer.open_session(config())
        with pytest.raises(RecognizerError) as info:
            await recognizer.open_session(config())
        assert info.value.error_type == "quota_exceeded"
        await first.close()
        await first.close()  # idempotent
        third = await recognizer.open_session(config())
        await second.close()
        await third.close()
        assert recognizer.open_sessions == 0
        await recognizer.aclose()

    asyncio.run(go())


def test_feed_delay_slows_every_feed() -> None:
    async def go() -> float:
        session = await ScriptedRecognizer(feed_delay=0.02).open_session(config())
        start = time.monotonic()
        for _ in range(5):
            await session.feed(bytes(320))
        return time.monotonic() - start

    assert asyncio.run(go()) >= 0.1


# ---------------------------------------------------------------------------------------------
# The replay recogniser


def chat1() -> tuple[Path, bytes, list[dict[str, Any]]]:
    fixtures = require_fixtures()
    with wave.open(str(fixtures / "audio_01_16kHz.wav")) as w:
        pcm = w.readframes(w.getnframes())
    records = [json.loads(line) for line in (fixtures / "chat1.jsonl").read_text().splitlines()]
    return fixtures / "chat1.jsonl", pcm, records


def recorded_finals_text(records: list[dict[str, Any]]) -> str:
    return "".join(
        r["payload"]["metadata"]["transcript"]
        for r in records
        if r["payload"]["message"] == "AddTranscript"
    )


def test_replay_chat1() -> None:
    path, pcm, records = chat1()
    recognizer = ReplayRecognizer(path)
    assert recognizer.language_pack_info == LanguagePackInfo(
        " ", "English", "left-to-right", True, False
    )
    run = transcribe(pcm, config(enable_partials=True), chunks=3200, recognizer=recognizer)
    expected = [
        r
        for r in records
        if r["payload"]["message"] in {"AddTranscript", "AddPartialTranscript", "EndOfUtterance"}
    ]
    assert len(run.outputs) == len(expected)
    assert sum(len(t.results) for t in run.finals()) == sum(
        len(r["payload"]["results"]) for r in expected if r["payload"]["message"] == "AddTranscript"
    )
    # The finals' words are the recording's (with their times), and so is their text.
    recorded_words = [
        (w["alternatives"][0]["content"], w["start_time"], w["end_time"])
        for r in expected
        if r["payload"]["message"] == "AddTranscript"
        for w in r["payload"]["results"]
    ]
    assert [(r.content, r.start_time, r.end_time) for r in run.results()] == recorded_words
    assert len(recorded_words) > 50
    finals_text = "".join(join_results(t.results) + " " if t.results else "" for t in run.finals())
    assert finals_text == recorded_finals_text(records)
    # Each message is released with the first chunk that reaches its audio time.
    k = 0
    for fed, outputs in run.steps[:-1]:
        for _ in outputs:
            audio_ts = expected[k]["audio_ts"]
            assert fed - 0.1 - 1e-9 < audio_ts <= fed + 1e-9
            k += 1
    assert not run.steps[-1][1]  # nothing was left for the end of the stream
    assert len(run.of(Utterance)) == len(
        [r for r in records if r["payload"]["message"] == "EndOfUtterance"]
    )


def test_replay_without_partials_and_as_a_file() -> None:
    path, pcm, _ = chat1()
    recognizer = ReplayRecognizer(path)
    with_partials = transcribe(pcm, config(enable_partials=True), recognizer=recognizer)
    run = transcribe(pcm, config(), chunks=4000, recognizer=recognizer)
    assert not run.transcripts(final=False)
    assert run.finals() == with_partials.finals()
    wav = (path.parent / "audio_01_16kHz.wav").read_bytes()
    as_file = transcribe(wav, config(file=True), chunks=4097, recognizer=recognizer)
    assert as_file.not_partial() == with_partials.not_partial()


def test_replay_end_of_stream_releases_the_rest() -> None:
    path, pcm, records = chat1()
    recognizer = ReplayRecognizer(path)
    # Only 5 s of audio, then the end of the stream.
    run = transcribe(pcm[: 2 * 16000 * 5], config(enable_partials=True), recognizer=recognizer)
    _, last = run.steps[-1]
    assert last and all(not isinstance(o, Transcript) or o.final for o in last)
    finals_text = "".join(join_results(t.results) + " " if t.results else "" for t in run.finals())
    assert finals_text == recorded_finals_text(records)


def test_replay_paced_by_speed_and_speakers() -> None:
    path, pcm, _ = chat1()

    async def go() -> tuple[float, list[SpeakerIdentity]]:
        session = await ReplayRecognizer(path, speed=10.0).open_session(config())
        start = time.monotonic()
        for chunk in chunked(pcm[: 2 * 16000 * 2], 6400):
            await session.feed(chunk)
        elapsed = time.monotonic() - start
        await session.end_of_stream()
        return elapsed, list(await session.speakers())

    elapsed, speakers = asyncio.run(go())
    assert elapsed >= 0.2 - 0.01  # 2 s of audio at 10x
    assert speakers and all(s.label.startswith("S") for s in speakers)
    with pytest.raises(ValueError, match="speed"):
        ReplayRecognizer(path, speed=0)


def test_replay_rejects_a_bad_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio_ts": 1, "payload": {"message": "AddTranscript"}}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        ReplayRecognizer(bad)


# ---------------------------------------------------------------------------------------------
# Conformance: what the recognisers say makes messages the spec accepts


def send_outputs(server: ServerConnection, outputs: Sequence[Output]) -> None:
    for out in outputs:
        send_output(server, out)


def test_scripted_outputs_conform_to_the_spec() -> None:
    schemas = spec_schemas()
    cfg = config(
        enable_partials=True,
        diarization="speaker",
        eou=0.3,
        translation=TranslationConfig(["de"], enable_partials=True),
        events=AudioEventsConfig(),
    )
    server = ServerConnection()
    assert server.handshake("/v2", {}, now=0).accepted
    server.receive_message(json.dumps(cfg.to_message()), now=0)
    while server.next_event() is not None:
        pass

    async def go() -> list[Output]:
        session = await ScriptedRecognizer().open_session(cfg)
        server.start_recognition(language_pack_info=session.language_pack_info)
        outputs: list[Output] = []
        audio = synthesize(["hello", MUSIC, ("world", 0.5)], gap_seconds=0.7)
        for chunk in chunked(audio, 1000):
            outputs += await session.feed(chunk)
        outputs += await session.force_end_of_utterance(None)
        outputs += await session.end_of_stream()
        return outputs

    outputs = asyncio.run(go())
    send_outputs(server, outputs)
    sent = [json.loads(a.text) for a in server.actions() if isinstance(a, SendText)]
    kinds = {m["message"] for m in sent}
    assert kinds >= {
        "RecognitionStarted",
        "AddPartialTranscript",
        "AddTranscript",
        "EndOfUtterance",
        "AddPartialTranslation",
        "AddTranslation",
        "AudioEventStarted",
        "AudioEventEnded",
    }
    for message in sent:
        assert schemas.message_errors(message, strict_numbers=True) == [], message


# ---------------------------------------------------------------------------------------------
# Anything goes: noise, odd tones, forced ends and reconfigurations at random points


@st.composite
def odd_audio(draw: st.DrawFn) -> list[float]:
    samples: list[float] = []
    rng = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(1, 4000))
        kind = draw(st.sampled_from(["silence", "noise", "tone", "quiet noise"]))
        if kind == "silence":
            samples += [0.0] * n
        elif kind == "tone":
            f = draw(st.floats(20, 3900))
            a = draw(st.floats(0.01, 1.0))
            samples += [a * math.sin(2 * math.pi * f * i / 8000) for i in range(n)]
        else:
            a = 0.019 if kind == "quiet noise" else 1.0
            samples += [rng.uniform(-a, a) for _ in range(n)]
    return samples


@given(odd_audio(), st.data())
def test_any_audio_keeps_the_invariants(samples: list[float], data: st.DataObject) -> None:
    cfg = config(
        sample_rate=8000,
        enable_partials=data.draw(st.booleans(), label="partials"),
        eou=data.draw(st.sampled_from([None, 0.0, 0.05, 0.5])),
        translation=TranslationConfig(["de"], enable_partials=True),
        events=AudioEventsConfig(),
    )
    audio = encode_pcm(samples, "pcm_s16le")
    commands = data.draw(st.lists(st.sampled_from(["feed", "force", "reconfigure"]), max_size=30))

    async def go() -> Run:
        session = await ScriptedRecognizer().open_session(cfg)
        run, fed = Run(), 0
        for command in commands:
            if command == "feed":
                chunk = audio[fed : fed + data.draw(st.integers(1, 3000), label="chunk")]
                fed += len(chunk)
                run.steps.append((fed / 16000, list(await session.feed(chunk))))
            elif command == "force":
                run.steps.append((fed / 16000, list(await session.force_end_of_utterance(None))))
            else:
                tc = TranscriptionConfig(
                    "en",
                    enable_partials=data.draw(st.booleans()),
                    max_delay=data.draw(st.sampled_from([0.7, 1.0, 4.0])),
                    conversation_config=ConversationConfig(
                        end_of_utterance_silence_trigger=data.draw(st.sampled_from([0, 0.1, 2]))
                    ),
                )
                run.steps.append((fed / 16000, list(await session.reconfigure(tc))))
        rest = audio[fed:]
        fed = len(audio)
        run.steps.append((fed / 16000, list(await session.feed(rest))))
        run.steps.append((fed / 16000, list(await session.end_of_stream())))
        await session.close()
        return run

    run = asyncio.run(go())
    check_finals(run)
    words = [r for r in run.results() if r.type == "word"]
    for before, after in itertools.pairwise(words):
        assert before.end_time <= after.start_time  # each word once, in order
    finals = run.finals()
    if samples:
        assert finals[-1].end_time == len(samples) / 8000  # everything is finalised
    started = [e for e in run.of(AudioEvent) if e.end_time is None]
    ended = [e for e in run.of(AudioEvent) if e.end_time is not None]
    assert len(started) == len(ended)
    translated = [t.sentences[0].content for t in run.of(Translation) if t.final]
    assert translated == [f"{w.content}-de" for w in words]
