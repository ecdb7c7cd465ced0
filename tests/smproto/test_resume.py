"""Reconnect without loss, engine side: a connection resumed from a failed one replays
the audio no final covered, and the application sees one continuous timeline."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import (
    AudioFormat,
    ClientConnection,
    CloseTransport,
    LocalProtocolError,
    SendBinary,
    SendText,
    State,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto.events import AddPartialTranscript, AddTranscript, AddTranslation, RecognitionStarted
from tests.support import FRAME, client_in

FRAME_SECONDS = 0.1
FRAME_BYTES = 3200  # 0.1 s of 16 kHz 16-bit mono


def audio_frame(i: int) -> bytes:
    """Frame ``i`` of the test audio: its content says which word it holds."""
    return i.to_bytes(2, "little") * (FRAME_BYTES // 2)


@dataclass
class FakeServer:
    """A deterministic Speechmatics-like peer: one word per frame of audio, named after
    the frame's content, timed by the frame's position in *this* session; a final every
    ``final_every`` frames and a partial for the frames in between."""

    final_every: int
    frames: list[bytes] = field(default_factory=list)
    finalised: int = 0
    out: list[str] = field(default_factory=list)
    started: bool = False
    ended: bool = False

    def _words(self, first: int, last: int) -> list[dict[str, Any]]:
        return [
            {
                "type": "word",
                "start_time": round(i * FRAME_SECONDS, 6),
                "end_time": round((i + 1) * FRAME_SECONDS, 6),
                "alternatives": [
                    {"content": f"w{int.from_bytes(self.frames[i][:2], 'little')}", "confidence": 1}
                ],
            }
            for i in range(first, last)
        ]

    def _transcript(self, kind: str, first: int, last: int) -> None:
        words = self._words(first, last)
        self.out.append(
            json.dumps(
                {
                    "message": kind,
                    "results": words,
                    "metadata": {
                        "start_time": round(first * FRAME_SECONDS, 6),
                        "end_time": round(last * FRAME_SECONDS, 6),
                        "transcript": " ".join(w["alternatives"][0]["content"] for w in words),
                    },
                }
            )
        )

    def feed(self, action: object) -> None:
        if isinstance(action, SendBinary):
            assert self.started and not self.ended
            self.frames.append(action.data)
            self.out.append(json.dumps({"message": "AudioAdded", "seq_no": len(self.frames)}))
            if len(self.frames) - self.finalised >= self.final_every:
                self._transcript("AddTranscript", self.finalised, len(self.frames))
                self.finalised = len(self.frames)
            else:
                self._transcript("AddPartialTranscript", self.finalised, len(self.frames))
        elif isinstance(action, SendText):
            msg = json.loads(action.text)
            if msg["message"] == "StartRecognition":
                self.started = True
                self.out.append(json.dumps({"message": "RecognitionStarted", "id": "fake"}))
            elif msg["message"] == "EndOfStream":
                assert msg["last_seq_no"] == len(self.frames)
                self.ended = True
                if len(self.frames) > self.finalised:
                    self._transcript("AddTranscript", self.finalised, len(self.frames))
                self.out.append(json.dumps({"message": "EndOfTranscript"}))

    def take(self) -> list[str]:
        out, self.out = self.out, []
        return out


@dataclass
class Outcome:
    words: list[tuple[str, float, float]]
    connections: int
    partial_words_before_final: list[str]


def run_session(
    n_frames: int,
    final_every: int,
    failures: frozenset[int] = frozenset(),
    window: float = 0.5,
) -> Outcome:
    """Stream ``n_frames`` frames through the engine and the fake server, dropping the
    connection just before the server's message number ``k`` for each ``k`` in ``failures``
    (counted over the whole run), resuming each time."""
    conn = ClientConnection(
        TranscriptionConfig(language="en", enable_partials=True),
        AudioFormat(),
        max_audio_in_flight_seconds=window,
    )
    server = FakeServer(final_every)
    conn.connection_opened(now=0.0)
    connections = 1
    delivered = 0
    next_frame = 0
    ended = False
    now = 0.0
    words: list[tuple[str, float, float]] = []
    partial_words: list[str] = []
    for _ in range(100_000):
        now += 0.01
        if conn.state is State.STREAMING and not ended:
            while next_frame < n_frames and not conn.audio_window_full:
                conn.send_audio(audio_frame(next_frame), now=now)
                next_frame += 1
            if next_frame == n_frames:
                conn.end_of_stream(now=now)
                ended = True
        for action in conn.actions():
            if isinstance(action, CloseTransport):
                continue
            server.feed(action)
        failed = False
        for text in server.take():
            delivered += 1
            if delivered in failures:
                failed = True
                break
            conn.receive_message(text, now=now)
        for event in conn.events():
            if isinstance(event, AddTranscript):
                words.extend((r.content, r.start_time, r.end_time) for r in event.results)
            elif isinstance(event, AddPartialTranscript):
                partial_words.extend(r.content for r in event.results)
        if failed:
            conn.connection_closed(None, "dropped", now=now)
            conn.events()
            conn = ClientConnection.resume_from(conn)
            server = FakeServer(final_every)
            conn.connection_opened(now=now)
            connections += 1
            continue
        if conn.state is State.CLOSED:
            return Outcome(words, connections, partial_words)
        assert conn.state is not State.FAILED
    raise AssertionError("the session did not finish")


def expected_words(n_frames: int) -> list[tuple[str, float, float]]:
    return [
        (f"w{i}", pytest.approx(i * FRAME_SECONDS), pytest.approx((i + 1) * FRAME_SECONDS))
        for i in range(n_frames)
    ]


def test_undisturbed_session() -> None:
    outcome = run_session(23, 4)
    assert outcome.words == expected_words(23)
    assert outcome.connections == 1


@given(
    n_frames=st.integers(1, 40),
    final_every=st.integers(1, 8),
    failures=st.frozensets(st.integers(1, 120), max_size=4),
    window=st.sampled_from([0.1, 0.3, 1.0, 10.0]),
)
def test_no_word_lost_or_repeated_across_reconnects(
    n_frames: int, final_every: int, failures: frozenset[int], window: float
) -> None:
    outcome = run_session(n_frames, final_every, failures, window)
    assert outcome.words == expected_words(n_frames)


def test_a_failure_mid_stream_shifts_the_timeline() -> None:
    outcome = run_session(30, 5, frozenset({25}))
    assert outcome.connections == 2
    assert outcome.words == expected_words(30)


# --------------------------------------------------------------------------- the API


def _failed_after(
    frames: int, finals_until: float | None = None, **options: Any
) -> ClientConnection:
    conn = client_in(State.STREAMING, **options)
    for i in range(frames):
        conn.send_audio(audio_frame(i))
    if finals_until is not None:
        conn.receive_message(
            json.dumps(
                {
                    "message": "AddTranscript",
                    "results": [],
                    # A final that starts where it ends: the audio before it is released.
                    "metadata": {
                        "start_time": finals_until,
                        "end_time": finals_until,
                        "transcript": "",
                    },
                }
            ),
            now=1.0,
        )
    conn.connection_closed(1006, "", now=2.0)
    conn.actions()
    conn.events()
    return conn


def test_resume_needs_a_failed_connection() -> None:
    with pytest.raises(LocalProtocolError, match="FAILED"):
        ClientConnection.resume_from(client_in(State.STREAMING))
    with pytest.raises(LocalProtocolError, match="FAILED"):
        ClientConnection.resume_from(client_in(State.CLOSED))


def test_replay_starts_after_the_last_final() -> None:
    old = _failed_after(10, finals_until=0.35)
    assert old.retained_audio_seconds == pytest.approx(0.7)  # frames 3..9 (0.3 s to 1.0 s)
    new = ClientConnection.resume_from(old)
    assert new.time_offset == pytest.approx(0.3)
    new.connection_opened(now=3.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=3.1)
    sent = [a.data for a in new.actions() if isinstance(a, SendBinary)]
    assert sent == [audio_frame(i) for i in range(3, 10)]
    # Times reported by the new connection continue the old timeline.
    new.receive_message(
        json.dumps(
            {
                "message": "AddTranscript",
                "results": [
                    {"type": "word", "start_time": 0.05, "end_time": 0.1,
                     "alternatives": [{"content": "old", "confidence": 1}]},
                    {"type": "word", "start_time": 0.1, "end_time": 0.2,
                     "alternatives": [{"content": "new", "confidence": 1}]},
                ],
                "metadata": {"start_time": 0.0, "end_time": 0.2, "transcript": "old new"},
            }
        ),
        now=3.2,
    )  # fmt: skip
    started, final = new.events()
    assert isinstance(started, RecognitionStarted)
    assert isinstance(final, AddTranscript)
    assert (final.start_time, final.end_time) == (pytest.approx(0.3), pytest.approx(0.5))
    # "old" ended at 0.4 on the old timeline: after the old final (0.35), so it is kept.
    assert [(r.content, round(r.start_time, 6)) for r in final.results] == [
        ("old", 0.35),
        ("new", 0.4),
    ]


def test_new_audio_waits_behind_the_replay_and_the_window() -> None:
    old = _failed_after(10, max_audio_in_flight_seconds=0.3)
    new = ClientConnection.resume_from(old)
    new.connection_opened(now=3.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=3.1)
    assert new.audio_window_full
    assert new.send_audio(audio_frame(10)) == 11  # queued behind the replay
    assert [a.data for a in new.actions() if isinstance(a, SendBinary)] == [
        audio_frame(i) for i in range(3)
    ]
    new.receive_message('{"message": "AudioAdded", "seq_no": 3}', now=3.2)
    assert [a.data for a in new.actions() if isinstance(a, SendBinary)] == [
        audio_frame(i) for i in range(3, 6)
    ]
    new.end_of_stream()
    assert new.state is State.DRAINING
    for seq in (6, 9, 11):
        new.receive_message(json.dumps({"message": "AudioAdded", "seq_no": seq}), now=3.3)
    texts = list(new.actions())
    assert isinstance(texts[-1], SendText)
    assert json.loads(texts[-1].text) == {"message": "EndOfStream", "last_seq_no": 11}


def test_a_stream_that_had_ended_ends_again_after_the_replay() -> None:
    conn = client_in(State.STREAMING)
    conn.send_audio(FRAME)
    conn.end_of_stream()
    conn.connection_closed(None, "", now=1.0)
    new = ClientConnection.resume_from(conn)
    new.connection_opened(now=2.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=2.1)
    assert new.state is State.DRAINING
    actions = new.actions()
    assert isinstance(actions[1], SendBinary)
    assert isinstance(actions[2], SendText)
    assert json.loads(actions[2].text) == {"message": "EndOfStream", "last_seq_no": 1}
    with pytest.raises(LocalProtocolError):
        new.send_audio(FRAME)


def test_overflowed_retention_refuses_a_lossy_resume() -> None:
    old = _failed_after(30, retain_audio_seconds=1.0)
    assert old.retention_overflowed
    with pytest.raises(LocalProtocolError, match="allow_loss"):
        ClientConnection.resume_from(old)
    new = ClientConnection.resume_from(old, allow_loss=True)
    assert new.time_offset == pytest.approx(2.0)  # the last second of three was kept


def test_resume_keeps_mid_session_changes_and_allows_overrides() -> None:
    conn = client_in(State.STREAMING)
    conn.set_recognition_config(max_delay=3.0)
    conn.connection_closed(None, "", now=1.0)
    new = ClientConnection.resume_from(conn, ack_timeout=5.0)
    assert new.transcription_config.max_delay == 3.0 and new.ack_timeout == 5.0
    new.connection_opened(now=2.0)
    (start,) = new.actions()
    assert (
        isinstance(start, SendText)
        and json.loads(start.text)["transcription_config"]["max_delay"] == 3.0
    )


def test_file_audio_replays_from_its_first_byte() -> None:
    conn = client_in(State.STREAMING, audio_format=AudioFormat.file())
    conn.send_audio(b"RIFF-header")
    conn.send_audio(b"more")
    conn.receive_message(
        json.dumps(
            {
                "message": "AddTranscript",
                "results": [],
                "metadata": {"start_time": 0, "end_time": 5, "transcript": ""},
            }
        ),
        now=1.0,
    )
    conn.connection_closed(None, "", now=1.0)
    new = ClientConnection.resume_from(conn)
    assert new.time_offset == 0.0
    new.connection_opened(now=2.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=2.0)
    assert [a.data for a in new.actions() if isinstance(a, SendBinary)] == [b"RIFF-header", b"more"]


def test_translations_hold_retention_until_translated() -> None:
    conn = client_in(State.STREAMING, translation_config=TranslationConfig(["de"]))
    for i in range(10):
        conn.send_audio(audio_frame(i))
    final = {
        "message": "AddTranscript",
        "results": [],
        "metadata": {"start_time": 1.0, "end_time": 1.0, "transcript": ""},
    }
    conn.receive_message(json.dumps(final), now=1.0)
    assert conn.retained_audio_seconds == pytest.approx(1.0)  # nothing translated yet
    conn.receive_message(
        json.dumps(
            {"message": "AddTranslation", "language": "de",
             "results": [{"content": "Hallo", "start_time": 0, "end_time": 0.5}]}
        ),
        now=1.0,
    )  # fmt: skip
    assert conn.retained_audio_seconds == pytest.approx(0.5)
    conn.connection_closed(None, "", now=2.0)
    new = ClientConnection.resume_from(conn)
    new.connection_opened(now=3.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=3.0)
    # The replayed audio's translation of the already-translated sentence is not repeated.
    new.receive_message(
        json.dumps(
            {"message": "AddTranslation", "language": "de",
             "results": [{"content": "Hallo", "start_time": -0.5, "end_time": 0.0},
                         {"content": "Welt", "start_time": 0.0, "end_time": 0.4}]}
        ),
        now=3.1,
    )  # fmt: skip
    translation = [e for e in new.events() if isinstance(e, AddTranslation)]
    assert [s.content for s in translation[0].results] == ["Welt"]
    assert translation[0].results[0].start_time == pytest.approx(0.5)


def test_multichannel_resume_replays_each_channel_on_its_own_timeline() -> None:
    config = TranscriptionConfig(
        language="en", diarization="channel", channel_diarization_labels=["a", "b"]
    )
    conn = client_in(State.STREAMING, config)
    for i in range(6):
        conn.send_channel_audio("a", audio_frame(i))
    for i in range(4):
        conn.send_channel_audio("b", audio_frame(100 + i))
    for channel, end in (("a", 0.3), ("b", 0.2)):
        conn.receive_message(
            json.dumps(
                {"message": "AddTranscript", "channel": channel, "results": [],
                 "metadata": {"start_time": end, "end_time": end, "transcript": ""}}
            ),
            now=1.0,
        )  # fmt: skip
    conn.end_of_channel("b")
    conn.connection_closed(None, "", now=2.0)
    new = ClientConnection.resume_from(conn)
    new.connection_opened(now=3.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=3.0)
    sent = [json.loads(a.text) for a in new.actions() if isinstance(a, SendText)][1:]
    audio = [
        (m["channel"], base64.b64decode(m["data"]))
        for m in sent
        if m["message"] == "AddChannelAudio"
    ]
    assert audio == [("a", audio_frame(i)) for i in range(3, 6)] + [
        ("b", audio_frame(100 + i)) for i in range(2, 4)
    ]
    assert {"message": "EndOfChannel", "channel": "b", "last_seq_no": 2} in sent
    new.receive_message(
        json.dumps(
            {"message": "AddTranscript", "channel": "b",
             "results": [{"type": "word", "start_time": 0.0, "end_time": 0.1,
                          "alternatives": [{"content": "b2", "confidence": 1}]}],
             "metadata": {"start_time": 0, "end_time": 0.1, "transcript": "b2"}}
        ),
        now=3.1,
    )  # fmt: skip
    final = next(e for e in new.events() if isinstance(e, AddTranscript))
    assert final.results[0].start_time == pytest.approx(0.2)  # channel b restarted at 0.2 s


def test_a_result_at_the_boundary_is_new_unless_it_was_delivered() -> None:
    """A full stop at exactly the time the last final ended was not delivered yet (it comes
    in a later final); the word that ended there was."""

    def final(words: list[tuple[str, str, float, float]], end: float) -> str:
        return json.dumps(
            {
                "message": "AddTranscript",
                "results": [
                    {"type": kind, "start_time": s, "end_time": e,
                     "alternatives": [{"content": w, "confidence": 1}]}
                    for kind, w, s, e in words
                ],
                "metadata": {"start_time": 0, "end_time": end, "transcript": ""},
            }
        )  # fmt: skip

    conn = client_in(State.STREAMING)
    for i in range(10):
        conn.send_audio(audio_frame(i))
    conn.receive_message(final([("word", "world", 0.2, 0.5)], 0.5), now=1.0)
    conn.connection_closed(None, "", now=2.0)
    new = ClientConnection.resume_from(conn)
    assert new.time_offset == 0.0  # the latest final's audio is replayed, for context
    new.connection_opened(now=3.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=3.0)
    # The new session repeats the word and adds the stop.
    new.receive_message(
        final([("word", "world", 0.2, 0.5), ("punctuation", ".", 0.5, 0.5)], 0.5), now=3.1
    )
    (event,) = [e for e in new.events() if isinstance(e, AddTranscript)]
    assert [(r.content, r.end_time) for r in event.results] == [(".", pytest.approx(0.5))]


def test_the_latest_final_s_audio_is_kept_as_context() -> None:
    """A replay starts at the latest final's start, not its end, so the recogniser hears
    the words just before the cut again (and the copies are not delivered twice)."""
    conn = client_in(State.STREAMING)
    for i in range(10):
        conn.send_audio(audio_frame(i))
    for start, end in ((0.0, 0.2), (0.2, 0.55)):
        conn.receive_message(
            json.dumps(
                {
                    "message": "AddTranscript",
                    "results": [],
                    "metadata": {"start_time": start, "end_time": end, "transcript": ""},
                }
            ),
            now=1.0,
        )
    assert conn.retained_audio_seconds == pytest.approx(0.8)  # from 0.2 s, not from 0.55 s
    conn.connection_closed(None, "", now=2.0)
    new = ClientConnection.resume_from(conn)
    assert new.time_offset == pytest.approx(0.2)


def test_audio_acknowledged_is_measured_on_the_continuous_timeline() -> None:
    """What the drivers use to tell a connection that made progress from one that only
    got its replay acknowledged again."""
    conn = client_in(State.STREAMING)
    for i in range(10):
        conn.send_audio(audio_frame(i))
    assert conn.audio_seconds_acknowledged == 0.0
    conn.receive_message('{"message": "AudioAdded", "seq_no": 6}', now=1.0)
    assert conn.audio_seconds_acknowledged == pytest.approx(0.6)
    conn.receive_message(
        json.dumps(
            {
                "message": "AddTranscript",
                "results": [],
                "metadata": {"start_time": 0.35, "end_time": 0.35, "transcript": ""},
            }
        ),
        now=1.1,
    )
    conn.connection_closed(1006, "", now=2.0)
    new = ClientConnection.resume_from(conn)
    assert new.time_offset == pytest.approx(0.3)  # the replay starts at frame 3
    assert new.audio_seconds_acknowledged == pytest.approx(0.3)
    new.connection_opened(now=3.0)
    new.receive_message('{"message": "RecognitionStarted"}', now=3.1)
    new.actions()
    # The replay of frames 3..5, acknowledged again, gets no further than before...
    new.receive_message('{"message": "AudioAdded", "seq_no": 3}', now=3.2)
    assert new.audio_seconds_acknowledged == pytest.approx(0.6)
    # ... frame 6 does.
    new.receive_message('{"message": "AudioAdded", "seq_no": 4}', now=3.3)
    assert new.audio_seconds_acknowledged == pytest.approx(0.7)
