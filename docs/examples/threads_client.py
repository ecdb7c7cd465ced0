"""Transcribe a WAV file with ``smproto_sync``, on plain threads: no asyncio, no trio.

    python docs/examples/threads_client.py URL FILE.wav

A thread sends the audio (``send_audio`` blocks while the flow-control window is full)
while the main thread iterates over the session's events; the iteration ends after
``EndOfTranscript``, and raises a ``SessionError`` if the session fails. The API key
comes from ``SPEECHMATICS_API_KEY`` (a local ``smproto serve`` needs none). Reconnects
are automatic and lose no audio.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from smproto import TranscriptAssembler, TranscriptionConfig
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto.events import AddTranscript, Reconnected
from smproto_sync import SessionError, connect


def main(url: str, wav_path: str) -> int:
    audio_format, pcm = wav_to_pcm(Path(wav_path).read_bytes())
    config = TranscriptionConfig("en", enable_partials=True, max_delay=1.0)
    transcript = TranscriptAssembler()
    try:
        with connect(url, transcription_config=config, audio_format=audio_format) as session:

            def send_audio() -> None:
                try:
                    for chunk in pcm_chunks(pcm, audio_format, seconds=0.1):
                        session.send_audio(chunk)
                    session.end_of_stream()
                except SessionError:
                    pass  # the session failed: the main thread's iteration raises the error

            sender = threading.Thread(target=send_audio, daemon=True)
            sender.start()
            for event in session:
                transcript.add(event)
                if isinstance(event, AddTranscript) and event.text:
                    print(f"[{event.start_time:7.2f}s] {event.text}", flush=True)
                elif isinstance(event, Reconnected):
                    print(f"reconnected: {event.reason}", file=sys.stderr)
            sender.join()
    except SessionError as exc:  # from connect() or from the iteration
        print(f"failed: {exc} (retryable: {exc.retryable})", file=sys.stderr)
        return 1
    print(transcript.final_text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} URL FILE.wav")
    sys.exit(main(sys.argv[1], sys.argv[2]))
