"""The settings a user of ``livekit-plugins-speechmatics`` 1.0.x passes, as the same mutable
dataclasses (same names, fields and defaults), with a few fields added.

Code written for the 1.0.x plugin works by changing the import::

    from smproto_livekit import ConnectionSettings, TranscriptionConfig

Nested settings may be given as the wire dicts the 1.0.x plugin took
(``{"end_of_utterance_silence_trigger": 0.5}``) or as the typed objects of :mod:`smproto.config`
(``ConversationConfig(end_of_utterance_silence_trigger=0.5)``). Every value is checked when a
stream or a recognition starts (and when :class:`~smproto_livekit.STT` is built): an invalid
one raises :class:`ValueError` (a :class:`smproto.ConfigError`) naming the field, instead of
an ``Error`` from the server in the middle of a call.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from smproto import AudioFormat, ConfigError
from smproto import TranscriptionConfig as WireTranscriptionConfig
from smproto.config import (
    AudioFilteringConfig,
    ConversationConfig,
    PunctuationOverrides,
    SpeakerDiarizationConfig,
    TranscriptFilteringConfig,
    VocabEntry,
)

__all__ = ["AudioSettings", "ConnectionSettings", "TranscriptionConfig"]


def _wire(value: Any) -> Any:
    """A setting in its wire form: typed smproto objects become dicts, sequences lists."""
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    if isinstance(value, Mapping):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_wire(item) for item in value]
    return value


@dataclass
class TranscriptionConfig:
    """What to recognise and how (Speechmatics ``transcription_config``).

    The fields of the 1.0.x plugin, with its defaults (unset fields are left to the
    server), plus ``domain``, ``model``, ``speaker_diarization_config`` and
    ``conversation_config``. See https://docs.speechmatics.com/rt-api-ref#transcription-config.
    """

    language: str = "en"
    """ISO 639-1 language code, e.g. ``"en"``."""

    operating_point: str | None = None
    """The acoustic model: ``"standard"`` or ``"enhanced"`` (the older name of ``model``)."""

    output_locale: str | None = None
    """RFC 5646 spelling locale of the output, e.g. ``"en-GB"``."""

    diarization: str | None = None
    """``"none"`` or ``"speaker"``: with ``"speaker"``, each transcript carries its speaker
    in ``SpeechData.speaker_id``."""

    additional_vocab: Sequence[str | Mapping[str, Any] | VocabEntry] | None = None
    """Words to add: ``["smproto", {"content": "gnocchi", "sounds_like": ["nyohki"]}]``."""

    punctuation_overrides: Mapping[str, Any] | PunctuationOverrides | None = None
    """``{"permitted_marks": [".", ","], "sensitivity": 0.4}``."""

    enable_entities: bool | None = None
    """Format entities (numbers, dates, money) in their written form."""

    max_delay: float | None = None
    """0.7 to 4 seconds: how long the server may wait before a final transcript."""

    max_delay_mode: str | None = None
    """``"flexible"`` lets ``max_delay`` stretch to finish an entity; ``"fixed"`` does not."""

    enable_partials: bool | None = None
    """Send partial (interim) transcripts as well as finals."""

    audio_filtering_config: Mapping[str, Any] | AudioFilteringConfig | None = None
    """``{"volume_threshold": 3.4}``: ignore audio quieter than this."""

    transcript_filtering_config: Mapping[str, Any] | TranscriptFilteringConfig | None = None
    """``{"remove_disfluencies": True}``."""

    # ----- added by smproto_livekit ------------------------------------------------------

    domain: str | None = None
    """A specialised language pack, e.g. ``"finance"``."""

    model: str | None = None
    """``"standard"`` or ``"enhanced"`` (set this or ``operating_point``, not both)."""

    speaker_diarization_config: Mapping[str, Any] | SpeakerDiarizationConfig | None = None
    """``{"max_speakers": 2, "speaker_sensitivity": 0.6}`` (with ``diarization="speaker"``)."""

    conversation_config: Mapping[str, Any] | ConversationConfig | None = None
    """``{"end_of_utterance_silence_trigger": 0.5}``: the server sends ``EndOfUtterance``
    after that much silence, and the stream emits ``START_OF_SPEECH`` / ``END_OF_SPEECH``."""

    def asdict(self) -> dict[str, Any]:
        """The wire ``transcription_config``, without unset fields (checked first)."""
        return self.to_smproto().to_dict()

    def to_smproto(self) -> WireTranscriptionConfig:
        """The same settings as an (immutable, validated) :class:`smproto.TranscriptionConfig`.

        Raises:
            ValueError: a value is invalid (a :class:`smproto.ConfigError`, whose ``field``
                names it, e.g. ``"TranscriptionConfig.max_delay"``).
        """
        wire: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                wire[f.name] = _wire(value)
        try:
            return WireTranscriptionConfig.from_dict(wire)
        except ConfigError as exc:
            raise exc.nested("TranscriptionConfig") from None


@dataclass
class AudioSettings:
    """The audio sent to Speechmatics: LiveKit's frames are resampled to ``sample_rate``
    and converted to ``encoding``."""

    encoding: str = "pcm_s16le"
    """``"pcm_s16le"``, ``"pcm_f32le"`` or ``"mulaw"``."""

    sample_rate: int = 16000
    """Samples per second."""

    def asdict(self) -> dict[str, Any]:
        """The wire ``audio_format``."""
        return self.to_smproto().to_dict()

    def to_smproto(self) -> AudioFormat:
        """The same settings as a validated :class:`smproto.AudioFormat`.

        Raises:
            ValueError: an unknown encoding or an impossible sample rate.
        """
        try:
            return AudioFormat(encoding=self.encoding, sample_rate=self.sample_rate)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise exc.nested("AudioSettings") from None


@dataclass
class ConnectionSettings:
    """Where and how to connect."""

    url: str
    """The real-time endpoint, e.g. ``"wss://eu2.rt.speechmatics.com/v2"``."""

    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    """TLS for ``wss://`` URLs (certificates are verified by default)."""

    api_key: str | None = None
    """The API key; ``SPEECHMATICS_API_KEY`` when not given."""

    get_access_token: bool | None = True
    """Exchange the API key for a short-lived temporary key before each connection, so the
    long-lived key never travels to the real-time endpoint."""

    # ----- added by smproto_livekit ------------------------------------------------------

    management_url: str | None = None
    """Where temporary keys come from: ``SPEECHMATICS_MANAGEMENT_PLATFORM_URL``, else
    ``https://mp.speechmatics.com``."""

    temporary_key_ttl: int = 60
    """Seconds a temporary key lives (60 to 86400)."""

    def __repr__(self) -> str:  # never shows the key
        key = "***" if self.api_key else None
        return (
            f"ConnectionSettings(url={self.url!r}, api_key={key!r}, "
            f"get_access_token={self.get_access_token!r})"
        )
