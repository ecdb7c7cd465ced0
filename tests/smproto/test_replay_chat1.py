"""A recorded real Speechmatics session replays through the client engine."""

from __future__ import annotations

import json
import re
import wave

import pytest

from smproto import AudioFormat, ClientConnection, State, TranscriptAssembler, TranscriptionConfig
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    EndOfUtterance,
    RecognitionStarted,
    ServerInfo,
    TranscriptEvent,
)
from tests.support import chat1_messages, require_fixtures

EVENT_TYPES = {
    "Info": ServerInfo,
    "RecognitionStarted": RecognitionStarted,
    "AddPartialTranscript": AddPartialTranscript,
    "AddTranscript": AddTranscript,
    "EndOfUtterance": EndOfUtterance,
}


def _audio_frames() -> list[bytes]:
    with wave.open(str(require_fixtures() / "audio_01_16kHz.wav"), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (16000, 2, 1)
        data = wav.readframes(wav.getnframes())
    return [data[i : i + 3200] for i in range(0, len(data), 3200)]


def test_chat1_replays_through_the_engine() -> None:
    messages = chat1_messages()
    conn = ClientConnection(
        TranscriptionConfig(
            language="en", enable_partials=True, max_delay=0.7, diarization="speaker"
        ),
        AudioFormat(encoding="pcm_s16le", sample_rate=16000),
    )
    conn.connection_opened(now=0.0)
    conn.actions()
    frames = iter(_audio_frames())
    assembler = TranscriptAssembler()
    finals_text = ""
    for i, message in enumerate(messages):
        now = float(i)
        conn.receive_message(json.dumps(message), now=now)
        events = conn.events()
        assert len(events) == 1, message
        (event,) = events
        assert type(event) is EVENT_TYPES[message["message"]]
        assert event.raw == message
        assembler.add(event)
        if isinstance(event, TranscriptEvent):
            meta = message["metadata"]
            assert (event.start_time, event.end_time) == (meta["start_time"], meta["end_time"])
            assert len(event.results) == len(message["results"])
            for result, raw in zip(event.results, message["results"], strict=True):
                assert result.type == raw["type"]
                assert result.content == raw["alternatives"][0]["content"]
                assert result.speaker == raw["alternatives"][0].get("speaker")
                assert (result.start_time, result.end_time) == (raw["start_time"], raw["end_time"])
            assert event.channel is None and not event.forced
            if isinstance(event, AddTranscript):
                finals_text += meta["transcript"]
        elif isinstance(event, EndOfUtterance):
            assert event.end_time == message["metadata"]["end_time"]
        elif isinstance(event, RecognitionStarted):
            assert event.id == message["id"]
            assert event.language_pack_info is not None
            assert event.language_pack_info.word_delimiter == " "
            # Audio flows once recognition has started, a frame per 0.1 s.
            assert conn.state is State.STREAMING
            for _ in range(10):
                conn.send_audio(next(frames))
        elif isinstance(event, ServerInfo):
            assert conn.state is State.AWAITING_RECOGNITION_STARTED
            assert event.type == "concurrent_session_usage"
    assert conn.state is State.STREAMING
    for frame in frames:
        conn.send_audio(frame)
    conn.end_of_stream()
    conn.receive_message('{"message": "EndOfTranscript"}', now=1e6)
    assert conn.state is State.CLOSED

    # The server's own per-message transcripts, concatenated, leave a space before a full
    # stop that arrived in a message of its own ("speech ." ) and run the speakers' turns
    # together; the assembler attaches the stop to its word and puts each speaker's turn
    # on its own line, as convert_to_txt does. The words are the same, in the same order.
    expected = re.sub(r"\s+([.,?!])", r"\1", finals_text).split()
    assert assembler.final_text.split() == expected
    assert "speech. We're" in assembler.final_text
    assert "\n" in assembler.final_text  # speaker turns (S1, S2) on their own lines
    assert len(finals_text) > 200


def test_chat1_text_of_each_final_matches_the_server() -> None:
    """Within one message our joining agrees with the server's own rendering."""
    for message in chat1_messages():
        if message["message"] != "AddTranscript" or not message["results"]:
            continue
        conn = ClientConnection(TranscriptionConfig())
        conn.connection_opened(now=0)
        conn.receive_message('{"message": "RecognitionStarted"}', now=0)
        conn.events()
        conn.receive_message(json.dumps(message), now=0)
        (event,) = conn.events()
        assert isinstance(event, AddTranscript)
        server = message["metadata"]["transcript"].strip()
        if len({r.speaker for r in event.results}) > 1:
            pytest.fail("a single final with two speakers: compare by words")
        assert event.text == server, message
