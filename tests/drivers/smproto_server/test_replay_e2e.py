"""The recorded real session, replayed end to end over real WebSockets on 127.0.0.1.

``audio_01_16kHz.wav`` streams through ``serve()`` with ``ReplayRecognizer(chat1.jsonl)``
to our own client engine; the finals it gets are the recording's, word for word and
time for time.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path
from typing import Any

import pytest

from smproto import AudioFormat, State, TranscriptionConfig
from smproto.assembler import TranscriptAssembler
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    EndOfUtterance,
    RecognitionStarted,
)
from smproto.transcript import Result, join_results, parse_results
from smproto_server import serve
from smproto_server.recognizers import ReplayRecognizer
from tests.drivers.smproto_server._client_loop import run_client
from tests.support import require_fixtures

FRAME_BYTES = 3200  # 0.1 s of 16 kHz pcm_s16le

Token = tuple[str, str, float, float, str | None]


def _recorded(path: Path, message: str) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            payload = json.loads(line)["payload"]
            if payload.get("message") == message:
                out.append(payload)
    return out


def _frames(path: Path) -> list[bytes]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        pcm = wav.readframes(wav.getnframes())
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def _raw_tokens(finals: list[dict[str, Any]]) -> list[Token]:
    """Every result of the recorded finals, read straight from the JSON."""
    return [
        (
            r["type"],
            r["alternatives"][0]["content"],
            r["start_time"],
            r["end_time"],
            r["alternatives"][0].get("speaker"),
        )
        for final in finals
        for r in final["results"]
    ]


def _tokens(results: list[Result]) -> list[Token]:
    return [
        (r.type, r.content, r.start_time, r.end_time, r.alternatives[0].speaker) for r in results
    ]


@pytest.mark.timeout(60)
def test_the_recorded_session_replays_word_for_word() -> None:
    fixtures = require_fixtures()
    jsonl = fixtures / "chat1.jsonl"
    frames = _frames(fixtures / "audio_01_16kHz.wav")
    recorded_finals = _recorded(jsonl, "AddTranscript")
    recorded_eous = _recorded(jsonl, "EndOfUtterance")
    assert len(recorded_finals) > 50 and len(frames) > 270  # the fixture is what we think

    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=ReplayRecognizer(jsonl)) as server:
            conn, events, _ = await asyncio.wait_for(
                run_client(
                    server.url,
                    frames,
                    config=TranscriptionConfig(language="en", enable_partials=True),
                    audio_format=AudioFormat(encoding="pcm_s16le", sample_rate=16000),
                ),
                timeout=45,
            )
        assert conn.state is State.CLOSED and conn.failure is None
        started = next(e for e in events if isinstance(e, RecognitionStarted))
        info = started.language_pack_info
        assert info is not None and info.language_description == "English"
        acks = [e.seq_no for e in events if isinstance(e, AudioAdded)]
        assert acks == list(range(1, len(frames) + 1))
        assert isinstance(events[-2], EndOfTranscript)
        closed = events[-1]
        assert isinstance(closed, ConnectionClosed) and closed.code == 1000

        finals = [e for e in events if isinstance(e, AddTranscript)]
        # Message for message: the same stretches of audio...
        assert [(f.start_time, f.end_time) for f in finals] == [
            (m["metadata"]["start_time"], m["metadata"]["end_time"]) for m in recorded_finals
        ]
        # ... and the same words, punctuation, times and speakers, in order.
        ours = [r for f in finals for r in f.results]
        assert _tokens(ours) == _raw_tokens(recorded_finals)
        assert len(ours) > 60

        # The final text is the recording's.
        assembler = TranscriptAssembler()
        for event in events:
            assembler.add(event)
        expected_results = [r for m in recorded_finals for r in parse_results(m["results"])]
        assert assembler.final_text == join_results(expected_results)
        assert assembler.final_text.startswith("Welcome to speech.")
        assert "Hello. This is a test one, two, three." in assembler.final_text

        # The ends of utterance and partials were replayed too.
        eous = [e for e in events if isinstance(e, EndOfUtterance)]
        assert len(eous) == len(recorded_eous)
        assert any(isinstance(e, AddPartialTranscript) and e.results for e in events)

    asyncio.run(main())
