"""What the client engine tells the application.

One event per server message, named after it (``Info``/``Warning``/``Error`` become
``ServerInfo``/``ServerWarning``/``ServerError`` so they do not shadow Python names),
plus :class:`UnknownMessage` for message types this version does not know and
:class:`ConnectionClosed` for the end of the transport.

Every event is a frozen, slotted dataclass and keeps the server's message as
``raw`` (a dict, exactly as received), so fields added to the protocol later are
never lost. Typed fields are parsed and validated; after a resumed connection
(``ClientConnection.resume_from``) their times are on the continuous timeline of
the first connection, while ``raw`` stays verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from .errors import Failure
from .transcript import Result, join_results

__all__ = [
    "AddPartialTranscript",
    "AddPartialTranslation",
    "AddTranscript",
    "AddTranslation",
    "AudioAdded",
    "AudioEventEnded",
    "AudioEventStarted",
    "ChannelAudioAdded",
    "ConnectionClosed",
    "EndOfTranscript",
    "EndOfUtterance",
    "Event",
    "LanguagePackInfo",
    "RecognitionStarted",
    "Reconnected",
    "RolledOver",
    "ServerError",
    "ServerInfo",
    "ServerWarning",
    "SpeakerIdentity",
    "SpeakersResult",
    "TranscriptEvent",
    "TranslatedSentence",
    "TranslationEvent",
    "UnknownMessage",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


class LanguagePackInfo(NamedTuple):
    """Properties of the language pack, from ``RecognitionStarted``."""

    #: What separates words: ``" "`` for most languages, ``""`` for e.g. Japanese.
    word_delimiter: str = " "
    language_description: str | None = None
    #: ``"left-to-right"`` or ``"right-to-left"``.
    writing_direction: str | None = None
    #: Whether inverse text normalisation (e.g. "two dollars" → "$2") is available.
    itn: bool | None = None
    #: Whether language-model adaptation was applied.
    adapted: bool | None = None


@dataclass(frozen=True, slots=True)
class RecognitionStarted(Event):
    """The server accepted ``StartRecognition``; audio may flow."""

    #: The session id (quote it to Speechmatics support).
    id: str | None
    orchestrator_version: str | None
    language_pack_info: LanguagePackInfo | None
    #: The channels of a multichannel session.
    channel_ids: tuple[str, ...] | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class AudioAdded(Event):
    """The server took audio frame ``seq_no`` (and every frame before it)."""

    seq_no: int
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChannelAudioAdded(Event):
    """The server took frame ``seq_no`` of ``channel`` (multichannel)."""

    channel: str
    seq_no: int
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class TranscriptEvent(Event):
    """A transcript of some audio: :class:`AddPartialTranscript` or :class:`AddTranscript`."""

    #: Whether this transcript is final (will not change).
    is_final: ClassVar[bool] = False

    #: The words, punctuation and entities, in order.
    results: tuple[Result, ...]
    #: The stretch of audio covered, in seconds from the start of the audio.
    start_time: float
    end_time: float
    #: The channel (multichannel), from the message or its results.
    channel: str | None
    #: Whether a ``ForceEndOfUtterance`` produced this transcript.
    forced: bool
    #: The output format version, e.g. ``"2.9"``.
    format: str | None
    #: The language's word delimiter (from ``RecognitionStarted``), used by :attr:`text`.
    word_delimiter: str
    raw: dict[str, Any] = field(repr=False)

    @property
    def text(self) -> str:
        """The results joined into text (see :func:`smproto.transcript.join_results`)."""
        return join_results(self.results, word_delimiter=self.word_delimiter)

    @property
    def transcript(self) -> str:
        """The server's own rendering of the text (``metadata.transcript``), verbatim."""
        value = self.raw.get("metadata", {}).get("transcript", "")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class AddPartialTranscript(TranscriptEvent):
    """A transcript that may still change: the next partial or final replaces it."""


@dataclass(frozen=True, slots=True)
class AddTranscript(TranscriptEvent):
    """A final transcript: it will not change."""

    is_final: ClassVar[bool] = True


class TranslatedSentence(NamedTuple):
    """One translated sentence."""

    content: str
    #: The stretch of the original audio it translates.
    start_time: float
    end_time: float
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class TranslationEvent(Event):
    """A translation: :class:`AddPartialTranslation` or :class:`AddTranslation`."""

    is_final: ClassVar[bool] = False

    #: The target language of this translation.
    language: str
    results: tuple[TranslatedSentence, ...]
    format: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def text(self) -> str:
        """The sentences joined by spaces."""
        return " ".join(s.content for s in self.results if s.content)


@dataclass(frozen=True, slots=True)
class AddPartialTranslation(TranslationEvent):
    """A translation that may still change."""


@dataclass(frozen=True, slots=True)
class AddTranslation(TranslationEvent):
    """A final translation."""

    is_final: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class EndOfUtterance(Event):
    """The speaker stopped: silence longer than ``end_of_utterance_silence_trigger``,
    or a ``ForceEndOfUtterance``."""

    start_time: float | None
    end_time: float | None
    channel: str | None
    forced: bool
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class AudioEventStarted(Event):
    """An audio event (music, laughter, applause, ...) began."""

    type: str
    start_time: float
    confidence: float
    channel: str | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class AudioEventEnded(Event):
    """An audio event ended."""

    type: str
    end_time: float
    channel: str | None
    raw: dict[str, Any] = field(repr=False)


class SpeakerIdentity(NamedTuple):
    """A detected speaker and the identifiers that recognise them in a later session."""

    label: str
    speaker_identifiers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpeakersResult(Event):
    """The answer to ``get_speakers()``."""

    speakers: tuple[SpeakerIdentity, ...]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ServerInfo(Event):
    """An ``Info`` message (e.g. ``recognition_quality``, ``concurrent_session_usage``)."""

    type: str
    reason: str
    code: int | None
    seq_no: int | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ServerWarning(Event):
    """A ``Warning`` message. ``duration_limit_exceeded`` also ends the stream."""

    type: str
    reason: str
    code: int | None
    seq_no: int | None
    #: For ``duration_limit_exceeded``: the limit, in seconds.
    duration_limit: float | None
    raw: dict[str, Any] = field(repr=False)


#: Server error types after which a new connection may succeed.
RETRYABLE_ERROR_TYPES = frozenset(
    {"quota_exceeded", "job_error", "unknown_error", "internal_error", "session_timeout"}
)


@dataclass(frozen=True, slots=True)
class ServerError(Event):
    """An ``Error`` message: the server ended the session. The connection is ``FAILED``."""

    #: e.g. ``"invalid_config"``, ``"not_authorised"``, ``"quota_exceeded"``.
    type: str
    reason: str
    code: int | None
    seq_no: int | None
    #: Whether a new connection may succeed (quota, job and internal errors).
    retryable: bool
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class EndOfTranscript(Event):
    """The server has sent every transcript: the session is complete."""

    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class UnknownMessage(Event):
    """A message type this version of smproto does not know; never an error."""

    #: The message's ``message`` field.
    message: str
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Reconnected(Event):
    """The session replaced a failed connection with a new one that continues it
    (``ClientConnection.take_over``): the stream goes on, on the same timeline, with no
    audio lost and nothing delivered twice. It comes just before the new connection's
    ``RecognitionStarted``."""

    #: How many connection attempts this reconnection took (1: the first one worked).
    attempt: int
    #: Why the previous connection failed.
    reason: str
    #: Seconds from the failure to the new connection's start (the outage).
    gap_seconds: float
    #: Seconds of audio sent again (what no final had covered yet).
    replayed_seconds: float
    #: How many times the session has reconnected, this time included.
    reconnects: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class RolledOver(Event):
    """The session moved to a new connection before a limit the server announced
    (``Warning session_timeout``) or ``max_session_seconds``: make before break. The
    new connection started while the old one still ran, took over its stream, and the
    old one was ended with ``EndOfStream``. Nothing was lost or repeated, and there was
    no gap. It comes just before the new connection's ``RecognitionStarted``."""

    #: Why: ``"session_timeout"`` (the server's warning) or ``"max_session_seconds"``.
    reason: str
    #: Seconds of audio the new connection was sent again, for context.
    replayed_seconds: float
    #: How many times the session has rolled over, this time included.
    rollovers: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The transport is gone. Always the last event of a connection."""

    #: The WebSocket close code, if there was a closing handshake.
    code: int | None
    reason: str
    #: Why the connection failed, or ``None`` when it ended normally.
    failure: Failure | None
    raw: dict[str, Any] = field(repr=False)
