"""Record a session as JSON lines that ``ReplayRecognizer`` (and ``smproto serve
--recognizer replay``) can play back.

    python docs/examples/record_session.py URL FILE.wav OUT.jsonl

Each line is ``{"ts": ..., "audio_ts": ..., "payload": {...}}``: when the message
arrived, how many seconds of audio had been sent by then, and the message as the
server sent it. Record against Speechmatics once (``URL`` =
``wss://eu2.rt.speechmatics.com/v2``, with ``SPEECHMATICS_API_KEY`` set), then replay
it in your tests as often as you like, with no account and no network.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from smproto import TranscriptionConfig
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto_asyncio import connect


async def record(url: str, wav_path: str, jsonl_path: str) -> None:
    audio_format, pcm = wav_to_pcm(Path(wav_path).read_bytes())
    config = TranscriptionConfig("en", enable_partials=True)
    # No reconnects: a resumed connection's raw messages have times of their own.
    async with connect(
        url, transcription_config=config, audio_format=audio_format, reconnect=False
    ) as session:

        async def send() -> None:
            for chunk in pcm_chunks(pcm, audio_format, seconds=0.1):
                await session.send_audio(chunk)
            await session.end_of_stream()

        sender = asyncio.create_task(send())
        start = time.monotonic()
        with open(jsonl_path, "w", encoding="utf-8") as out:
            async for event in session:
                line = {
                    "ts": time.monotonic() - start,
                    "audio_ts": session.connection.audio_seconds_sent,
                    "payload": getattr(event, "raw", {}),  # every server message has .raw
                }
                out.write(json.dumps(line) + "\n")
        await sender


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} URL FILE.wav OUT.jsonl")
    asyncio.run(record(sys.argv[1], sys.argv[2], sys.argv[3]))
