"""The offline recogniser's audio conversion (stdlib only; runs without pocketsphinx)."""

from __future__ import annotations

import math
import struct
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto_server.recognizers._offline_audio import (
    ALAW,
    ULAW,
    AudioTypeError,
    LinearResampler,
    RawConverter,
    WavConverter,
    make_converter,
)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        out.append(data[i : i + size])
        i += size
    out.append(data[i:])
    return out


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 10000.0) -> array[int]:
    return array(
        "h",
        (int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(rate * seconds))),
    )


@given(
    src=st.sampled_from([8000, 11025, 16000, 22050, 24000, 44100, 48000, 7999]),
    sizes=st.lists(st.integers(0, 900), max_size=30),
)
def test_resampling_does_not_depend_on_chunking(src: int, sizes: list[int]) -> None:
    x = sine(src, 0.5)
    whole = LinearResampler(src).process(x)
    r = LinearResampler(src)
    parts = array("h")
    i = 0
    for size in [*sizes, len(x)]:
        parts.extend(r.process(x[i : i + size]))
        i += size
    assert parts == whole


@pytest.mark.parametrize("src", [8000, 11025, 22050, 32000, 44100, 48000])
def test_resampling_keeps_a_tone(src: int) -> None:
    out = LinearResampler(src).process(sine(src, 1.0))
    assert abs(len(out) - 16000) <= 2
    width = src // 16000 if src >= 32000 else 1
    shift = (width - 1) / 2 / src  # the box pre-filter's delay
    worst = max(
        abs(out[k] - 10000 * math.sin(2 * math.pi * 440 * (k / 16000 + shift)))
        for k in range(50, len(out) - 50)
    )
    assert worst < 200  # 2 % of the amplitude


def test_upsampling_interpolates_exactly() -> None:
    out = LinearResampler(8000).process(array("h", [0, 100, 200, -200]))
    assert out.tolist() == [0, 50, 100, 150, 200, 0]


def test_g711_tables() -> None:
    assert (ULAW[0x00], ULAW[0x7F], ULAW[0x80], ULAW[0xFF]) == (-32124, 0, 32124, 0)
    assert (ALAW[0x55], ALAW[0xD5], ALAW[0x2A], ALAW[0xAA]) == (-8, 8, -32256, 32256)
    # µ-law has two zeros (0x7F and 0xFF); both laws are monotonic within each sign half.
    assert len(set(ULAW)) == 255 and len(set(ALAW)) == 256
    assert list(ULAW[:0x80]) == sorted(ULAW[:0x80]) and list(ULAW[0x80:]) == sorted(
        ULAW[0x80:], reverse=True
    )


def test_raw_s16_passthrough_keeps_samples_whole() -> None:
    c = RawConverter("pcm_s16le", 16000)
    assert c.convert(b"\x01\x02\x03") == b"\x01\x02"
    assert c.convert(b"\x04") == b"\x03\x04"


def test_raw_f32_clips_and_drops_nan() -> None:
    data = struct.pack("<5f", 0.5, -0.5, 2.0, -2.0, float("nan"))
    out = array("h")
    out.frombytes(RawConverter("pcm_f32le", 16000).convert(data))
    assert out.tolist() == [16384, -16384, 32767, -32768, 0]


def test_raw_mulaw() -> None:
    out = array("h")
    c = RawConverter("mulaw", 16000)
    out.frombytes(c.convert(bytes([0x00, 0x80, 0xFF])))
    assert out.tolist() == [-32124, 32124, 0]


def wav(fmt: bytes, data: bytes, *, extra: bytes = b"", size: int | None = None) -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data) if size is None else size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm_fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def convert_all(data: bytes, sizes: list[int]) -> array[int]:
    c = WavConverter()
    out = b"".join(c.convert(part) for part in chunked(data, sizes)) + c.finish()
    samples = array("h")
    samples.frombytes(out)
    return samples


@given(sizes=st.lists(st.integers(1, 40), max_size=20))
def test_wav_header_split_anywhere(sizes: list[int]) -> None:
    samples = struct.pack("<4h", 1, -2, 300, -400)
    data = wav(pcm_fmt(1, 1, 16000, 16), samples, extra=b"LIST\x05\x00\x00\x00INFOx\x00")
    assert convert_all(data, sizes).tolist() == [1, -2, 300, -400]


@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [
        (pcm_fmt(1, 1, 16000, 8), bytes([128, 255, 0]), [0, 127 << 8, -128 << 8]),
        (pcm_fmt(1, 1, 16000, 24), b"\x00\x00\x40\xff\xff\xff", [0x4000, -1]),
        (pcm_fmt(1, 1, 16000, 32), struct.pack("<2i", 1 << 30, -(1 << 30)), [16384, -16384]),
        (pcm_fmt(3, 1, 16000, 64), struct.pack("<2d", 0.25, -1.5), [8192, -32768]),
        (pcm_fmt(6, 1, 16000, 8), bytes([0xD5]), [8]),
        (pcm_fmt(7, 1, 16000, 8), bytes([0x80]), [32124]),
        (pcm_fmt(1, 2, 16000, 16), struct.pack("<4h", 100, 300, -100, -300), [200, -200]),
    ],
    ids=["u8", "s24", "s32", "f64", "alaw", "mulaw", "stereo"],
)
def test_wav_encodings(fmt: bytes, data: bytes, expected: list[int]) -> None:
    assert convert_all(wav(fmt, data), [7]).tolist() == expected


def test_wav_extensible_and_rate() -> None:
    fmt = pcm_fmt(0xFFFE, 1, 8000, 16) + struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1)
    fmt += bytes(14)
    out = convert_all(wav(fmt, struct.pack("<3h", 0, 100, 200)), [])
    assert out.tolist() == [0, 50, 100, 150]


def test_wav_data_size_is_honoured_unless_streamed() -> None:
    samples = struct.pack("<2h", 5, 6)
    trailing = b"LIST\x04\x00\x00\x00INFO"
    assert convert_all(wav(pcm_fmt(1, 1, 16000, 16), samples) + trailing, []).tolist() == [5, 6]
    streamed = wav(pcm_fmt(1, 1, 16000, 16), samples, size=0xFFFFFFFF)
    assert convert_all(streamed + struct.pack("<h", 7), []).tolist() == [5, 6, 7]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"ID3\x04\x00\x00" + bytes(20), "MP3"),
        (b"OggS" + bytes(20), "Ogg"),
        (b"fLaC" + bytes(20), "FLAC"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "RIFF"),
        (b"hello world, this is text", "data starting with"),
    ],
)
def test_other_files_are_rejected(data: bytes, words: str) -> None:
    with pytest.raises(AudioTypeError, match=words):
        WavConverter().convert(data)


def test_rejected_early_and_at_the_end() -> None:
    with pytest.raises(AudioTypeError):
        WavConverter().convert(b"OggS")  # four bytes are enough to know
    c = WavConverter()
    assert c.convert(b"RIFF\x10\x00") == b""
    with pytest.raises(AudioTypeError, match="ended inside the WAV header"):
        c.finish()
    with pytest.raises(AudioTypeError, match="unsupported WAV encoding"):
        WavConverter().convert(wav(pcm_fmt(0x55, 1, 16000, 0), b""))  # MP3-in-WAV
    with pytest.raises(AudioTypeError, match="no 'fmt '"):
        WavConverter().convert(b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00")


def test_make_converter() -> None:
    assert isinstance(make_converter("file", None, None), WavConverter)
    assert isinstance(make_converter("raw", "mulaw", 8000), RawConverter)
    with pytest.raises(AudioTypeError):
        make_converter("raw", "pcm_s24le", 16000)
