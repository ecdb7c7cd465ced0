"""What the server engine tells the application (the recogniser side).

:class:`~smproto.ServerConnection` turns the client's messages into these. They are
frozen, slotted dataclasses; those made from a JSON message keep it as ``raw``.

Audio is an event too: taking an :class:`AudioReceived` from ``next_event()`` is what
acknowledges it (``AudioAdded``/``ChannelAudioAdded``), so a recogniser that takes
audio slowly back-pressures the client, as the real service does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import StartRecognitionConfig, TranscriptionConfig

__all__ = [
    "AudioReceived",
    "ChannelEnded",
    "ClientDisconnected",
    "ForceEndOfUtteranceRequested",
    "RecognitionConfigChanged",
    "ServerEvent",
    "SessionFailed",
    "SpeakersRequested",
    "StartRequested",
    "StreamEnded",
]


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """Base class of every server-side event."""


@dataclass(frozen=True, slots=True)
class StartRequested(ServerEvent):
    """A valid ``StartRecognition``: start a recogniser, then call ``start_recognition()``
    (or ``send_error()`` to refuse, e.g. ``invalid_language``)."""

    config: StartRecognitionConfig
    #: The language in the URL path (``/v2/<language>``), if any.
    url_language: str | None
    #: The client's ``sm-sdk`` query parameter, if any.
    sdk: str | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class AudioReceived(ServerEvent):
    """A frame of audio (a binary message, or an ``AddChannelAudio``)."""

    #: 1-based, per channel.
    seq_no: int
    data: bytes = field(repr=False)
    #: ``None`` for binary frames; the channel of an ``AddChannelAudio``.
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEnded(ServerEvent):
    """``EndOfStream``: finish the transcript, then call ``end_of_transcript()``.

    ``last_seq_no`` is what the client claims; official clients often send a number
    lower than ``frames_received`` (the last one *acknowledged*), which is tolerated.
    """

    last_seq_no: int | None
    frames_received: int
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChannelEnded(ServerEvent):
    """``EndOfChannel`` for one channel of a multichannel session."""

    channel: str
    last_seq_no: int | None
    frames_received: int
    #: True when this was the last open channel (the stream has ended).
    last: bool
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecognitionConfigChanged(ServerEvent):
    """A valid ``SetRecognitionConfig``; ``config`` is the session's new configuration."""

    config: TranscriptionConfig
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ForceEndOfUtteranceRequested(ServerEvent):
    """``ForceEndOfUtterance``: finalise what you have (up to ``timestamp``, if given)."""

    timestamp: float | None
    channel: str | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class SpeakersRequested(ServerEvent):
    """``GetSpeakers``: answer with ``send_speakers()`` (at the end, when ``final``)."""

    final: bool
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionFailed(ServerEvent):
    """The engine ended the session with an ``Error`` of its own (the client broke the
    protocol, a limit was reached, authentication failed). Stop recognising."""

    error_type: str
    reason: str
    close_code: int


@dataclass(frozen=True, slots=True)
class ClientDisconnected(ServerEvent):
    """The transport is gone. Always the last event of a connection."""

    code: int | None
    reason: str
    #: Whether the session had finished (``EndOfTranscript`` sent) before it went.
    completed: bool
