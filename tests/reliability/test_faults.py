"""Faults injected between client and server, over whole sessions, on asyncio and trio.

With reconnect on, the final transcript always equals the undisturbed one (scripted
recogniser: the same audio gives the same words at the same times). With reconnect off,
the error is the right typed one. Every session is bounded in time.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smproto.session import (
    ConnectionFailed,
    ConnectionLost,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
)
from smproto_server.recognizers import ScriptedRecognizer
from smproto_server.recognizers.scripted import synthesize
from tests.drivers.netutil import ServerThread
from tests.drivers.test_client_drivers import Outcome, run_session
from tests.reliability.faults import Fault, FaultProxy

WORDS = ["hello", "world", "good", "morning", "thank", "you", "two", "three"]
AUDIO = synthesize(WORDS, gap_seconds=0.3)
FAST = ReconnectPolicy(
    max_attempts=8, initial_delay=0.01, max_delay=0.1, slow_retry_delay=0.1, jitter=0.0
)
#: Short keepalive so a silent (half-open) connection is noticed in about a second.
KEEPALIVE = {"ping_interval": 0.3, "ping_timeout": 0.6, "close_timeout": 0.5, "open_timeout": 3.0}
SESSION_BOUND = 30.0  # seconds: no session may take longer, whatever the faults
#: Whole sessions are slow examples: 10 a backend by default, 300 in the long profile.
EXAMPLES = 10 if settings.default.max_examples <= 1000 else 300
#: Each session is bounded by SESSION_BOUND; the whole test (all its examples) by this.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300 if EXAMPLES <= 10 else 3600)]

faults = st.one_of(
    st.builds(
        Fault,
        st.just("drop"),
        st.sampled_from(["up", "down"]),
        st.integers(0, 40_000),
    ),
    st.builds(
        Fault,
        st.just("stall"),
        st.sampled_from(["up", "down"]),
        st.integers(0, 40_000),
        st.floats(0.05, 1.5),
    ),
    st.builds(Fault, st.just("silence"), st.just("down"), st.integers(300, 40_000)),
)


class Servers:
    def __init__(self) -> None:
        self.thread = ServerThread()
        self.server = self.thread.serve(recognizer=ScriptedRecognizer())

    def proxy(self, plan: list[Fault]) -> FaultProxy:
        proxy = FaultProxy(self.server.port, list(plan))
        self.thread.loop_thread.run(proxy.start())
        return proxy

    def close(self) -> None:
        self.thread.close()


_SHARED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def shared() -> Iterator[dict[str, Any]]:
    servers = Servers()
    _SHARED["servers"] = servers
    try:
        yield _SHARED
    finally:
        servers.close()
        _SHARED.clear()


async def _reference(driver: ModuleType) -> Outcome:
    key = f"reference-{driver.__name__}"
    if key not in _SHARED:
        with anyio.fail_after(SESSION_BOUND):
            _SHARED[key] = await run_session(driver, _SHARED["servers"].server.url, AUDIO)
    reference: Outcome = _SHARED[key]
    return reference


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=st.lists(faults, min_size=1, max_size=3))
async def test_with_reconnect_the_transcript_is_undisturbed(
    driver: ModuleType, shared: dict[str, Any], plan: list[Fault]
) -> None:
    reference = await _reference(driver)
    # The first connection must get as far as RecognitionStarted (connect() reports a
    # failure before that itself): its fault, if any, comes after the first 1000 bytes.
    first = plan[0]
    if first.after_bytes < 1000:
        shifted = Fault(first.kind, first.direction, 1000 + first.after_bytes, first.seconds)
        plan = [shifted, *plan[1:]]
    proxy = shared["servers"].proxy(plan)
    with anyio.fail_after(SESSION_BOUND):
        disturbed = await run_session(driver, proxy.url, AUDIO, reconnect=FAST, **KEEPALIVE)
    assert disturbed.finals() == reference.finals()
    assert disturbed.text() == "hello world good morning thank you two three."


def _expected_error(fault: Fault, handshake_end: int | None) -> tuple[type[SessionError], ...]:
    if fault.kind == "drop":
        if handshake_end is None or (
            fault.direction == "down" and fault.after_bytes < handshake_end
        ):
            return (ConnectionFailed,)  # the upgrade never completed
        return (ConnectionLost,)
    # Silence: the keepalive notices (ConnectionLost), unless a protocol timer does first.
    return (ConnectionLost, SessionTimeout)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(fault=faults)
async def test_without_reconnect_the_error_is_typed_and_prompt(
    driver: ModuleType, shared: dict[str, Any], fault: Fault
) -> None:
    proxy = shared["servers"].proxy([fault])
    start = anyio.current_time()
    error: SessionError | None = None
    with anyio.fail_after(SESSION_BOUND):
        try:
            outcome = await run_session(driver, proxy.url, AUDIO, reconnect=False, **KEEPALIVE)
        except SessionError as exc:
            error = exc
    elapsed = anyio.current_time() - start
    fired = bool(proxy.log) and proxy.log[0].fired
    handshake_end = proxy.log[0].handshake_end if proxy.log else None
    if fault.kind == "stall" and fired and fault.seconds >= KEEPALIVE["ping_timeout"] - 0.1:
        # A stall longer than the keepalive tolerates looks like a dead connection.
        if error is not None:
            assert isinstance(error, ConnectionLost), f"{fault}: {error!r}"
            assert elapsed < 10
        return
    if fault.kind == "stall" or not fired:
        # A short stall only delays; a fault past the end of the session never fires.
        assert error is None, f"{fault}: {error!r}"
        assert outcome.text() == "hello world good morning thank you two three."
        return
    if error is None and driver.__name__ == "smproto_livekit" and len(proxy.log) == 2:
        # aiohttp (LiveKit's HTTP client) retries an upgrade request once, itself, when the
        # connection breaks before the answer (RFC 9112 allows it for a GET): with
        # reconnect off, only that can have made a second connection.
        assert not proxy.log[1].fired
        return
    assert error is not None, f"{fault} fired but the session succeeded"
    assert isinstance(error, _expected_error(fault, handshake_end)), f"{fault}: {error!r}"
    assert elapsed < 10
