"""Audio helpers for recognisers: decode the audio a client sends into float samples.

Raw audio (``AudioFormat(type="raw")``) arrives as ``pcm_s16le``, ``pcm_f32le`` or
``mulaw`` samples at the session's sample rate; file audio (``AudioFormat.file()``) is
supported for WAV files holding 16-bit PCM (any rate, any number of channels, mixed down
to mono). Chunks may split a sample (or a WAV header) anywhere: :class:`AudioDecoder`
carries the remainder to the next chunk.

Samples come out as Python floats, nominally in ``[-1, 1]`` (``pcm_f32le`` is passed
through as sent). Everything here is the standard library only (``array``, ``struct``).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterable
from typing import Final

from smproto.config import AudioFormat

from .recognizer import RecognizerError

__all__ = [
    "MULAW_TABLE",
    "AudioDecoder",
    "decode_pcm",
    "encode_pcm",
    "mulaw_encode",
]

_BIG_ENDIAN: Final = sys.byteorder == "big"
_S16_SCALE: Final = 1.0 / 32768.0


def _mulaw_to_linear(byte: int) -> int:
    """G.711 mu-law byte to a 16-bit linear sample (-32124 to 32124)."""
    u = ~byte & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


#: The 256 mu-law (G.711) byte values decoded to floats in ``[-1, 1]``.
MULAW_TABLE: Final[tuple[float, ...]] = tuple(_mulaw_to_linear(b) * _S16_SCALE for b in range(256))

_MULAW_BIAS: Final = 0x84
_MULAW_CLIP: Final = 32635


def mulaw_encode(sample: float) -> int:
    """One float sample (clipped to ``[-1, 1]``) as a G.711 mu-law byte."""
    value = round(max(-1.0, min(1.0, sample)) * 32767)
    sign = 0x80 if value < 0 else 0
    magnitude = min(abs(value), _MULAW_CLIP) + _MULAW_BIAS
    exponent = magnitude.bit_length() - 8
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


_SAMPLE_SIZE: Final = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}


def _s16_floats(data: bytes | memoryview) -> list[float]:
    samples = array("h")
    samples.frombytes(data)
    if _BIG_ENDIAN:
        samples.byteswap()
    scale = _S16_SCALE
    return [s * scale for s in samples]


def decode_pcm(data: bytes, encoding: str) -> list[float]:
    """Decode whole samples of raw audio to floats.

    ``encoding`` is ``"pcm_s16le"``, ``"pcm_f32le"`` or ``"mulaw"``; ``len(data)`` must be
    a multiple of the sample size (use :class:`AudioDecoder` for arbitrary chunks).
    """
    size = _SAMPLE_SIZE.get(encoding)
    if size is None:
        raise ValueError(f"unknown encoding {encoding!r}")
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {encoding} samples")
    if encoding == "pcm_s16le":
        return _s16_floats(data)
    if encoding == "mulaw":
        table = MULAW_TABLE
        return [table[b] for b in data]
    floats = array("f")
    floats.frombytes(data)
    if _BIG_ENDIAN:
        floats.byteswap()
    return floats.tolist()


def encode_pcm(samples: Iterable[float], encoding: str) -> bytes:
    """Encode float samples (clipped to ``[-1, 1]`` for the integer encodings) as raw audio."""
    if encoding == "pcm_s16le":
        ints = array("h", [round(max(-1.0, min(1.0, x)) * 32767) for x in samples])
        if _BIG_ENDIAN:
            ints.byteswap()
        return ints.tobytes()
    if encoding == "mulaw":
        return bytes(mulaw_encode(x) for x in samples)
    if encoding == "pcm_f32le":
        floats = array("f", samples)
        if _BIG_ENDIAN:
            floats.byteswap()
        return floats.tobytes()
    raise ValueError(f"unknown encoding {encoding!r}")


class _RawDecoder:
    __slots__ = ("_carry", "_encoding", "_size")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._size = _SAMPLE_SIZE[encoding]
        self._carry = b""

    def decode(self, chunk: bytes) -> list[float]:
        data = self._carry + chunk if self._carry else chunk
        whole = len(data) - len(data) % self._size
        self._carry = bytes(data[whole:])
        if whole == 0:
            return []
        return decode_pcm(data[:whole] if whole != len(data) else data, self._encoding)


# The WAVE_FORMAT_EXTENSIBLE sub-format GUID of PCM starts with the PCM format tag.
_WAVE_FORMAT_PCM: Final = 0x0001
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
_MAX_WAV_HEADER: Final = 1 << 20


def _bad_wav(reason: str) -> RecognizerError:
    return RecognizerError(
        "invalid_audio_type", f"{reason} (file audio must be a WAV file of 16-bit PCM)"
    )


class _WavDecoder:
    """An incremental RIFF/WAVE parser: header chunks first, then the ``data`` chunk's
    frames, mixed down to mono."""

    __slots__ = ("_buffer", "_carry", "_channels", "_data_left", "sample_rate", "started")

    def __init__(self) -> None:
        self._buffer = b""
        self._carry = b""
        self._channels = 0
        # Bytes of the data chunk still to come; None: up to the end of the stream.
        self._data_left: int | None = None
        self.sample_rate: int | None = None
        self.started = False

    def decode(self, chunk: bytes) -> list[float]:
        if not self.started:
            self._buffer += chunk
            chunk = self._parse_header()
            if not self.started:
                return []
        if self._data_left is not None:
            if self._data_left <= 0:
                return []
            chunk = chunk[: self._data_left]
            self._data_left -= len(chunk)
        data = self._carry + chunk if self._carry else chunk
        frame = 2 * self._channels
        whole = len(data) - len(data) % frame
        self._carry = bytes(data[whole:])
        if whole == 0:
            return []
        samples = _s16_floats(data[:whole])
        channels = self._channels
        if channels == 1:
            return samples
        if channels == 2:
            return [(a + b) * 0.5 for a, b in zip(samples[0::2], samples[1::2], strict=True)]
        scale = 1.0 / channels
        return [
            math.fsum(samples[k : k + channels]) * scale for k in range(0, len(samples), channels)
        ]

    def _parse_header(self) -> bytes:
        """Consume header chunks from the buffer; return the data bytes after them."""
        buf = self._buffer
        if len(buf) >= 12 and (buf[:4] != b"RIFF" or buf[8:12] != b"WAVE"):
            raise _bad_wav("the audio is not a RIFF/WAVE file")
        if len(buf) > _MAX_WAV_HEADER:
            raise _bad_wav("the WAV header is too large")
        pos = 12
        while len(buf) >= pos + 8:
            chunk_id = buf[pos : pos + 4]
            (size,) = struct.unpack_from("<I", buf, pos + 4)
            if chunk_id == b"data":
                if self.sample_rate is None:
                    raise _bad_wav("the WAV data chunk comes before its fmt chunk")
                self.started = True
                # Streamed WAV files often leave the size 0 or 0xFFFFFFFF: read to the end.
                self._data_left = None if size in (0, 0xFFFFFFFF) else size
                self._buffer = b""
                return buf[pos + 8 :]
            end = pos + 8 + size + (size & 1)
            if len(buf) < end:
                break
            if chunk_id == b"fmt ":
                self._parse_fmt(buf[pos + 8 : pos + 8 + size])
            pos = end
        return b""

    def _parse_fmt(self, fmt: bytes) -> None:
        if len(fmt) < 16:
            raise _bad_wav("the WAV fmt chunk is truncated")
        tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", fmt)
        if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
            (tag,) = struct.unpack_from("<H", fmt, 24)
        if tag != _WAVE_FORMAT_PCM:
            raise _bad_wav(f"WAV format tag {tag:#06x} is not PCM")
        if bits != 16:
            raise _bad_wav(f"WAV samples of {bits} bits are not supported")
        if channels < 1 or rate < 1:
            raise _bad_wav(f"WAV header has {channels} channels at {rate} Hz")
        self._channels = channels
        self.sample_rate = rate

    def finish(self) -> None:
        if not self.started and (self._buffer or self.sample_rate is not None):
            raise _bad_wav("the WAV file ended before its audio data")


class AudioDecoder:
    """Decode a session's audio, chunk by chunk, into mono float samples.

    ``AudioDecoder(AudioFormat(encoding="mulaw", sample_rate=8000))`` for raw audio, or
    ``AudioDecoder(AudioFormat.file())`` for a WAV file sent in pieces. Raises
    :class:`~smproto_server.recognizer.RecognizerError` (``invalid_audio_type``) for a file
    that is not a 16-bit PCM WAV file.
    """

    __slots__ = ("_rate", "_raw", "_wav", "samples")

    def __init__(self, audio_format: AudioFormat) -> None:
        self._raw: _RawDecoder | None = None
        self._wav: _WavDecoder | None = None
        self._rate: int | None = None
        #: How many samples (per channel) have been decoded so far.
        self.samples = 0
        if audio_format.type == "file":
            self._wav = _WavDecoder()
        else:
            assert audio_format.encoding is not None
            self._raw = _RawDecoder(audio_format.encoding)
            self._rate = audio_format.sample_rate

    @property
    def sample_rate(self) -> int | None:
        """Samples per second; ``None`` for a file whose header has not been read yet."""
        if self._wav is not None:
            return self._wav.sample_rate if self._wav.started else None
        return self._rate

    def decode(self, chunk: bytes) -> list[float]:
        """The whole samples completed by ``chunk`` (a partial sample is kept for later)."""
        if self._raw is not None:
            out = self._raw.decode(chunk)
        else:
            assert self._wav is not None
            out = self._wav.decode(chunk)
        self.samples += len(out)
        return out

    def finish(self) -> None:
        """The stream ended: raise if a file ended before its audio began."""
        if self._wav is not None:
            self._wav.finish()
