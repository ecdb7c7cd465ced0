"""One behaviour, every client driver: asyncio, trio, sync and LiveKit (the last two
behind the async API of ``tests/drivers/facades.py``), over real WebSockets on
127.0.0.1 against ``smproto_server``.

The same failures give the same typed errors (every server ``Error`` type, an HTTP
error of the temporary-key endpoint), the same events (``Reconnected`` with its gap and
replay, ``RolledOver``), a rollover before the server's own cut that loses and repeats
nothing, no word twice when the server decodes replayed audio again differently, and a
persistent retryable error that ends within the retry budget. (Refused and 401
connections, timeouts and protocol violations are in ``test_client_drivers.py`` and
``tests/reliability/``, which run on every driver too.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smproto.config import StartRecognitionConfig
from smproto.events import AddTranscript, Reconnected, RolledOver
from smproto.session import (
    AuthenticationError,
    HandshakeRejected,
    ReconnectPolicy,
    SessionError,
    TranscriptionError,
)
from smproto_server import RecognizerError, ServerOptions
from smproto_server.recognizer import Output, Transcript, Utterance
from smproto_server.recognizers import VOCABULARY, ScriptedRecognizer
from smproto_server.recognizers.scripted import ScriptedSession, expected_timings, synthesize
from tests.drivers.netutil import KeyEndpoint, ServerThread, key_endpoint
from tests.drivers.test_client_drivers import Outcome, run_session
from tests.support import secret

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

FAST = ReconnectPolicy(initial_delay=0.01, max_delay=0.05, slow_retry_delay=0.05, jitter=0.0)
WORDS = ["hello", "world", "good", "morning", "thank", "you", "two", "three"]


def words_of(outcome: Outcome) -> list[str]:
    return [w for w, _, _ in outcome.finals() if w != "."]


# --------------------------------------------------------------------------- recognisers


class Watched(ScriptedRecognizer):
    """The scripted recogniser, recording each session and whether its stream was ended
    by the client (``EndOfStream``): a rolled-over connection must be."""

    def __init__(self, *, fail: tuple[int, str] | None = None, refuse_after: int | None = None):
        super().__init__()
        self.sessions: list[WatchedSession] = []
        self.fail = fail  # (after this many chunks, with this Error type)
        self.refuse_after = refuse_after  # sessions after this many: quota_exceeded

    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        if self.refuse_after is not None and len(self.sessions) >= self.refuse_after:
            raise RecognizerError("quota_exceeded", "too many sessions")
        session = WatchedSession(self, config)
        self.sessions.append(session)
        return session


class WatchedSession(ScriptedSession):
    def __init__(self, recognizer: Watched, config: StartRecognitionConfig) -> None:
        super().__init__(recognizer, config)
        self.watched = recognizer
        self.chunks = 0
        self.ended = False

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        self.chunks += 1
        fail = self.watched.fail
        if fail is not None and self.chunks == fail[0]:
            raise RecognizerError(fail[1], f"a {fail[1]} for the test")
        return await super().feed(audio, channel)

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        self.ended = True
        return await super().end_of_stream(channel)


class Redecoding(ScriptedRecognizer):
    """A recogniser that decodes replayed audio again *differently*, as real ones do:
    every session's times are shifted by its own 20-30 ms (either way), and every session
    after the first hears its first word as another word (the word at the cut, which the
    previous connection delivered)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.sessions = 0

    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        self.sessions += 1
        shift = self.rng.choice([-1, 1]) * self.rng.uniform(0.02, 0.03)
        return RedecodingSession(self, config, shift, mishear=self.sessions > 1)


class RedecodingSession(ScriptedSession):
    def __init__(
        self, recognizer: Redecoding, config: StartRecognitionConfig, shift: float, mishear: bool
    ) -> None:
        super().__init__(recognizer, config)
        self.shift = shift
        self.mishear = mishear
        self.first_word_done = False

    def _shift(self, t: float) -> float:
        return max(0.0, t + self.shift)

    def _redecode(self, outputs: Sequence[Output]) -> list[Output]:
        out: list[Output] = []
        for item in outputs:
            if isinstance(item, Transcript):
                results = []
                for r in item.results:
                    r = r._replace(
                        start_time=self._shift(r.start_time), end_time=self._shift(r.end_time)
                    )
                    if self.mishear and r.type == "word" and not self.first_word_done:
                        other = VOCABULARY[(VOCABULARY.index(r.content) + 7) % len(VOCABULARY)]
                        r = r._replace(alternatives=(r.alternatives[0]._replace(content=other),))
                    results.append(r)
                if item.final and any(r.type == "word" for r in results):
                    self.first_word_done = True
                item = replace(
                    item,
                    results=tuple(results),
                    start_time=self._shift(item.start_time),
                    end_time=self._shift(item.end_time),
                )
            elif isinstance(item, Utterance):
                item = replace(item, time=self._shift(item.time))
            out.append(item)
        return out

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        return self._redecode(await super().feed(audio, channel))

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        return self._redecode(await super().end_of_stream(channel))


# --------------------------------------------------------------------------- errors


ERROR_TYPES = [
    ("quota_exceeded", TranscriptionError, True),
    ("job_error", TranscriptionError, True),
    ("internal_error", TranscriptionError, True),
    ("invalid_config", TranscriptionError, False),
    ("invalid_audio_type", TranscriptionError, False),
    ("not_allowed", TranscriptionError, False),
    ("invalid_language", TranscriptionError, False),
    ("timelimit_exceeded", TranscriptionError, False),
    ("not_authorised", AuthenticationError, False),
]


@pytest.mark.parametrize(("error_type", "error", "retryable"), ERROR_TYPES)
async def test_every_server_error_is_the_same_typed_error(
    driver: Any, servers: ServerThread, error_type: str, error: type[SessionError], retryable: bool
) -> None:
    server = servers.serve(recognizer=Watched(fail=(4, error_type)))
    start = anyio.current_time()
    with pytest.raises(SessionError) as info:
        await run_session(driver, server.url, synthesize(WORDS), reconnect=False)
    # Promptly: the closing handshake completes (the server once left it to the client's
    # close_timeout, 5 s, when audio it never took was queued before the close frame).
    assert anyio.current_time() - start < 3.0
    failure = info.value
    assert type(failure) is error and failure.retryable is retryable
    if isinstance(failure, TranscriptionError):
        assert (failure.type, failure.reason) == (error_type, f"a {error_type} for the test")


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(503, HandshakeRejected, True), (429, HandshakeRejected, True),
     (400, HandshakeRejected, False), (401, AuthenticationError, False)],
)  # fmt: skip
async def test_an_http_error_of_the_key_endpoint(
    driver: Any, servers: ServerThread, status: int, error: type[SessionError], retryable: bool
) -> None:
    key = secret("key-endpoint")
    server = servers.serve(recognizer=ScriptedRecognizer())
    with (
        key_endpoint(KeyEndpoint(status, b'{"detail": "no"}')) as endpoint,
        pytest.raises(SessionError) as info,
    ):
        await run_session(
            driver,
            server.url,
            synthesize(["hello"]),
            api_key=key,
            temporary_key=True,
            management_url=f"http://127.0.0.1:{endpoint.port}",
            reconnect=False,
        )
    failure = info.value
    assert type(failure) is error and failure.retryable is retryable
    assert getattr(failure, "status", None) == status
    assert key not in str(failure)


# --------------------------------------------------------------------------- events


async def test_reconnected_says_the_gap_and_the_replay(driver: Any, servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    audio = synthesize(WORDS, gap_seconds=0.3)
    reference = await run_session(driver, server.url, audio)
    proxy = servers.proxy(server, [4000])
    disturbed = await run_session(driver, f"ws://127.0.0.1:{proxy.port}/v2", audio, reconnect=FAST)
    assert disturbed.finals() == reference.finals()
    (event,) = [e for e in disturbed.events if isinstance(e, Reconnected)]
    assert (event.attempt, event.reconnects) == (1, 1)
    assert 0 < event.gap_seconds < 5 and event.replayed_seconds > 0
    assert event.reason
    kinds = [type(e).__name__ for e in disturbed.events]
    assert kinds[kinds.index("Reconnected") + 1] == "RecognitionStarted"


async def test_a_rollover_before_the_server_cuts_the_session(
    driver: Any, servers: ServerThread
) -> None:
    """The server warns of its session limit (``Warning session_timeout``) one second in
    and cuts the session (``Error session_timeout``, close 1008) three seconds in. Each
    connection is rolled over before its cut: the next one opens while it runs, the old
    one is ended with ``EndOfStream``, and the transcript equals the undisturbed one,
    with no error and no reconnect."""
    audio = synthesize(WORDS, gap_seconds=0.3)  # about 5 s, sent at real time
    plain = servers.serve(recognizer=ScriptedRecognizer())
    reference = await run_session(driver, plain.url, audio)
    recognizer = Watched()
    limited = servers.serve(
        recognizer=recognizer,
        options=ServerOptions(session_timeout=3.0, session_warnings=(2.0,)),
    )
    outcome = await run_session(driver, limited.url, audio, realtime=True)
    assert outcome.finals() == reference.finals()
    rolled = [e for e in outcome.events if isinstance(e, RolledOver)]
    assert len(rolled) >= 2 and all(e.reason == "session_timeout" for e in rolled)
    assert not any(isinstance(e, Reconnected) for e in outcome.events)
    # Every server session but the last ended because the client ended its stream.
    assert len(recognizer.sessions) == len(rolled) + 1
    assert all(s.ended for s in recognizer.sessions)


# --------------------------------------------------------------------------- resume


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    first=st.integers(2500, 9000),
    later=st.lists(st.integers(1500, 9000), max_size=2),
    seed=st.integers(0, 2**16),
)
async def test_no_word_twice_when_the_server_decodes_again_differently(
    driver: Any, first: int, later: list[int], seed: int
) -> None:
    """Connections are cut after byte counts Hypothesis chooses; the server decodes the
    replayed audio again with times shifted by 20-30 ms and the word at the cut as
    another word. The transcript has every word once: none twice, none lost."""
    audio = synthesize(WORDS, gap_seconds=0.3)
    servers = ServerThread()
    try:
        server = servers.serve(recognizer=Redecoding(seed))
        proxy = servers.proxy(server, [first, *later])
        outcome = await run_session(
            driver, f"ws://127.0.0.1:{proxy.port}/v2", audio, reconnect=FAST
        )
    finally:
        servers.close()
    words = words_of(outcome)
    first_reconnect = next(
        (i for i, e in enumerate(outcome.events) if isinstance(e, Reconnected)), None
    )
    delivered_before = first_reconnect is not None and any(
        isinstance(e, AddTranscript) and e.results for e in outcome.events[:first_reconnect]
    )
    if first_reconnect is not None and not delivered_before and words[:1] != ["hello"]:
        # Cut before any final: the next connection's first word was never delivered,
        # and its "other word" is what the server said.
        words[0] = "hello"
    assert words == WORDS, (words, first, later)
    # Times within the server's shifts.
    starts = [start for w, start, _ in outcome.finals() if w != "."]
    for start, (expected, _) in zip(starts, expected_timings(WORDS, gap_seconds=0.3), strict=True):
        assert abs(start - expected) <= 0.031


# --------------------------------------------------------------------------- budget


async def test_a_persistent_retryable_error_ends_within_the_budget(
    driver: Any, servers: ServerThread
) -> None:
    """The first connection is cut; every connection after it is refused with
    ``quota_exceeded``: each driver ends the session with that typed, retryable error
    within the retry budget, whatever the policy's attempt count."""
    recognizer = Watched(refuse_after=1)
    server = servers.serve(recognizer=recognizer)
    proxy = servers.proxy(server, [4000])
    policy = ReconnectPolicy(
        max_attempts=1000, initial_delay=0.05, max_delay=0.2, slow_retry_delay=0.3,
        jitter=0.0, retry_budget=3.0,
    )  # fmt: skip
    start = anyio.current_time()
    with pytest.raises(TranscriptionError) as info:
        await run_session(
            driver, f"ws://127.0.0.1:{proxy.port}/v2", synthesize(WORDS * 3), reconnect=policy
        )
    elapsed = anyio.current_time() - start
    assert (info.value.type, info.value.retryable) == ("quota_exceeded", True)
    assert any("retry budget" in note for note in getattr(info.value, "__notes__", []))
    assert elapsed < 3.0 + 3.0  # the budget, and the first connection's audio
    assert 5 <= proxy.connections <= 12  # 0.3 s apart, for 3 s
