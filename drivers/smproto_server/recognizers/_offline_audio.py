"""Private to the offline recogniser: client audio → 16 kHz mono signed 16-bit PCM.

Stdlib only (``audioop`` is deprecated in 3.11 and gone in 3.13). Everything here is
*streaming*: a converter takes the audio in chunks of any size (a chunk may end in the
middle of a sample, or of a WAV header) and keeps what it needs between chunks.

- :class:`RawConverter` — raw ``pcm_s16le``, ``pcm_f32le`` or ``mulaw`` at any rate;
- :class:`WavConverter` — a WAV file (``AudioFormat.file()``): PCM 8/16/24/32-bit, IEEE
  float 32/64-bit, A-law or µ-law, any rate, any number of channels (mixed down);
- :class:`LinearResampler` — a linear-interpolation resampler with exact (integer)
  positions, so long streams do not drift, and a box pre-filter when downsampling by a
  factor of 2 or more, which keeps the worst of the aliasing out.

Linear interpolation is not a studio resampler; for an 8 kHz phone line or 44.1/48 kHz
microphone audio feeding a 16 kHz speech recogniser it loses nothing that matters.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from typing import Final

__all__ = [
    "TARGET_RATE",
    "AudioTypeError",
    "Converter",
    "LinearResampler",
    "RawConverter",
    "WavConverter",
    "make_converter",
]

#: The sample rate the recogniser runs at.
TARGET_RATE: Final = 16_000

_BIG_ENDIAN: Final = sys.byteorder == "big"


class AudioTypeError(ValueError):
    """The audio cannot be decoded (the protocol's ``invalid_audio_type``)."""


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code >> 4) & 0x07)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    elif segment == 1:
        magnitude += 0x108
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


#: G.711 decoding tables: byte → signed 16-bit sample.
ULAW: Final[tuple[int, ...]] = tuple(_ulaw_to_linear(i) for i in range(256))
ALAW: Final[tuple[int, ...]] = tuple(_alaw_to_linear(i) for i in range(256))


def _s16(data: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(data)
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def _float_to_s16(values: array[float]) -> array[int]:
    if _BIG_ENDIAN:
        values.byteswap()
    out = array("h")
    out.extend(
        32767 if v >= 1.0 else -32768 if v <= -1.0 else 0 if math.isnan(v) else int(v * 32768.0)
        for v in values
    )
    return out


class _SampleDecoder:
    """Interleaved little-endian samples of one format → mono signed 16-bit samples."""

    def __init__(self, kind: str, width: int, channels: int) -> None:
        self.kind = kind  # "int", "uint8", "float", "ulaw", "alaw"
        self.width = width  # bytes per sample
        self.channels = channels
        self.block = width * channels
        self._rest = b""

    def decode(self, data: bytes) -> array[int]:
        if self._rest:
            data = self._rest + data
        usable = len(data) - len(data) % self.block
        self._rest = data[usable:]
        if not usable:
            return array("h")
        data = data[:usable] if usable != len(data) else data
        samples = self._to_s16(data)
        if self.channels > 1:
            samples = _mix_down(samples, self.channels)
        return samples

    def _to_s16(self, data: bytes) -> array[int]:
        kind, width = self.kind, self.width
        if kind == "int":
            if width == 2:
                return _s16(data)
            if width == 3:
                # Keep the top two bytes of each 24-bit sample.
                top = bytearray(len(data) // 3 * 2)
                top[0::2] = data[1::3]
                top[1::2] = data[2::3]
                return _s16(bytes(top))
            wide = array("i")  # width 4
            wide.frombytes(data)
            if _BIG_ENDIAN:
                wide.byteswap()
            return array("h", (v >> 16 for v in wide))
        if kind == "uint8":
            return array("h", ((b - 128) << 8 for b in data))
        if kind == "float":
            values = array("f" if width == 4 else "d")
            values.frombytes(data)
            return _float_to_s16(values)
        table = ULAW if kind == "ulaw" else ALAW
        return array("h", map(table.__getitem__, data))


def _mix_down(samples: array[int], channels: int) -> array[int]:
    columns = [samples[c::channels] for c in range(channels)]
    return array("h", (sum(frame) // channels for frame in zip(*columns, strict=True)))


class LinearResampler:
    """Streaming linear-interpolation resampler of signed 16-bit mono samples.

    Output sample ``k`` is the input at the exact rational position ``k * src / dst``,
    computed with integers, so there is no drift however long the stream. When the input
    rate is at least twice the output rate, a moving average over ``src // dst`` samples
    runs first as a cheap anti-aliasing filter.
    """

    def __init__(self, src_rate: int, dst_rate: int = TARGET_RATE) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {src_rate} and {dst_rate}")
        g = math.gcd(src_rate, dst_rate)
        self.up = dst_rate // g
        self.down = src_rate // g
        self.passthrough = src_rate == dst_rate
        self._width = src_rate // dst_rate if src_rate >= 2 * dst_rate else 1
        self._history: list[int] = []  # the box filter's last width-1 inputs
        self._next = 0  # index of the next output sample
        self._base = 0  # global input index of _tail[0]
        self._tail: list[int] = []  # the input samples still needed

    def process(self, samples: array[int]) -> array[int]:
        """Resample the next input samples; returns what can be computed so far."""
        if self.passthrough or not samples:
            return samples
        values: list[int] = samples.tolist()
        if self._width > 1:
            values = self._smooth(values)
        buf = self._tail + values
        up, down = self.up, self.down
        base = self._base
        last = base + len(buf) - 1  # global index of buf[-1]
        k = self._next
        out = array("h")
        append = out.append
        while True:
            pos = k * down
            i = pos // up
            if i >= last:
                break
            frac = pos - i * up
            a = buf[i - base]
            append(a + (buf[i - base + 1] - a) * frac // up if frac else a)
            k += 1
        self._next = k
        # Keep from the left neighbour of the next output sample on (when downsampling, that
        # neighbour may not have arrived yet: then the next input starts at last + 1).
        keep_from = (k * down) // up
        if keep_from <= last:
            self._tail = buf[keep_from - base :]
            self._base = keep_from
        else:
            self._tail = []
            self._base = last + 1
        return out

    def _smooth(self, values: list[int]) -> list[int]:
        width = self._width
        padded = self._history + values
        out: list[int] = []
        window = sum(padded[: width - 1]) if len(padded) >= width - 1 else 0
        if len(padded) < width:
            self._history = padded
            return out
        for j in range(width - 1, len(padded)):
            window += padded[j]
            out.append(window // width)
            window -= padded[j - width + 1]
        self._history = padded[len(padded) - (width - 1) :]
        return out


class Converter:
    """Audio bytes as the client sends them → 16 kHz mono s16le bytes."""

    def convert(self, data: bytes) -> bytes:  # pragma: no cover - interface
        """Convert the next chunk (of any size)."""
        raise NotImplementedError

    def finish(self) -> bytes:  # pragma: no cover - interface
        """The stream ended; return what is left.

        Raises:
            AudioTypeError: the stream ended in the middle of a file's header.
        """
        raise NotImplementedError


def _to_bytes(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


class RawConverter(Converter):
    """Raw ``pcm_s16le``, ``pcm_f32le`` or ``mulaw`` samples at ``sample_rate`` Hz."""

    _KINDS: Final = {"pcm_s16le": ("int", 2), "pcm_f32le": ("float", 4), "mulaw": ("ulaw", 1)}

    def __init__(self, encoding: str, sample_rate: int) -> None:
        try:
            kind, width = self._KINDS[encoding]
        except KeyError:
            raise AudioTypeError(f"unsupported raw audio encoding {encoding!r}") from None
        self._decoder = _SampleDecoder(kind, width, 1)
        self._resampler = LinearResampler(sample_rate)
        self._fast = encoding == "pcm_s16le" and self._resampler.passthrough and not _BIG_ENDIAN
        self._odd = b""

    def convert(self, data: bytes) -> bytes:
        if self._fast:
            # The common case: already what the recogniser wants; only keep samples whole.
            if self._odd:
                data = self._odd + data
            if len(data) % 2:
                self._odd = data[-1:]
                return data[:-1]
            self._odd = b""
            return data
        return _to_bytes(self._resampler.process(self._decoder.decode(data)))

    def finish(self) -> bytes:
        return b""


_WAVE_FORMAT_PCM: Final = 1
_WAVE_FORMAT_IEEE_FLOAT: Final = 3
_WAVE_FORMAT_ALAW: Final = 6
_WAVE_FORMAT_MULAW: Final = 7
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
#: How much header a WAV file may have before its ``data`` chunk.
_MAX_HEADER: Final = 1 << 20


def _describe_file(head: bytes) -> str:
    signatures = (
        (b"ID3", "an MP3"),
        (b"OggS", "an Ogg"),
        (b"fLaC", "a FLAC"),
        (b"\x1aE\xdf\xa3", "a WebM/Matroska"),
        (b"FORM", "an AIFF"),
        (b"#!AMR", "an AMR"),
    )
    for magic, name in signatures:
        if head.startswith(magic):
            return f"{name} file"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "an MP3/AAC stream"
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    return f"data starting with {head[:8]!r}"


class WavConverter(Converter):
    """A WAV (RIFF/WAVE or RF64) file, streamed in chunks of any size."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._decoder: _SampleDecoder | None = None
        self._resampler: LinearResampler | None = None
        self._remaining: int | None = None  # data bytes still expected; None = to the end
        #: The file's own format, once the header is read: (format tag, channels, rate, bits).
        self.format: tuple[int, int, int, int] | None = None

    def convert(self, data: bytes) -> bytes:
        if self._decoder is None:
            self._header += data
            if not self._parse_header():
                return b""
            data = bytes(self._header)
            self._header = bytearray()
        if self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
        assert self._decoder is not None and self._resampler is not None
        return _to_bytes(self._resampler.process(self._decoder.decode(data)))

    def finish(self) -> bytes:
        if self._decoder is None and self._header:
            raise AudioTypeError(
                f"the audio stream ended inside the WAV header ({len(self._header)} bytes)"
            )
        return b""

    def _parse_header(self) -> bool:
        """Parse what has arrived; True once the ``data`` chunk starts (the header buffer
        then holds only sample bytes)."""
        head = bytes(self._header)
        if len(head) < 12:
            if not (b"RIFF".startswith(head[:4]) or b"RF64".startswith(head[:4])):
                self._reject(head)
            return False
        if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            self._reject(head)
        pos = 12
        fmt: tuple[int, int, int, int] | None = None
        while True:
            if len(head) < pos + 8:
                break
            chunk_id = head[pos : pos + 4]
            (size,) = struct.unpack_from("<I", head, pos + 4)
            body = pos + 8
            if chunk_id == b"data":
                if fmt is None:
                    raise AudioTypeError("the WAV file has no 'fmt ' chunk before its data")
                self._start(fmt, size, rf64=head[:4] == b"RF64")
                del self._header[:body]
                return True
            if len(head) < body + size:
                break
            if chunk_id == b"fmt ":
                fmt = self._parse_fmt(head[body : body + size])
            pos = body + size + (size & 1)
        if len(head) > _MAX_HEADER:
            raise AudioTypeError(f"no WAV 'data' chunk in the first {_MAX_HEADER} bytes")
        return False

    @staticmethod
    def _reject(head: bytes) -> None:
        raise AudioTypeError(
            "audio of type 'file' must be a WAV file (RIFF/WAVE) for the offline recogniser; "
            f"got {_describe_file(head)}"
        )

    @staticmethod
    def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
        if len(body) < 16:
            raise AudioTypeError(f"the WAV 'fmt ' chunk is too short ({len(body)} bytes)")
        tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
        if tag == _WAVE_FORMAT_EXTENSIBLE:
            if len(body) < 26:
                raise AudioTypeError("the WAV extensible 'fmt ' chunk is too short")
            (tag,) = struct.unpack_from("<H", body, 24)  # the sub-format GUID's first field
        return tag, channels, rate, bits

    def _start(self, fmt: tuple[int, int, int, int], size: int, rf64: bool) -> None:
        tag, channels, rate, bits = fmt
        kinds = {
            (_WAVE_FORMAT_PCM, 8): ("uint8", 1),
            (_WAVE_FORMAT_PCM, 16): ("int", 2),
            (_WAVE_FORMAT_PCM, 24): ("int", 3),
            (_WAVE_FORMAT_PCM, 32): ("int", 4),
            (_WAVE_FORMAT_IEEE_FLOAT, 32): ("float", 4),
            (_WAVE_FORMAT_IEEE_FLOAT, 64): ("float", 8),
            (_WAVE_FORMAT_ALAW, 8): ("alaw", 1),
            (_WAVE_FORMAT_MULAW, 8): ("ulaw", 1),
        }
        if (tag, bits) not in kinds:
            raise AudioTypeError(
                f"unsupported WAV encoding (format tag {tag:#06x}, {bits} bits per sample); "
                "use PCM, IEEE float, A-law or µ-law"
            )
        if not 1 <= channels <= 64 or not 1 <= rate <= 384_000:
            raise AudioTypeError(f"implausible WAV header: {channels} channels at {rate} Hz")
        kind, width = kinds[tag, bits]
        self.format = fmt
        self._decoder = _SampleDecoder(kind, width, channels)
        self._resampler = LinearResampler(rate)
        # A streamed WAV often says 0 or 0xFFFFFFFF; RF64 keeps the real size elsewhere.
        self._remaining = None if rf64 or size in (0, 0xFFFFFFFF) else size


def make_converter(audio_type: str, encoding: str | None, sample_rate: int | None) -> Converter:
    """The converter for a session's ``audio_format``.

    Raises:
        AudioTypeError: the format is not one this recogniser decodes.
    """
    if audio_type == "file":
        return WavConverter()
    if audio_type == "raw" and encoding is not None and sample_rate is not None:
        return RawConverter(encoding, sample_rate)
    raise AudioTypeError(f"unsupported audio format {audio_type!r} ({encoding}, {sample_rate})")
