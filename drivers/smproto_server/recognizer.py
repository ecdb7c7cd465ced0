"""The interface between the local server and a speech recogniser.

A :class:`Recognizer` is shared by the whole server; it opens one
:class:`RecognizerSession` per client session. The server drives a session with the
audio the client sends and turns what the session returns (:data:`Output`) into
protocol messages through :class:`smproto.ServerConnection`:

- :class:`Transcript` → ``AddPartialTranscript`` / ``AddTranscript``
- :class:`Utterance` → ``EndOfUtterance``
- :class:`Translation` → ``AddPartialTranslation`` / ``AddTranslation``
- :class:`AudioEvent` → ``AudioEventStarted`` / ``AudioEventEnded``

Every method is a coroutine so that a recogniser may do its work elsewhere (a worker
process, a thread) without blocking the server; a slow ``feed`` is what
back-pressures the client (its audio is acknowledged only once fed).

Times are seconds from the start of the session's audio (each channel has its own
timeline in multichannel sessions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from smproto import ServerConnection
from smproto.config import StartRecognitionConfig, TranscriptionConfig
from smproto.events import LanguagePackInfo, SpeakerIdentity, TranslatedSentence
from smproto.transcript import Result

__all__ = [
    "AudioEvent",
    "Output",
    "Recognizer",
    "RecognizerError",
    "RecognizerSession",
    "Transcript",
    "Translation",
    "Utterance",
    "send_output",
]


@dataclass(frozen=True, slots=True)
class Transcript:
    """A partial (``final=False``) or final transcript of ``start_time`` to ``end_time``."""

    results: Sequence[Result]
    start_time: float
    end_time: float
    final: bool
    channel: str | None = None
    forced: bool = False


@dataclass(frozen=True, slots=True)
class Utterance:
    """The speaker stopped at ``time`` (``EndOfUtterance``)."""

    time: float
    channel: str | None = None
    forced: bool = False


@dataclass(frozen=True, slots=True)
class Translation:
    """A partial or final translation into ``language``."""

    language: str
    sentences: Sequence[TranslatedSentence]
    final: bool


@dataclass(frozen=True, slots=True)
class AudioEvent:
    """An audio event started (``end_time`` is None) or ended."""

    type: str
    start_time: float | None = None
    end_time: float | None = None
    confidence: float = 1.0
    channel: str | None = None


Output = Transcript | Utterance | Translation | AudioEvent


class RecognizerError(Exception):
    """The recogniser refuses or cannot go on: the session ends with ``Error error_type``.

    Use the protocol's types: ``invalid_language``, ``invalid_model``, ``invalid_config``,
    ``quota_exceeded`` (too many sessions), ``job_error`` (the recogniser broke).
    """

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(f"{error_type}: {reason}")
        self.error_type = error_type
        self.reason = reason


@runtime_checkable
class RecognizerSession(Protocol):
    """One client session's recogniser."""

    #: Sent in ``RecognitionStarted``; its ``word_delimiter`` joins the transcripts.
    language_pack_info: LanguagePackInfo

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        """Take the next chunk of audio (raw PCM in the session's format, or bytes of a
        file); return what it produced."""
        ...

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        """Finalise what is pending now (outputs marked ``forced``)."""
        ...

    async def reconfigure(self, config: TranscriptionConfig) -> Sequence[Output]:
        """Apply a mid-session ``SetRecognitionConfig``."""
        ...

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        """No more audio (on ``channel``, or at all): finalise everything."""
        ...

    async def speakers(self) -> Sequence[SpeakerIdentity]:
        """The speakers identified so far (for ``GetSpeakers``)."""
        ...

    async def close(self) -> None:
        """Release the session's resources (always called, also after errors)."""
        ...


@runtime_checkable
class Recognizer(Protocol):
    """Opens a recogniser session per client session."""

    #: A short name for logs and the CLI, e.g. ``"scripted"``.
    name: str

    async def open_session(self, config: StartRecognitionConfig) -> RecognizerSession:
        """Start recognising a session with this configuration.

        Raises:
            RecognizerError: the configuration cannot be served (language, model,
                audio format), or there is no capacity (``quota_exceeded``).
        """
        ...

    async def aclose(self) -> None:
        """Stop: release every shared resource (worker processes, models)."""
        ...


def send_output(engine: ServerConnection, output: Output) -> None:
    """Send one recogniser output as its protocol message through ``engine``.

    Raises ``smproto.LocalProtocolError`` when the engine refuses it (e.g. a partial in
    a session that did not enable partials, or the session has ended).
    """
    if isinstance(output, Transcript):
        engine.send_transcript(
            output.results,
            start_time=output.start_time,
            end_time=output.end_time,
            final=output.final,
            channel=output.channel,
            forced=output.forced,
        )
    elif isinstance(output, Utterance):
        engine.send_end_of_utterance(output.time, channel=output.channel, forced=output.forced)
    elif isinstance(output, Translation):
        engine.send_translation(output.language, output.sentences, final=output.final)
    elif output.end_time is None:
        if output.start_time is None:
            raise ValueError("an AudioEvent needs a start_time or an end_time")
        engine.send_audio_event_started(
            output.type, output.start_time, output.confidence, channel=output.channel
        )
    else:
        engine.send_audio_event_ended(output.type, output.end_time, channel=output.channel)
