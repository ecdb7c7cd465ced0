"""The sans-IO client session (``smproto.session.ClientSession``), on a fake clock with
fake connections and servers (``tests.smproto.session_harness``): no event loop, no IO."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from smproto import LocalProtocolError, SendText, TranscriptionConfig
from smproto._state import SESSION_RULES, Outcome, SessionState
from smproto.actions import OpenConnection, RequestTemporaryKey, Transmit
from smproto.events import Reconnected, RolledOver, ServerInfo, ServerWarning
from smproto.session import (
    AuthenticationError,
    ClientSession,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    ReconnectPolicy,
    SessionError,
    SessionTimeout,
    TranscriptionError,
)
from tests.smproto.session_harness import OK, Fault, World, expected_words, frame, session
from tests.support import secret

FAST = ReconnectPolicy(jitter=0.0, slow_retry_delay=0.3)


def faults(**by_connection: Fault) -> Any:
    """Faults for connections ``c1``, ``c2``, ...; the others behave."""
    return lambda cid: by_connection.get(f"c{cid}", OK)


# --------------------------------------------------------------------------- whole sessions


def test_an_undisturbed_session() -> None:
    world = World(session())
    world.run()
    assert world.session.state is SessionState.CLOSED
    assert world.final_words() == expected_words(20)
    assert world.kinds()[0] == "RecognitionStarted" and world.kinds()[-1] == "EndOfTranscript"
    assert [cid for cid, _ in world.opened] == [1]
    assert world.session.failure is None and world.session.reconnects == 0


def test_a_dropped_connection_is_continued_without_loss() -> None:
    world = World(session(), faults=faults(c1=Fault(after=7)), final_every=3)
    world.run()
    assert world.final_words() == expected_words(20)
    assert [round(start, 6) for _, start, _ in world.finals()] == [k / 10 for k in range(20)]
    (event,) = [e for e in world.events if isinstance(e, Reconnected)]
    assert (event.attempt, event.reconnects) == (1, 1)
    assert event.gap_seconds == pytest.approx(0.5)  # the first backoff, no jitter
    # From frame 3 (the latest final, [3, 6), starts there: its words are context) to the
    # 10 frames sent by then (the 0.5 s window was full).
    assert event.replayed_seconds == pytest.approx(0.7)
    assert "dropped" in event.reason
    kinds = world.kinds()
    assert kinds[kinds.index("Reconnected") + 1] == "RecognitionStarted"


def test_words_decoded_again_differently_are_not_delivered_twice() -> None:
    """The server decodes the replayed audio again with times shifted by tens of ms, and
    the word at the cut as another word: still no word twice, none lost."""
    for seed in range(20):
        world = World(
            session(reconnect=FAST),
            faults=lambda cid: (
                Fault(after=5 + cid, shift=0.02, other_word=True)
                if cid < 4
                else Fault(shift=0.02, other_word=True)
            ),
            final_every=2,
            seed=seed,
        )
        world.run()
        assert world.final_words() == expected_words(20), seed
        assert world.session.reconnects == 3


@pytest.mark.parametrize(
    ("then", "slow"),
    [("close:4005", True), ("close:4013", True), ("close:1011", True), ("drop", False),
     ("error:quota_exceeded", True), ("error:job_error", True), ("error:internal_error", True),
     ("close:3000", False)],
)  # fmt: skip
def test_the_close_code_table_retries(then: str, slow: bool) -> None:
    """4005 (quota), 4013 (job error) and 1011 are retried after 5-10 s, as Speechmatics
    asks; other retryable failures after the normal backoff."""
    world = World(session(reconnect=ReconnectPolicy()), faults=faults(c1=Fault(after=4, then=then)))
    world.run()
    assert world.final_words() == expected_words(20)
    (_, failed_at), (_, reopened_at) = world.opened
    gap = reopened_at - failed_at
    if slow:
        assert 5.0 <= gap <= 10.0
    else:
        assert gap < 1.0


@pytest.mark.parametrize(
    ("then", "error", "retryable"),
    [
        ("close:4001", AuthenticationError, False),
        ("close:4003", ConnectionLost, False),
        ("close:4004", ConnectionLost, False),
        ("close:1002", ConnectionLost, False),
        ("error:not_allowed", TranscriptionError, False),
        ("error:invalid_config", TranscriptionError, False),
        ("error:not_authorised", AuthenticationError, False),
    ],
)
def test_the_close_code_table_never_retries(
    then: str, error: type[SessionError], retryable: bool
) -> None:
    world = World(session(), faults=faults(c1=Fault(after=4, then=then)))
    world.run()
    assert world.session.state is SessionState.FAILED
    failure = world.session.failure
    assert type(failure) is error and failure.retryable is retryable
    assert len(world.opened) == 1
    assert world.error is failure  # the application's next call raised it


def test_a_persistent_retryable_error_ends_within_the_budget() -> None:
    """Every connection is refused with quota_exceeded: the session gives up with that
    typed, retryable error within the retry budget (60 s), however many attempts the
    policy would allow."""
    world = World(
        session(reconnect=ReconnectPolicy(max_attempts=1000)),
        faults=lambda cid: (
            Fault(after=3, then="error:quota_exceeded")
            if cid == 1
            else Fault(start="quota_exceeded")
        ),
    )
    world.run(until=10_000)
    failure = world.session.failure
    assert isinstance(failure, TranscriptionError)
    assert (failure.type, failure.retryable) == ("quota_exceeded", True)
    assert "retry budget" in " ".join(getattr(failure, "__notes__", []))
    failed_at = world.opened[0][1] + 0.3
    assert world.now - failed_at <= 60.0
    assert 5 <= len(world.opened) <= 13  # 5-6 s apart


def test_the_budget_counts_attempts_that_never_open() -> None:
    world = World(
        session(reconnect=ReconnectPolicy(max_attempts=1000, jitter=0.0)),
        faults=lambda cid: Fault(after=3) if cid == 1 else Fault(refuse="timeout"),
    )
    world.run(until=10_000)
    assert isinstance(world.session.failure, SessionTimeout)
    assert world.now <= 0.3 + 60.0 + 1e-9


def test_acknowledging_the_replay_again_is_not_progress() -> None:
    """A server that acknowledges the replayed audio and then fails again makes no
    progress: the attempt count does not start again, so it cannot keep a session
    reconnecting for ever."""
    world = World(
        session(reconnect=ReconnectPolicy(max_attempts=3, jitter=0.0)),
        faults=lambda cid: Fault(after=6 if cid == 1 else 1, then="drop"),
        final_every=100,  # no final: every replay starts at frame 0
    )
    world.run(until=10_000)
    assert isinstance(world.session.failure, ConnectionLost)
    assert len(world.opened) == 4  # the first, then max_attempts


def test_progress_restarts_the_attempt_count() -> None:
    world = World(
        session(reconnect=ReconnectPolicy(max_attempts=1, jitter=0.0)),
        faults=lambda cid: Fault(after=8) if cid <= 3 else OK,
        final_every=2,
        frames_to_send=40,
        realtime=True,
    )
    world.run()
    assert world.final_words() == expected_words(40)
    assert world.session.reconnects == 3


# --------------------------------------------------------------------------- the first connection


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        (Fault(refuse="refused"), ConnectionFailed, None),
        (Fault(refuse="http:401"), AuthenticationError, 401),
        (Fault(refuse="http:404"), HandshakeRejected, 404),
        (Fault(refuse="http:503"), HandshakeRejected, 503),
        (Fault(refuse="timeout"), SessionTimeout, None),
        (Fault(start="quota_exceeded"), TranscriptionError, None),
    ],
)
def test_the_first_connection_fails_at_once(
    fault: Fault, error: type[SessionError], status: int | None
) -> None:
    world = World(session(), faults=faults(c1=fault))
    world.run()
    failure = world.session.failure
    assert type(failure) is error
    assert getattr(failure, "status", None) == status
    if isinstance(failure, HandshakeRejected):
        assert failure.retryable is (status == 503)
    assert len(world.opened) == 1 and world.session.ready


def test_the_first_connection_may_be_retried() -> None:
    world = World(
        session(reconnect=ReconnectPolicy(jitter=0.0, retry_first_connection=True)),
        faults=faults(c1=Fault(refuse="refused"), c2=Fault(start="quota_exceeded")),
    )
    world.run()
    assert world.final_words() == expected_words(20)
    assert not any(isinstance(e, Reconnected) for e in world.events)  # nothing to continue
    assert len(world.opened) == 3


# --------------------------------------------------------------------------- temporary keys


def _keyed(world_session: ClientSession) -> tuple[ClientSession, list[Any]]:
    world_session.start(now=0.0)
    return world_session, world_session.actions()


def test_temporary_keys_are_requested_for_every_connection() -> None:
    key = secret("long-lived")
    s, actions = _keyed(session(api_key=key, temporary_key=True))
    (request,) = actions
    assert isinstance(request, RequestTemporaryKey)
    assert request.request.header_dict()["Authorization"] == f"Bearer {key}"
    s.key_received(request.connection, 201, b'{"key_value": "temp-1"}', now=0.1)
    (open_,) = s.actions()
    assert isinstance(open_, OpenConnection)
    assert ("Authorization", "Bearer temp-1") in open_.headers
    assert key not in repr(open_) and "temp-1" not in repr(open_)


@pytest.mark.parametrize(
    ("status", "body", "error", "retryable"),
    [
        (401, b'{"detail": "no"}', AuthenticationError, False),
        (503, b"busy", HandshakeRejected, True),
        (400, b"bad", HandshakeRejected, False),
        (201, b"<html>", ConnectionFailed, False),
    ],
)
def test_temporary_key_errors(
    status: int, body: bytes, error: type[SessionError], retryable: bool
) -> None:
    key = secret("long-lived")
    s, (request,) = _keyed(session(api_key=key, temporary_key=True))
    s.key_received(request.connection, status, body + key.encode(), now=0.1)
    assert type(s.failure) is error and s.failure.retryable is retryable
    assert key not in str(s.failure)


def test_an_unreachable_key_endpoint() -> None:
    key = secret("long-lived")
    s, (request,) = _keyed(session(api_key=key, temporary_key=True))
    s.key_failed(request.connection, f"timed out with {key}", now=0.1)
    assert isinstance(s.failure, ConnectionFailed) and s.failure.retryable
    assert key not in str(s.failure)


# --------------------------------------------------------------------------- rolling over


def test_a_session_timeout_warning_rolls_over_before_the_cut() -> None:
    world = World(
        session(), faults=faults(c1=Fault(after=7, then="warn")), realtime=True, final_every=3
    )
    world.run()
    assert world.session.state is SessionState.CLOSED
    assert world.final_words() == expected_words(20)
    assert [cid for cid, _ in world.opened] == [1, 2]
    kinds = world.kinds()
    assert "Reconnected" not in kinds
    (event,) = [e for e in world.events if isinstance(e, RolledOver)]
    assert event.reason == "session_timeout" and event.rollovers == 1
    assert kinds[kinds.index("RolledOver") + 1] == "RecognitionStarted"
    assert any(isinstance(e, ServerWarning) for e in world.events)
    assert world.session.rollovers == 1


def test_the_old_connection_is_ended_with_end_of_stream() -> None:
    s = session()
    s.start(now=0.0)
    s.actions()
    s.connection_opened(1, now=0.0)
    s.receive_message(1, '{"message": "RecognitionStarted"}', now=0.1)
    s.send_audio(frame(0), now=0.1)
    s.receive_message(1, json.dumps({"message": "Warning", "type": "session_timeout"}), now=0.2)
    assert s.state is SessionState.ROLLING_OVER
    actions = s.actions()
    assert any(isinstance(a, OpenConnection) and a.connection == 2 for a in actions)
    s.send_audio(frame(1), now=0.3)  # still on the old connection
    s.connection_opened(2, now=0.3)
    s.receive_message(2, '{"message": "RecognitionStarted"}', now=0.4)
    assert s.state is SessionState.ACTIVE and s.connection_id == 2
    sent: dict[int, list[Any]] = {}
    for action in s.actions():
        if isinstance(action, Transmit):
            sent.setdefault(action.connection, []).extend(action.actions)
    end = [json.loads(a.text) for a in sent[1] if isinstance(a, SendText)]
    assert end == [{"message": "EndOfStream", "last_seq_no": 2}]
    assert len([a for a in sent[2] if not isinstance(a, SendText)]) == 2  # both frames replayed


def test_max_session_seconds_rolls_over() -> None:
    world = World(session(max_session_seconds=0.75), realtime=True, final_every=2)
    world.run()
    assert world.final_words() == expected_words(20)
    assert world.session.rollovers == 2
    assert all(isinstance(e, RolledOver) and e.reason == "max_session_seconds"
               for e in world.events if isinstance(e, RolledOver))  # fmt: skip


def test_a_rollover_that_cannot_open_is_tried_again_while_the_old_one_runs() -> None:
    world = World(
        session(reconnect=FAST),
        faults=faults(c1=Fault(after=3, then="warn"), c2=Fault(refuse="refused")),
        realtime=True,
    )
    world.run()
    assert world.final_words() == expected_words(20)
    assert [cid for cid, _ in world.opened] == [1, 2, 3]
    assert world.session.rollovers == 1 and world.session.reconnects == 0


def test_no_rollover_without_reconnect() -> None:
    world = World(
        session(reconnect=False), faults=faults(c1=Fault(after=3, then="warn")), realtime=True
    )
    world.run()
    assert world.final_words() == expected_words(20)
    assert len(world.opened) == 1


def test_the_end_of_the_stream_during_a_rollover_keeps_the_old_connection() -> None:
    world = World(
        session(),
        faults=faults(c1=Fault(after=19, then="warn"), c2=Fault(refuse="timeout")),
        realtime=True,
    )
    world.run()
    assert world.final_words() == expected_words(20)
    assert 2 in world.aborted and world.session.rollovers == 0


# --------------------------------------------------------------------------- ending


def test_the_end_of_the_stream_while_reconnecting_is_kept() -> None:
    world = World(session(), faults=faults(c1=Fault(after=20)), final_every=3)
    world.run()
    assert world.final_words() == expected_words(20)
    assert world.session.reconnects == 1


def test_close_aborts_every_connection() -> None:
    s = session()
    s.start(now=0.0)
    s.actions()
    s.connection_opened(1, now=0.0)
    s.receive_message(1, '{"message": "RecognitionStarted"}', now=0.1)
    s.receive_message(1, json.dumps({"message": "Warning", "type": "session_timeout"}), now=0.2)
    s.actions()
    s.close(now=0.3)
    assert s.state is SessionState.CLOSED and s.finished
    actions = s.actions()
    assert any(isinstance(a, Transmit) and a.connection == 1 for a in actions)  # its close
    assert any(getattr(a, "connection", None) == 2 and not isinstance(a, Transmit) for a in actions)
    with pytest.raises(LocalProtocolError):
        s.send_audio(frame(0))


# --------------------------------------------------------------------------- what drivers wait on


def test_commands_wait_while_reconnecting_and_raise_when_they_never_can() -> None:
    s = session(reconnect=FAST)
    s.start(now=0.0)
    s.actions()
    s.connection_opened(1, now=0.0)
    assert not s.ready and not s.check_send_audio()
    s.receive_message(1, '{"message": "RecognitionStarted"}', now=0.1)
    assert s.ready and s.check_send_audio() and s.check_command("force_end_of_utterance")
    s.connection_closed(1, None, now=0.2)
    assert s.state is SessionState.BACKING_OFF
    assert not s.check_send_audio() and not s.wake_sender
    assert not s.check_command("get_speakers")
    with pytest.raises(LocalProtocolError, match="connection is being made"):
        s.send_audio(frame(0))
    s.end_of_stream()  # remembered
    s.close()
    with pytest.raises(LocalProtocolError):
        s.check_send_audio()


def test_a_failed_session_raises_its_failure_from_every_command() -> None:
    world = World(session(), faults=faults(c1=Fault(after=2, then="error:invalid_config")))
    world.run()
    failure = world.session.failure
    assert isinstance(failure, TranscriptionError)
    for call in (
        lambda: world.session.send_audio(frame(0)),
        world.session.end_of_stream,
        lambda: world.session.check_command("get_speakers"),
    ):
        with pytest.raises(TranscriptionError) as info:
            call()
        assert info.value is failure


def test_reading_pauses_while_the_application_does_not_read() -> None:
    s = session(event_queue_size=2)
    s.start(now=0.0)
    s.actions()
    s.connection_opened(1, now=0.0)
    s.receive_message(1, '{"message": "RecognitionStarted"}', now=0.1)
    for i in range(20):
        s.receive_message(
            1, json.dumps({"message": "Info", "type": "x", "reason": str(i)}), now=0.2
        )
    assert s.reading_paused
    # What the driver had read before it paused is held, unparsed: the backlog stays
    # bounded by eight times its limit.
    assert len(s._backlog) == 16
    s.connection_closed(1, 1000, now=0.3)  # held too, after the messages before it
    assert s.state is SessionState.ACTIVE
    reasons = []
    while (event := s.next_event()) is not None:
        if isinstance(event, ServerInfo):
            reasons.append(event.reason)
    assert reasons == [str(i) for i in range(20)]  # all of them, in order
    assert s.state is SessionState.BACKING_OFF  # the close came after them


def test_the_api_key_never_shows() -> None:
    key = secret("session-key")
    s = session(api_key=key)
    s.start(now=0.0)
    actions = s.actions()
    texts = [repr(s), repr(actions), str(s.__dict__)]
    s.open_failed(1, f"refused for {key}", now=0.1, status=401, body=f"bad key {key}".encode())
    texts.append(str(s.failure))
    for text in texts:
        assert key not in text
        assert key[:12] not in text


def test_invalid_settings_are_refused_at_once() -> None:
    config = TranscriptionConfig(language="en")
    with pytest.raises(ValueError):
        ClientSession("http://nope", transcription_config=config)
    with pytest.raises(ValueError):
        ClientSession("ws://x/v2", transcription_config=config, open_timeout=0)
    with pytest.raises(ValueError):
        ClientSession("ws://x/v2", transcription_config=config, temporary_key=True)
    with pytest.raises(ValueError):
        ClientSession(
            "ws://x/v2", transcription_config=config, extra_headers={"Authorization": "x"}
        )
    with pytest.raises(TypeError):
        ClientSession("ws://x/v2", transcription_config=config, reconnect=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ReconnectPolicy(retry_budget=-1)


# --------------------------------------------------------------------------- the rules table


def _session_in(state: SessionState) -> ClientSession:
    s = session(reconnect=FAST, rng=random.Random(0))
    if state is SessionState.IDLE:
        return s
    s.start(now=0.0)
    s.actions()
    if state is SessionState.OPENING:
        return s
    s.connection_opened(1, now=0.0)
    s.receive_message(1, '{"message": "RecognitionStarted"}', now=0.1)
    s.actions()
    if state is SessionState.ACTIVE:
        return s
    if state is SessionState.ROLLING_OVER:
        s.receive_message(1, json.dumps({"message": "Warning", "type": "session_timeout"}), now=0.2)
    elif state is SessionState.BACKING_OFF:
        s.connection_closed(1, None, now=0.2)
    elif state is SessionState.DRAINING:
        s.end_of_stream(now=0.2)
    elif state is SessionState.CLOSED:
        s.close(now=0.2)
    elif state is SessionState.FAILED:
        s.receive_message(1, json.dumps({"message": "Error", "type": "invalid_config"}), now=0.2)
    assert s.state is state
    s.actions()
    return s


COMMANDS: dict[str, Any] = {
    "send_audio": lambda s: s.send_audio(frame(0)),
    "send_channel_audio": lambda s: s.send_channel_audio("a", frame(0)),
    "set_recognition_config": lambda s: s.set_recognition_config(max_delay=2.0),
    "force_end_of_utterance": lambda s: s.force_end_of_utterance(),
    "end_of_channel": lambda s: s.end_of_channel("a"),
    "get_speakers": lambda s: s.get_speakers(),
    "end_of_stream": lambda s: s.end_of_stream(),
    "close": lambda s: s.close(),
    "start": lambda s: s.start(now=1.0),
}


@pytest.mark.parametrize("state", list(SessionState), ids=lambda s: s.name)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_cell(state: SessionState, name: str) -> None:
    """Each command in each session state does what the table says (the channel
    commands on a single-channel session are the engine's to refuse)."""
    s = _session_in(state)
    rule = SESSION_RULES[name][state]
    apply = COMMANDS[name]
    if rule.outcome is Outcome.FAILURE:
        with pytest.raises(SessionError):
            apply(s)
        assert s.state is state
    elif rule.outcome in (Outcome.LOCAL_ERROR, Outcome.WAIT):
        with pytest.raises(LocalProtocolError):
            apply(s)
        assert s.state is state
        if name != "start":
            assert s.check_command(name) is False if rule.outcome is Outcome.WAIT else True
    elif rule.outcome is Outcome.IGNORE:
        apply(s)
        assert s.state is state and s.actions() == []
    else:
        apply(s)
