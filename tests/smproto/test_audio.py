"""Reading WAV files of any common layout, and cutting PCM into chunks."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import AudioFormat
from smproto.audio import WavError, parse_wav, pcm_chunks, wav_to_pcm


def _wav(frames: bytes, *, rate: int = 16000, width: int = 2, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def _float_wav(samples: list[float], rate: int = 8000) -> bytes:
    data = struct.pack(f"<{len(samples)}f", *samples)
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_16_bit_mono_passes_through() -> None:
    pcm = struct.pack("<4h", 0, 1000, -1000, 32767)
    fmt, out = wav_to_pcm(_wav(pcm, rate=22050))
    assert fmt == AudioFormat(encoding="pcm_s16le", sample_rate=22050)
    assert out == pcm


def test_stereo_is_averaged_and_8_bit_converted() -> None:
    stereo = struct.pack("<4h", 1000, 3000, -2000, -4000)
    assert wav_to_pcm(_wav(stereo, channels=2))[1] == struct.pack("<2h", 2000, -3000)
    eight = bytes([128, 255, 0])
    assert struct.unpack("<3h", wav_to_pcm(_wav(eight, width=1))[1]) == (0, 32512, -32768)


def test_24_and_32_bit_and_float() -> None:
    s24 = (1 << 22).to_bytes(3, "little", signed=True) + (-(1 << 22)).to_bytes(
        3, "little", signed=True
    )
    assert struct.unpack("<2h", wav_to_pcm(_wav(s24, width=3))[1]) == (16384, -16384)
    s32 = struct.pack("<2i", 1 << 30, -(1 << 30))
    assert struct.unpack("<2h", wav_to_pcm(_wav(s32, width=4))[1]) == (16384, -16384)
    fmt, out = wav_to_pcm(_float_wav([0.5, -0.5, 2.0, math.nan]))
    assert fmt.sample_rate == 8000
    assert struct.unpack("<4h", out) == (16384, -16384, 32767, 0)


def test_info_and_errors() -> None:
    info = parse_wav(_wav(b"\x00\x00" * 16000, rate=16000))
    assert info.duration == pytest.approx(1.0)
    for bad, match in (
        (b"not a wav", "RIFF"),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "before the fmt"),
        (b"RIFF\x00\x00\x00\x00WAVE", "no data"),
        (_wav(b"\x00" * 4).replace(b"\x01\x00\x01\x00", b"\x02\x00\x01\x00", 1), "format tag 2"),
    ):
        with pytest.raises(WavError, match=match):
            parse_wav(bad)


def test_streamed_length_reads_to_the_end() -> None:
    data = bytearray(_wav(struct.pack("<3h", 1, 2, 3)))
    data[40:44] = b"\xff\xff\xff\xff"  # a streamed file does not know its length
    assert wav_to_pcm(bytes(data))[1] == struct.pack("<3h", 1, 2, 3)


@given(st.binary(max_size=5000), st.sampled_from([0.01, 0.02, 0.1, 0.25]))
def test_chunks_cover_the_audio_in_whole_samples(data: bytes, seconds: float) -> None:
    fmt = AudioFormat(encoding="pcm_s16le", sample_rate=8000)
    chunks = list(pcm_chunks(data, fmt, seconds))
    assert b"".join(chunks) == data
    assert all(len(c) % 2 == 0 for c in chunks[:-1])
    assert all(len(c) == int(16000 * seconds) for c in chunks[:-1])
    with pytest.raises(ValueError):
        list(pcm_chunks(data, fmt, 0))
