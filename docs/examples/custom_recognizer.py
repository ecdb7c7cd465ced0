"""A recogniser of your own for the local server: it "hears" a fixed script.

    python docs/examples/custom_recognizer.py "the words to say" FILE.wav

``ScriptRecognizer`` says its script one word per ``word_seconds`` of audio received,
whatever the audio is: a stand-in for speech recognition when you test an application
with real microphone audio but need a transcript you can predict. It implements the
``smproto_server.Recognizer`` protocol (no base class needed); the server turns what
its sessions return into Speechmatics messages.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import smproto_asyncio
from smproto.config import AudioFormat, StartRecognitionConfig, TranscriptionConfig
from smproto.events import LanguagePackInfo, SpeakerIdentity
from smproto.transcript import Alternative, Result
from smproto_server import Output, RecognizerError, Transcript, Utterance, serve


class ScriptSession:
    """One client session: the next word is due every ``word_seconds`` of audio."""

    language_pack_info = LanguagePackInfo(word_delimiter=" ", language_description="English")

    def __init__(self, words: list[str], word_seconds: float, audio_format: AudioFormat) -> None:
        self.words = words
        self.word_seconds = word_seconds
        self.bytes_per_second = audio_format.bytes_per_second or 32_000
        self.received = 0.0  # seconds of audio so far
        self.said = 0  # words said so far
        self.language = "en"

    def _word(self, index: int) -> Result:
        start = index * self.word_seconds
        alternative = Alternative(self.words[index], 1.0, self.language)
        return Result("word", start, start + self.word_seconds, (alternative,))

    def _finals_until(self, seconds: float) -> list[Output]:
        out: list[Output] = []
        while self.said < len(self.words) and (self.said + 1) * self.word_seconds <= seconds:
            word = self._word(self.said)
            out.append(Transcript([word], word.start_time, word.end_time, final=True))
            self.said += 1
        return out

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        self.received += len(audio) / self.bytes_per_second
        return self._finals_until(self.received)

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        return [Utterance(self.received, forced=True)]

    async def reconfigure(self, config: TranscriptionConfig) -> Sequence[Output]:
        return []

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        # The words whose time has not come yet are said at the end of the audio.
        out = self._finals_until(self.received)
        if self.said < len(self.words):
            rest = self.words[self.said :]
            end = max(self.received, self.said * self.word_seconds)
            results = [
                Result("word", end, end, (Alternative(word, 1.0, self.language),)) for word in rest
            ]
            out.append(Transcript(results, end, end, final=True))
            self.said = len(self.words)
        return out

    async def speakers(self) -> Sequence[SpeakerIdentity]:
        return []

    async def close(self) -> None:
        pass


class ScriptRecognizer:
    """Opens a ``ScriptSession`` for each client session."""

    name = "script"

    def __init__(self, script: str, *, word_seconds: float = 0.5) -> None:
        self.words = script.split()
        self.word_seconds = word_seconds

    async def open_session(self, config: StartRecognitionConfig) -> ScriptSession:
        if config.audio_format.type == "file":
            # Refusing a session: the client gets Error invalid_audio_type (close 1003).
            raise RecognizerError("invalid_audio_type", "send raw audio to this recogniser")
        session = ScriptSession(self.words, self.word_seconds, config.audio_format)
        session.language = config.transcription_config.language
        return session

    async def aclose(self) -> None:
        pass


async def main(script: str, wav_path: str) -> None:
    async with await serve(recognizer=ScriptRecognizer(script)) as server:
        text = await smproto_asyncio.transcribe(Path(wav_path), url=server.url)
    print(text)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f'usage: {sys.argv[0]} "the words to say" FILE.wav')
    asyncio.run(main(sys.argv[1], sys.argv[2]))
