"""Preparing audio for a session, as pure functions on bytes: reading WAV files and
cutting raw PCM into chunks.

The Speechmatics RT API takes raw mono PCM (``pcm_s16le``, ``pcm_f32le``, ``mulaw``) at
any sample rate, or whole files. :func:`wav_to_pcm` turns a WAV file of any common
layout (8/16/24/32-bit integer or 32/64-bit float PCM, µ-law, any channel count) into
mono ``pcm_s16le`` at its own rate, so the audio can be streamed raw with exact timings.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from .config import AudioFormat

__all__ = ["WavError", "WavInfo", "parse_wav", "pcm_chunks", "wav_to_pcm"]

_PCM: Final = 1
_FLOAT: Final = 3
_MULAW: Final = 7
_EXTENSIBLE: Final = 0xFFFE


class WavError(ValueError):
    """The bytes are not a WAV file this module can read (the message says why)."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV header says."""

    #: 1 (integer PCM), 3 (float) or 7 (µ-law), after resolving WAVE_FORMAT_EXTENSIBLE.
    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    #: Where the samples start and how many bytes they take (clipped to the file).
    data_offset: int
    data_length: int

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        frame = self.channels * self.bits_per_sample // 8
        return self.data_length / frame / self.sample_rate if frame else 0.0


def parse_wav(data: bytes) -> WavInfo:
    """Read a WAV (RIFF/WAVE) header. Raises :class:`WavError` for anything else."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE and size >= 40 and body + 26 <= len(data):
                (tag,) = struct.unpack_from("<H", data, body + 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("the data chunk comes before the fmt chunk")
            tag, channels, rate, bits = fmt
            # Streamed files may not know their length (0 or 0xFFFFFFFF): read to the end.
            length = len(data) - body if size in (0, 0xFFFFFFFF) else min(size, len(data) - body)
            if channels < 1 or rate < 1:
                raise WavError(f"{channels} channels at {rate} Hz")
            if tag not in (_PCM, _FLOAT, _MULAW):
                raise WavError(f"unsupported WAV encoding (format tag {tag}): use PCM")
            if (
                (tag == _PCM and bits not in (8, 16, 24, 32))
                or (tag == _FLOAT and bits not in (32, 64))
                or (tag == _MULAW and bits != 8)
            ):
                raise WavError(f"unsupported sample size: {bits} bits (format tag {tag})")
            return WavInfo(tag, channels, rate, bits, body, length)
        offset = body + size + (size & 1)
    raise WavError("no data chunk")


def _samples(raw: bytes, info: WavInfo) -> list[float]:
    """Every sample (all channels interleaved) as a float in [-1, 1]."""
    bits, tag = info.bits_per_sample, info.format_tag
    width = bits // 8
    raw = raw[: len(raw) - len(raw) % (width * info.channels)]
    if tag == _FLOAT:
        count = len(raw) // width
        return [
            v if math.isfinite(v) else 0.0
            for v in struct.unpack(f"<{count}{'f' if bits == 32 else 'd'}", raw)
        ]
    if tag == _MULAW:
        return [_MULAW_TABLE[b] for b in raw]
    if bits == 8:  # unsigned
        return [(b - 128) / 128.0 for b in raw]
    if bits == 16:
        count = len(raw) // 2
        return [v / 32768.0 for v in struct.unpack(f"<{count}h", raw)]
    if bits == 24:
        return [
            int.from_bytes(raw[i : i + 3], "little", signed=True) / 8388608.0
            for i in range(0, len(raw), 3)
        ]
    count = len(raw) // 4
    return [v / 2147483648.0 for v in struct.unpack(f"<{count}i", raw)]


def _mulaw(byte: int) -> float:
    u = ~byte & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    value = magnitude - 0x84
    return (-value if sign else value) / 32768.0


_MULAW_TABLE: Final = tuple(_mulaw(b) for b in range(256))


def wav_to_pcm(data: bytes) -> tuple[AudioFormat, bytes]:
    """A WAV file as mono 16-bit PCM at its own rate: ``(AudioFormat, samples)``.

    Channels are averaged; other sample formats are converted. 16-bit mono files are
    passed through untouched.
    """
    info = parse_wav(data)
    raw = data[info.data_offset : info.data_offset + info.data_length]
    fmt = AudioFormat(encoding="pcm_s16le", sample_rate=info.sample_rate)
    if info.format_tag == _PCM and info.bits_per_sample == 16 and info.channels == 1:
        return fmt, raw[: len(raw) - len(raw) % 2]  # WAV samples are little-endian already
    samples = _samples(raw, info)
    channels = info.channels
    if channels > 1:
        samples = [
            sum(samples[i : i + channels]) / channels for i in range(0, len(samples), channels)
        ]
    clipped = [max(-32768, min(32767, round(v * 32768.0))) for v in samples]
    return fmt, struct.pack(f"<{len(clipped)}h", *clipped)


def pcm_chunks(data: bytes, audio_format: AudioFormat, seconds: float = 0.1) -> Iterator[bytes]:
    """``data`` cut into chunks of ``seconds`` of audio (whole samples; the last may be
    shorter). For file formats, chunks of 4 KiB."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    bps = audio_format.bytes_per_second
    sample = audio_format.bytes_per_sample or 1
    size = max(sample, int(bps * seconds) // sample * sample) if bps else 4096
    for start in range(0, len(data), size):
        yield data[start : start + size]
