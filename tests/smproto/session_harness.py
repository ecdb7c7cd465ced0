"""A sans-IO world for ``ClientSession``: a fake clock, fake connections, and a fake
Speechmatics server per connection (with faults), all in memory.

The server "hears" one word per 0.1 s frame: frame ``k`` of the application's audio
holds ``k`` in its first bytes, and is word ``w{k}``, timed by the frame's position in
*that connection* (so a replay is decoded again on the connection's own timeline, which
the session must shift back). A final covers every ``final_every`` frames; a partial
covers the frames since. ``Fault`` s make a connection misbehave.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smproto import CloseTransport, SendBinary, SendText
from smproto._server import ERROR_CLOSE_CODES
from smproto.actions import AbortConnection, OpenConnection, RequestTemporaryKey, Transmit
from smproto.events import AddPartialTranscript, AddTranscript, Event
from smproto.session import ClientSession

FRAME_SECONDS = 0.1
FRAME_BYTES = 3200


def frame(k: int) -> bytes:
    return k.to_bytes(4, "little") * (FRAME_BYTES // 4)


def word_of(data: bytes) -> int:
    return int.from_bytes(data[:4], "little")


@dataclass(frozen=True)
class Fault:
    """How one connection misbehaves.

    ``refuse``: the open fails (``"refused"``, ``"timeout"`` or an HTTP status as
    ``"http:503"``). ``start``: what answers ``StartRecognition`` (``"ok"``, ``"never"``,
    or an Error type such as ``"quota_exceeded"``). After ``after`` frames of audio:
    ``then`` happens (``"drop"``: the transport breaks; ``"close:4005"``: the server
    closes with that code; ``"error:job_error"``: an Error, then its close;
    ``"stall"``: no more acknowledgements; ``"warn"``: ``Warning session_timeout``, the
    connection going on). ``shift``: re-decoded times are shifted by up to this many
    seconds (and, with ``other_word``, the first word of the connection comes out as
    another word).
    """

    refuse: str | None = None
    start: str = "ok"
    after: int | None = None
    then: str = "drop"
    shift: float = 0.0
    other_word: bool = False


OK = Fault()


@dataclass
class FakeServer:
    """The server end of one connection."""

    cid: int
    fault: Fault
    final_every: int
    rng: random.Random
    frames: list[bytes] = field(default_factory=list)
    finalised: int = 0
    out: list[str] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    close: tuple[int | None, str] | None = None  # how it ends the connection, once it does
    stalled: bool = False
    warned: bool = False

    def _times(self, i: int) -> tuple[float, float]:
        start, end = i * FRAME_SECONDS, (i + 1) * FRAME_SECONDS
        if self.fault.shift:
            delta = self.rng.uniform(-self.fault.shift, self.fault.shift)
            start, end = max(0.0, start + delta), end + delta
        return round(start, 6), round(end, 6)

    def _transcript(self, kind: str, first: int, last: int) -> None:
        results = []
        for i in range(first, last):
            start, end = self._times(i)
            content = f"w{word_of(self.frames[i])}"
            if self.fault.other_word and i == 0 and self.cid > 1:
                content = "other"
            results.append(
                {
                    "type": "word",
                    "start_time": start,
                    "end_time": end,
                    "alternatives": [{"content": content, "confidence": 1.0}],
                }
            )
        message = {
            "message": kind,
            "results": results,
            "metadata": {
                "start_time": round(first * FRAME_SECONDS, 6),
                "end_time": round(last * FRAME_SECONDS, 6),
                "transcript": "",
            },
        }
        self.out.append(json.dumps(message))

    def _error(self, error_type: str) -> None:
        self.out.append(json.dumps({"message": "Error", "type": error_type, "reason": "fake"}))
        self.close = (ERROR_CLOSE_CODES.get(error_type, 1011), "")

    def receive(self, action: SendText | SendBinary) -> None:
        if self.close is not None:
            return
        if isinstance(action, SendBinary):
            assert self.started and not self.ended, (
                "audio before RecognitionStarted or after EndOfStream"
            )
            self.frames.append(action.data)
            n = len(self.frames)
            if not self.stalled:
                self.out.append(json.dumps({"message": "AudioAdded", "seq_no": n}))
            if n - self.finalised >= self.final_every:
                self._transcript("AddTranscript", self.finalised, n)
                self.finalised = n
            else:
                self._transcript("AddPartialTranscript", self.finalised, n)
            if self.fault.after is not None and n >= self.fault.after:
                self._misbehave()
            return
        msg = json.loads(action.text)
        kind = msg["message"]
        if kind == "StartRecognition":
            if self.fault.start == "ok":
                self.started = True
                self.out.append(json.dumps({"message": "RecognitionStarted", "id": f"c{self.cid}"}))
                if self.fault.after == 0:
                    self._misbehave()
            elif self.fault.start != "never":
                self._error(self.fault.start)
        elif kind == "EndOfStream":
            assert msg["last_seq_no"] == len(self.frames), (msg, len(self.frames))
            self.ended = True
            if len(self.frames) > self.finalised:
                self._transcript("AddTranscript", self.finalised, len(self.frames))
                self.finalised = len(self.frames)
            self.out.append(json.dumps({"message": "EndOfTranscript"}))
            self.close = (1000, "")

    def _misbehave(self) -> None:
        then = self.fault.then
        if then == "drop":
            self.close = (None, "dropped")
        elif then.startswith("close:"):
            self.close = (int(then.split(":")[1]), "")
        elif then.startswith("error:"):
            self._error(then.split(":")[1])
        elif then == "stall":
            self.stalled = True
        elif then == "warn" and not self.warned:
            self.warned = True
            self.out.append(
                json.dumps({"message": "Warning", "type": "session_timeout", "reason": "soon"})
            )


@dataclass
class World:
    """Runs a session against fake servers on a fake clock."""

    session: ClientSession
    faults: Callable[[int], Fault] = lambda cid: OK
    final_every: int = 3
    frames_to_send: int = 20
    end_after: int | None = None  # end the stream after this many frames (default: all)
    realtime: bool = False  # frame k is sent no sooner than k * FRAME_SECONDS
    seed: int = 0
    now: float = 0.0
    servers: dict[int, FakeServer] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    opened: list[tuple[int, float]] = field(default_factory=list)  # (connection, time)
    aborted: list[int] = field(default_factory=list)
    closed: list[tuple[int, int]] = field(default_factory=list)  # (connection, close code)
    sent: int = 0
    ended: bool = False
    error: Exception | None = None
    trace: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -------------------------------------------------------------- the driver's part

    def _perform(self) -> bool:
        moved = False
        for action in self.session.actions():
            moved = True
            if isinstance(action, OpenConnection):
                self._open(action)
            elif isinstance(action, RequestTemporaryKey):
                self.session.key_received(
                    action.connection, 201, b'{"key_value": "temporary"}', now=self.now
                )
            elif isinstance(action, AbortConnection):
                self.aborted.append(action.connection)
                self.servers.pop(action.connection, None)
            else:
                assert isinstance(action, Transmit)
                self._transmit(action)
        return moved

    def _open(self, action: OpenConnection) -> None:
        cid = action.connection
        self.opened.append((cid, self.now))
        self.trace.append(f"{self.now:.2f} open {cid}")
        fault = self.faults(cid)
        if fault.refuse == "timeout":
            return  # never answers: the session's open timeout decides
        if fault.refuse == "refused":
            self.session.open_failed(cid, "connection refused", now=self.now)
            return
        if fault.refuse is not None:
            status = int(fault.refuse.split(":")[1])
            self.session.open_failed(cid, "", now=self.now, status=status, body=b"no")
            return
        self.servers[cid] = FakeServer(cid, fault, self.final_every, random.Random(cid + self.seed))
        self.session.connection_opened(cid, now=self.now)

    def _transmit(self, transmit: Transmit) -> None:
        server = self.servers.get(transmit.connection)
        for action in transmit.actions:
            if server is None:
                return
            if isinstance(action, CloseTransport):
                self.trace.append(
                    f"{self.now:.2f} client closes {transmit.connection} {action.code}"
                )
                self.closed.append((transmit.connection, action.code))
                del self.servers[transmit.connection]
                self.session.connection_closed(transmit.connection, action.code, now=self.now)
                return
            server.receive(action)

    def _serve(self) -> bool:
        moved = False
        for cid, server in list(self.servers.items()):
            while server.out:
                moved = True
                self.session.receive_message(cid, server.out.pop(0), now=self.now)
                if self.servers.get(cid) is not server:
                    break
            if self.servers.get(cid) is server and server.close is not None and not server.out:
                moved = True
                code, reason = server.close
                self.trace.append(f"{self.now:.2f} server closes {cid} {code}")
                del self.servers[cid]
                self.session.connection_closed(cid, code, reason, now=self.now)
        return moved

    # -------------------------------------------------------------- the application's part

    def _app(self) -> bool:
        moved = False
        session = self.session
        while (event := session.next_event()) is not None:
            self.events.append(event)
            moved = True
        last = self.frames_to_send if self.end_after is None else self.end_after
        try:
            while (
                self.sent < last
                and (not self.realtime or self.now >= self.sent * FRAME_SECONDS - 1e-9)
                and session.check_send_audio()
            ):
                session.send_audio(frame(self.sent), now=self.now)
                self.sent += 1
                moved = True
            if self.sent >= last and not self.ended and session.check_command("end_of_stream"):
                session.end_of_stream(now=self.now)
                self.ended = True
                moved = True
        except Exception as exc:  # the session's failure, or the end of the stream
            if self.error is None:
                self.error = exc
        return moved

    # -------------------------------------------------------------- running

    def step(self) -> bool:
        """Move everything that can move now; ``False`` when nothing did."""
        moved = self._perform()
        moved = self._serve() or moved
        return self._app() or moved

    def run(self, *, until: float = 1_000.0, max_steps: int = 100_000) -> None:
        """Run until the session is finished (and its events read), or ``until``."""
        if self.session.state.name == "IDLE":
            self.session.start(now=self.now)
        for _ in range(max_steps):
            while self.step():
                pass
            if self.session.finished and not self.session.has_events:
                self._perform()
                return
            deadline = self.session.get_timer()
            last = self.frames_to_send if self.end_after is None else self.end_after
            if self.realtime and self.sent < last and self.sent * FRAME_SECONDS > self.now:
                at = self.sent * FRAME_SECONDS  # the next frame of the real-time source
                deadline = at if deadline is None else min(deadline, at)
            assert deadline is not None, (
                f"nothing moves and no timer: {self.session!r}\n" + "\n".join(self.trace[-20:])
            )
            if deadline > until:
                return
            self.now = max(self.now, deadline)
            self.session.handle_timer(now=self.now)
        raise AssertionError("the session did not finish")

    # -------------------------------------------------------------- reading the outcome

    def finals(self) -> list[tuple[str, float, float]]:
        return [
            (r.content, round(r.start_time, 6), round(r.end_time, 6))
            for e in self.events
            if isinstance(e, AddTranscript)
            for r in e.results
        ]

    def final_words(self) -> list[str]:
        return [content for content, _, _ in self.finals()]

    def partial_words(self) -> list[list[str]]:
        return [
            [r.content for r in e.results]
            for e in self.events
            if isinstance(e, AddPartialTranscript)
        ]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


def expected_words(n: int) -> list[str]:
    return [f"w{k}" for k in range(n)]


def session(**options: Any) -> ClientSession:
    from smproto import TranscriptionConfig
    from smproto.session import ReconnectPolicy

    defaults: dict[str, Any] = {
        "transcription_config": TranscriptionConfig(language="en", enable_partials=True),
        "reconnect": ReconnectPolicy(jitter=0.0),
        "max_audio_in_flight_seconds": 0.5,
        "rng": random.Random(0),
    }
    return ClientSession("ws://fake/v2", **(defaults | options))
