"""The session alone, on a fake clock, driven by Hypothesis through connection failures
at any point (every close code and error type of the table, refused and silent opens),
backoff, the retry budget, rollovers at any point and the end of the stream at any point.

A model written from the session's specification (``docs/reliability.md``,
``smproto.session``) predicts what the session must do: which connection it opens, and
when (to the backoff's exact delay: no jitter), which it abandons or closes and with
which code, the ``EndOfStream`` that ends a rolled-over connection, the frame a
continuing connection's replay starts at, the error it finally gives up with, the
``Reconnected`` and ``RolledOver`` events, and its next deadline. Its lifecycle is a
separate ``transitions`` machine built from the declared table, fired by the model:
the oracle for the session's ``state``. The transcript is checked throughout: no word
twice, in order; complete once the session closes after ``EndOfTranscript``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from transitions import Machine

from smproto import CloseTransport, SendBinary, SendText, TranscriptionConfig
from smproto._client import NON_RETRYABLE_CLOSE_CODES
from smproto._state import SESSION_TRANSITIONS, SessionState
from smproto.actions import AbortConnection, OpenConnection, Transmit
from smproto.events import AddTranscript, Reconnected, RolledOver, ServerError
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
from tests.smproto.session_harness import FRAME_SECONDS, frame, word_of

S = SessionState
POLICY = ReconnectPolicy(
    max_attempts=5,
    initial_delay=0.5,
    multiplier=2.0,
    max_delay=2.0,
    jitter=0.0,
    slow_retry_delay=3.0,
    retry_budget=6.0,
)
OPEN_TIMEOUT = 2.0
MAX_SESSION = 6.0
FINAL_EVERY = 2
RETRYABLE_TYPES = {"quota_exceeded", "job_error", "internal_error", "session_timeout"}
SLOW_TYPES = {"quota_exceeded", "job_error", "internal_error"}
SLOW_CODES = {4005, 4013, 1011}

# How a connection ends badly, from outside: the transport drops, the server closes with
# a code, or it sends an Error; by what the table says follows (one rule for each, so
# that every kind is tried often).
RETRIED = ["drop", "close:1001", "close:3000"]
RETRIED_SLOWLY = ["close:1011", "close:4005", "close:4013"]
FATAL = ["close:1002", "close:1008", "close:4001", "close:4003", "close:4004"]
ERRORS_RETRIED = ["error:quota_exceeded", "error:job_error", "error:internal_error",
                  "error:session_timeout"]  # fmt: skip
ERRORS_FATAL = ["error:invalid_config", "error:not_authorised", "error:not_allowed"]
# How an open goes (mostly well: a session needs connections that work to get anywhere).
OPENS = ["ok"] * 8 + ["refused", "http:503", "silent", "http:401", "http:404"]
STARTS = ["ok"] * 5 + ["never", "quota_exceeded", "invalid_config"]


@dataclass
class Server:
    """The server end of one connection: queues what it says, until delivered."""

    cid: int
    start: str  # "ok", "never", or an Error type that refuses StartRecognition
    frames: list[int] = field(default_factory=list)  # the application's frame numbers
    finalised: int = 0
    out: list[str] = field(default_factory=list)
    ended: bool = False

    def take(self, action: SendText | SendBinary) -> None:
        if isinstance(action, SendBinary):
            assert not self.ended
            k = word_of(action.data)
            # Contiguous: a replay then new audio, never a gap nor a repeat.
            assert not self.frames or k == self.frames[-1] + 1, (self.frames[-3:], k)
            self.frames.append(k)
            n = len(self.frames)
            self.out.append(json.dumps({"message": "AudioAdded", "seq_no": n}))
            if n - self.finalised >= FINAL_EVERY:
                self._final(self.finalised, n)
            return
        msg = json.loads(action.text)
        if msg["message"] == "StartRecognition":
            if self.start == "ok":
                self.out.append(json.dumps({"message": "RecognitionStarted", "id": str(self.cid)}))
            elif self.start != "never":
                self.out.append(json.dumps({"message": "Error", "type": self.start}))
        elif msg["message"] == "EndOfStream":
            assert msg["last_seq_no"] == len(self.frames)
            self.ended = True
            if len(self.frames) > self.finalised:
                self._final(self.finalised, len(self.frames))
            self.out.append(json.dumps({"message": "EndOfTranscript"}))

    def _final(self, first: int, last: int) -> None:
        results = [
            {
                "type": "word",
                "start_time": round(i * FRAME_SECONDS, 6),
                "end_time": round((i + 1) * FRAME_SECONDS, 6),
                "alternatives": [{"content": f"w{self.frames[i]}", "confidence": 1.0}],
            }
            for i in range(first, last)
        ]
        self.out.append(
            json.dumps(
                {
                    "message": "AddTranscript",
                    "results": results,
                    "metadata": {
                        "start_time": round(first * FRAME_SECONDS, 6),
                        "end_time": round(last * FRAME_SECONDS, 6),
                        "transcript": "",
                    },
                }
            )
        )
        self.finalised = last


@dataclass
class Conn:
    """What the model knows of one connection."""

    cid: int
    began: float
    phase: str = "opening"  # opening, open, started, retiring, gone
    start: str = "ok"
    base: int | None = None  # the application frame its first frame is (once started)
    acked: int = 0  # frames acknowledged on it
    last_final_start: int | None = None  # local frame index of the latest final's start


class Oracle:
    state: SessionState


class _Only:
    """A stand-in for ``st.data()`` that always picks connection ``cid``."""

    def __init__(self, cid: int) -> None:
        self.cid = cid

    def draw(self, strategy: Any) -> int:
        return self.cid


def expected_error(fault: str) -> tuple[type[SessionError], bool, bool]:
    """(type, retryable, slow) of the failure a fault is reported as."""
    kind, _, arg = fault.partition(":")
    if kind == "drop":
        return ConnectionLost, True, False
    if kind == "close":
        code = int(arg)
        if code == 4001:
            return AuthenticationError, False, False
        return ConnectionLost, code not in NON_RETRYABLE_CLOSE_CODES, code in SLOW_CODES
    if kind == "error":
        if arg == "not_authorised":
            return AuthenticationError, False, False
        return TranscriptionError, arg in RETRYABLE_TYPES, arg in SLOW_TYPES
    if kind == "refused":
        return ConnectionFailed, True, False
    if kind == "silent":
        return SessionTimeout, True, False
    status = int(arg)  # http
    if status in (401, 403):
        return AuthenticationError, False, False
    return HandshakeRejected, status == 429 or status >= 500, False


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.session = ClientSession(
            "ws://fake/v2",
            transcription_config=TranscriptionConfig(language="en"),
            reconnect=POLICY,
            open_timeout=OPEN_TIMEOUT,
            # Long engine timers: this machine is about the session's own decisions.
            recognition_started_timeout=1000.0,
            ack_timeout=1000.0,
            drain_timeout=1000.0,
            max_audio_in_flight_seconds=0.4,
            max_session_seconds=MAX_SESSION,
        )
        self.oracle = Oracle()
        self.machine = Machine(
            model=self.oracle,
            states=SessionState,
            transitions=SESSION_TRANSITIONS,
            initial=S.IDLE,
            auto_transitions=False,
        )
        self.servers: dict[int, Server] = {}
        self.conns: dict[int, Conn] = {}
        self.cur: int | None = None
        self.nxt: int | None = None
        self.next_id = 1
        self.sent = 0  # application frames given to the session
        self.words: list[int] = []  # final words delivered, as frame numbers
        # The model's reconnect bookkeeping.
        self.started_once = False
        self.stream_ended = False
        self.source: Conn | None = None  # the failed connection the next one continues
        self.attempt = 0
        self.furthest = 0
        self.outage_start: float | None = None
        self.budget_used = 0.0
        self.open_due: float | None = None
        self.last_error: tuple[type[SessionError], bool] | None = None
        self.rollover_at: float | None = None
        self.rollover_tries = 0
        self.reconnects = self.rollovers = 0
        self.failure: tuple[type[SessionError], bool] | None = None
        self.finished_cleanly = False
        # What the session must do next (checked by _perform).
        self.expect_open: list[int] = []
        self.expect_abort: set[int] = set()
        self.expect_close: dict[int, int] = {}
        self.expect_end_of_stream: set[int] = set()  # allowed (it may wait for a replay)
        self.expect_replay: dict[int, int] = {}  # connection → its first frame
        self.expect_events: list[type] = []

    # ------------------------------------------------------------------ the model

    def fire(self, trigger: str) -> None:
        getattr(self.oracle, trigger)()

    def open_new(self) -> int:
        cid = self.next_id
        self.next_id += 1
        self.conns[cid] = Conn(cid, self.now)
        self.expect_open.append(cid)
        return cid

    def abandon(self, cid: int) -> None:
        conn = self.conns[cid]
        if conn.phase == "opening":
            self.expect_abort.add(cid)
        elif conn.phase in ("open", "started", "retiring"):
            self.expect_close[cid] = 1000
        conn.phase = "gone"

    def replay_start(self, conn: Conn) -> int:
        assert conn.base is not None
        return conn.base + (conn.last_final_start or 0)

    def delay(self, attempt: int, slow: bool) -> float:
        base = min(POLICY.max_delay, POLICY.initial_delay * POLICY.multiplier ** (attempt - 1))
        return max(base, POLICY.slow_retry_delay) if slow else base

    def budget_deadline(self) -> float:
        assert self.outage_start is not None
        return self.outage_start + POLICY.retry_budget - self.budget_used

    def give_up(self, error: tuple[type[SessionError], bool]) -> None:
        self.failure = error
        self.fire("fail")
        for cid, conn in self.conns.items():
            if conn.phase in ("opening", "open", "started"):
                self.abandon(cid)
        self.cur = self.nxt = None
        self.open_due = None

    def current_failed(self, fault: str, *, engine_closes: int | None = None) -> None:
        """The current connection failed; ``engine_closes``: the close code the engine
        itself sends (after an Error it closes with 1000)."""
        assert self.cur is not None
        conn = self.conns[self.cur]
        error_type, retryable, slow = expected_error(fault)
        if engine_closes is not None:
            self.expect_close[conn.cid] = engine_closes
        started = conn.phase == "started"
        conn.phase = "gone"
        self.cur = None
        if started:
            self.source = conn
        if self.outage_start is None:
            self.outage_start = self.now if started else conn.began
        self.last_error = (error_type, retryable)
        if self.nxt is not None:
            self.abandon(self.nxt)
            self.nxt = None
        reached = (conn.base + conn.acked) if started else 0
        if reached > self.furthest:
            self.furthest, self.attempt = reached, 0
        self.attempt += 1
        if self.attempt == 1 and started:
            self.budget_used = 0.0
        if not self.started_once or not retryable or self.attempt > POLICY.max_attempts:
            self.give_up((error_type, retryable))
            return
        delay = self.delay(self.attempt, slow)
        if self.now + delay >= self.budget_deadline():
            self.give_up((error_type, retryable))
            return
        self.open_due = self.now + delay
        self.fire("back_off")

    def next_failed(self, fault: str) -> None:
        assert self.nxt is not None
        _, retryable, slow = expected_error(fault)
        self.abandon(self.nxt)
        self.nxt = None
        self.fire("rollover_failed")
        self.rollover_tries += 1
        if retryable and self.rollover_tries <= POLICY.max_attempts:
            self.rollover_at = self.now + self.delay(self.rollover_tries, slow)
        else:
            self.rollover_at = None

    def started(self, conn: Conn) -> None:
        """The model's view of RecognitionStarted on ``conn``."""
        conn.phase = "started"
        if conn.cid == self.nxt:  # a rollover: it takes over, the old one ends
            assert self.cur is not None
            old = self.conns[self.cur]
            conn.base = self.replay_start(old)
            self.expect_replay[conn.cid] = conn.base
            old.phase = "retiring"
            self.expect_end_of_stream.add(old.cid)
            self.cur, self.nxt = conn.cid, None
            self.rollovers += 1
            self.rollover_tries = 0
            self.expect_events.append(RolledOver)
            self.fire("rolled_over")
            self.rollover_at = self.now + MAX_SESSION
            return
        assert conn.cid == self.cur
        if self.source is not None:
            conn.base = self.replay_start(self.source)
            self.expect_replay[conn.cid] = conn.base
            self.source = None
            self.reconnects += 1
            self.expect_events.append(Reconnected)
        else:
            conn.base = 0
        if self.outage_start is not None:
            self.budget_used += self.now - self.outage_start
            self.outage_start = None
        self.started_once = True
        if self.stream_ended:
            self.expect_end_of_stream.add(conn.cid)
            self.fire("started_drained")
        else:
            self.fire("started")
        self.rollover_at = self.now + MAX_SESSION

    def next_deadline(self) -> float | None:
        """The session's own next deadline, as the model sees it."""
        best = math.inf
        for conn in self.conns.values():
            if conn.phase == "opening":
                best = min(best, conn.began + OPEN_TIMEOUT)
        state = self.oracle.state
        if state is S.BACKING_OFF and self.open_due is not None:
            best = min(best, self.open_due)
        if self.outage_start is not None and state in (S.OPENING, S.BACKING_OFF):
            best = min(best, self.budget_deadline())
        if state is S.ACTIVE and self.rollover_at is not None:
            best = min(best, self.rollover_at)
        return None if best == math.inf else best

    # ------------------------------------------------------------------ the driver's part

    def perform(self) -> None:
        """Carry out the session's actions, checking each against the model."""
        for action in self.session.actions():
            if isinstance(action, OpenConnection):
                assert self.expect_open, f"unexpected {action}"
                assert action.connection == self.expect_open.pop(0)
            elif isinstance(action, AbortConnection):
                assert action.connection in self.expect_abort, f"unexpected {action}"
                self.expect_abort.discard(action.connection)
            else:
                assert isinstance(action, Transmit)
                self.transmit(action)
        assert not self.expect_open, f"no OpenConnection for {self.expect_open}"
        assert not self.expect_abort, f"no AbortConnection for {self.expect_abort}"
        assert not self.expect_close, f"no close for {self.expect_close}"

    def transmit(self, transmit: Transmit) -> None:
        cid = transmit.connection
        server = self.servers.get(cid)
        for action in transmit.actions:
            if isinstance(action, CloseTransport):
                assert self.expect_close.pop(cid, None) == action.code, (cid, action)
                self.servers.pop(cid, None)
                self.session.connection_closed(cid, action.code, now=self.now)
                server = None
                continue
            assert server is not None, f"{action} on connection {cid}, which is gone"
            if isinstance(action, SendText) and '"EndOfStream"' in action.text:
                # Only where the model expects one (it may come after a replay).
                assert cid in self.expect_end_of_stream, f"EndOfStream on {cid}"
            if isinstance(action, SendBinary) and not server.frames and cid in self.expect_replay:
                assert word_of(action.data) == self.expect_replay.pop(cid), "replay start"
            server.take(action)

    def read_events(self) -> None:
        while (event := self.session.next_event()) is not None:
            if isinstance(event, AddTranscript):
                for r in event.results:
                    k = int(r.content[1:])
                    assert not self.words or k == self.words[-1] + 1, (self.words[-3:], k)
                    self.words.append(k)
            elif isinstance(event, Reconnected | RolledOver):
                assert self.expect_events and type(event) is self.expect_events.pop(0)
            assert not isinstance(event, ServerError)

    def step(self) -> None:
        self.perform()
        self.read_events()

    # ------------------------------------------------------------------ rules

    @initialize(mid_session=st.sampled_from([True, True, True, False]), frames=st.integers(0, 6))
    def start(self, mid_session: bool, frames: int) -> None:
        """Most examples start mid-session: a random walk from the first state otherwise
        spends most of its steps failing the first connection (which is not retried)."""
        self.session.start(now=self.now)
        self.fire("start")
        self.cur = self.open_new()
        self.step()
        if not mid_session:
            return
        cid = self.cur
        self.conns[cid].phase = "open"
        self.servers[cid] = Server(cid, "ok")
        self.session.connection_opened(cid, now=self.now)
        self.step()
        self.started(self.conns[cid])
        self.session.receive_message(cid, self.servers[cid].out.pop(0), now=self.now)
        self.step()
        for _ in range(frames):
            if self.session.check_send_audio():
                self.session.send_audio(frame(self.sent), now=self.now)
                self.sent += 1
        self.step()

    @precondition(lambda self: any(c.phase == "opening" for c in self.conns.values()))
    @rule(data=st.data(), outcome=st.sampled_from(OPENS), start=st.sampled_from(STARTS))
    def answer_an_open(self, data: st.DataObject, outcome: str, start: str) -> None:
        """The driver reports how an open went (and the server will answer its start)."""
        opening = sorted(c.cid for c in self.conns.values() if c.phase == "opening")
        cid = data.draw(st.sampled_from(opening))
        conn = self.conns[cid]
        if outcome == "silent":
            return  # never answers: the open timeout decides
        if outcome == "ok":
            conn.phase, conn.start = "open", start
            self.servers[cid] = Server(cid, start)
            self.session.connection_opened(cid, now=self.now)
        else:
            kind, _, status = outcome.partition(":")
            if kind == "refused":
                self.session.open_failed(cid, "refused", now=self.now)
            else:
                self.session.open_failed(cid, "", now=self.now, status=int(status))
            self.failed_before_start(cid, outcome)
        self.step()

    def failed_before_start(self, cid: int, fault: str) -> None:
        if cid == self.cur:
            self.current_failed(fault)
        elif cid == self.nxt:
            self.next_failed(fault)
        self.conns[cid].phase = "gone"

    @precondition(lambda self: any(s.out for s in self.servers.values()))
    @rule(data=st.data(), count=st.integers(1, 6))
    def deliver(self, data: st.DataObject, count: int) -> None:
        """Some of what a server said reaches the session."""
        cid = data.draw(st.sampled_from(sorted(c for c, s in self.servers.items() if s.out)))
        server = self.servers[cid]
        conn = self.conns[cid]
        for _ in range(count):
            if not server.out or self.servers.get(cid) is not server:
                break
            text = server.out.pop(0)
            msg = json.loads(text)
            kind = msg["message"]
            live = conn.phase in ("open", "started", "retiring")
            if live and kind == "RecognitionStarted":
                if cid in (self.cur, self.nxt):
                    self.started(conn)
            elif live and kind == "Error":
                fault = f"error:{msg['type']}"
                if cid == self.cur:
                    self.current_failed(fault, engine_closes=1000)
                elif cid == self.nxt:
                    self.next_failed(fault)
                    self.expect_close[cid] = 1000
                elif conn.phase == "retiring":
                    self.expect_close[cid] = 1000
                conn.phase = "gone"
            elif live and kind == "AudioAdded":
                conn.acked = msg["seq_no"]
            elif live and kind == "AddTranscript":
                conn.last_final_start = round(msg["metadata"]["start_time"] / FRAME_SECONDS)
            elif live and kind == "Warning" and cid == self.cur and conn.phase == "started":
                if self.oracle.state is S.ACTIVE and not self.stream_ended:
                    self.fire("roll_over")
                    self.rollover_at = None
                    self.nxt = self.open_new()
            elif live and kind == "EndOfTranscript":
                self.expect_close[cid] = 1000
                if cid == self.cur and self.oracle.state is S.DRAINING:
                    self.fire("finish")
                    self.finished_cleanly = True
                conn.phase = "gone"
            self.session.receive_message(cid, text, now=self.now)
            self.step()

    @precondition(lambda self: self.oracle.state in (S.ACTIVE, S.ROLLING_OVER))
    @rule(count=st.integers(1, 5))
    def send_audio(self, count: int) -> None:
        for _ in range(count):
            if not self.session.check_send_audio():
                break
            self.session.send_audio(frame(self.sent), now=self.now)
            self.sent += 1
        self.step()

    @precondition(
        lambda self: self.cur is not None and self.conns[self.cur].phase in ("open", "started")
    )
    # Fatal faults end the example: rarer than the others, so that walks get deep.
    @rule(fault=st.sampled_from(RETRIED * 2 + RETRIED_SLOWLY * 3 + FATAL))
    def the_current_connection_breaks(self, fault: str) -> None:
        cid = self.cur
        assert cid is not None
        del self.servers[cid]
        code = None if fault == "drop" else int(fault.split(":")[1])
        self.current_failed(fault)
        self.session.connection_closed(cid, code, now=self.now)
        self.step()

    @precondition(
        lambda self: self.cur is not None and self.conns[self.cur].phase in ("open", "started")
    )
    @rule(error=st.sampled_from(ERRORS_RETRIED * 2 + ERRORS_FATAL))
    def the_server_sends_an_error(self, error: str) -> None:
        server = self.servers[self.cur]  # type: ignore[index]
        server.out.append(json.dumps({"message": "Error", "type": error.split(":")[1]}))

    @precondition(lambda self: self.cur is not None and self.conns[self.cur].phase == "started")
    @rule()
    def the_server_warns_of_its_limit(self) -> None:
        server = self.servers[self.cur]  # type: ignore[index]
        server.out.append(
            json.dumps({"message": "Warning", "type": "session_timeout", "reason": "soon"})
        )
        self.deliver_all(server.cid)

    def deliver_all(self, cid: int) -> None:
        server = self.servers[cid]
        self.deliver(_Only(cid), len(server.out))

    @rule(now=st.integers(0, 5))
    def end_of_stream(self, now: int) -> None:
        if now:
            return  # the end comes at any point, but not at every one
        state = self.oracle.state
        if state is S.FAILED:
            try:
                self.session.end_of_stream(now=self.now)
            except SessionError as exc:
                assert self.failure is not None and type(exc) is self.failure[0]
            return
        if state in (S.OPENING, S.ACTIVE, S.ROLLING_OVER, S.BACKING_OFF):
            self.stream_ended = True
        if state in (S.ACTIVE, S.ROLLING_OVER):
            assert self.cur is not None
            self.expect_end_of_stream.add(self.cur)
            if self.nxt is not None:
                self.abandon(self.nxt)
                self.nxt = None
            self.fire("drain")
        self.session.end_of_stream(now=self.now)
        self.step()

    @rule(seconds=st.sampled_from([0.05, 0.3, 1.0, 2.5]))
    def time_passes(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            due = self.next_deadline()
            timer = self.session.get_timer()
            if due is None:  # only the engines' (long) timers
                assert timer is None or timer > self.now + 500, (timer, self.now)
            else:
                assert timer is not None and abs(timer - due) < 1e-9, (timer, due)
            if due is None or due > target:
                break
            self.now = due
            self.on_deadline()
            self.session.handle_timer(now=self.now)
            self.step()
        self.now = target
        self.session.handle_timer(now=self.now)
        self.step()

    def on_deadline(self) -> None:
        """What the model expects at ``self.now``, in the session's order: open timeouts,
        then the budget, the backoff or a rollover."""
        for conn in list(self.conns.values()):
            if conn.phase == "opening" and conn.began + OPEN_TIMEOUT <= self.now:
                self.expect_abort.add(conn.cid)
                self.failed_before_start(conn.cid, "silent")
        state = self.oracle.state
        if (
            self.outage_start is not None
            and state in (S.OPENING, S.BACKING_OFF)
            and (self.now >= self.budget_deadline())
        ):
            assert self.last_error is not None
            self.give_up(self.last_error)
        elif state is S.BACKING_OFF and self.open_due is not None and self.now >= self.open_due:
            self.fire("retry")
            self.open_due = None
            self.cur = self.open_new()
        elif state is S.ACTIVE and self.rollover_at is not None and self.now >= self.rollover_at:
            self.fire("roll_over")
            self.rollover_at = None
            self.nxt = self.open_new()

    @precondition(lambda self: self.oracle.state in (S.BACKING_OFF, S.OPENING, S.ROLLING_OVER))
    @rule()
    def the_network_recovers(self) -> None:
        """Time passes until the next connection is asked for, it opens, and its server
        starts: several inputs in a row, so that walks often get past a reconnect or a
        rollover."""
        if self.oracle.state is S.BACKING_OFF and self.open_due is not None:
            self.time_passes(self.open_due - self.now)
        cid = self.nxt if self.oracle.state is S.ROLLING_OVER else self.cur
        if cid is None or self.conns[cid].phase != "opening":
            return
        conn = self.conns[cid]
        conn.phase = "open"
        server = self.servers[cid] = Server(cid, "ok")
        self.session.connection_opened(cid, now=self.now)
        self.step()
        self.started(conn)
        self.session.receive_message(cid, server.out.pop(0), now=self.now)
        self.step()

    @precondition(lambda self: self.oracle.state in (S.BACKING_OFF, S.OPENING))
    @rule(outcome=st.sampled_from(["refused", "http:503", "silent"]))
    def the_network_stays_down(self, outcome: str) -> None:
        """Every attempt fails the same way until the session gives up: the budget, or
        the attempts, run out (several inputs in a row)."""
        for _ in range(50):
            state = self.oracle.state
            if state is S.BACKING_OFF and self.open_due is not None:
                self.time_passes(self.open_due - self.now)
            elif state is S.OPENING and self.cur is not None:
                conn = self.conns[self.cur]
                if conn.phase != "opening":
                    return  # its transport is open: the server decides now
                if outcome == "silent":
                    self.time_passes(conn.began + OPEN_TIMEOUT - self.now)
                else:
                    self.answer_an_open(_Only(conn.cid), outcome, "ok")
            else:
                return

    @rule(now=st.integers(0, 20))
    def close(self, now: int) -> None:
        if now:
            return  # an abort ends everything: rarely
        if self.oracle.state not in (S.CLOSED, S.FAILED):
            for cid, conn in self.conns.items():
                if conn.phase in ("opening", "open", "started", "retiring"):
                    self.abandon(cid)
            self.cur = self.nxt = None
            self.fire("close")
        self.session.close(now=self.now)
        self.step()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def the_state_is_the_oracle_s(self) -> None:
        assert self.session.state is self.oracle.state, (self.session.state, self.oracle.state)

    @invariant()
    def a_failure_is_the_predicted_one(self) -> None:
        failure = self.session.failure
        if self.failure is None:
            assert failure is None, repr(failure)
        else:
            assert type(failure) is self.failure[0] and failure.retryable is self.failure[1]

    @invariant()
    def events_as_predicted(self) -> None:
        assert not self.expect_events, f"missing {self.expect_events}"
        assert self.session.reconnects == self.reconnects
        assert self.session.rollovers == self.rollovers

    @invariant()
    def an_end_of_stream_goes_out_once_the_replay_has(self) -> None:
        """Where the stream must end (a rolled-over connection, a draining one), the
        EndOfStream goes out as soon as nothing is left to replay before it."""
        for cid in self.expect_end_of_stream:
            server = self.servers.get(cid)
            conn = self.session._conns.get(cid)
            if server is not None and conn is not None and not conn.engine._pending:
                assert server.ended, f"no EndOfStream on connection {cid}"

    @invariant()
    def a_clean_end_delivers_every_word(self) -> None:
        if self.finished_cleanly:
            assert self.words == list(range(self.sent))


TestSession = SessionMachine.TestCase
