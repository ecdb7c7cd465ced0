"""The asyncio and trio client drivers, one set of tests run on both backends, over real
WebSockets on 127.0.0.1 against smproto_server."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smproto import AudioFormat, TranscriptAssembler, TranscriptionConfig
from smproto.audio import pcm_chunks
from smproto.config import ConversationConfig, SpeakerDiarizationConfig, StartRecognitionConfig
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    EndOfTranscript,
    EndOfUtterance,
    Event,
    RecognitionStarted,
    Reconnected,
    ServerInfo,
    SpeakersResult,
)
from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    TranscriptionError,
)
from smproto_server import RecognizerError
from smproto_server.recognizers import ScriptedRecognizer
from smproto_server.recognizers.scripted import ScriptedSession, expected_timings, synthesize
from tests.drivers.netutil import KeyEndpoint, ServerThread, key_endpoint
from tests.support import secret

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

FORMAT = AudioFormat()
WORDS = ["hello", "world", "the", "speech"]
FAST = ReconnectPolicy(initial_delay=0.01, max_delay=0.05, slow_retry_delay=0.05, jitter=0.0)


def config(**changes: Any) -> TranscriptionConfig:
    return TranscriptionConfig(**({"language": "en", "enable_partials": True} | changes))


@dataclass
class Outcome:
    events: list[Event]
    sent: int

    def finals(self) -> list[tuple[str, float, float]]:
        return [
            (r.content, round(r.start_time, 6), round(r.end_time, 6))
            for e in self.events
            if isinstance(e, AddTranscript)
            for r in e.results
        ]

    def text(self) -> str:
        assembler = TranscriptAssembler()
        for event in self.events:
            assembler.add(event)
        return assembler.final_text


async def run_session(
    driver: ModuleType,
    url: str,
    audio: bytes,
    *,
    chunk_seconds: float = 0.1,
    cfg: TranscriptionConfig | None = None,
    during: Any = None,
    realtime: bool = False,
    **options: Any,
) -> Outcome:
    """Send ``audio`` in chunks (paced at real time with ``realtime``) while reading every
    event; return what was seen."""
    events: list[Event] = []
    sent = 0
    async with driver.connect(
        url, transcription_config=cfg or config(), audio_format=FORMAT, **options
    ) as session:

        async def send() -> None:
            nonlocal sent
            try:
                start = anyio.current_time()
                for i, chunk in enumerate(pcm_chunks(audio, FORMAT, chunk_seconds)):
                    await session.send_audio(chunk)
                    sent += 1
                    if realtime:
                        await anyio.sleep(start + sent * chunk_seconds - anyio.current_time())
                    if during is not None:
                        await during(session, i)
                await session.end_of_stream()
            except SessionError:
                pass  # the iteration below raises it

        failure: SessionError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            try:
                async for event in session:
                    events.append(event)
            except SessionError as exc:
                failure = exc
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
    return Outcome(events, sent)


# --------------------------------------------------------------------------- whole sessions


async def test_whole_session(driver: ModuleType, servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    outcome = await run_session(driver, server.url, synthesize(WORDS))
    # The server's Info comes first (a LiveKit application does not see it: it is logged).
    kinds = [type(e) for e in outcome.events if not isinstance(e, ServerInfo)]
    assert kinds[0] is RecognitionStarted and kinds[-1] is EndOfTranscript
    assert AddPartialTranscript in kinds
    expected = [
        (word, round(start, 6), round(end, 6))
        for word, (start, end) in zip(WORDS, expected_timings(WORDS), strict=True)
    ]
    assert [f for f in outcome.finals() if f[0] != "."] == expected
    assert outcome.text() == "hello world the speech."


# Not on LiveKit: LiveKit has recognize(), tested in its own suite.
@pytest.mark.drivers("asyncio", "trio", "sync")
async def test_transcribe_helper(driver: ModuleType, servers: ServerThread, tmp_path: Any) -> None:
    from smproto_server.recognizers.scripted import synthesize_wav

    server = servers.serve(recognizer=ScriptedRecognizer())
    path = tmp_path / "words.wav"
    path.write_bytes(synthesize_wav(["hello", "world"], sample_rate=8000, channels=2))
    assert await driver.transcribe(path, url=server.url) == "hello world."
    chunks = list(pcm_chunks(synthesize(["the", "speech"]), FORMAT, 0.05))
    assert await driver.transcribe(chunks, url=server.url) == "the speech."


# Not on LiveKit: the LiveKit plugin streams one channel.
@pytest.mark.drivers("asyncio", "trio", "sync")
async def test_multichannel(driver: ModuleType, servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    cfg = config(diarization="channel", channel_diarization_labels=["agent", "caller"])
    audio = {"agent": synthesize(["hello"]), "caller": synthesize(["world", "the"])}
    events: list[Event] = []
    async with driver.connect(server.url, transcription_config=cfg, audio_format=FORMAT) as session:

        async def send() -> None:
            for channel, data in audio.items():
                for chunk in pcm_chunks(data, FORMAT, 0.1):
                    await session.send_channel_audio(channel, chunk)
            await session.end_of_channel("agent")
            await session.end_of_channel("caller")

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            async for event in session:
                events.append(event)
    finals = {
        (e.channel, r.content) for e in events if isinstance(e, AddTranscript) for r in e.results
    }
    assert {("agent", "hello"), ("caller", "world"), ("caller", "the")} <= finals


# Not on LiveKit: LiveKit's STT has no mid-session commands.
@pytest.mark.drivers("asyncio", "trio", "sync")
async def test_mid_session_commands(driver: ModuleType, servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    cfg = config(
        diarization="speaker",
        speaker_diarization_config=SpeakerDiarizationConfig(get_speakers=False),
    )
    words = ["hello", ("world", 1.5)]

    async def during(session: Any, i: int) -> None:
        if i == 3:
            await session.set_recognition_config(
                conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.3)
            )
        if i == 12:  # inside "world": finalise it early
            await session.force_end_of_utterance()
            await session.get_speakers()

    outcome = await run_session(driver, server.url, synthesize(words), cfg=cfg, during=during)
    forced = [e for e in outcome.events if isinstance(e, AddTranscript) and e.forced]
    assert forced and forced[0].results[0].content == "world"
    assert any(isinstance(e, EndOfUtterance) for e in outcome.events)
    speakers = [e for e in outcome.events if isinstance(e, SpeakersResult)]
    assert speakers and speakers[0].speakers[0].label == "S1"


# --------------------------------------------------------------------------- flow control


async def test_send_audio_waits_for_a_slow_server(
    driver: ModuleType, servers: ServerThread
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer(feed_delay=0.02))
    window = 0.3
    worst_in_flight = 0.0
    worst_retained = 0.0

    async def during(session: Any, i: int) -> None:
        nonlocal worst_in_flight, worst_retained
        worst_in_flight = max(worst_in_flight, session.audio_in_flight.seconds)
        worst_retained = max(worst_retained, session.connection.retained_audio_seconds)

    audio = synthesize(["hello"] * 4, gap_seconds=0.4)  # 2.8 s of audio, 28 chunks
    start = anyio.current_time()
    outcome = await run_session(
        driver,
        server.url,
        audio,
        during=during,
        max_audio_in_flight_seconds=window,
        retain_audio_seconds=2.0,
    )
    elapsed = anyio.current_time() - start
    assert outcome.sent == 28
    assert worst_in_flight <= window + 0.1 + 1e-9  # the window, plus the chunk that filled it
    assert worst_retained <= 2.0 + 0.1
    assert elapsed >= 28 * 0.02  # paced by the server, not by the client
    assert [f[0] for f in outcome.finals()][:4] == ["hello"] * 4


# Not on LiveKit: LiveKit's framework takes every event at once: no backlog to drop from.
@pytest.mark.drivers("asyncio", "trio", "sync")
async def test_events_keep_flowing_for_a_slow_reader(
    driver: ModuleType, servers: ServerThread
) -> None:
    """Acks are processed while nobody reads events: sending never deadlocks."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(["hello"], lead_seconds=2.0)
    async with driver.connect(
        server.url,
        transcription_config=config(enable_partials=False),
        audio_format=FORMAT,
        event_queue_size=4,
        max_audio_in_flight_seconds=0.3,
    ) as session:
        with anyio.fail_after(20):
            for chunk in pcm_chunks(audio, FORMAT, 0.1):
                await session.send_audio(chunk)  # would hang if acks waited for the reader
            await session.end_of_stream()
        events = [e async for e in session]
    assert session.dropped_events > 0
    assert any(isinstance(e, AddTranscript) and e.text == "hello" for e in events)


# Not on LiveKit: aiohttp writes each frame (the plugin's writes are LiveKit's HTTP
# client's). The sync driver has this test in its own suite, with a real sending thread:
# behind the async facade, each frame is a hop to a worker thread, not a burst.
@pytest.mark.drivers("asyncio", "trio")
async def test_a_burst_of_audio_takes_few_writes(
    driver: ModuleType, servers: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audio sent faster than real time goes out in batches, not a system call per
    frame: 350 frames of 20 ms (all inside the 10 s window) in a few ``send`` calls."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    sends = 0

    def count(sock: Any) -> None:
        nonlocal sends
        try:
            peer = sock.getpeername()
        except OSError:
            return
        # The client's side (the server runs here too; so does a loop's self-pipe).
        if isinstance(peer, tuple) and peer[1] == server.port:
            sends += 1

    if driver.__name__ == "smproto_trio":
        from trio._socket import _SocketType  # trio's socket calls the stdlib's send directly

        real_trio_send = _SocketType.send

        async def counting_trio_send(sock: Any, data: Any, *args: Any) -> int:
            count(sock)
            sent: int = await real_trio_send(sock, data, *args)
            return sent

        monkeypatch.setattr(_SocketType, "send", counting_trio_send)
    else:
        real_send = socket.socket.send
        real_sendmsg = socket.socket.sendmsg  # asyncio's writelines() on Python 3.12+

        def counting_send(sock: socket.socket, data: Any, *args: Any) -> int:
            count(sock)
            return real_send(sock, data, *args)

        def counting_sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> int:
            count(sock)
            return real_sendmsg(sock, buffers, *args)

        monkeypatch.setattr(socket.socket, "send", counting_send)
        monkeypatch.setattr(socket.socket, "sendmsg", counting_sendmsg)
    audio = synthesize(["hello", "world"] * 5, gap_seconds=0.4)  # 7 s
    outcome = await run_session(driver, server.url, audio, chunk_seconds=0.02)
    assert outcome.sent == 350
    assert outcome.text().split()[:2] == ["hello", "world"]
    assert 0 < sends <= outcome.sent // 4, f"{sends} sends for {outcome.sent} frames"


# --------------------------------------------------------------------------- failures


class _SlowStart(ScriptedRecognizer):
    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        await __import__("asyncio").sleep(3.0)
        return await super().open_session(config)


async def test_no_recognition_started_in_time(driver: ModuleType, servers: ServerThread) -> None:
    server = servers.serve(recognizer=_SlowStart())
    with pytest.raises(SessionTimeout) as info:
        async with driver.connect(
            server.url, transcription_config=config(), recognition_started_timeout=0.5
        ):
            pass
    assert info.value.timer == "recognition_started" and info.value.retryable


class _FailingSession(ScriptedSession):
    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Any]:
        self.fed = getattr(self, "fed", 0) + 1
        if self.fed == 5:
            raise RecognizerError("not_allowed", "this account may not transcribe")
        return await super().feed(audio, channel)


class _Failing(ScriptedRecognizer):
    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        session = await super().open_session(config)
        session.__class__ = _FailingSession
        return session


async def test_server_error_mid_stream_is_typed(driver: ModuleType, servers: ServerThread) -> None:
    server = servers.serve(recognizer=_Failing())
    with pytest.raises(TranscriptionError) as info:
        await run_session(driver, server.url, synthesize(WORDS))
    assert (info.value.type, info.value.reason) == (
        "not_allowed",
        "this account may not transcribe",
    )
    assert not info.value.retryable


async def test_handshake_401_is_an_authentication_error(
    driver: ModuleType, servers: ServerThread
) -> None:
    right = secret("right")
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=[right])
    with pytest.raises(AuthenticationError) as info:
        async with driver.connect(server.url, transcription_config=config()):
            pass
    assert info.value.status == 401 and not info.value.retryable
    with pytest.raises(AuthenticationError):  # a wrong key: not_authorised in band
        async with driver.connect(
            server.url, api_key=secret("wrong"), transcription_config=config()
        ):
            pass
    async with driver.connect(server.url, api_key=right, transcription_config=config()) as s:
        await s.end_of_stream()
        assert [e async for e in s][-1].__class__ is EndOfTranscript


async def test_other_handshake_failures(driver: ModuleType, servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    with pytest.raises(HandshakeRejected) as rejected:
        async with driver.connect(
            server.url.replace("/v2", "/nope"), transcription_config=config()
        ):
            pass
    assert rejected.value.status == 404 and not rejected.value.retryable
    with pytest.raises(ConnectionFailed) as refused:
        async with driver.connect("ws://127.0.0.1:9/v2", transcription_config=config()):
            pass
    assert refused.value.retryable


async def test_half_open_connection_is_detected_by_keepalive(
    driver: ModuleType, servers: ServerThread
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    # The proxy goes silent (forwards nothing, closes nothing) after the handshake.
    proxy = servers.proxy(server, [600], silence=True)
    start = anyio.current_time()
    with pytest.raises((ConnectionLost, SessionTimeout)):
        await run_session(
            driver,
            f"ws://127.0.0.1:{proxy.port}/v2",
            synthesize(WORDS),
            reconnect=False,
            ping_interval=0.3,
            ping_timeout=0.5,
            close_timeout=0.5,
        )
    assert anyio.current_time() - start < 10


# --------------------------------------------------------------------------- temporary keys


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (201, b'{"key_value": "temporary-key-1"}', None),
        (401, b'{"detail": "bad key"}', AuthenticationError),
        (201, b"<html>garbage</html>", ConnectionFailed),
    ],
)
async def test_temporary_key(
    driver: ModuleType,
    servers: ServerThread,
    status: int,
    body: bytes,
    error: type[Exception] | None,
) -> None:
    long_lived = secret("long-lived")
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=["temporary-key-1"])
    with key_endpoint(KeyEndpoint(status, body)) as endpoint:
        options = {
            "api_key": long_lived,
            "temporary_key": True,
            "management_url": f"http://127.0.0.1:{endpoint.port}",
        }
        if error is None:
            outcome = await run_session(driver, server.url, synthesize(["hello"]), **options)
            assert outcome.text() == "hello."
        else:
            with pytest.raises(error) as info:
                await run_session(driver, server.url, synthesize(["hello"]), **options)
            assert long_lived not in str(info.value)
        request = endpoint.requests[0]
        assert request["path"] == "/v1/api_keys?type=rt"
        assert request["authorization"] == f"Bearer {long_lived}"
        assert request["body"] == {"ttl": 60}


# --------------------------------------------------------------------------- reconnecting

RECONNECT_WORDS = ["hello", "world", "the", "speech", "hello", "world"]


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    first=st.integers(800, 6000),
    later=st.lists(st.integers(100, 6000), max_size=2),
)
async def test_reconnect_loses_nothing(driver: ModuleType, first: int, later: list[int]) -> None:
    """The connection is cut after a byte count Hypothesis chooses (mid-message, even
    mid-handshake for the later connections), once or several times; the transcript equals
    the undisturbed one. (The first connection is cut after recognition started: before
    that, connect() itself reports the failure.)"""
    cuts = [first, *later]
    servers = ServerThread()
    try:
        server = servers.serve(recognizer=ScriptedRecognizer())
        audio = synthesize(RECONNECT_WORDS, gap_seconds=0.3)
        reference = await run_session(driver, server.url, audio)
        proxy = servers.proxy(server, list(cuts))
        disturbed = await run_session(
            driver, f"ws://127.0.0.1:{proxy.port}/v2", audio, reconnect=FAST
        )
    finally:
        servers.close()
    assert disturbed.finals() == reference.finals()
    # One Reconnected per new connection that got going (a cut handshake is retried; a
    # cut after EndOfTranscript needs no new connection).
    reconnects = [e for e in disturbed.events if isinstance(e, Reconnected)]
    assert len(reconnects) <= proxy.connections - 1
    if proxy.connections > 1:
        assert reconnects
    times = [start for _, start, _ in disturbed.finals()]
    assert times == sorted(times)


async def test_reconnect_off_raises_the_typed_error(
    driver: ModuleType, servers: ServerThread
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    proxy = servers.proxy(server, [1500])
    with pytest.raises(ConnectionLost) as info:
        await run_session(
            driver, f"ws://127.0.0.1:{proxy.port}/v2", synthesize(WORDS * 3), reconnect=False
        )
    assert info.value.retryable


# --------------------------------------------------------------------------- secrets


async def test_the_api_key_never_shows(
    driver: ModuleType, servers: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    key = secret("never-shows")
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=[key])
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with driver.connect(server.url, api_key=key, transcription_config=config()) as session:
        texts += [repr(session), repr(session.connection), str(session.__dict__)]
        await session.end_of_stream()
        async for event in session:
            texts.append(repr(event))
    with pytest.raises(AuthenticationError) as info:
        async with driver.connect(server.url, api_key=key + "x", transcription_config=config()):
            pass
    texts.append(str(info.value))
    assert "Authorization" in caplog.text or "authorization" in caplog.text.lower()
    for text in [caplog.text, *texts]:
        assert key not in text


# --------------------------------------------------------------------------- leaving early


async def test_leaving_the_block_early_closes_the_connection(
    driver: ModuleType, servers: ServerThread
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    async with driver.connect(server.url, transcription_config=config()) as session:
        await session.send_audio(b"\x00\x00" * 1600)
    assert session.state.name == "CLOSED"
    with anyio.fail_after(5):
        while server.active_sessions:
            await anyio.sleep(0.02)


async def test_cancelling_the_caller_closes_promptly(
    driver: ModuleType, servers: ServerThread
) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer(feed_delay=0.05))
    start = anyio.current_time()
    with anyio.move_on_after(0.5):
        # ~15 s at this pace. A small window keeps the slow server's backlog short, so it
        # reads the client's close soon (the client waits close_timeout at most).
        await run_session(
            driver,
            server.url,
            synthesize(WORDS * 4),
            max_audio_in_flight_seconds=0.5,
            close_timeout=1.0,
        )
    assert anyio.current_time() - start < 2
    with anyio.fail_after(5):
        while server.active_sessions:
            await anyio.sleep(0.02)
