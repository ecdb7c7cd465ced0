"""Testing your own application offline, against the local server (pytest).

    python -m pytest docs/examples/test_offline_app.py

``my_app_transcribe`` stands for the code under test: anything that takes a real-time
URL. The server runs the scripted recogniser, which "hears" words coded as tones, so
the expected transcript and every word's timing are known exactly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

import smproto_asyncio
from smproto import AudioFormat, TranscriptionConfig
from smproto.audio import pcm_chunks
from smproto.events import AddTranscript
from smproto.transcript import Result
from smproto_server import LocalServer, ServerOptions, serve
from smproto_server.recognizers import (
    ScriptedRecognizer,
    expected_timings,
    synthesize,
    synthesize_wav,
)


async def my_app_transcribe(url: str, wav: bytes) -> str:
    """The application under test (here: the asyncio driver's one-call helper)."""
    return await smproto_asyncio.transcribe(wav, url=url)


# -- A server for any test, sync or async, on any event loop: its own loop, in a thread.


@pytest.fixture(scope="session")
def speech_server() -> Iterator[LocalServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    start = serve("127.0.0.1", 0, recognizer=ScriptedRecognizer())
    server = asyncio.run_coroutine_threadsafe(start, loop).result(timeout=10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_the_app_gets_every_word(speech_server: LocalServer) -> None:
    wav = synthesize_wav(["hello", "world", "good", "morning"])
    text = asyncio.run(my_app_transcribe(speech_server.url, wav))
    assert text == "hello world good morning."


# -- An asyncio test can run the server on its own loop instead (anyio's pytest plugin).


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # serve() runs on asyncio


@pytest.fixture
async def strict_server() -> AsyncIterator[LocalServer]:
    options = ServerOptions(start_timeout=5.0, max_audio_seconds=30.0)
    async with await serve(recognizer=ScriptedRecognizer(), options=options) as server:
        yield server


@pytest.mark.anyio
async def test_word_timings_are_exact(strict_server: LocalServer) -> None:
    words = ["one", "two", "three"]
    audio = synthesize(words)  # 16 kHz pcm_s16le, the default AudioFormat()
    finals: list[Result] = []
    async with smproto_asyncio.connect(
        strict_server.url, transcription_config=TranscriptionConfig("en")
    ) as session:
        # A short clip: sending all of it before reading is fine (events wait in the
        # session's backlog). For long audio, send from a task: see the asyncio guide.
        for chunk in pcm_chunks(audio, AudioFormat(), seconds=0.1):
            await session.send_audio(chunk)
        await session.end_of_stream()
        async for event in session:
            if isinstance(event, AddTranscript):
                finals += [r for r in event.results if r.type == "word"]
    assert [r.content for r in finals] == words
    assert [(r.start_time, r.end_time) for r in finals] == expected_timings(words)
