"""Transcribe a WAV file with ``smproto_trio``, printing finals as they arrive.

    python docs/examples/trio_client.py URL FILE.wav

The same program as ``asyncio_client.py``, on trio: the sender runs in a nursery
beside the loop that reads events. ``connect()`` runs the session's own tasks in a
nursery hidden inside it, so its errors come out as themselves; the error is caught
inside *this* nursery too, so that it is not wrapped in an ExceptionGroup either.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from smproto import TranscriptAssembler, TranscriptionConfig
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto.events import AddTranscript, Reconnected
from smproto_trio import SessionError, connect


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

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_audio)
                try:
                    async for event in session:
                        transcript.add(event)
                        if isinstance(event, AddTranscript) and event.text:
                            print(f"[{event.start_time:7.2f}s] {event.text}", flush=True)
                        elif isinstance(event, Reconnected):
                            print(f"reconnected: {event.reason}", file=sys.stderr)
                except SessionError as exc:
                    failure = exc
                    nursery.cancel_scope.cancel()
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
    sys.exit(trio.run(main, sys.argv[1], sys.argv[2]))
