"""The LiveKit Agents plugin (smproto_livekit) against smproto_server on 127.0.0.1.

Each fix of the 1.0.x plugin's bugs has its own test here; the last tests run the
original ``livekit-plugins-speechmatics`` 1.0.x against the same server (interop).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("livekit.agents")

import aiohttp
from livekit import rtc
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    stt,
    utils,
)

import smproto_livekit
from smproto.config import StartRecognitionConfig
from smproto.events import Reconnected, RolledOver
from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    ReconnectPolicy,
    TranscriptionError,
)
from smproto.transcript import Result
from smproto_livekit import (
    STT,
    AudioSettings,
    ConnectionSettings,
    SpeechmaticsError,
    TranscriptionConfig,
)
from smproto_livekit._audio import encode_pcm16
from smproto_livekit.stt import RETRY_DEADLINE, _reconnect_policy
from smproto_server import RecognizerError, ServerOptions
from smproto_server.recognizer import Output, Transcript
from smproto_server.recognizers import ScriptedRecognizer
from smproto_server.recognizers.scripted import (
    ScriptedSession,
    expected_timings,
    synthesize,
    synthesize_wav,
)
from tests.drivers.netutil import KeyEndpoint, ServerThread, key_endpoint
from tests.support import secret

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

WORDS = ["hello", "world", "the", "speech"]
FAST = ReconnectPolicy(initial_delay=0.01, max_delay=0.05, slow_retry_delay=0.05, jitter=0.0)
NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=5.0)
SpeechType = stt.SpeechEventType


@pytest.fixture
def anyio_backend() -> str:
    """LiveKit Agents is asyncio only."""
    return "asyncio"


# --------------------------------------------------------------------------- helpers


class Recorder:
    """A recogniser for the local server: the scripted one, plus what tests need to see
    or break. It records every session's ``StartRecognition`` and the number of
    ``ForceEndOfUtterance`` requests; it can refuse sessions, be slow to start, merge all
    finals into one (words with gaps between them), alternate speakers word by word, and
    send only the finals that hold words."""

    name = "recorder"

    def __init__(
        self,
        *,
        refuse: tuple[str, str] | None = None,
        start_delay: float = 0.0,
        merge_finals: bool = False,
        alternate_speakers: bool = False,
        words_only: bool = False,
        **scripted: Any,
    ) -> None:
        self.inner = ScriptedRecognizer(**scripted)
        self.refuse = refuse
        self.start_delay = start_delay
        self.merge_finals = merge_finals
        self.alternate_speakers = alternate_speakers
        self.words_only = words_only
        self.configs: list[StartRecognitionConfig] = []
        self.forced = 0

    async def open_session(self, config: StartRecognitionConfig) -> RecorderSession:
        self.configs.append(config)
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        if self.refuse is not None:
            raise RecognizerError(*self.refuse)
        return RecorderSession(self, await self.inner.open_session(config))

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecorderSession:
    def __init__(self, recorder: Recorder, inner: ScriptedSession) -> None:
        self.recorder = recorder
        self.inner = inner
        self.language_pack_info = inner.language_pack_info
        self.held: list[Result] = []
        self.words = 0

    def _post(self, outputs: Sequence[Output], *, last: bool = False) -> list[Output]:
        out: list[Output] = []
        for item in outputs:
            if isinstance(item, Transcript) and item.final and self.recorder.alternate_speakers:
                item = Transcript(
                    tuple(self._speaker(r) for r in item.results),
                    item.start_time,
                    item.end_time,
                    item.final,
                    item.channel,
                    item.forced,
                )
            if (
                self.recorder.words_only
                and isinstance(item, Transcript)
                and item.final
                and not any(r.type == "word" for r in item.results)
            ):
                continue
            if self.recorder.merge_finals and isinstance(item, Transcript):
                if item.final:
                    self.held.extend(item.results)
                continue  # partials too: one final says everything
            out.append(item)
        if last and self.held:
            end = max(r.end_time for r in self.held)
            out.append(Transcript(tuple(self.held), 0.0, end, final=True))
            self.held = []
        return out

    def _speaker(self, result: Result) -> Result:
        if result.type != "word":
            return result
        speaker = "S1" if self.words % 2 == 0 else "S2"
        self.words += 1
        alternatives = tuple(a._replace(speaker=speaker) for a in result.alternatives)
        return result._replace(alternatives=alternatives)

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        return self._post(await self.inner.feed(audio, channel))

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        self.recorder.forced += 1
        return self._post(await self.inner.force_end_of_utterance(timestamp, channel))

    async def reconfigure(self, config: Any) -> Sequence[Output]:
        return self._post(await self.inner.reconfigure(config))

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        return self._post(await self.inner.end_of_stream(channel), last=True)

    async def speakers(self) -> Any:
        return await self.inner.speakers()

    async def close(self) -> None:
        await self.inner.close()


def make_frames(audio: bytes, sample_rate: int = 16000, ms: int = 20) -> list[rtc.AudioFrame]:
    """16-bit mono PCM cut into LiveKit frames of ``ms`` milliseconds."""
    size = sample_rate * ms // 1000 * 2
    return [
        rtc.AudioFrame(audio[i : i + size], sample_rate, 1, len(audio[i : i + size]) // 2)
        for i in range(0, len(audio), size)
    ]


def plugin(url: str, **options: Any) -> STT:
    """Our STT against a local server (no temporary key)."""
    settings = options.pop("connection_settings", None) or ConnectionSettings(
        url=url, get_access_token=False
    )
    options.setdefault("reconnect_policy", FAST)
    return STT(connection_settings=settings, **options)


@dataclass
class Run:
    events: list[stt.SpeechEvent] = field(default_factory=list)
    error: BaseException | None = None

    def of(self, kind: SpeechType) -> list[stt.SpeechEvent]:
        return [e for e in self.events if e.type == kind]

    def finals(self) -> list[stt.SpeechData]:
        return [e.alternatives[0] for e in self.of(SpeechType.FINAL_TRANSCRIPT)]

    def texts(self) -> list[str]:
        return [d.text for d in self.finals()]

    def usage(self) -> float:
        return sum(
            e.recognition_usage.audio_duration
            for e in self.of(SpeechType.RECOGNITION_USAGE)
            if e.recognition_usage is not None
        )


async def run_stream(
    stream: stt.RecognizeStream, frames: Sequence[rtc.AudioFrame], *, end: bool = True
) -> Run:
    """Push every frame (as fast as LiveKit takes them), end the input, read every event."""
    run = Run()
    for frame in frames:
        stream.push_frame(frame)
    if end:
        stream.end_input()
    try:
        async for event in stream:
            run.events.append(event)
    except Exception as exc:
        run.error = exc
    finally:
        await stream.aclose()
    return run


def timings(words: Sequence[str], offset: float = 0.0, **layout: Any) -> list[tuple[float, float]]:
    return [
        (round(offset + start, 4), round(offset + end, 4))
        for start, end in expected_timings(words, **layout)
    ]


def spans(data: Sequence[stt.SpeechData]) -> list[tuple[float, float]]:
    return [(round(d.start_time, 4), round(d.end_time, 4)) for d in data]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """LiveKit's shared aiohttp session, as a job process has it."""
    async with utils.http_context.open() as session:
        yield session


# --------------------------------------------------------------------------- sessions


async def test_stream_gives_interim_and_final_transcripts(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    run = await run_stream(plugin(server.url).stream(), make_frames(synthesize(WORDS)))
    assert run.error is None
    assert run.of(SpeechType.INTERIM_TRANSCRIPT)
    assert run.texts() == [*WORDS, "."]
    assert spans(run.finals()[:4]) == timings(WORDS)
    first = run.finals()[0]
    assert first.language == "en" and first.confidence == 1.0 and first.speaker_id is None
    # The request id is the Speechmatics session id.
    assert len({e.request_id for e in run.events}) == 1 and run.events[0].request_id


async def test_frames_at_another_rate_are_resampled(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    audio = synthesize(WORDS, sample_rate=48000)
    run = await run_stream(plugin(server.url).stream(), make_frames(audio, 48000, ms=10))
    assert run.error is None
    assert run.texts() == [*WORDS, "."]
    assert recognizer.configs[0].audio_format.sample_rate == 16000  # LiveKit resampled
    for (start, end), (want_start, want_end) in zip(
        spans(run.finals()), timings(WORDS), strict=False
    ):
        assert abs(start - want_start) < 0.02 and abs(end - want_end) < 0.02


@pytest.mark.parametrize("encoding", ["pcm_f32le", "mulaw"])
async def test_audio_is_converted_to_the_configured_encoding(
    servers: ServerThread, http: aiohttp.ClientSession, encoding: str
) -> None:
    """The 1.0.x plugin sent 16-bit samples whatever ``AudioSettings.encoding`` said."""
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    stt_ = plugin(server.url, audio_settings=AudioSettings(encoding=encoding, sample_rate=8000))
    run = await run_stream(stt_.stream(), make_frames(synthesize(WORDS), 16000))
    assert run.error is None
    assert recognizer.configs[0].audio_format.encoding == encoding
    assert run.texts() == [*WORDS, "."]


def test_encodings_match_the_server_decoder() -> None:
    import numpy as np

    from smproto import AudioFormat
    from smproto_server.audio import AudioDecoder

    samples = np.array([0, 1, -1, 100, -100, 12345, -12345, 32767, -32768], dtype=np.int16)
    for encoding, tolerance in (("pcm_s16le", 0.0), ("pcm_f32le", 1e-6), ("mulaw", 0.04)):
        decoder = AudioDecoder(AudioFormat(encoding=encoding, sample_rate=8000))  # type: ignore[arg-type]
        decoded = decoder.decode(encode_pcm16(samples, encoding))
        for got, want in zip(decoded, samples / 32768.0, strict=True):
            assert abs(got - want) <= tolerance * max(1.0, abs(want) * 8), (encoding, got, want)


async def test_recognize_returns_the_text_of_a_wav(servers: ServerThread) -> None:
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    with wave.open(io.BytesIO(synthesize_wav(WORDS, sample_rate=22050))) as wav:
        pcm = wav.readframes(wav.getnframes())
        rate = wav.getframerate()
    async with aiohttp.ClientSession() as session:  # a session of one's own works too
        stt_ = plugin(server.url, http_session=session)
        event = await stt_.recognize(make_frames(pcm, rate, ms=100))
        single = await stt_.recognize(rtc.AudioFrame(pcm, rate, 1, len(pcm) // 2), language="de")
    assert event.type == SpeechType.FINAL_TRANSCRIPT
    assert event.alternatives[0].text == "hello world the speech."
    assert event.request_id
    data = single.alternatives[0]
    assert data.text == "hello world the speech." and data.language == "de"
    assert (round(data.start_time, 4), round(data.end_time, 4)) == (
        timings(WORDS, sample_rate=22050)[0][0],
        timings(WORDS, sample_rate=22050)[-1][1],
    )
    # One session each, over the whole buffer, at the buffer's own rate.
    assert [c.transcription_config.language for c in recognizer.configs] == ["en", "de"]
    assert recognizer.configs[0].audio_format.sample_rate == 22050


# --------------------------------------------------------------------------- the fixes


async def test_every_word_of_a_final_reaches_the_transcript(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """One final holds all four words, with silences between them. The 1.0.x plugin made
    one SpeechData per gap and LiveKit reads only ``alternatives[0]``: three words lost."""
    server = servers.serve(recognizer=Recorder(merge_finals=True))
    run = await run_stream(plugin(server.url).stream(), make_frames(synthesize(WORDS)))
    assert run.error is None
    [event] = run.of(SpeechType.FINAL_TRANSCRIPT)
    [data] = event.alternatives
    assert data.text == "hello world the speech."
    assert (round(data.start_time, 4), round(data.end_time, 4)) == (
        timings(WORDS)[0][0],
        timings(WORDS)[-1][1],
    )
    assert data.confidence == 1.0 and data.language == "en"


async def test_speakers_reach_speaker_id(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    config = TranscriptionConfig(diarization="speaker", enable_partials=True)
    run = await run_stream(
        plugin(server.url, transcription_config=config).stream(),
        make_frames(synthesize(WORDS)),
    )
    assert {d.speaker_id for d in run.finals()} == {"S1"}
    assert plugin(server.url, transcription_config=config).capabilities.diarization

    # A final in which the speaker changes: one FINAL_TRANSCRIPT per speaker turn, so
    # that alternatives[0] holds one speaker's words, and every word is there.
    server = servers.serve(recognizer=Recorder(merge_finals=True, alternate_speakers=True))
    run = await run_stream(
        plugin(server.url, transcription_config=config).stream(),
        make_frames(synthesize(WORDS)),
    )
    assert [(d.text, d.speaker_id) for d in run.finals()] == [
        ("hello", "S1"),
        ("world", "S2"),
        ("the", "S1"),
        ("speech.", "S2"),
    ]


async def test_stream_language_really_changes_the_language(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    stt_ = plugin(server.url)  # English by default
    run = await run_stream(stt_.stream(language="de"), make_frames(synthesize(["hello"])))
    assert recognizer.configs[0].transcription_config.language == "de"
    assert run.finals()[0].language == "de"
    # The STT's own configuration is untouched.
    await run_stream(stt_.stream(), make_frames(synthesize(["hello"])))
    assert recognizer.configs[1].transcription_config.language == "en"


async def test_a_dropped_connection_loses_no_words(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    words = WORDS * 2
    audio = synthesize(words)
    proxy = servers.proxy(server, [1500])  # the first connection dies mid-stream
    stream = plugin(f"ws://127.0.0.1:{proxy.port}/v2").stream()
    run = await run_stream(stream, make_frames(audio))
    assert run.error is None
    assert stream.reconnects == 1 and len(recognizer.configs) == 2
    # Every word exactly once, on one timeline.
    assert [t for t in run.texts() if t != "."] == words
    assert spans([d for d in run.finals() if d.text != "."]) == timings(words)
    # Usage counts each second of the stream's audio once, replay or not.
    assert run.usage() == pytest.approx(len(audio) / 32000, abs=1e-6)


async def test_reconnected_is_emitted_and_logged(
    servers: ServerThread, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The session's ``Reconnected`` reaches LiveKit as the STT's ``reconnected`` event
    and an INFO line; LiveKit never sees the failure the session recovered from."""
    caplog.set_level(logging.INFO, logger="smproto_livekit")
    server = servers.serve(recognizer=Recorder())
    proxy = servers.proxy(server, [1500])
    stt_ = plugin(f"ws://127.0.0.1:{proxy.port}/v2")
    reconnected: list[Reconnected] = []
    errors: list[stt.STTError] = []
    stt_.on("reconnected", reconnected.append)
    stt_.on("error", errors.append)
    stream = stt_.stream()
    words = WORDS * 2
    run = await run_stream(stream, make_frames(synthesize(words)))
    assert run.error is None and not errors
    [event] = reconnected
    assert event.reconnects == 1 == stream.reconnects and stream.rollovers == 0
    assert event.attempt == 1 and "closed" in event.reason
    assert [t for t in run.texts() if t != "."] == words
    assert spans([d for d in run.finals() if d.text != "."]) == timings(words)
    [line] = [
        r
        for r in caplog.records
        if r.name == "smproto_livekit" and r.getMessage().startswith("reconnected")
    ]
    assert line.levelno == logging.INFO


async def test_a_rollover_is_emitted_and_loses_nothing(
    servers: ServerThread, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The server warns that its session limit is near (``Warning session_timeout``): the
    session moves the stream to a new connection before it (make before break), the STT
    emits ``rolled_over`` and logs it, and the transcript has every word once, on one
    timeline (``start_time_offset`` included)."""
    caplog.set_level(logging.INFO, logger="smproto_livekit")
    recognizer = Recorder()
    # Each connection is warned 0.5 s after it started (its limit is far away).
    options = ServerOptions(session_timeout=60.0, session_warnings=(59.5,))
    server = servers.serve(recognizer=recognizer, options=options)
    stt_ = plugin(server.url)
    rolled: list[RolledOver] = []
    errors: list[stt.STTError] = []
    stt_.on("rolled_over", rolled.append)
    stt_.on("error", errors.append)
    stream = stt_.stream()
    stream.start_time_offset = 3.0
    words = WORDS * 2
    frames = make_frames(synthesize(words))
    # The first four words, then a pause in the audio: smproto_server's timers (and so
    # its warning) act only while the client sends nothing.
    for frame in frames[:105]:
        stream.push_frame(frame)
    events = []
    async for event in stream:
        events.append(event)
        if event.type == SpeechType.FINAL_TRANSCRIPT and event.alternatives[0].text == "speech":
            break
    for _ in range(250):  # the warning comes 0.5 s after the start: wait for the rollover
        if rolled:
            break
        await asyncio.sleep(0.02)
    run = await run_stream(stream, frames[105:])
    run.events[:0] = events
    assert run.error is None and not errors
    assert stream.rollovers >= 1 and stream.reconnects == 0
    assert [e.rollovers for e in rolled] == list(range(1, stream.rollovers + 1))
    assert {e.reason for e in rolled} == {"session_timeout"}
    assert len(recognizer.configs) == 1 + stream.rollovers
    assert [t for t in run.texts() if t != "."] == words
    assert spans([d for d in run.finals() if d.text != "."]) == timings(words, offset=3.0)
    lines = [
        r
        for r in caplog.records
        if r.name == "smproto_livekit" and r.getMessage().startswith("rolled over")
    ]
    assert len(lines) == stream.rollovers and {r.levelno for r in lines} == {logging.INFO}


async def test_livekit_retries_do_not_reset_the_retry_budget(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """The session retries a persistent ``quota_exceeded`` until its retry budget (1 s
    here) is spent. LiveKit then runs the stream again (three times): each run raises the
    session's failure at once, with no new connection, so LiveKit's retries cannot start
    the budget again (the old plugin ran such a stream for ever)."""
    recognizer = Recorder(max_sessions=0)  # quota_exceeded every time
    server = servers.serve(recognizer=recognizer)
    policy = ReconnectPolicy(
        max_attempts=1000,
        initial_delay=0.01,
        max_delay=0.05,
        slow_retry_delay=0.05,
        jitter=0.0,
        retry_budget=1.0,
        retry_first_connection=True,
    )
    stt_ = plugin(server.url, reconnect_policy=policy)
    errors: list[stt.STTError] = []
    connections: list[int] = []

    def on_error(error: stt.STTError) -> None:
        errors.append(error)
        connections.append(len(recognizer.configs))

    stt_.on("error", on_error)
    options = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=0.5)
    started = time.monotonic()
    run = await run_stream(stt_.stream(conn_options=options), make_frames(synthesize(["a"])))
    assert time.monotonic() - started < 3.0
    assert [e.recoverable for e in errors] == [True, True, True, False]
    assert len(set(connections)) == 1 and connections[0] > 2  # retried, then no more
    assert isinstance(run.error, APIConnectionError)  # LiveKit's "failed after 3 attempts"
    causes = [e.error for e in errors[:3]] + [run.error.__cause__]
    assert all(isinstance(c, SpeechmaticsError) and c.retryable for c in causes)
    failures = {id(c.__cause__) for c in causes if c is not None}
    assert len(failures) == 1  # one session, one failure, raised again
    failure = errors[0].error.__cause__
    assert isinstance(failure, TranscriptionError) and failure.type == "quota_exceeded"


def test_the_default_retry_budget_leaves_room_for_livekits_retries() -> None:
    options = APIConnectOptions()
    policy = _reconnect_policy(options)
    waits = sum(options._interval_for_retry(n) for n in range(options.max_retry))
    assert policy.retry_first_connection and policy.max_attempts == options.max_retry
    assert policy.retry_budget > 30.0 and policy.retry_budget + waits < RETRY_DEADLINE == 60.0
    # A policy of one's own is used as it is given.
    mine = ReconnectPolicy(retry_budget=5.0)
    assert STT(reconnect_policy=mine)._policy(options) is mine


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_persistent_quota_error_ends_within_a_minute(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """With LiveKit's default ``APIConnectOptions`` and the default policy, a server that
    answers every connection with ``quota_exceeded`` ends the stream with that error
    within 60 s, after a bounded number of connections (the old plugin made 39 in
    150 s, and went on)."""
    recognizer = Recorder(max_sessions=0)
    server = servers.serve(recognizer=recognizer)
    stt_ = plugin(server.url, reconnect_policy=None)  # from conn_options
    started = time.monotonic()
    run = await run_stream(stt_.stream(), make_frames(synthesize(["a"])))
    assert time.monotonic() - started < 60.0
    assert isinstance(run.error, APIError)
    chain = [run.error, run.error.__cause__]
    [error] = [e for e in chain if isinstance(e, SpeechmaticsError)]
    assert error.error_type == "quota_exceeded" and error.retryable
    # The first connection and max_retry reconnects, 5-10 s apart as Speechmatics asks.
    assert len(recognizer.configs) == 1 + APIConnectOptions().max_retry


async def test_aclose_ends_a_stream_at_once(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    stream = plugin(server.url).stream()
    for frame in make_frames(synthesize(WORDS))[:60]:
        stream.push_frame(frame)
    async for event in stream:
        if event.type == SpeechType.FINAL_TRANSCRIPT:
            break
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < 1.0
    for _ in range(100):
        if server.active_sessions == 0:
            break
        await asyncio.sleep(0.01)
    assert server.active_sessions == 0


async def test_a_server_error_is_raised_with_its_type_and_reason(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    recognizer = Recorder(refuse=("invalid_language", "no Klingon today"))
    server = servers.serve(recognizer=recognizer)
    stt_ = plugin(server.url)
    errors: list[stt.STTError] = []
    stt_.on("error", errors.append)
    # LiveKit's default conn_options retry 3 times: a non-retryable error is not retried.
    run = await run_stream(stt_.stream(), make_frames(synthesize(["hello"])))
    assert isinstance(run.error, SpeechmaticsError) and isinstance(run.error, APIStatusError)
    assert run.error.error_type == "invalid_language"
    assert run.error.reason == "no Klingon today"
    assert run.error.retryable is False
    assert len(recognizer.configs) == 1
    assert [e.recoverable for e in errors] == [False]


async def test_a_retryable_server_error_is_retried_and_stays_retryable(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    recognizer = Recorder(max_sessions=0)  # quota_exceeded every time
    server = servers.serve(recognizer=recognizer)
    policy = ReconnectPolicy(
        max_attempts=2, initial_delay=0.01, slow_retry_delay=0.01, retry_first_connection=True
    )
    stt_ = plugin(server.url, reconnect_policy=policy)
    run = await run_stream(stt_.stream(conn_options=NO_RETRY), make_frames(synthesize(["a"])))
    assert isinstance(run.error, SpeechmaticsError)
    assert run.error.error_type == "quota_exceeded" and run.error.retryable is True
    assert len(recognizer.configs) == 3  # the first attempt and two reconnects


async def test_handshake_and_connection_failures(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    key = secret("handshake")
    server = servers.serve(
        recognizer=ScriptedRecognizer(), api_keys=[secret("right")], auth_failure="handshake"
    )
    settings = ConnectionSettings(url=server.url, api_key=key, get_access_token=False)
    run = await run_stream(
        plugin(server.url, connection_settings=settings).stream(), make_frames(b"\0\0" * 1600)
    )
    assert isinstance(run.error, APIStatusError)
    assert run.error.status_code == 401 and run.error.retryable is False
    assert key not in str(run.error) and key not in repr(run.error)

    # Nothing listens there: a connection error, retryable.
    with socket_bound() as port:
        stt_ = plugin(f"ws://127.0.0.1:{port}/v2", reconnect_policy=ReconnectPolicy(max_attempts=0))
        run = await run_stream(stt_.stream(conn_options=NO_RETRY), make_frames(b"\0\0" * 1600))
    assert isinstance(run.error, APIConnectionError) and run.error.retryable


class socket_bound:
    """A port that nothing listens on (bound, never listening)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@asynccontextmanager
async def silent_listener(
    servers: ServerThread, received: list[bytes] | None = None
) -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word (what it is sent goes
    to ``received``)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if received is not None:
            received.append(await reader.read(65536))

    async def start() -> asyncio.Server:
        return await asyncio.start_server(hold, "127.0.0.1", 0)

    listener: asyncio.Server = servers.call(start)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:

        async def stop() -> None:
            listener.close()
            for writer in held:
                writer.transport.abort()

        servers.call(stop)


async def test_the_handshake_request(servers: ServerThread, http: aiohttp.ClientSession) -> None:
    """The key goes in the Authorization header, extra headers go along, the URL says who
    connects (``sm-sdk``)."""
    key = secret("handshake-request")
    received: list[bytes] = []
    async with silent_listener(servers, received) as port:
        settings = ConnectionSettings(
            url=f"ws://127.0.0.1:{port}/v2", api_key=key, get_access_token=False
        )
        stt_ = plugin(
            "",
            connection_settings=settings,
            extra_headers={"X-Trace": "abc"},
            reconnect_policy=None,
        )
        options = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=0.3)
        stream = stt_.stream(conn_options=options)
        run = await run_stream(stream, [])
    assert isinstance(run.error, APITimeoutError)
    request = received[0].decode()
    assert request.startswith("GET /v2?sm-sdk=smproto-livekit")
    headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in request.split("\r\n")[1:])
    }
    assert headers["authorization"] == f"Bearer {key}"
    assert headers["x-trace"] == "abc"
    assert headers["upgrade"].lower() == "websocket"


async def test_conn_options_timeout_is_applied(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    options = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=0.4)
    frames = make_frames(synthesize(["hello"]))
    # To connecting: the handshake never gets an answer.
    async with silent_listener(servers) as port:
        stt_ = plugin(f"ws://127.0.0.1:{port}/v2", reconnect_policy=None)  # from conn_options
        started = time.monotonic()
        run = await run_stream(stt_.stream(conn_options=options), frames)
        assert isinstance(run.error, APITimeoutError)
        assert 0.4 <= time.monotonic() - started < 1.2
    # To the wait for RecognitionStarted: the server takes 1.5 s to start.
    server = servers.serve(recognizer=Recorder(start_delay=1.5))
    stt_ = plugin(server.url, reconnect_policy=None)
    started = time.monotonic()
    run = await run_stream(stt_.stream(conn_options=options), frames)
    assert isinstance(run.error, APITimeoutError)
    assert "RecognitionStarted" in str(run.error)
    assert 0.4 <= time.monotonic() - started < 1.4


async def test_a_slow_server_makes_the_stream_wait(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """Flow control on AudioAdded: the audio in flight never exceeds the window, and the
    rest waits in the stream's input instead of piling up in the server."""
    server = servers.serve(recognizer=ScriptedRecognizer(feed_delay=0.02))
    window = 0.5
    stream = plugin(server.url, max_audio_in_flight_seconds=window).stream()
    in_flight: list[float] = []
    backlog: list[int] = []

    async def watch() -> None:
        while True:
            connection = stream.connection
            if connection is not None:
                in_flight.append(connection.audio_in_flight.seconds)
                backlog.append(stream._input_ch.qsize())
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        run = await run_stream(stream, make_frames(synthesize(WORDS)))
    finally:
        watcher.cancel()
    assert run.error is None and run.texts() == [*WORDS, "."]
    assert max(in_flight) <= window + 0.1 + 1e-9  # the window, plus the chunk that filled it
    assert max(in_flight) >= window  # it was reached: the server was the bottleneck
    assert max(backlog) > 10  # frames waited in the stream's input


async def test_usage_counts_all_the_audio_sent(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """The 1.0.x plugin reported usage only when a final arrived: audio sent after the last
    final was never counted. Here the server sends finals for words only, and 3 s of
    silence follow the last word's final; and a stream that fails reports what it sent."""
    server = servers.serve(recognizer=Recorder(words_only=True))
    stream = plugin(server.url).stream()
    speech, silence = synthesize(WORDS), b"\0\0" * 16000 * 3
    events = []
    for frame in make_frames(speech):
        stream.push_frame(frame)
    async for event in stream:
        events.append(event)
        if event.type == SpeechType.FINAL_TRANSCRIPT and event.alternatives[0].text == "speech":
            break
    run = await run_stream(stream, make_frames(silence))
    assert run.error is None
    run.events[:0] = events
    assert run.texts() == WORDS
    assert run.usage() == pytest.approx((len(speech) + len(silence)) / 32000, abs=1e-6)

    # The connection drops and reconnecting is off: the usage still adds up to all the
    # audio sent before the failure.
    server = servers.serve(recognizer=ScriptedRecognizer())
    proxy = servers.proxy(server, [1500])
    stream = plugin(
        f"ws://127.0.0.1:{proxy.port}/v2", reconnect_policy=ReconnectPolicy(max_attempts=0)
    ).stream(conn_options=NO_RETRY)
    run = await run_stream(stream, make_frames(synthesize(WORDS * 2)))
    assert isinstance(run.error, APIConnectionError)
    assert stream.audio_seconds_sent > 0
    assert run.usage() == pytest.approx(stream.audio_seconds_sent, abs=1e-6)


async def test_a_flush_sends_force_end_of_utterance(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    stream = plugin(server.url).stream()
    audio = synthesize([("hello", 2.0)], trail_seconds=0.0)
    frames = make_frames(audio)
    for frame in frames[:40]:  # 0.8 s: "hello" is still being said
        stream.push_frame(frame)
    stream.flush()
    events = aiter(stream)
    event = await asyncio.wait_for(anext(events), 5)
    while event.type != SpeechType.FINAL_TRANSCRIPT:
        event = await asyncio.wait_for(anext(events), 5)
    assert event.alternatives[0].text == "hello"
    assert recognizer.forced == 1
    for frame in frames[40:]:
        stream.push_frame(frame)
    run = await run_stream(stream, [])
    assert run.error is None
    assert recognizer.forced == 1  # end_input()'s own flush asks for nothing more


async def test_start_and_end_of_speech_with_end_of_utterance(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(["hello", "world"], gap_seconds=0.8, trail_seconds=0.8)
    config = TranscriptionConfig(
        enable_partials=True, conversation_config={"end_of_utterance_silence_trigger": 0.4}
    )
    run = await run_stream(
        plugin(server.url, transcription_config=config).stream(), make_frames(audio)
    )
    kinds = [
        e.type
        for e in run.events
        if e.type not in (SpeechType.INTERIM_TRANSCRIPT, SpeechType.RECOGNITION_USAGE)
    ]
    start, final, end = (
        SpeechType.START_OF_SPEECH,
        SpeechType.FINAL_TRANSCRIPT,
        SpeechType.END_OF_SPEECH,
    )
    # "hello", EndOfUtterance, "." (0.6 s after the word), "world", EndOfUtterance, "."
    assert kinds == [start, final, end, final, start, final, end, final]
    first_interim = next(
        i for i, e in enumerate(run.events) if e.type == SpeechType.INTERIM_TRANSCRIPT
    )
    assert run.events[first_interim - 1].type == start

    # Without an end-of-utterance trigger there is nothing to end speech: neither is sent.
    run = await run_stream(plugin(server.url).stream(), make_frames(audio))
    assert not run.of(start) and not run.of(end)


async def test_timestamps_include_the_stream_start_offset(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    stream = plugin(server.url).stream()
    stream.start_time_offset = 12.5  # as AgentSession sets it
    run = await run_stream(stream, make_frames(synthesize(WORDS)))
    assert spans(run.finals()[:4]) == timings(WORDS, offset=12.5)
    assert spans([e.alternatives[0] for e in run.of(SpeechType.INTERIM_TRANSCRIPT)][:1]) == [
        (12.7, 12.8)
    ]


async def test_temporary_keys_and_secrets(
    servers: ServerThread, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    long_lived, temporary = secret("long-lived"), secret("temporary")
    endpoint = KeyEndpoint(body=b'{"apikey_id": "id", "key_value": "%s"}' % temporary.encode())
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=[temporary])
    with key_endpoint(endpoint):
        settings = ConnectionSettings(
            url=server.url,
            api_key=long_lived,
            management_url=f"http://127.0.0.1:{endpoint.port}",
        )
        stt_ = plugin(server.url, connection_settings=settings, extra_headers={"X-Trace": "1"})
        run = await run_stream(stt_.stream(), make_frames(synthesize(["hello"])))
        assert run.error is None and run.texts() == ["hello", "."]
        assert endpoint.requests == [
            {
                "path": "/v1/api_keys?type=rt",
                "authorization": f"Bearer {long_lived}",
                "body": {"ttl": 60},
            }
        ]
        # The endpoint refuses the key: an APIStatusError with its status, not retried.
        endpoint.status, endpoint.body = 401, b'{"detail": "bad key %s"}' % long_lived.encode()
        run = await run_stream(stt_.stream(), make_frames(synthesize(["hello"])))
    assert isinstance(run.error, APIStatusError) and run.error.status_code == 401
    assert isinstance(run.error.__cause__, AuthenticationError) and not run.error.retryable
    texts = [caplog.text, str(run.error), repr(run.error), repr(settings), repr(stt_)]
    for text in texts:
        assert long_lived not in text and temporary not in text


async def test_temporary_key_failures_are_the_sessions_errors(
    servers: ServerThread, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The key endpoint's answers are judged by the session, as in every driver: HTTP 503
    is ``HandshakeRejected`` (retryable, and retried), a body without a key is
    ``ConnectionFailed``; LiveKit gets an ``APIStatusError`` with the status, and an
    ``APIConnectionError``."""
    caplog.set_level(logging.DEBUG)
    key = secret("key-endpoint")
    endpoint = KeyEndpoint(status=503, body=b'{"detail": "busy, %s"}' % key.encode())
    server = servers.serve(recognizer=ScriptedRecognizer())
    policy = ReconnectPolicy(
        max_attempts=1, initial_delay=0.01, jitter=0.0, retry_first_connection=True
    )
    with key_endpoint(endpoint):
        settings = ConnectionSettings(
            url=server.url, api_key=key, management_url=f"http://127.0.0.1:{endpoint.port}"
        )
        stt_ = plugin(server.url, connection_settings=settings, reconnect_policy=policy)
        frames = make_frames(synthesize(["hello"]))
        run = await run_stream(stt_.stream(conn_options=NO_RETRY), frames)
        assert isinstance(run.error, APIStatusError)
        assert run.error.status_code == 503 and run.error.retryable
        assert isinstance(run.error.__cause__, HandshakeRejected)
        assert len(endpoint.requests) == 2  # the first attempt, and the one retry
        endpoint.status, endpoint.body = 201, b'{"apikey_id": "id"}'
        second = await run_stream(stt_.stream(conn_options=NO_RETRY), frames)
    assert isinstance(second.error, APIConnectionError)
    assert isinstance(second.error.__cause__, ConnectionFailed)
    assert server.total_sessions == 0
    for text in (caplog.text, str(run.error), str(second.error), str(run.error.__cause__)):
        assert key not in text


async def test_a_refused_resume_raises_the_original_failure(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """The connection drops while more audio than ``retain_audio_seconds`` waits for a
    final: the session cannot resume without losing audio, and the stream ends with the
    failure itself (a note says why it was not retried), not with an error of its own.
    LiveKit's retries make no new connection."""
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    proxy = servers.proxy(server, [1500])
    stt_ = plugin(f"ws://127.0.0.1:{proxy.port}/v2", retain_audio_seconds=0.5)
    options = APIConnectOptions(max_retry=1, retry_interval=0.05, timeout=5.0)
    run = await run_stream(
        stt_.stream(conn_options=options), make_frames(synthesize([("hello", 3.0)]))
    )
    assert isinstance(run.error, APIConnectionError)
    ours = run.error.__cause__  # LiveKit's "failed after 1 attempts" is raised from ours
    assert isinstance(ours, APIConnectionError)
    failure = ours.__cause__
    assert type(failure) is ConnectionLost and failure.retryable
    [note] = failure.__notes__
    assert note.startswith("not reconnected") and "retain_audio_seconds" in note
    assert "retain_audio_seconds" in str(ours)  # and LiveKit's logs say why
    assert len(recognizer.configs) == 1


def test_settings_are_checked_early() -> None:
    with pytest.raises(ValueError, match="Authorization"):
        STT(extra_headers={"authorization": "Bearer x"})
    with pytest.raises(ValueError, match=r"TranscriptionConfig\.max_delay"):
        STT(transcription_config=TranscriptionConfig(max_delay=100))
    with pytest.raises(ValueError, match=r"AudioSettings\.encoding"):
        STT(audio_settings=AudioSettings(encoding="opus"))
    with pytest.raises(ValueError, match="ws://"):
        STT(connection_settings=ConnectionSettings(url="https://example.invalid/v2"))


async def test_defaults_and_mutable_settings_like_the_original(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """The 1.0.x defaults go on the wire; settings stay mutable dataclasses, checked again
    when a stream starts."""
    recognizer = Recorder()
    server = servers.serve(recognizer=recognizer)
    stt_ = STT(connection_settings=ConnectionSettings(url=server.url, get_access_token=False))
    assert stt_.capabilities.streaming and stt_.capabilities.interim_results
    assert stt_.model == "enhanced" and stt_.provider == "Speechmatics"
    run = await run_stream(stt_.stream(), make_frames(synthesize(["hello"])))
    assert run.error is None
    sent = recognizer.configs[0]
    assert sent.transcription_config.to_dict() == {
        "language": "en",
        "max_delay": 0.7,
        "enable_partials": True,
        "operating_point": "enhanced",
    }
    assert sent.audio_format.to_dict() == {
        "type": "raw",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
    }
    assert ConnectionSettings(url="wss://x").get_access_token is True
    assert STT()._connection_settings.url == "wss://eu2.rt.speechmatics.com/v2"
    config = TranscriptionConfig()
    stt_ = STT(transcription_config=config)
    config.max_delay = 99.0
    with pytest.raises(ValueError, match="max_delay"):
        stt_.stream()


def test_the_plugin_is_registered() -> None:
    from livekit.agents import Plugin

    assert any(p.package == "smproto_livekit" for p in Plugin.registered_plugins)
    assert issubclass(smproto_livekit.SpeechStream, stt.RecognizeStream)
    assert issubclass(SpeechmaticsError, APIError)


# --------------------------------------------------------------------------- interop


async def test_the_original_plugin_runs_against_our_server(
    servers: ServerThread, http: aiohttp.ClientSession
) -> None:
    """livekit-plugins-speechmatics 1.0.x, the plugin this project started from, gets its
    transcripts from smproto_server (it sends a language in the URL path, /v2/en)."""
    original = pytest.importorskip("livekit.plugins.speechmatics")
    from livekit.plugins.speechmatics.types import ConnectionSettings as OriginalSettings

    recognizer = Recorder()
    # The original waits for the server to close after EndOfTranscript, which the server
    # does right away by default (as Speechmatics does).
    key = secret("original")
    server = servers.serve(recognizer=recognizer, api_keys=[key])
    settings = OriginalSettings(url=server.url, api_key=key, get_access_token=False)
    run = await run_stream(
        original.STT(connection_settings=settings).stream(), make_frames(synthesize(WORDS))
    )
    assert run.error is None
    assert run.of(SpeechType.INTERIM_TRANSCRIPT)
    assert run.texts() == [*WORDS, "."]
    assert recognizer.configs[0].transcription_config.operating_point == "enhanced"

    # What the fix is about: on a final with gaps between its words, the original's
    # alternatives[0] (all LiveKit reads) holds the first word only.
    server = servers.serve(recognizer=Recorder(merge_finals=True))
    settings = OriginalSettings(url=server.url, api_key="k", get_access_token=False)
    run = await run_stream(
        original.STT(connection_settings=settings).stream(), make_frames(synthesize(WORDS))
    )
    assert run.texts() == ["hello"]
