"""What drivers share, with no IO: typed errors, the reconnect policy, the event backlog."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import Failure, FailureKind, Result
from smproto.events import (
    AddPartialTranscript,
    AddPartialTranslation,
    AddTranscript,
    AudioAdded,
    EndOfTranscript,
    Event,
)
from smproto.session import (
    AuthenticationError,
    ConnectionLost,
    EventBacklog,
    ProtocolViolation,
    ReconnectAttempts,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    TranscriptionError,
    error_for_failure,
)


def _server(error_type: str, retryable: bool) -> Failure:
    return Failure(
        FailureKind.SERVER_ERROR, f"server error {error_type}: x", retryable, error_type=error_type
    )


@pytest.mark.parametrize(
    ("failure", "kind", "retryable"),
    [
        (_server("quota_exceeded", True), TranscriptionError, True),
        (_server("invalid_config", False), TranscriptionError, False),
        (_server("not_authorised", False), AuthenticationError, False),
        (Failure(FailureKind.TIMEOUT, "no ack", True, timer="ack"), SessionTimeout, True),
        (Failure(FailureKind.REMOTE_PROTOCOL_ERROR, "bad", False), ProtocolViolation, False),
        (Failure(FailureKind.CONNECTION_LOST, "gone", True, close_code=1006), ConnectionLost, True),
        (
            Failure(FailureKind.CONNECTION_LOST, "refused", False, close_code=4001),
            AuthenticationError,
            False,
        ),
    ],
)
def test_error_for_failure(failure: Failure, kind: type[SessionError], retryable: bool) -> None:
    error = error_for_failure(failure)
    assert type(error) is kind and error.retryable is retryable


def test_transcription_error_keeps_type_and_reason() -> None:
    failure = Failure(
        FailureKind.SERVER_ERROR,
        "server error job_error: worker died",
        True,
        error_type="job_error",
    )
    error = error_for_failure(failure)
    assert isinstance(error, TranscriptionError)
    assert (error.type, error.reason) == ("job_error", "worker died")
    assert str(error) == "the server reported job_error: worker died"


def test_reconnect_policy() -> None:
    policy = ReconnectPolicy(max_attempts=3, initial_delay=0.5, max_delay=3.0, jitter=0.0)
    lost = ConnectionLost("gone", code=None, retryable=True)
    assert [policy.delay(lost, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.should_retry(lost, 3) and not policy.should_retry(lost, 4)
    assert not policy.should_retry(ProtocolViolation("bad"), 1)
    quota = TranscriptionError("quota_exceeded", "busy", retryable=True)
    assert policy.delay(quota, 1) == 5.0  # Speechmatics asks for 5-10 s
    assert not ReconnectPolicy(max_attempts=0).should_retry(lost, 1)
    jittery = ReconnectPolicy(initial_delay=1.0, jitter=0.2)
    delays = {jittery.delay(lost, 1, random.Random(seed)) for seed in range(20)}
    assert all(0.8 <= d <= 1.2 for d in delays) and len(delays) > 1
    with pytest.raises(ValueError):
        ReconnectPolicy(max_attempts=-1)


def _final(text: str, channel: str | None = None) -> AddTranscript:
    return AddTranscript((Result("word", 0, 1),), 0, 1, channel, False, None, " ", {"t": text})


def _partial(text: str, channel: str | None = None) -> AddPartialTranscript:
    return AddPartialTranscript((), 0, 1, channel, False, None, " ", {"t": text})


def test_backlog_drops_only_what_a_late_reader_does_not_need() -> None:
    backlog = EventBacklog(limit=3)
    for event in (_final("a"), _partial("b1"), AudioAdded(1, {})):
        backlog.push(event)
    assert len(backlog) == 3
    backlog.push(AudioAdded(2, {}))  # over the limit: acks go
    backlog.push(_partial("b2"))  # supersedes the unread partial b1
    backlog.push(_final("b"))  # finals always stay
    backlog.push(_partial("c1", channel="x"))  # another channel: nothing to supersede
    backlog.push(EndOfTranscript({}))
    order = [getattr(e, "raw", {}).get("t", type(e).__name__) for e in iter(backlog.pop, None)]
    assert order == ["a", "AudioAdded", "b2", "b", "c1", "EndOfTranscript"]
    assert backlog.dropped == 2


def test_a_final_protects_the_partial_before_it() -> None:
    backlog = EventBacklog(limit=1)
    backlog.push(_partial("p1"))
    backlog.push(_final("f"))
    backlog.push(_partial("p2"))  # p1 came before a final: it is not superseded by p2
    assert [e.raw["t"] for e in iter(backlog.pop, None)] == ["p1", "f", "p2"]  # type: ignore[attr-defined]


def test_translation_partials_supersede_per_language() -> None:
    backlog = EventBacklog(limit=1)
    backlog.push(AddPartialTranslation("de", (), None, {"t": "de1"}))
    backlog.push(AddPartialTranslation("fr", (), None, {"t": "fr1"}))
    backlog.push(AddPartialTranslation("de", (), None, {"t": "de2"}))
    assert [e.raw["t"] for e in iter(backlog.pop, None)] == ["fr1", "de2"]  # type: ignore[attr-defined]


events = st.lists(
    st.one_of(
        st.builds(_final, st.text(max_size=3), st.sampled_from([None, "x"])),
        st.builds(_partial, st.text(max_size=3), st.sampled_from([None, "x"])),
        st.builds(AudioAdded, st.integers(1, 9), st.just({})),
    ),
    max_size=60,
)


@given(events, st.integers(1, 10))
def test_backlog_never_loses_a_final_and_stays_bounded(pushed: list[Event], limit: int) -> None:
    backlog = EventBacklog(limit)
    for event in pushed:
        backlog.push(event)
    out = list(iter(backlog.pop, None))
    assert [e for e in out if isinstance(e, AddTranscript)] == [
        e for e in pushed if isinstance(e, AddTranscript)
    ]
    finals = sum(isinstance(e, AddTranscript) for e in pushed)
    # Past the limit only finals pile up, each with at most the partial just before it
    # (a partial is superseded unless a final came after it), plus one per channel.
    assert len(out) <= limit + 2 * finals + 2
    assert backlog.dropped == len(pushed) - len(out)


def test_reconnect_attempts_restart_only_on_new_progress() -> None:
    def failed(acknowledged: float) -> Any:
        return SimpleNamespace(audio_seconds_acknowledged=acknowledged)

    attempts = ReconnectAttempts()
    assert attempts.attempt == 0
    assert attempts.after_failure(failed(0.0)) == 1  # nothing acknowledged: no progress
    assert attempts.after_failure(failed(0.0)) == 2
    assert attempts.after_failure(failed(2.5)) == 1  # further than ever: count restarts
    # A server that acknowledges the replay (up to 2.5 s again) and fails makes none.
    assert attempts.after_failure(failed(2.5)) == 2
    assert attempts.after_failure(failed(1.0)) == 3
    assert attempts.after_failure(failed(2.6)) == 1
    assert attempts.attempt == 1
