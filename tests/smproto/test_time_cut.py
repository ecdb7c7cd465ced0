"""The time cut: a connection that continues another (``take_over``, ``resume_from``)
delivers nothing twice and loses nothing, even when the server decodes the replayed audio
again with other times, or another word at the cut."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import (
    AudioFormat,
    ClientConnection,
    LocalProtocolError,
    SendBinary,
    SendText,
    State,
    TranscriptionConfig,
)
from smproto.events import AddPartialTranscript, AddTranscript, EndOfUtterance
from tests.support import FRAME, client_in

FRAME_SECONDS = 0.1  # tests.support.FRAME: 0.1 s of 16 kHz 16-bit mono


def result(kind: str, content: str, start: float, end: float) -> dict[str, Any]:
    return {
        "type": kind,
        "start_time": start,
        "end_time": end,
        "alternatives": [{"content": content, "confidence": 1.0}],
    }


def transcript(
    results: list[dict[str, Any]], start: float, end: float, *, final: bool = True
) -> str:
    return json.dumps(
        {
            "message": "AddTranscript" if final else "AddPartialTranscript",
            "results": results,
            "metadata": {"start_time": start, "end_time": end, "transcript": ""},
        }
    )


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    stop: bool  # a full stop follows it


@st.composite
def speech(draw: st.DrawFn) -> list[Word]:
    words = []
    t = draw(st.floats(0.0, 0.5))
    for _ in range(draw(st.integers(1, 10))):
        length = draw(st.floats(0.1, 0.6))
        words.append(Word(round(t, 3), round(t + length, 3), draw(st.booleans())))
        t += length + draw(st.sampled_from([0.0, 0.05, 0.2, 0.5]))
    return words


def send_audio_for(conn: ClientConnection, seconds: float) -> None:
    for _ in range(math.ceil(seconds / FRAME_SECONDS) + 1):
        conn.send_audio(FRAME, now=0.2)


def contents(events: list[Any]) -> list[str]:
    return [r.content for e in events if isinstance(e, AddTranscript) for r in e.results]


@given(
    words=speech(),
    data=st.data(),
)
def test_nothing_twice_nothing_lost(words: list[Word], data: st.DataObject) -> None:
    """The old connection delivered the finals of words ``0..k`` (and perhaps the stop
    after word ``k``); the new one decodes the replayed audio again, each word shifted by
    less than half its length, perhaps another word at the cut. Together they deliver
    every word and every stop exactly once, in order."""
    n = len(words)
    k = data.draw(st.integers(-1, n - 1), label="last word delivered")
    closed = k >= 0 and words[k].stop and data.draw(st.booleans(), label="its stop delivered")
    old = client_in(State.STREAMING)
    send_audio_for(old, words[-1].end)
    delivered: list[Any] = []
    previous_end = 0.0
    for i in range(k + 1):
        w = words[i]
        results = [result("word", f"w{i}", w.start, w.end)]
        if w.stop and (i < k or closed):
            results.append(result("punctuation", ".", w.end, w.end))
        old.receive_message(transcript(results, previous_end, w.end), now=0.5)
        previous_end = w.end
    delivered += old.events()
    old.connection_closed(1006, "gone", now=1.0)
    old.events()

    new = client_in(State.STREAMING)
    replayed = new.take_over(old, now=1.1)
    offset = new.time_offset
    assert replayed >= 0
    assert offset <= (words[k].start if k >= 0 else 0.0) + 1e-9  # the last word is replayed
    other = data.draw(st.booleans(), label="another word at the cut")
    previous_end = offset
    for i, w in enumerate(words):
        if w.end <= offset:
            continue  # not in the replayed audio
        start = max(w.start, offset)  # a word cut by the replay's start is a fragment
        shift = data.draw(st.floats(-0.45, 0.45), label=f"shift {i}") * (w.end - start)
        start, end = max(start + shift, offset), w.end + shift
        content = "other" if other and i == k else f"w{i}"
        results = [result("word", content, start - offset, end - offset)]
        if w.stop:
            results.append(result("punctuation", ".", end - offset, end - offset))
        new.receive_message(transcript(results, previous_end - offset, end - offset), now=2.0)
        previous_end = end
    delivered += new.events()
    expected = [c for i, w in enumerate(words) for c in ([f"w{i}", "."] if w.stop else [f"w{i}"])]
    assert contents(delivered) == expected


def test_partials_follow_the_cut() -> None:
    old = client_in(State.STREAMING)
    send_audio_for(old, 2.0)
    old.receive_message(transcript([result("word", "hello", 0.2, 0.6)], 0.0, 0.6), now=0.5)
    old.connection_closed(1006, "gone", now=1.0)
    new = client_in(State.STREAMING)
    new.take_over(old, now=1.1)
    assert new.time_offset == pytest.approx(0.0)
    # A partial of the old word, then one that adds a new word.
    new.receive_message(
        transcript([result("word", "hallo", 0.22, 0.62)], 0.0, 0.62, final=False), now=1.2
    )
    new.receive_message(
        transcript(
            [result("word", "hallo", 0.22, 0.62), result("word", "world", 0.8, 1.1)],
            0.0,
            1.1,
            final=False,
        ),
        now=1.3,
    )
    partials = [e for e in new.events() if isinstance(e, AddPartialTranscript)]
    # The first one has nothing new (it still replaces what the application showed).
    assert [[r.content for r in p.results] for p in partials] == [[], ["world"]]
    assert [p.start_time for p in partials] == pytest.approx([0.6, 0.6])  # from the cut


def test_an_end_of_utterance_is_not_delivered_twice() -> None:
    def eou(end: float) -> str:
        return json.dumps(
            {"message": "EndOfUtterance", "metadata": {"start_time": end, "end_time": end}}
        )

    for old_had_it in (True, False):
        old = client_in(State.STREAMING)
        send_audio_for(old, 2.0)
        old.receive_message(transcript([result("word", "hello", 0.2, 0.6)], 0.0, 0.6), now=0.5)
        if old_had_it:
            old.receive_message(eou(1.0), now=0.6)
        old.connection_closed(1006, "gone", now=1.0)
        new = client_in(State.STREAMING)
        new.take_over(old, now=1.1)
        new.receive_message(transcript([result("word", "hello", 0.21, 0.63)], 0.0, 0.63), now=1.2)
        new.receive_message(eou(1.03), now=1.3)
        got = [e for e in new.events() if isinstance(e, EndOfUtterance)]
        assert len(got) == (0 if old_had_it else 1)


def test_a_new_word_right_after_the_cut_is_new() -> None:
    """No gap between the last old word and the next: the next is still new, and the
    stop after the last old word, not yet delivered, is delivered once."""
    old = client_in(State.STREAMING)
    send_audio_for(old, 2.0)
    old.receive_message(transcript([result("word", "a", 0.0, 0.4)], 0.0, 0.4), now=0.5)
    old.connection_closed(1006, "gone", now=1.0)
    new = ClientConnection.resume_from(old)
    new.connection_opened(now=1.1)
    new.receive_message('{"message": "RecognitionStarted"}', now=1.2)
    new.receive_message(
        transcript(
            [
                result("word", "a", 0.03, 0.43),
                result("punctuation", ".", 0.43, 0.43),
                result("word", "b", 0.43, 0.8),
            ],
            0.0,
            0.8,
        ),
        now=1.3,
    )
    assert contents(new.events()) == [".", "b"]


# --------------------------------------------------------------------------- take_over


def test_take_over_a_streaming_connection_is_make_before_break() -> None:
    """A rollover: the new connection has started while the old one still streams; it
    replays the old one's unfinalised audio on the old timeline, then takes new audio."""
    old = client_in(State.STREAMING)
    for _ in range(10):
        old.send_audio(FRAME, now=0.2)
    old.receive_message('{"message": "AudioAdded", "seq_no": 10}', now=0.3)
    old.receive_message(transcript([result("word", "hi", 0.3, 0.5)], 0.2, 0.5), now=0.3)
    new = client_in(State.STREAMING)
    replayed = new.take_over(old, now=0.4)
    assert old.state is State.STREAMING  # the caller ends it
    assert replayed == pytest.approx(0.8)  # from 0.2 s (the latest final's start) to 1.0 s
    assert new.time_offset == pytest.approx(0.2)
    frames = [a for a in new.actions() if isinstance(a, SendBinary)]
    assert len(frames) == 8
    assert new.send_audio(FRAME, now=0.5) == 9  # new audio follows the replay
    old.end_of_stream(now=0.5)
    assert json.loads(old.actions()[-1].text)["message"] == "EndOfStream"  # type: ignore[union-attr]


def test_take_over_an_ended_stream_drains() -> None:
    old = client_in(State.DRAINING, frames=3)
    old.connection_closed(1006, "gone", now=0.5)
    new = client_in(State.STREAMING)
    new.take_over(old, now=0.6)
    assert new.state is State.DRAINING
    texts = [json.loads(a.text) for a in new.actions() if isinstance(a, SendText)]
    assert texts[-1] == {"message": "EndOfStream", "last_seq_no": 3}
    assert new.get_timer() is not None  # the drain deadline runs


def test_take_over_sends_mid_session_changes_again() -> None:
    old = client_in(State.STREAMING, frames=1)
    old.set_recognition_config(max_delay=3.0)
    old.connection_closed(1006, "gone", now=0.5)
    new = client_in(State.STREAMING)
    new.take_over(old, now=0.6)
    first = new.actions()[0]
    assert isinstance(first, SendText)
    assert json.loads(first.text)["message"] == "SetRecognitionConfig"
    assert new.transcription_config.max_delay == 3.0


@pytest.mark.parametrize("case", ["new sent audio", "old closed", "new not started", "itself"])
def test_take_over_refuses_what_it_cannot_continue(case: str) -> None:
    old = client_in(State.STREAMING, frames=1)
    new = client_in(State.STREAMING)
    if case == "new sent audio":
        new.send_audio(FRAME)
    elif case == "old closed":
        old = client_in(State.CLOSED)
    elif case == "new not started":
        new = client_in(State.AWAITING_RECOGNITION_STARTED)
    elif case == "itself":
        old = new
    with pytest.raises(LocalProtocolError):
        new.take_over(old)


def test_take_over_refuses_a_lossy_continuation() -> None:
    old = client_in(State.STREAMING, retain_audio_seconds=0.1)
    for _ in range(3):
        old.send_audio(FRAME)
    assert old.retention_overflowed
    new = client_in(State.STREAMING)
    with pytest.raises(LocalProtocolError, match="without loss"):
        new.take_over(old)
    new.take_over(old, allow_loss=True)


# --------------------------------------------------------------------------- tolerant reading


def test_json_in_a_binary_frame_is_read_as_text() -> None:
    """Both official clients json.loads() whatever arrives; the legacy SDK's test server
    sends its JSON in binary frames."""
    conn = ClientConnection(TranscriptionConfig(language="en"), AudioFormat())
    conn.connection_opened(now=0.0)
    conn.receive_message(b' {"message": "RecognitionStarted", "id": "x"}', now=0.1)
    assert conn.state is State.STREAMING
    conn.send_audio(FRAME)
    conn.receive_message(memoryview(b'{"message": "AudioAdded", "seq_no": 1}'), now=0.2)
    assert conn.audio_in_flight.frames == 0


@pytest.mark.parametrize("data", [FRAME, b"{" + b"\xff" * 100, b"{not json", b"[1, 2]"])
def test_binary_that_is_not_a_json_object_is_still_refused(data: bytes) -> None:
    from smproto import RemoteProtocolError

    conn = client_in(State.STREAMING)
    with pytest.raises(RemoteProtocolError):
        conn.receive_message(data, now=0.2)
    assert conn.state is State.FAILED
