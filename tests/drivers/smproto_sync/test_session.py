"""The threaded client driver (smproto_sync), over real WebSockets on 127.0.0.1 against
smproto_server: the same behaviours as the asyncio and trio drivers, with threads (one
sends while another iterates), and no thread left behind."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import smproto_sync
from smproto import AudioFormat, TranscriptAssembler, TranscriptionConfig
from smproto.audio import pcm_chunks
from smproto.config import ConversationConfig, SpeakerDiarizationConfig, StartRecognitionConfig
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    AudioAdded,
    EndOfTranscript,
    EndOfUtterance,
    Event,
    RecognitionStarted,
    Reconnected,
    RolledOver,
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
from smproto_server.recognizers.scripted import (
    ScriptedSession,
    expected_timings,
    synthesize,
    synthesize_wav,
)
from tests.drivers.netutil import KeyEndpoint, ServerThread, key_endpoint
from tests.support import secret

pytestmark = pytest.mark.timeout(60)

FORMAT = AudioFormat()
WORDS = ["hello", "world", "the", "speech"]
FAST = ReconnectPolicy(initial_delay=0.01, max_delay=0.05, slow_retry_delay=0.05, jitter=0.0)


def config(**changes: Any) -> TranscriptionConfig:
    settings: dict[str, Any] = {"language": "en", "enable_partials": True}
    return TranscriptionConfig(**(settings | changes))


def _ours(thread: threading.Thread) -> bool:
    """A thread of the driver: its own (named), or websockets' for a connection."""
    name = thread.name
    return name.startswith("smproto_sync") or name.endswith(("(recv_events)", "(keepalive)"))


def _driver_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if _ours(t) and t.is_alive()]


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """After every test, the driver's threads are gone (each session joins them as its
    block exits; a few hundred milliseconds of grace for a test's own helpers)."""
    yield
    end = time.monotonic() + 2.0
    while _driver_threads() and time.monotonic() < end:
        time.sleep(0.01)
    assert not _driver_threads(), _driver_threads()


@dataclass
class Outcome:
    events: list[Event]
    sent: int
    reader: int  # the threads that iterated and sent
    sender: int

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


def run_session(
    url: str,
    audio: bytes,
    *,
    chunk_seconds: float = 0.1,
    cfg: TranscriptionConfig | None = None,
    during: Callable[[smproto_sync.Session, int], None] | None = None,
    **options: Any,
) -> Outcome:
    """Send ``audio`` in chunks from a thread while this one reads every event."""
    events: list[Event] = []
    sent = 0
    sender_id = 0
    with smproto_sync.connect(
        url, transcription_config=cfg or config(), audio_format=FORMAT, **options
    ) as session:

        def send() -> None:
            nonlocal sent, sender_id
            sender_id = threading.get_ident()
            try:
                for i, chunk in enumerate(pcm_chunks(audio, FORMAT, chunk_seconds)):
                    session.send_audio(chunk)
                    sent += 1
                    if during is not None:
                        during(session, i)
                session.end_of_stream()
            except SessionError:
                pass  # the iteration below raises it

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            for event in session:
                events.append(event)
        finally:
            sender.join(10)
            assert not sender.is_alive(), "the sender is stuck"
    return Outcome(events, sent, threading.get_ident(), sender_id)


# --------------------------------------------------------------------------- whole sessions


def test_whole_session(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    outcome = run_session(server.url, synthesize(WORDS))
    kinds = [type(e) for e in outcome.events]
    assert kinds[1] is RecognitionStarted and kinds[-1] is EndOfTranscript
    assert AddPartialTranscript in kinds
    expected = [
        (word, round(start, 6), round(end, 6))
        for word, (start, end) in zip(WORDS, expected_timings(WORDS), strict=True)
    ]
    assert [f for f in outcome.finals() if f[0] != "."] == expected
    assert outcome.text() == "hello world the speech."


def test_no_thread_is_left_after_the_session(servers: ServerThread) -> None:
    """Every thread the session started (timer, opener, writer, websockets' reader and
    keepalive) has ended when the block exits: no grace period."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    before = set(threading.enumerate())
    with smproto_sync.connect(
        server.url, transcription_config=config(), ping_interval=0.2
    ) as session:
        assert len([t for t in _driver_threads() if t not in before]) >= 4
        session.send_audio(synthesize(["hello"]))
        session.end_of_stream()
        assert isinstance(list(session)[-1], EndOfTranscript)
    assert not [t for t in _driver_threads() if t not in before]
    with (
        pytest.raises(ConnectionFailed),  # a failed start leaves nothing either
        smproto_sync.connect("ws://127.0.0.1:9/v2", transcription_config=config()),
    ):
        pass
    assert not [t for t in _driver_threads() if t not in before]


def test_transcribe_helper(servers: ServerThread, tmp_path: Path) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    path = tmp_path / "words.wav"
    path.write_bytes(synthesize_wav(["hello", "world"], sample_rate=8000, channels=2))
    assert smproto_sync.transcribe(path, url=server.url) == "hello world."
    assert smproto_sync.transcribe(path.read_bytes(), url=server.url) == "hello world."
    chunks = list(pcm_chunks(synthesize(["the", "speech"]), FORMAT, 0.05))
    assert smproto_sync.transcribe(chunks, url=server.url) == "the speech."


def test_transcribe_raises_what_the_source_raises(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())

    def broken() -> Iterator[bytes]:
        yield from list(pcm_chunks(synthesize(["hello"]), FORMAT, 0.1))[:3]
        raise OSError("the microphone went away")

    with pytest.raises(OSError, match="microphone"):
        smproto_sync.transcribe(broken(), url=server.url)
    deadline = time.monotonic() + 5
    while server.active_sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_sessions == 0


def test_multichannel_with_a_thread_per_channel(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    cfg = config(diarization="channel", channel_diarization_labels=["agent", "caller"])
    audio = {"agent": synthesize(["hello"]), "caller": synthesize(["world", "the"])}
    events: list[Event] = []
    with smproto_sync.connect(server.url, transcription_config=cfg, audio_format=FORMAT) as session:

        def send(channel: str) -> None:
            for chunk in pcm_chunks(audio[channel], FORMAT, 0.1):
                session.send_channel_audio(channel, chunk)
            session.end_of_channel(channel)

        senders = [threading.Thread(target=send, args=(c,), daemon=True) for c in audio]
        for sender in senders:
            sender.start()
        events = list(session)
        for sender in senders:
            sender.join(5)
    finals = {
        (e.channel, r.content) for e in events if isinstance(e, AddTranscript) for r in e.results
    }
    assert {("agent", "hello"), ("caller", "world"), ("caller", "the")} <= finals


def test_mid_session_commands(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    cfg = config(
        diarization="speaker",
        speaker_diarization_config=SpeakerDiarizationConfig(get_speakers=False),
    )
    words: list[str | tuple[str, float]] = ["hello", ("world", 1.5)]
    results: list[Any] = []

    def during(session: smproto_sync.Session, i: int) -> None:
        if i == 3:
            results.append(
                session.set_recognition_config(
                    conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.3)
                )
            )
        if i == 12:  # inside "world": finalise it early
            session.force_end_of_utterance()
            session.get_speakers()

    outcome = run_session(server.url, synthesize(words), cfg=cfg, during=during)
    changed = results[0]
    assert isinstance(changed, TranscriptionConfig) and changed.conversation_config is not None
    assert changed.conversation_config.end_of_utterance_silence_trigger == 0.3
    forced = [e for e in outcome.events if isinstance(e, AddTranscript) and e.forced]
    assert forced and forced[0].results[0].content == "world"
    assert any(isinstance(e, EndOfUtterance) for e in outcome.events)
    speakers = [e for e in outcome.events if isinstance(e, SpeakersResult)]
    assert speakers and speakers[0].speakers[0].label == "S1"


# --------------------------------------------------------------------------- threads


def test_one_thread_sends_while_another_iterates(servers: ServerThread) -> None:
    """Events reach the iterating thread while the sending thread is still sending
    (paced at four times real time): the two really run side by side."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(WORDS, gap_seconds=0.4)
    sending = threading.Event()
    seen_while_sending: list[Event] = []
    with smproto_sync.connect(server.url, transcription_config=config()) as session:

        def send() -> None:
            sending.set()
            for chunk in pcm_chunks(audio, FORMAT, 0.1):
                session.send_audio(chunk)
                time.sleep(0.025)
            sending.clear()
            session.end_of_stream()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        sending.wait(5)
        events = []
        for event in session:
            events.append(event)
            if sending.is_set():
                seen_while_sending.append(event)
        sender.join(5)
    assert any(isinstance(e, AudioAdded) for e in seen_while_sending)
    assert any(isinstance(e, AddTranscript) for e in seen_while_sending)
    assert [r.content for e in events if isinstance(e, AddTranscript) for r in e.results][
        :4
    ] == WORDS


# --------------------------------------------------------------------------- flow control


def test_send_audio_waits_for_a_slow_server(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer(feed_delay=0.02))
    window = 0.3
    worst_in_flight = 0.0
    worst_retained = 0.0

    def during(session: smproto_sync.Session, i: int) -> None:
        nonlocal worst_in_flight, worst_retained
        worst_in_flight = max(worst_in_flight, session.audio_in_flight.seconds)
        worst_retained = max(worst_retained, session.connection.retained_audio_seconds)

    audio = synthesize(["hello"] * 4, gap_seconds=0.4)  # 2.8 s of audio, 28 chunks
    start = time.monotonic()
    outcome = run_session(
        server.url,
        audio,
        during=during,
        max_audio_in_flight_seconds=window,
        retain_audio_seconds=2.0,
    )
    elapsed = time.monotonic() - start
    assert outcome.sent == 28
    assert outcome.sender != outcome.reader
    assert worst_in_flight <= window + 0.1 + 1e-9  # the window, plus the chunk that filled it
    assert worst_retained <= 2.0 + 0.1
    assert elapsed >= 28 * 0.02  # paced by the server, not by the client
    assert [f[0] for f in outcome.finals()][:4] == ["hello"] * 4


def test_events_keep_flowing_for_a_slow_reader(servers: ServerThread) -> None:
    """Acks are processed while nobody reads events: sending never deadlocks."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(["hello"], lead_seconds=2.0)
    with smproto_sync.connect(
        server.url,
        transcription_config=config(enable_partials=False),
        audio_format=FORMAT,
        event_queue_size=4,
        max_audio_in_flight_seconds=0.3,
    ) as session:
        start = time.monotonic()
        for chunk in pcm_chunks(audio, FORMAT, 0.1):
            session.send_audio(chunk)  # would hang if acks waited for the reader
        session.end_of_stream()
        assert time.monotonic() - start < 20
        events = list(session)
    assert session.dropped_events > 0
    assert any(isinstance(e, AddTranscript) and e.text == "hello" for e in events)


def test_a_burst_of_audio_takes_few_writes(
    servers: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audio sent faster than real time goes out in batches: the writer thread writes
    whatever was queued while it wrote the last batch, not a system call per frame."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    sends = 0
    real_send = socket.socket.send

    def counting_send(sock: socket.socket, data: Any, *args: Any) -> int:
        nonlocal sends
        if threading.current_thread().name.startswith("smproto_sync writer"):
            sends += 1
        return real_send(sock, data, *args)

    monkeypatch.setattr(socket.socket, "send", counting_send)
    audio = synthesize(["hello", "world"] * 5, gap_seconds=0.4)  # 7 s
    outcome = run_session(server.url, audio, chunk_seconds=0.02)
    assert outcome.sent == 350
    assert outcome.text().split()[:2] == ["hello", "world"]
    assert 0 < sends <= outcome.sent // 4, f"{sends} sends for {outcome.sent} frames"


# --------------------------------------------------------------------------- failures


class _SlowStart(ScriptedRecognizer):
    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        await __import__("asyncio").sleep(3.0)
        return await super().open_session(config)


def test_no_recognition_started_in_time(servers: ServerThread) -> None:
    server = servers.serve(recognizer=_SlowStart())
    start = time.monotonic()
    with (
        pytest.raises(SessionTimeout) as info,
        smproto_sync.connect(
            server.url, transcription_config=config(), recognition_started_timeout=0.5
        ),
    ):
        pass
    assert info.value.timer == "recognition_started" and info.value.retryable
    assert time.monotonic() - start < 2.5


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


def test_server_error_mid_stream_is_typed(servers: ServerThread) -> None:
    server = servers.serve(recognizer=_Failing())
    with pytest.raises(TranscriptionError) as info:
        run_session(server.url, synthesize(WORDS))
    assert (info.value.type, info.value.reason) == (
        "not_allowed",
        "this account may not transcribe",
    )
    assert not info.value.retryable


def test_an_unreported_failure_is_raised_when_the_block_exits(servers: ServerThread) -> None:
    server = servers.serve(recognizer=_Failing())
    with (
        pytest.raises(TranscriptionError),
        smproto_sync.connect(server.url, transcription_config=config()) as session,
    ):
        for chunk in list(pcm_chunks(synthesize(WORDS), FORMAT, 0.1))[:6]:
            session.send_audio(chunk)
        deadline = time.monotonic() + 10
        while not session.core.finished and time.monotonic() < deadline:
            time.sleep(0.01)  # never calls anything that would raise it


def test_an_exception_in_the_block_comes_out_as_itself(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    with (
        pytest.raises(KeyError),
        smproto_sync.connect(server.url, transcription_config=config()) as session,
    ):
        session.send_audio(b"\x00\x00" * 1600)
        raise KeyError("the application's own error")
    assert session.state.name == "CLOSED"


def test_handshake_401_is_an_authentication_error(servers: ServerThread) -> None:
    right = secret("right")
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=[right])
    with (
        pytest.raises(AuthenticationError) as info,
        smproto_sync.connect(server.url, transcription_config=config()),
    ):
        pass
    assert info.value.status == 401 and not info.value.retryable
    with (
        pytest.raises(AuthenticationError),  # a wrong key: not_authorised in band
        smproto_sync.connect(server.url, api_key=secret("wrong"), transcription_config=config()),
    ):
        pass
    with smproto_sync.connect(server.url, api_key=right, transcription_config=config()) as s:
        s.end_of_stream()
        assert list(s)[-1].__class__ is EndOfTranscript


def test_other_handshake_failures(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    with (
        pytest.raises(HandshakeRejected) as rejected,
        smproto_sync.connect(server.url.replace("/v2", "/nope"), transcription_config=config()),
    ):
        pass
    assert rejected.value.status == 404 and not rejected.value.retryable
    with (
        pytest.raises(ConnectionFailed) as refused,
        smproto_sync.connect("ws://127.0.0.1:9/v2", transcription_config=config()),
    ):
        pass
    assert refused.value.retryable


def test_half_open_connection_is_detected_by_keepalive(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    # The proxy goes silent (forwards nothing, closes nothing) after the handshake.
    proxy = servers.proxy(server, [600], silence=True)
    start = time.monotonic()
    with pytest.raises((ConnectionLost, SessionTimeout)):
        run_session(
            f"ws://127.0.0.1:{proxy.port}/v2",
            synthesize(WORDS),
            reconnect=False,
            ping_interval=0.3,
            ping_timeout=0.5,
            close_timeout=0.5,
        )
    assert time.monotonic() - start < 10


def test_a_server_that_stops_reading_then_closes() -> None:
    """The server stops reading, then closes (1002), while the client writes a minute
    of audio into full TCP buffers. The writer thread is blocked, but nothing else is:
    the close is read and reported as itself, within ``close_timeout``."""
    from tests.reliability.hostile import Behaviour, HostileThread

    hostile = HostileThread()
    try:
        server = hostile.serve(Behaviour.STOP_READING_THEN_CLOSE, close_code=1002)
        logging.getLogger("smproto_sync.websockets").setLevel(logging.INFO)  # no frame logs
        start = time.monotonic()
        with pytest.raises(ConnectionLost) as info:
            run_session(
                server.url,
                synthesize(["hello", "world"] * 60),
                reconnect=False,
                max_audio_in_flight_seconds=60.0,
                close_timeout=0.5,
            )
        assert (info.value.code, info.value.retryable) == (1002, False)
        assert time.monotonic() - start < 5
    finally:
        logging.getLogger("smproto_sync.websockets").setLevel(logging.NOTSET)
        hostile.close()


# --------------------------------------------------------------------------- temporary keys


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (201, b'{"key_value": "temporary-key-1"}', None),
        (401, b'{"detail": "bad key"}', AuthenticationError),
        (201, b"<html>garbage</html>", ConnectionFailed),
    ],
)
def test_temporary_key(
    servers: ServerThread, status: int, body: bytes, error: type[Exception] | None
) -> None:
    long_lived = secret("long-lived")
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=["temporary-key-1"])
    with key_endpoint(KeyEndpoint(status, body)) as endpoint:
        options: dict[str, Any] = {
            "api_key": long_lived,
            "temporary_key": True,
            "management_url": f"http://127.0.0.1:{endpoint.port}",
        }
        if error is None:
            outcome = run_session(server.url, synthesize(["hello"]), **options)
            assert outcome.text() == "hello."
        else:
            with pytest.raises(error) as info:
                run_session(server.url, synthesize(["hello"]), **options)
            assert long_lived not in str(info.value)
            assert long_lived[:12] not in repr(info.value)
        request = endpoint.requests[0]
        assert request["path"] == "/v1/api_keys?type=rt"
        assert request["authorization"] == f"Bearer {long_lived}"
        assert request["body"] == {"ttl": 60}


# --------------------------------------------------------------------------- reconnecting

RECONNECT_WORDS = ["hello", "world", "the", "speech", "hello", "world"]


@pytest.mark.parametrize(
    "cuts",
    [[900], [2500], [5200], [1500, 300], [3000, 1200, 4000]],
    ids=lambda cuts: "-".join(map(str, cuts)),
)
def test_reconnect_loses_nothing(servers: ServerThread, cuts: list[int | None]) -> None:
    """The connection is cut after these byte counts (mid-message, or mid-handshake for
    the later ones); the transcript equals the undisturbed one, on one timeline."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(RECONNECT_WORDS, gap_seconds=0.3)
    reference = run_session(server.url, audio)
    proxy = servers.proxy(server, cuts)
    disturbed = run_session(f"ws://127.0.0.1:{proxy.port}/v2", audio, reconnect=FAST)
    assert disturbed.finals() == reference.finals()
    reconnects = [e for e in disturbed.events if isinstance(e, Reconnected)]
    assert len(reconnects) <= proxy.connections - 1
    assert proxy.connections > 1 and reconnects
    times = [start for _, start, _ in disturbed.finals()]
    assert times == sorted(times)


def test_a_rollover_moves_the_stream_without_loss(servers: ServerThread) -> None:
    """After ``max_session_seconds`` on one connection, the session opens the next one
    while the first still runs (two connections at once, each with its threads) and
    moves the stream over: every word once, on one timeline."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(RECONNECT_WORDS, gap_seconds=0.3)
    reference = run_session(server.url, audio)

    def pace(session: smproto_sync.Session, i: int) -> None:
        time.sleep(0.05)  # twice real time: the session lives long enough to roll over

    rolled = run_session(server.url, audio, during=pace, max_session_seconds=0.5)
    rollovers = [e for e in rolled.events if isinstance(e, RolledOver)]
    assert rollovers and [e.rollovers for e in rollovers] == list(range(1, len(rollovers) + 1))
    assert rolled.finals() == reference.finals()


def test_reconnect_off_raises_the_typed_error(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    proxy = servers.proxy(server, [1500])
    with pytest.raises(ConnectionLost) as info:
        run_session(f"ws://127.0.0.1:{proxy.port}/v2", synthesize(WORDS * 3), reconnect=False)
    assert info.value.retryable


# --------------------------------------------------------------------------- secrets


def test_the_api_key_never_shows(servers: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    key = secret("never-shows")
    server = servers.serve(recognizer=ScriptedRecognizer(), api_keys=[key])
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with smproto_sync.connect(server.url, api_key=key, transcription_config=config()) as session:
        texts += [repr(session), repr(session.connection), str(session.__dict__)]
        texts += [repr(ws.__dict__) for ws in session._sockets.values()]
        session.end_of_stream()
        texts += [repr(event) for event in session]
    with (
        pytest.raises(AuthenticationError) as info,
        smproto_sync.connect(server.url, api_key=key + "x", transcription_config=config()),
    ):
        pass
    texts += [str(info.value), repr(info.value)]
    assert "authorization" in caplog.text.lower()  # the handshake was logged, masked
    for text in [caplog.text, *texts]:
        assert key not in text
        assert key[:16] not in text  # not even a prefix


# --------------------------------------------------------------------------- leaving early


def test_leaving_the_block_early_closes_the_connection(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    with smproto_sync.connect(server.url, transcription_config=config()) as session:
        session.send_audio(b"\x00\x00" * 1600)
    assert session.state.name == "CLOSED"
    deadline = time.monotonic() + 5
    while server.active_sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_sessions == 0


def test_leaving_mid_stream_is_prompt(servers: ServerThread) -> None:
    """Breaking out of the iteration while a thread is still sending to a slow server:
    the block exits within ``close_timeout``, the sender is woken (with the typed
    error, not a hang), and the server's session ends."""
    server = servers.serve(recognizer=ScriptedRecognizer(feed_delay=0.05))
    raised: list[BaseException] = []
    with smproto_sync.connect(
        server.url,
        transcription_config=config(),
        max_audio_in_flight_seconds=0.5,
        close_timeout=1.0,
    ) as session:

        def send() -> None:
            try:
                for chunk in pcm_chunks(synthesize(WORDS * 4), FORMAT, 0.1):
                    session.send_audio(chunk)
            except Exception as exc:
                raised.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        for event in session:
            if isinstance(event, AudioAdded) and event.seq_no >= 3:
                break
        start = time.monotonic()
    assert time.monotonic() - start < 1.5
    sender.join(2)
    assert not sender.is_alive() and raised  # woken: the session is closed
    deadline = time.monotonic() + 5
    while server.active_sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_sessions == 0


def test_close_from_another_thread_ends_the_iteration(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    with smproto_sync.connect(server.url, transcription_config=config()) as session:
        timer = threading.Timer(0.2, session.close)
        timer.start()
        events = list(session)  # ends when the session is closed
        timer.join()
        assert not any(isinstance(e, EndOfTranscript) for e in events)
        assert session.state.name == "CLOSED"
