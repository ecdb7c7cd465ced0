"""smproto: the Speechmatics Real-Time protocol (WebSocket API v2), sans IO.

The engines in this package never touch a socket, a clock or an event loop: they
take messages, commands and the time, and give back actions for the transport and
events for the application. Drivers (``smproto_asyncio``, ``smproto_trio``,
``smproto_server``, ``smproto_livekit``) do the IO.
"""

from __future__ import annotations

from . import actions, events, server_events
from ._client import AudioInFlight, ClientConnection
from ._server import ERROR_CLOSE_CODES, Handshake, ServerConnection
from ._state import ServerState, SessionState, State
from .actions import CloseTransport, SendBinary, SendText
from .assembler import TranscriptAssembler
from .auth import (
    HTTPRequest,
    parse_temporary_key_response,
    temporary_key_request,
)
from .config import (
    AudioEventsConfig,
    AudioFilteringConfig,
    AudioFormat,
    ConversationConfig,
    KnownSpeaker,
    PunctuationOverrides,
    SpeakerDiarizationConfig,
    TranscriptFilteringConfig,
    TranscriptionConfig,
    TranslationConfig,
    VocabEntry,
    WordReplacement,
)
from .errors import (
    ConfigError,
    Failure,
    FailureKind,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SmprotoError,
    TemporaryKeyError,
)
from .transcript import (
    Alternative,
    Result,
    join_results,
    parse_results,
)

__version__ = "0.1.0"

__all__ = [
    "ERROR_CLOSE_CODES",
    "Alternative",
    "AudioEventsConfig",
    "AudioFilteringConfig",
    "AudioFormat",
    "AudioInFlight",
    "ClientConnection",
    "CloseTransport",
    "ConfigError",
    "ConversationConfig",
    "Failure",
    "FailureKind",
    "HTTPRequest",
    "Handshake",
    "KnownSpeaker",
    "LocalProtocolError",
    "ProtocolError",
    "PunctuationOverrides",
    "RemoteProtocolError",
    "Result",
    "SendBinary",
    "SendText",
    "ServerConnection",
    "ServerState",
    "SessionState",
    "SmprotoError",
    "SpeakerDiarizationConfig",
    "State",
    "TemporaryKeyError",
    "TranscriptAssembler",
    "TranscriptFilteringConfig",
    "TranscriptionConfig",
    "TranslationConfig",
    "VocabEntry",
    "WordReplacement",
    "actions",
    "events",
    "join_results",
    "parse_results",
    "parse_temporary_key_response",
    "server_events",
    "temporary_key_request",
]
