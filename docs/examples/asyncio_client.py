"""Transcribe a WAV file with ``smproto_asyncio``, printing finals as they arrive.

    python docs/examples/asyncio_client.py URL FILE.wav

A task sends the audio (``send_audio`` waits while the flow-control window is full)
while the main task reads the session's events; the iteration ends after
``EndOfTranscript``, and raises a ``SessionError`` if the session fails. The API key
comes from ``SPEECHMATICS_API_KEY`` (a local ``smproto serve`` needs none). Reconnects
are automatic and lose no audio.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from smproto import TranscriptAssembler, TranscriptionConfig
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto.events import AddTranscript, Reconnected
from smproto_asyncio import SessionError, connect


async def main(url: str, wav_path: str) -> int:
    audio_format, pcm = wav_to_pcm(Path(wav_path).read_bytes())
    config = TranscriptionConfig("en", enable_partials=True, max_delay=1.0)
    transcript = TranscriptAssembler()
    failure: SessionError | None = None
    try:
        async with connect(url, transcription_config=config, audio_format=audio_format) as session:

            async def send_audio() -> None:
                try:
                    for chunk in pcm_chunks(pcm, audio_format, seconds=0.1):
                        await session.send_audio(chunk)
                    await session.end_of_stream()
                except SessionError:
                    pass  # the session failed: reading its events raises the error

            async with asyncio.TaskGroup() as tasks:
                sender = tasks.create_task(send_audio())
                try:
                    async for event in session:
                        transcript.add(event)
                        if isinstance(event, AddTranscript) and event.text:
                            print(f"[{event.start_time:7.2f}s] {event.text}", flush=True)
                        elif isinstance(event, Reconnected):
                            print(f"reconnected: {event.reason}", file=sys.stderr)
                except SessionError as exc:
                    failure = exc
                    sender.cancel()
    except SessionError as exc:  # raised by connect(): the session could not start
        failure = exc
    if failure is not None:
        print(f"failed: {failure} (retryable: {failure.retryable})", file=sys.stderr)
        return 1
    print(transcript.final_text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} URL FILE.wav")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
