"""A recogniser that plays back a recorded session, whatever audio it is sent.

The recording is a JSON-lines file such as ``chat1.jsonl`` of the shared fixtures: one
``{"ts": ..., "audio_ts": ..., "payload": {...}}`` per line, ``payload`` being a message
as the real service sent it and ``audio_ts`` how many seconds of audio had been sent when
it arrived. The recogniser replays the ``AddPartialTranscript``, ``AddTranscript`` and
``EndOfUtterance`` messages (other lines are ignored) and announces the recording's
``language_pack_info`` (from its ``RecognitionStarted``):

- each recorded message is released once the audio received (its duration, from the byte
  count and the session's audio format) reaches the message's ``audio_ts``;
- at the end of the stream, every final and end of utterance not yet released is, and
  the partials still held back are dropped (each is out of date by then);
- times and results are the recorded ones (parsed with
  :func:`smproto.transcript.parse_results`); partials are dropped when the session's
  ``enable_partials`` is off (``SetRecognitionConfig`` can change it);
- a forced end of utterance gives a forced ``EndOfUtterance`` at the audio received.

Send it the recording's own audio (``audio_01_16kHz.wav`` for ``chat1.jsonl``) at its
format to get a faithful replay; any audio of the same duration gives the same messages.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from smproto.config import StartRecognitionConfig, TranscriptionConfig
from smproto.events import LanguagePackInfo, SpeakerIdentity
from smproto.transcript import parse_results
from smproto_server.audio import AudioDecoder
from smproto_server.recognizer import Output, Transcript, Utterance

__all__ = ["ReplayRecognizer", "ReplaySession"]

_REPLAYED = frozenset({"AddPartialTranscript", "AddTranscript", "EndOfUtterance"})


class _Recorded(NamedTuple):
    audio_ts: float
    output: Transcript | Utterance


def _metadata_times(payload: dict[str, Any]) -> tuple[float, float]:
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict):
        raise ValueError(f"{payload.get('message')} has no metadata")
    start, end = metadata.get("start_time"), metadata.get("end_time")
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        raise ValueError(f"{payload.get('message')} metadata needs start_time and end_time")
    return float(start), float(end)


def _output(payload: dict[str, Any]) -> Transcript | Utterance:
    message = payload["message"]
    start, end = _metadata_times(payload)
    channel = payload.get("channel")
    channel = channel if isinstance(channel, str) else None
    forced = payload.get("forced") is True
    if message == "EndOfUtterance":
        return Utterance(start, channel, forced)
    return Transcript(
        parse_results(payload.get("results", [])),
        start,
        end,
        final=message == "AddTranscript",
        channel=channel,
        forced=forced,
    )


def _language_pack(raw: Any) -> LanguagePackInfo:
    if not isinstance(raw, dict):
        return LanguagePackInfo()

    def opt(key: str, kind: type) -> Any:
        value = raw.get(key)
        return value if isinstance(value, kind) else None

    delimiter = raw.get("word_delimiter")
    return LanguagePackInfo(
        delimiter if isinstance(delimiter, str) else " ",
        opt("language_description", str),
        opt("writing_direction", str),
        opt("itn", bool),
        opt("adapted", bool),
    )


class ReplaySession:
    """A session of :class:`ReplayRecognizer`: one pass through the recording."""

    def __init__(self, recognizer: ReplayRecognizer, config: StartRecognitionConfig) -> None:
        self._recorded = recognizer.recorded
        self._speed = recognizer.speed
        self._next = 0
        self._enable_partials = bool(config.transcription_config.enable_partials)
        self._format = config.audio_format
        self._bytes_per_second = config.audio_format.bytes_per_second
        self._bytes: dict[str | None, int] = {}
        self._decoders: dict[str | None, AudioDecoder] = {}
        self._seconds = 0.0
        self._started: float | None = None
        self._speakers: dict[str, None] = {}
        #: The recording's, from its ``RecognitionStarted``.
        self.language_pack_info = recognizer.language_pack_info

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio received (on the channel that received the most)."""
        return self._seconds

    def _heard(self, audio: bytes, channel: str | None) -> float:
        if self._bytes_per_second is not None:
            total = self._bytes[channel] = self._bytes.get(channel, 0) + len(audio)
            return total / self._bytes_per_second
        decoder = self._decoders.get(channel)
        if decoder is None:
            decoder = self._decoders[channel] = AudioDecoder(self._format)
        decoder.decode(audio)
        rate = decoder.sample_rate
        return decoder.samples / rate if rate else 0.0

    def _release(self, *, everything: bool) -> list[Output]:
        out: list[Output] = []
        recorded = self._recorded
        while self._next < len(recorded):
            item = recorded[self._next]
            if not everything and item.audio_ts > self._seconds + 1e-9:
                break
            self._next += 1
            output = item.output
            if isinstance(output, Transcript):
                if not output.final:
                    if everything or not self._enable_partials:
                        continue
                else:
                    for result in output.results:
                        if result.speaker is not None:
                            self._speakers[result.speaker] = None
            out.append(output)
        return out

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        """Count the audio; release the recorded messages it has reached."""
        self._seconds = max(self._seconds, self._heard(audio, channel))
        if self._speed is not None:
            loop = asyncio.get_running_loop()
            if self._started is None:
                self._started = loop.time()
            wait = self._started + self._seconds / self._speed - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        return self._release(everything=False)

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        """A forced ``EndOfUtterance`` at the audio received (the recording goes on)."""
        return [Utterance(self._seconds, channel, forced=True)]

    async def reconfigure(self, config: TranscriptionConfig) -> Sequence[Output]:
        """Only ``enable_partials`` changes anything."""
        self._enable_partials = bool(config.enable_partials)
        return []

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        """Release every final and end of utterance left (partials are dropped)."""
        for decoder in self._decoders.values():
            decoder.finish()
        return self._release(everything=True)

    async def speakers(self) -> Sequence[SpeakerIdentity]:
        """The speaker labels of the finals released so far."""
        return [SpeakerIdentity(label, (f"replay-{label}",)) for label in self._speakers]

    async def close(self) -> None:
        """Nothing to release."""


class ReplayRecognizer:
    """Plays back the recorded session in ``jsonl_path`` (see the module documentation).

    ``speed``: ``None`` releases messages as fast as audio arrives; a number makes each
    session take audio no faster than ``speed`` times real time (``feed`` waits), as the
    real service does at ``speed=1``.
    """

    name = "replay"

    def __init__(self, jsonl_path: str | os.PathLike[str], *, speed: float | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.speed = speed
        self.path = os.fspath(jsonl_path)
        #: From the recording's ``RecognitionStarted`` (the default one if it has none).
        self.language_pack_info = LanguagePackInfo()
        #: The messages to replay, in order, with the audio time each waits for.
        self.recorded: list[_Recorded] = []
        with open(self.path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    payload = record["payload"]
                    message = payload.get("message")
                    if message == "RecognitionStarted":
                        self.language_pack_info = _language_pack(payload.get("language_pack_info"))
                    elif message in _REPLAYED:
                        audio_ts = float(record.get("audio_ts", 0.0))
                        self.recorded.append(_Recorded(audio_ts, _output(payload)))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ValueError(
                        f"{self.path}:{number}: not a recorded message: {exc}"
                    ) from exc

    async def open_session(self, config: StartRecognitionConfig) -> ReplaySession:
        """A new playback of the recording (any language and audio format)."""
        return ReplaySession(self, config)

    async def aclose(self) -> None:
        """Nothing to release."""
