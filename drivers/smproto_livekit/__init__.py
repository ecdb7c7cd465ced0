"""smproto_livekit: Speechmatics real-time speech-to-text for LiveKit Agents, on smproto.

A drop-in for ``livekit.plugins.speechmatics`` (its 1.0.x API): change the import and the
agent keeps working, with every word of every final, lossless reconnects, flow control,
typed errors and ``recognize()``::

    from livekit.agents import AgentSession
    import smproto_livekit

    session = AgentSession(
        stt=smproto_livekit.STT(
            transcription_config=smproto_livekit.TranscriptionConfig(
                language="en",
                operating_point="enhanced",
                enable_partials=True,
                max_delay=0.7,
                # END_OF_SPEECH after 0.5 s of silence (turn_detection="stt" can use it)
                conversation_config={"end_of_utterance_silence_trigger": 0.5},
            ),
        ),
        # llm=..., tts=..., vad=...
    )

The key comes from ``SPEECHMATICS_API_KEY`` (or ``ConnectionSettings(api_key=...)``) and is
exchanged for a short-lived temporary key before each connection. To try an agent offline,
point it at a local server (``smproto serve``) without keys::

    smproto_livekit.STT(
        connection_settings=smproto_livekit.ConnectionSettings(
            url="ws://127.0.0.1:9000/v2", get_access_token=False
        )
    )

Each stream is one ``smproto.session.ClientSession``: it reconnects without losing a word,
rolls over before the server's session limit (the STT emits ``reconnected`` and
``rolled_over``), and gives up within its retry budget, which LiveKit's own retries of the
stream cannot reset. Errors are LiveKit's: :class:`SpeechmaticsError` (an
``APIStatusError``) for an ``Error`` from the server, ``APIStatusError`` for a refused
handshake or key (with the HTTP status), ``APIConnectionError`` / ``APITimeoutError`` for
the network; each ``retryable`` as it is, raised from the session's own error.
"""

from __future__ import annotations

from livekit.agents import Plugin

from smproto import __version__

from ._errors import SpeechmaticsError
from .log import logger
from .stt import STT, SpeechStream
from .types import AudioSettings, ConnectionSettings, TranscriptionConfig

__all__ = [
    "STT",
    "AudioSettings",
    "ConnectionSettings",
    "SpeechStream",
    "SpeechmaticsError",
    "TranscriptionConfig",
    "__version__",
    "logger",
]


class SmprotoLivekitPlugin(Plugin):
    """The LiveKit plugin record of ``smproto_livekit``."""

    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or __name__, logger)


Plugin.register_plugin(SmprotoLivekitPlugin())
