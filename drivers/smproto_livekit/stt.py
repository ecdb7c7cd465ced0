"""The LiveKit Agents STT: :class:`STT` and its :class:`SpeechStream`.

A drop-in for ``livekit.plugins.speechmatics.STT`` (the 1.0.x API) on the smproto engine.
What it does that the 1.0.x plugin did not:

- every word of a final reaches the transcript: one ``FINAL_TRANSCRIPT`` per final (per
  speaker turn with diarization) whose ``alternatives[0].text`` is the whole final;
- ``stream(language=...)`` really changes the language;
- each stream is one ``smproto.session.ClientSession``: a dropped connection is resumed
  and the audio no final covered yet is replayed (no word is lost, none repeated, and the
  timestamps go on), a connection nearing the server's limit is replaced before it ends,
  and a failing stream gives up within the session's retry budget, which LiveKit's own
  retries cannot reset; ``reconnected`` and ``rolled_over`` events say when;
- a server ``Error`` is raised as :class:`~smproto_livekit.SpeechmaticsError` (an
  ``APIStatusError``) with its type, reason and retryability; connection and handshake
  failures as ``APIConnectionError`` / ``APIStatusError`` (with the HTTP status);
- ``conn_options.timeout`` bounds the connection and the wait for ``RecognitionStarted``;
- audio waits for the server's ``AudioAdded`` (flow control) instead of piling up in it;
- usage events add up to all the audio sent; ``recognize()`` works;
- ``START_OF_SPEECH`` / ``END_OF_SPEECH`` from the transcripts and ``EndOfUtterance``, a
  framework flush sends ``ForceEndOfUtterance``, and timestamps include the stream's
  ``start_time_offset``.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import aiohttp
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given

from smproto import AudioFormat, ClientConnection, Result, join_results
from smproto import TranscriptionConfig as WireTranscriptionConfig
from smproto import __version__ as smproto_version
from smproto.auth import DEFAULT_MANAGEMENT_URL, DEFAULT_RT_URL, handshake_headers, session_url
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    EndOfTranscript,
    EndOfUtterance,
    Event,
    RecognitionStarted,
    Reconnected,
    RolledOver,
    ServerError,
    ServerInfo,
    ServerWarning,
    TranscriptEvent,
    UnknownMessage,
)
from smproto.session import ClientSession, ReconnectPolicy, SessionError
from smproto_io.keys import resolve_api_key

from ._audio import END, FLUSH, AudioSource, Chunker, Marker, chunks_source, frame_bytes
from ._errors import to_api_error
from ._pump import Pump
from .log import logger
from .types import AudioSettings, ConnectionSettings, TranscriptionConfig

__all__ = ["STT", "SpeechStream"]


#: How the plugin introduces itself to Speechmatics (the ``sm-sdk`` query parameter).
SDK = f"smproto-livekit/{smproto_version}"

_SPEAKER_MODES = frozenset({"speaker", "channel_and_speaker"})
_TEXT_TYPES = frozenset({"word", "entity"})


def _capabilities(diarization: bool) -> stt.STTCapabilities:
    """Streaming with interim results, plus what this LiveKit version can be told."""
    known = {f.name for f in dataclasses.fields(stt.STTCapabilities)}
    extra: dict[str, Any] = {"diarization": diarization, "manual_flush": True}
    return stt.STTCapabilities(
        streaming=True,
        interim_results=True,
        **{name: value for name, value in extra.items() if name in known},
    )


#: The longest a stream may go on failing before its error reaches the application, with
#: LiveKit's own retries of the stream included (with the default ``APIConnectOptions``).
RETRY_DEADLINE: Final = 60.0
#: Kept back from the retry budget for closing the failed connections.
_CLOSE_ALLOWANCE: Final = 2.0


def _reconnect_policy(conn_options: APIConnectOptions) -> ReconnectPolicy:
    """LiveKit's retry settings as a reconnect policy: ``max_retry`` attempts, the first
    after 0.1 s, then every ``retry_interval`` seconds (as LiveKit's own retries), the
    first connection retried too.

    The retry budget is what is left of :data:`RETRY_DEADLINE` once LiveKit's own waits
    are taken off: LiveKit runs a failed stream again up to ``max_retry`` times (after
    ``conn_options._interval_for_retry(n)`` seconds each), and each of those runs raises
    the session's failure at once, so the whole ends within the deadline.
    """
    interval = conn_options.retry_interval
    first = min(0.1, interval)
    waits = sum(conn_options._interval_for_retry(n) for n in range(conn_options.max_retry))
    return ReconnectPolicy(
        max_attempts=conn_options.max_retry,
        initial_delay=first,
        max_delay=max(interval, first),
        multiplier=max(1.0, interval / first) if first > 0 else 1.0,
        jitter=0.1,
        retry_budget=max(0.0, RETRY_DEADLINE - waits - _CLOSE_ALLOWANCE),
        retry_first_connection=True,
    )


def _check_ssl(settings: ConnectionSettings) -> None:
    """``ssl_context`` is an ``SSLContext``: a value such as ``False`` (how some libraries
    turn verification off) must never be taken to mean "do not verify"."""
    if not isinstance(settings.ssl_context, ssl.SSLContext):
        raise TypeError(
            "ConnectionSettings.ssl_context must be an ssl.SSLContext, not "
            f"{type(settings.ssl_context).__name__}: certificates are always verified, unless "
            "the context given says otherwise"
        )


def _anonymous(result: Result) -> Result:
    if result.speaker is None:
        return result
    return result._replace(
        alternatives=tuple(a._replace(speaker=None) for a in result.alternatives)
    )


def _text(results: Sequence[Result], delimiter: str) -> str:
    """The results as one line of text.

    ``join_results`` starts a line for each speaker (and language); one ``SpeechData`` is
    one line, and a full stop with another speaker label still ends the last word.
    """
    text = join_results([_anonymous(r) for r in results], word_delimiter=delimiter)
    return delimiter.join(line for line in (part.strip() for part in text.split("\n")) if line)


def _speaker_turns(results: Sequence[Result]) -> list[list[Result]]:
    """The results cut where the speaker changes (punctuation stays with its turn)."""
    turns: list[list[Result]] = []
    current: list[Result] = []
    speaker: str | None = None
    spoken = False
    for result in results:
        if result.type in _TEXT_TYPES:
            if spoken and result.speaker != speaker:
                turns.append(current)
                current = []
            speaker = result.speaker
            spoken = True
        current.append(result)
    if current:
        turns.append(current)
    return turns


class _Transcriber:
    """Turns smproto transcript results into LiveKit ``SpeechData``."""

    def __init__(self, language: str, diarization: bool) -> None:
        self.language = language
        self.diarization = diarization

    def speech_data(
        self, results: Sequence[Result], delimiter: str, offset: float
    ) -> stt.SpeechData | None:
        text = _text(results, delimiter)
        if not text:
            return None
        words = [r for r in results if r.type in _TEXT_TYPES]
        timed = words or list(results)
        confidences = [c for r in words if (c := r.confidence) is not None]
        speakers = {r.speaker for r in timed if r.speaker}
        language = next((r.language for r in words if r.language), None) or self.language
        return stt.SpeechData(
            language=LanguageCode(language),
            text=text,
            start_time=min(r.start_time for r in timed) + offset,
            end_time=max(r.end_time for r in timed) + offset,
            confidence=sum(confidences) / len(confidences) if confidences else 0.0,
            speaker_id=speakers.pop() if self.diarization and len(speakers) == 1 else None,
        )

    def finals(
        self, results: Sequence[Result], delimiter: str, offset: float
    ) -> list[stt.SpeechData]:
        """One ``SpeechData`` for a final; one per speaker turn with diarization."""
        groups = _speaker_turns(results) if self.diarization else [list(results)]
        out = []
        for group in groups:
            data = self.speech_data(group, delimiter, offset)
            if data is not None:
                out.append(data)
        return out


class _FrameSource:
    """The stream's input (LiveKit frames and flushes) as chunks for the pump."""

    def __init__(self, stream: SpeechStream, audio_format: AudioFormat) -> None:
        self._channel = stream._input_ch
        self._iterator = stream._input_ch.__aiter__()
        self._format = audio_format
        self._chunker = Chunker(audio_format)
        self._ready: deque[bytes | Marker] = deque()
        self._ended = False

    def _drain(self) -> None:
        rest = self._chunker.drain()
        if rest:
            self._ready.append(rest)

    async def next(self) -> bytes | Marker:
        ready = self._ready
        while not ready:
            if self._ended:
                return END
            try:
                item = await self._iterator.__anext__()
            except StopAsyncIteration:
                self._drain()
                ready.append(END)
                self._ended = True
                continue
            if isinstance(item, rtc.AudioFrame):
                ready.extend(self._chunker.push(frame_bytes(item, self._format)))
            else:  # a flush: send what is buffered, then ForceEndOfUtterance
                self._drain()
                # end_input() flushes before it closes: the end of the stream finalises
                # everything anyway, so that last flush sends nothing.
                if not (self._channel.closed and self._channel.empty()):
                    ready.append(FLUSH)
        return ready.popleft()


class STT(stt.STT[Literal["metrics_collected", "error", "reconnected", "rolled_over"]]):
    """Speechmatics real-time speech-to-text for LiveKit Agents, on the smproto engine.

    The constructor and its defaults are the ``livekit-plugins-speechmatics`` 1.0.x ones:
    English, ``operating_point="enhanced"``, partials on, ``max_delay=0.7``, the
    ``wss://eu2.rt.speechmatics.com/v2`` endpoint, 16 kHz ``pcm_s16le``, the key from
    ``SPEECHMATICS_API_KEY`` exchanged for a temporary key, LiveKit's shared aiohttp session.

    Args:
        transcription_config: what to recognise (see :class:`TranscriptionConfig`).
        connection_settings: where to connect and with which key.
        audio_settings: the audio format sent (frames are resampled and converted to it).
        http_session: the aiohttp session (default: LiveKit's ``http_context`` one).
        extra_headers: more handshake headers; they can never set ``Authorization``.
        reconnect_policy: how a stream reconnects after a failed connection (default:
            from each stream's ``conn_options``: ``max_retry`` attempts, ``retry_interval``
            apart, and a retry budget that ends a failing stream, LiveKit's own retries
            included, within :data:`RETRY_DEADLINE` seconds; the first connection is
            retried too). A policy given here is used as it is (set its
            ``retry_first_connection`` to retry the first connection). Each stream keeps
            one session: once it has given up, LiveKit running the stream again gets the
            same error at once, with no new connection.
        max_audio_in_flight_seconds: audio sent and not yet acknowledged before the stream
            waits for the server.
        retain_audio_seconds: the most audio kept for a replay after a reconnect.
        max_session_seconds: move a stream to a new connection after this long on one
            (make before break); without it, only when the server warns of its limit.
        ack_timeout, drain_timeout: how long audio may wait for an acknowledgement, and
            the end of a stream for ``EndOfTranscript`` (``conn_options.timeout`` bounds
            the connection and ``RecognitionStarted``).
        keepalive_interval: seconds between keepalive pings (``None``: none); a
            half-open connection is noticed within one and a half of them.
        close_timeout: the longest a closing handshake may take.

    Events (``stt.on(name, callback)``), besides LiveKit's ``metrics_collected`` and
    ``error``: ``"reconnected"`` with a :class:`smproto.events.Reconnected` when a stream
    replaced a failed connection, and ``"rolled_over"`` with a
    :class:`smproto.events.RolledOver` when it moved to a new connection before a limit.

    Raises:
        ValueError: a setting is invalid, or ``extra_headers`` sets ``Authorization``.
    """

    def __init__(
        self,
        *,
        transcription_config: NotGivenOr[TranscriptionConfig] = NOT_GIVEN,
        connection_settings: NotGivenOr[ConnectionSettings] = NOT_GIVEN,
        audio_settings: NotGivenOr[AudioSettings] = NOT_GIVEN,
        http_session: aiohttp.ClientSession | None = None,
        extra_headers: NotGivenOr[dict[str, str]] = NOT_GIVEN,
        reconnect_policy: ReconnectPolicy | None = None,
        max_audio_in_flight_seconds: float = 10.0,
        retain_audio_seconds: float = 60.0,
        max_session_seconds: float | None = None,
        ack_timeout: float = 30.0,
        drain_timeout: float = 60.0,
        keepalive_interval: float | None = 20.0,
        close_timeout: float = 5.0,
    ) -> None:
        if not is_given(transcription_config):
            transcription_config = TranscriptionConfig(
                language="en", operating_point="enhanced", enable_partials=True, max_delay=0.7
            )
        if not is_given(connection_settings):
            connection_settings = ConnectionSettings(url=DEFAULT_RT_URL)
        if not is_given(audio_settings):
            audio_settings = AudioSettings()
        _check_ssl(connection_settings)
        wire = transcription_config.to_smproto()  # fail now rather than at the first call
        audio_settings.to_smproto()
        session_url(connection_settings.url)
        headers = extra_headers if is_given(extra_headers) else {}
        super().__init__(capabilities=_capabilities(wire.diarization in _SPEAKER_MODES))
        self._transcription_config = transcription_config
        self._connection_settings = connection_settings
        self._audio_settings = audio_settings
        self._extra_headers = handshake_headers(None, headers)
        self._session = http_session
        self._reconnect_policy = reconnect_policy
        self._max_in_flight = max_audio_in_flight_seconds
        self._retain = retain_audio_seconds
        self._max_session_seconds = max_session_seconds
        self._ack_timeout, self._drain_timeout = ack_timeout, drain_timeout
        self._keepalive, self._close_timeout = keepalive_interval, close_timeout
        self._streams: weakref.WeakSet[SpeechStream] = weakref.WeakSet()
        # Checked once here, as ClientSession would check them for every stream.
        ClientSession(
            transcription_config=wire,
            reconnect=reconnect_policy or True,
            max_audio_in_flight_seconds=max_audio_in_flight_seconds,
            retain_audio_seconds=retain_audio_seconds,
            max_session_seconds=max_session_seconds,
            ack_timeout=ack_timeout,
            drain_timeout=drain_timeout,
        )
        if keepalive_interval is not None and not keepalive_interval > 0:
            raise ValueError(f"keepalive_interval must be positive, got {keepalive_interval!r}")
        if not close_timeout > 0:
            raise ValueError(f"close_timeout must be positive, got {close_timeout!r}")

    @property
    def model(self) -> str:
        """The Speechmatics model (``operating_point``), or ``"unknown"``."""
        tc = self._transcription_config
        return tc.model or tc.operating_point or "unknown"

    @property
    def provider(self) -> str:
        """``"Speechmatics"``."""
        return "Speechmatics"

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session: the one given, else LiveKit's shared one."""
        if self._session is None:
            self._session = utils.http_context.http_session()
        return self._session

    # ------------------------------------------------------------------ internals

    def _wire_config(self, language: NotGivenOr[str]) -> WireTranscriptionConfig:
        config = dataclasses.replace(self._transcription_config)
        if is_given(language) and language:
            config.language = str(language)
        return config.to_smproto()

    def _policy(self, conn_options: APIConnectOptions) -> ReconnectPolicy:
        # A policy of the application's own is used as it is given.
        return self._reconnect_policy or _reconnect_policy(conn_options)

    def _pump(
        self,
        config: WireTranscriptionConfig,
        audio_format: AudioFormat,
        conn_options: APIConnectOptions,
        source: AudioSource,
        on_event: Callable[[Event], None],
    ) -> Pump:
        """A session of its own, not started, and the pump that does its IO."""
        settings = self._connection_settings
        api_key = resolve_api_key(settings.api_key or None)
        temporary = bool(settings.get_access_token)
        if temporary and api_key is None:
            raise ValueError(
                "a Speechmatics API key is required: pass ConnectionSettings(api_key=...) or "
                "set SPEECHMATICS_API_KEY (or, for a local server without keys, "
                "get_access_token=False)"
            )
        management = (
            settings.management_url
            or os.environ.get("SPEECHMATICS_MANAGEMENT_PLATFORM_URL")
            or DEFAULT_MANAGEMENT_URL
        )
        timeout = max(conn_options.timeout, 1e-3)
        core = ClientSession(
            settings.url,
            transcription_config=config,
            audio_format=audio_format,
            api_key=api_key,
            temporary_key=temporary,
            temporary_key_ttl=settings.temporary_key_ttl,
            management_url=management,
            extra_headers=self._extra_headers,
            sdk=SDK,
            reconnect=self._policy(conn_options),
            open_timeout=timeout,
            recognition_started_timeout=timeout,
            max_audio_in_flight_seconds=self._max_in_flight,
            retain_audio_seconds=self._retain,
            max_session_seconds=self._max_session_seconds,
            ack_timeout=self._ack_timeout,
            drain_timeout=self._drain_timeout,
        )
        return Pump(
            core,
            self.session,
            source,
            on_event,
            ssl_context=settings.ssl_context,
            heartbeat=self._keepalive,
            close_timeout=self._close_timeout,
        )

    def _notice(self, event: Event) -> None:
        """An event that is no ``SpeechEvent``: reconnects and rollovers are emitted (and
        logged at INFO); the server's warnings and notices are logged."""
        if isinstance(event, Reconnected):
            logger.info(
                "reconnected (%d) after %.2fs and %d attempt(s), %.2fs of audio replayed: %s",
                event.reconnects,
                event.gap_seconds,
                event.attempt,
                event.replayed_seconds,
                event.reason,
            )
            self.emit("reconnected", event)
        elif isinstance(event, RolledOver):
            logger.info(
                "rolled over to a new connection (%d, %s), %.2fs of audio replayed",
                event.rollovers,
                event.reason,
                event.replayed_seconds,
            )
            self.emit("rolled_over", event)
        else:
            _log_event(event)

    # ------------------------------------------------------------------ the API

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        """One session over the whole buffer; the event's text is the whole transcript."""
        config = self._wire_config(language)
        transcriber = _Transcriber(config.language, config.diarization in _SPEAKER_MODES)
        frames = [buffer] if isinstance(buffer, rtc.AudioFrame) else list(buffer)
        frames = [f for f in frames if f.samples_per_channel > 0]
        if not frames:
            empty = stt.SpeechData(language=LanguageCode(config.language), text="")
            return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[empty])
        frame = rtc.combine_audio_frames(frames)
        audio_format = AudioFormat(encoding="pcm_s16le", sample_rate=frame.sample_rate)
        chunker = Chunker(audio_format)
        chunks = chunker.push(frame_bytes(frame, audio_format))
        if rest := chunker.drain():
            chunks.append(rest)

        results: list[Result] = []
        session = {"id": "", "delimiter": " "}

        def on_event(event: Event) -> None:
            if isinstance(event, RecognitionStarted):
                session["id"] = event.id or ""
                if event.language_pack_info is not None:
                    session["delimiter"] = event.language_pack_info.word_delimiter
            elif isinstance(event, AddTranscript):
                results.extend(event.results)
            else:
                self._notice(event)

        pump = self._pump(config, audio_format, conn_options, chunks_source(chunks), on_event)
        try:
            await pump.run()
        except SessionError as exc:
            raise to_api_error(exc) from exc
        data = transcriber.speech_data(results, session["delimiter"], 0.0)
        if data is None:
            data = stt.SpeechData(language=LanguageCode(config.language), text="")
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=session["id"],
            alternatives=[data],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        """A streaming session in ``language`` (default: the configured one).

        Raises:
            ValueError: the settings are invalid (they are mutable: checked again here).
            TypeError: ``ssl_context`` is not an ``SSLContext``.
        """
        _check_ssl(self._connection_settings)
        config = self._wire_config(language)
        self.session  # noqa: B018 (without an http context, LiveKit's error comes now)
        stream = SpeechStream(
            stt=self,
            transcription_config=config,
            audio_format=self._audio_settings.to_smproto(),
            conn_options=conn_options,
        )
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        """Close every stream of this STT."""
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()


def _log_event(event: Event) -> None:
    if isinstance(event, ServerWarning):
        logger.warning("Speechmatics warning %s: %s", event.type, event.reason)
    elif isinstance(event, ServerInfo):
        logger.debug("Speechmatics info %s: %s", event.type, event.reason)
    elif isinstance(event, ServerError):
        logger.debug("Speechmatics error %s: %s", event.type, event.reason)
    elif isinstance(event, UnknownMessage):
        logger.debug("unknown Speechmatics message %s", event.message)


class SpeechStream(stt.RecognizeStream):
    """A streaming session: push ``rtc.AudioFrame`` s (any sample rate: LiveKit resamples
    them), read ``SpeechEvent`` s. Made by :meth:`STT.stream`."""

    def __init__(
        self,
        *,
        stt: STT,
        transcription_config: WireTranscriptionConfig,
        audio_format: AudioFormat,
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(
            stt=stt, conn_options=conn_options, sample_rate=audio_format.sample_rate or 16000
        )
        self._smproto_stt = stt
        self._config = transcription_config
        self._audio_format = audio_format
        self._offset = 0.0
        self._transcriber = _Transcriber(
            transcription_config.language, transcription_config.diarization in _SPEAKER_MODES
        )
        conversation = transcription_config.conversation_config
        self._speech_events = bool(
            conversation is not None and conversation.end_of_utterance_silence_trigger
        )
        self._speaking = False
        self._request_id = ""
        self._pump: Pump | None = None
        self._usage_reported = 0.0

    # LiveKit's base class adds the wall-clock time of a failed attempt to its own offset
    # before it runs a stream again: that suits plugins whose new session restarts at zero.
    # A resumed smproto session goes on with the same timeline, so the offset here is only
    # what the application (AgentSession) sets.
    @property
    def start_time_offset(self) -> float:
        """Seconds added to every timestamp: where this stream starts in the session."""
        return self._offset

    @start_time_offset.setter
    def start_time_offset(self, value: float) -> None:
        if value < 0:
            raise ValueError("start_time_offset must be non-negative")
        self._offset = value

    @property
    def connection(self) -> ClientConnection | None:
        """The current sans-IO engine (a new one after each reconnect), once running."""
        return self._pump.core.connection if self._pump is not None else None

    @property
    def reconnects(self) -> int:
        """How many times the stream replaced a failed connection (``reconnected``)."""
        return self._pump.core.reconnects if self._pump is not None else 0

    @property
    def rollovers(self) -> int:
        """How many times the stream moved to a new connection before a limit
        (``rolled_over``)."""
        return self._pump.core.rollovers if self._pump is not None else 0

    @property
    def audio_seconds_sent(self) -> float:
        """Seconds of audio given to the session so far."""
        return self._pump.audio_seconds_sent if self._pump is not None else 0.0

    async def _run(self) -> None:
        # One session for the stream's life: LiveKit runs a stream again after a
        # retryable error, and that run must neither reset the session's retry budget nor
        # open a connection of its own. It raises the session's failure again, at once.
        if self._pump is None:
            self._pump = self._smproto_stt._pump(
                self._config,
                self._audio_format,
                self._conn_options,
                _FrameSource(self, self._audio_format),
                self._on_event,
            )
        try:
            await self._pump.run()
        except SessionError as exc:
            raise to_api_error(exc) from exc
        finally:
            self._report_usage()

    # ------------------------------------------------------------------ events

    def _send(self, kind: stt.SpeechEventType, data: list[stt.SpeechData] | None = None) -> None:
        event = stt.SpeechEvent(type=kind, request_id=self._request_id, alternatives=data or [])
        self._event_ch.send_nowait(event)

    def _report_usage(self) -> None:
        if self._pump is None or self._event_ch.closed:
            return
        sent = self._pump.audio_seconds_sent
        delta = sent - self._usage_reported
        if delta <= 0:
            return
        self._usage_reported = sent
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.RECOGNITION_USAGE,
                request_id=self._request_id,
                recognition_usage=stt.RecognitionUsage(audio_duration=delta),
            )
        )

    def _start_of_speech(self) -> None:
        if self._speech_events and not self._speaking:
            self._speaking = True
            self._send(stt.SpeechEventType.START_OF_SPEECH)

    def _end_of_speech(self) -> None:
        if self._speaking:
            self._speaking = False
            self._send(stt.SpeechEventType.END_OF_SPEECH)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TranscriptEvent):
            self._on_transcript(event)
        elif isinstance(event, EndOfUtterance):
            self._end_of_speech()
        elif isinstance(event, RecognitionStarted):
            self._request_id = event.id or ""
        elif isinstance(event, EndOfTranscript):
            self._end_of_speech()
        else:
            self._smproto_stt._notice(event)

    def _on_transcript(self, event: TranscriptEvent) -> None:
        offset = self._offset
        # Speech starts with a word: a full stop finalised after the end of an utterance
        # does not start another.
        spoken = any(r.type in _TEXT_TYPES for r in event.results)
        if isinstance(event, AddPartialTranscript):
            data = self._transcriber.speech_data(event.results, event.word_delimiter, offset)
            if data is not None:
                if spoken:
                    self._start_of_speech()
                self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, [data])
            return
        finals = self._transcriber.finals(event.results, event.word_delimiter, offset)
        if finals and spoken:
            self._start_of_speech()
        for data in finals:
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, [data])
        self._report_usage()
