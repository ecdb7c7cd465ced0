"""LiveKit audio frames as the bytes a Speechmatics session expects.

LiveKit frames are interleaved 16-bit PCM at any rate and channel count; a session takes one
channel in its ``audio_format``. :func:`frame_bytes` downmixes to mono and converts the
encoding (``pcm_s16le`` as is, ``pcm_f32le`` and ``mulaw`` converted), and :class:`Chunker`
gathers the bytes into chunks of a fixed duration. An :class:`AudioSource` is what the pump
takes a stream's input from: chunks, :data:`FLUSH` and :data:`END`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from livekit import rtc

from smproto import AudioFormat

__all__ = [
    "END",
    "FLUSH",
    "AudioSource",
    "Chunker",
    "Marker",
    "chunks_source",
    "encode_pcm16",
    "frame_bytes",
]

_MULAW_BIAS: Final = 0x84
_MULAW_CLIP: Final = 32635


def _mono(frame: rtc.AudioFrame) -> npt.NDArray[np.int16]:
    samples: npt.NDArray[np.int16] = np.frombuffer(frame.data, dtype=np.int16)
    channels = frame.num_channels
    if channels <= 1:
        return samples
    mixed = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
    averaged: npt.NDArray[np.float64] = mixed.mean(axis=1, dtype=np.float64)
    return np.round(averaged).astype(np.int16)


def _mulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """G.711 µ-law encoding of 16-bit samples."""
    x = samples.astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    magnitude = np.minimum(np.abs(x), _MULAW_CLIP) + _MULAW_BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    encoded: npt.NDArray[np.int32] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return encoded.astype(np.uint8).tobytes()


def encode_pcm16(samples: npt.NDArray[np.int16], encoding: str) -> bytes:
    """Mono 16-bit samples in ``encoding`` (``pcm_s16le``, ``pcm_f32le`` or ``mulaw``)."""
    if encoding == "pcm_s16le":
        return samples.astype("<i2", copy=False).tobytes()
    if encoding == "pcm_f32le":
        return (samples.astype(np.float32) / np.float32(32768.0)).astype("<f4").tobytes()
    if encoding == "mulaw":
        return _mulaw(samples)
    raise ValueError(f"unsupported encoding {encoding!r}")


def frame_bytes(frame: rtc.AudioFrame, audio_format: AudioFormat) -> bytes:
    """One frame's audio, mono, in ``audio_format``'s encoding.

    Raises:
        ValueError: the frame's sample rate is not the session's (LiveKit resamples the
            frames pushed to a stream, so this means a buffer of mixed rates).
    """
    if frame.sample_rate != audio_format.sample_rate:
        raise ValueError(
            f"an audio frame at {frame.sample_rate} Hz in a session at "
            f"{audio_format.sample_rate} Hz"
        )
    assert audio_format.encoding is not None
    return encode_pcm16(_mono(frame), audio_format.encoding)


class Chunker:
    """Gathers bytes into chunks of ``seconds`` of audio (whole samples)."""

    __slots__ = ("_buffer", "size")

    def __init__(self, audio_format: AudioFormat, seconds: float = 0.1) -> None:
        bps = audio_format.bytes_per_second or 32_000
        sample = audio_format.bytes_per_sample or 1
        self.size = max(sample, int(bps * seconds) // sample * sample)
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the chunks now complete."""
        buffer = self._buffer
        buffer += data
        size = self.size
        if len(buffer) < size:
            return []
        count = len(buffer) // size
        chunks = [bytes(buffer[i * size : (i + 1) * size]) for i in range(count)]
        del buffer[: count * size]
        return chunks

    def drain(self) -> bytes:
        """What is left (shorter than a chunk; maybe empty)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


class Marker:
    """A marker in an audio source (:data:`FLUSH`, :data:`END`)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: Finalise what was said so far (``ForceEndOfUtterance``).
FLUSH: Final = Marker("FLUSH")
#: No more audio (``EndOfStream``).
END: Final = Marker("END")


class AudioSource(Protocol):
    """Where the pump takes a stream's input from."""

    async def next(self) -> bytes | Marker:
        """The next chunk, :data:`FLUSH` or :data:`END` (then :data:`END` forever).

        Must be cancel-safe: a cancelled call loses nothing.
        """
        ...


def chunks_source(chunks: Iterable[bytes]) -> AudioSource:
    """A source of ready-made chunks, then :data:`END`."""
    return _ChunkSource(chunks)


class _ChunkSource:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)

    async def next(self) -> bytes | Marker:
        return next(self._chunks, END)
