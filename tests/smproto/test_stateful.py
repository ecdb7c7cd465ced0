"""Random sequences of commands and server messages, with a ``transitions`` machine as
the oracle for the engine's state, and invariants on seq_no, acks and audio in flight.

The oracle is a separate ``transitions.Machine`` built from the declared transitions
table; which trigger (if any) each input should fire is written out here, independently
of the engine's rules table.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from transitions import Machine

from smproto import (
    ClientConnection,
    CloseTransport,
    FailureKind,
    LocalProtocolError,
    RemoteProtocolError,
    SendText,
    State,
    TranscriptionConfig,
)
from smproto._state import CLIENT_TRANSITIONS

CONNECTING = State.CONNECTING
AWAITING = State.AWAITING_RECOGNITION_STARTED
STREAMING = State.STREAMING
DRAINING = State.DRAINING
CLOSED = State.CLOSED
FAILED = State.FAILED
LIVE = {CONNECTING, AWAITING, STREAMING, DRAINING}
TERMINAL = {CLOSED, FAILED}

# What an input should do: a trigger name, "ok" (no state change), "ignore", "local"
# (LocalProtocolError) or "remote" (RemoteProtocolError, then FAILED).
Expect = str


def session_message(state: State) -> Expect:
    """A transcript, ack, translation, ... from the server."""
    return {CONNECTING: "local", AWAITING: "remote", STREAMING: "ok", DRAINING: "ok"}.get(
        state, "ignore"
    )


def notice(state: State) -> Expect:
    """Info or an ordinary Warning: fine at any time after the connection opened."""
    return "local" if state is CONNECTING else ("ok" if state in LIVE else "ignore")


class Oracle:
    state: State


class ClientMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = ClientConnection(
            TranscriptionConfig(language="en", enable_partials=True),
            recognition_started_timeout=5.0,
            ack_timeout=3.0,
            drain_timeout=8.0,
            max_audio_in_flight_seconds=0.5,
        )
        self.oracle = Oracle()
        self.machine = Machine(
            model=self.oracle,
            states=State,
            transitions=CLIENT_TRANSITIONS,
            initial=CONNECTING,
            auto_transitions=False,
        )
        self.now = 0.0
        self.sent = 0
        self.acked = 0
        self.bytes_sent = 0
        self.frame_sizes: list[int] = []
        self.steps = 0
        self.patience = 0

    # ------------------------------------------------------------------ helpers

    def _expect(self, expect: Expect, action: Any) -> None:
        before = self.conn.state
        assert before is self.oracle.state
        if expect == "local":
            try:
                action()
            except LocalProtocolError as exc:
                assert before.name in str(exc)
            else:
                raise AssertionError(f"expected LocalProtocolError in {before}")
            assert self.conn.state is before
            return
        if expect == "remote":
            try:
                action()
            except RemoteProtocolError:
                pass
            else:
                raise AssertionError(f"expected RemoteProtocolError in {before}")
            self.oracle.trigger("fail")  # type: ignore[attr-defined]
            assert self.conn.failure is not None
            assert self.conn.failure.kind is FailureKind.REMOTE_PROTOCOL_ERROR
            assert isinstance(self.conn.actions()[-1], CloseTransport)
            return
        action()
        if expect not in ("ok", "ignore"):
            self.oracle.trigger(expect)  # type: ignore[attr-defined]

    def _receive(self, message: dict[str, Any] | str | bytes) -> None:
        data = json.dumps(message) if isinstance(message, dict) else message
        self.now += 0.01
        self.conn.receive_message(data, now=self.now)

    def _record_actions(self) -> None:
        pending = self.conn.has_actions
        actions = self.conn.actions()
        assert pending == bool(actions) and not self.conn.has_actions
        for action in actions:
            if isinstance(action, SendText):
                msg = json.loads(action.text)
                if msg["message"] == "EndOfStream":
                    assert msg["last_seq_no"] == self.sent

    # -------------------------------------------------------------------- rules

    @initialize(
        advance=st.sampled_from(["none", "opened", "streaming", "streaming", "streaming"]),
        patience=st.sampled_from([0, 5, 10, 20]),
    )
    def setup(self, advance: str, patience: int) -> None:
        """Most examples start mid-session (through the same rules as later steps), and
        the inputs that end a session (errors, closes, timeouts, bad acks) wait
        ``patience`` steps: a walk from CONNECTING mostly ended in FAILED or CLOSED
        within a few steps, and the invariants on seq_no, acks and audio in flight only
        bite while streaming."""
        self.patience = patience
        if advance == "none":
            return
        self.open()
        if advance == "streaming":
            self.recognition_started()

    @rule(frames=st.lists(st.integers(1, 3200), min_size=1, max_size=8), ack=st.booleans())
    def stream_some(self, frames: list[int], ack: bool) -> None:
        """A stretch of ordinary streaming: frames while the window has room, then (maybe)
        the server's acks for all of them, in order."""
        if self.oracle.state is not STREAMING:
            return
        for size in frames:
            if self.conn.audio_window_full:
                break
            self.send_audio(size)
        if ack:
            for seq_no in range(self.acked + 1, self.sent + 1):
                self._expect(
                    "ok", lambda n=seq_no: self._receive({"message": "AudioAdded", "seq_no": n})
                )
                self.acked = seq_no

    @rule()
    def open(self) -> None:
        state = self.oracle.state
        self._expect(
            "open" if state is CONNECTING else "local",
            lambda: self.conn.connection_opened(now=self.now),
        )

    @precondition(lambda self: self.steps >= self.patience or self.oracle.state is AWAITING)
    @rule()
    def recognition_started(self) -> None:
        state = self.oracle.state
        expect = {
            CONNECTING: "local",
            AWAITING: "start",
            STREAMING: "remote",
            DRAINING: "remote",
        }.get(state, "ignore")
        self._expect(expect, lambda: self._receive({"message": "RecognitionStarted", "id": "x"}))

    @rule(size=st.integers(1, 8000))
    def send_audio(self, size: int) -> None:
        state = self.oracle.state

        def send() -> None:
            seq = self.conn.send_audio(b"\x00" * size, now=self.now)
            self.sent += 1
            self.bytes_sent += size
            self.frame_sizes.append(size)
            assert seq == self.sent

        self._expect("ok" if state is STREAMING else "local", send)

    @precondition(lambda self: self.steps >= self.patience or self.oracle.state is not AWAITING)
    @rule(data=st.data())
    def valid_ack(self, data: st.DataObject) -> None:
        state = self.oracle.state
        seq_no = data.draw(st.integers(self.acked, self.sent)) if state in LIVE else 1

        def ack() -> None:
            self._receive({"message": "AudioAdded", "seq_no": seq_no})
            if self.conn.state in (STREAMING, DRAINING):
                self.acked = max(self.acked, seq_no)

        self._expect(session_message(state), ack)

    @precondition(lambda self: self.steps >= self.patience)
    @rule(beyond=st.integers(1, 5))
    def ack_beyond_sent(self, beyond: int) -> None:
        expect = session_message(self.oracle.state)
        if expect == "ok":
            expect = "remote"
        self._expect(
            expect, lambda: self._receive({"message": "AudioAdded", "seq_no": self.sent + beyond})
        )

    @precondition(lambda self: self.steps >= self.patience)
    @precondition(lambda self: self.acked > 0)
    @rule()
    def ack_backwards(self) -> None:
        expect = session_message(self.oracle.state)
        if expect == "ok":
            expect = "remote"
        self._expect(
            expect, lambda: self._receive({"message": "AudioAdded", "seq_no": self.acked - 1})
        )

    @precondition(lambda self: self.steps >= self.patience or self.oracle.state is not AWAITING)
    @rule(final=st.booleans(), words=st.integers(0, 3))
    def transcript(self, final: bool, words: int) -> None:
        results = [
            {
                "type": "word",
                "start_time": i * 0.1,
                "end_time": i * 0.1 + 0.1,
                "alternatives": [{"content": f"w{i}", "confidence": 1.0}],
            }
            for i in range(words)
        ]
        message = {
            "message": "AddTranscript" if final else "AddPartialTranscript",
            "results": results,
            "metadata": {"start_time": 0.0, "end_time": words * 0.1, "transcript": ""},
        }
        self._expect(session_message(self.oracle.state), lambda: self._receive(message))

    @rule(kind=st.sampled_from(["Info", "Warning"]))
    def info_or_warning(self, kind: str) -> None:
        message = {"message": kind, "type": "recognition_quality", "reason": "r"}
        self._expect(notice(self.oracle.state), lambda: self._receive(message))

    @precondition(lambda self: self.steps >= self.patience)
    @rule()
    def duration_limit(self) -> None:
        state = self.oracle.state
        expect = "drain" if state is STREAMING else notice(state)
        message = {"message": "Warning", "type": "duration_limit_exceeded", "reason": "limit"}
        self._expect(expect, lambda: self._receive(message))

    @precondition(lambda self: self.steps >= self.patience)
    @rule(etype=st.sampled_from(["invalid_config", "quota_exceeded", "job_error"]))
    def server_error(self, etype: str) -> None:
        state = self.oracle.state
        expect = "local" if state is CONNECTING else ("fail" if state in LIVE else "ignore")
        self._expect(
            expect, lambda: self._receive({"message": "Error", "type": etype, "reason": "x"})
        )
        if expect == "fail":
            assert self.conn.failure is not None
            assert self.conn.failure.kind is FailureKind.SERVER_ERROR

    @rule()
    def unknown_message(self) -> None:
        self._expect(
            notice(self.oracle.state), lambda: self._receive({"message": "Future", "x": 1})
        )

    @precondition(lambda self: self.steps >= self.patience)
    @rule(data=st.sampled_from(["{oops", "[]", b"\x00\x01", '{"message": 3}']))
    def garbage(self, data: str | bytes) -> None:
        state = self.oracle.state
        expect = {CONNECTING: "local"}.get(state, "remote" if state in LIVE else "ignore")
        self._expect(expect, lambda: self._receive(data))

    @rule()
    def end_of_stream(self) -> None:
        state = self.oracle.state
        expect = {STREAMING: "drain", DRAINING: "ignore"}.get(state, "local")
        self._expect(expect, lambda: self.conn.end_of_stream(now=self.now))

    @precondition(lambda self: self.steps >= self.patience)
    @rule()
    def end_of_transcript(self) -> None:
        state = self.oracle.state
        expect = {
            CONNECTING: "local",
            AWAITING: "remote",
            STREAMING: "remote",
            DRAINING: "finish",
        }.get(state, "ignore")
        self._expect(expect, lambda: self._receive({"message": "EndOfTranscript"}))

    @rule()
    def mid_session_commands(self) -> None:
        state = self.oracle.state

        def commands() -> None:
            self.conn.set_recognition_config(max_delay=1.5)
            self.conn.force_end_of_utterance()

        self._expect("ok" if state is STREAMING else "local", commands)

    @rule()
    def get_speakers(self) -> None:
        state = self.oracle.state
        self._expect("ok" if state in (STREAMING, DRAINING) else "local", self.conn.get_speakers)

    @precondition(lambda self: self.steps >= self.patience)
    @rule()
    def close(self) -> None:
        self._expect("close" if self.oracle.state in LIVE else "ignore", self.conn.close)

    @precondition(lambda self: self.steps >= self.patience)
    @rule(code=st.sampled_from([None, 1000, 1006, 4001]))
    def connection_closed(self, code: int | None) -> None:
        expect = "fail" if self.oracle.state in LIVE else "ok"
        self._expect(expect, lambda: self.conn.connection_closed(code, "", now=self.now))

    @precondition(lambda self: self.steps >= self.patience)
    @rule(dt=st.floats(0.0, 10.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        deadline = self.conn.get_timer()
        state = self.oracle.state
        expect = "fail" if deadline is not None and self.now >= deadline else "ok"
        self._expect(expect, lambda: self.conn.handle_timer(now=self.now))
        if expect == "fail":
            assert state in (AWAITING, STREAMING, DRAINING)
            assert self.conn.failure is not None and self.conn.failure.kind is FailureKind.TIMEOUT

    # --------------------------------------------------------------- invariants

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    @invariant()
    def states_agree(self) -> None:
        assert self.conn.state is self.oracle.state

    @invariant()
    def acks_and_flight(self) -> None:
        self._record_actions()
        conn = self.conn
        assert 0 <= conn.frames_acknowledged <= conn.frames_sent == self.sent
        inflight = conn.audio_in_flight
        assert inflight.frames == self.sent - conn.frames_acknowledged >= 0
        assert inflight.bytes == sum(self.frame_sizes[conn.frames_acknowledged :])
        assert inflight.seconds == inflight.bytes / 32000

    @invariant()
    def failure_only_when_failed(self) -> None:
        assert (self.conn.failure is not None) == (self.conn.state is FAILED)

    @invariant()
    def no_timer_when_finished(self) -> None:
        if self.conn.state in TERMINAL or self.conn.state is CONNECTING:
            assert self.conn.get_timer() is None

    @invariant()
    def events_are_typed(self) -> None:
        from smproto.events import Event

        assert all(isinstance(e, Event) for e in self.conn.events())


TestClientMachine = ClientMachine.TestCase
