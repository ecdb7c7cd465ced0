"""Recognisers for the local server (see :mod:`smproto_server.recognizer` for the interface).

- :class:`ScriptedRecognizer` (:mod:`.scripted`): deterministic tone-coded words, for tests;
  :func:`synthesize` makes its audio.
- :class:`ReplayRecognizer` (:mod:`.replay`): plays back a recorded session.
- The offline speech recogniser lives in :mod:`.offline`; it is not imported here, as it
  needs the ``asr`` extra.
"""

from __future__ import annotations

from .replay import ReplayRecognizer, ReplaySession
from .scripted import (
    MUSIC,
    VOCABULARY,
    ScriptedRecognizer,
    ScriptedSession,
    expected_timings,
    synthesize,
    synthesize_wav,
)

__all__ = [
    "MUSIC",
    "VOCABULARY",
    "ReplayRecognizer",
    "ReplaySession",
    "ScriptedRecognizer",
    "ScriptedSession",
    "expected_timings",
    "synthesize",
    "synthesize_wav",
]
