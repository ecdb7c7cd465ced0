"""smproto_server: a local Speechmatics-compatible real-time server.

    import asyncio
    from smproto_server import serve

    async def main():
        async with await serve("127.0.0.1", 9000) as server:
            print("connect to", server.url)
            await server.serve_forever()

    asyncio.run(main())

It runs :class:`smproto.ServerConnection` over ``websockets`` with a pluggable
recogniser (see :mod:`smproto_server.recognizer`): scripted (deterministic, for
tests), replay (a recorded session) or offline speech recognition (the default when
pocketsphinx is installed: ``pip install 'smproto[asr]'``).
"""

from __future__ import annotations

from .recognizer import (
    AudioEvent,
    Output,
    Recognizer,
    RecognizerError,
    RecognizerSession,
    Transcript,
    Translation,
    Utterance,
    send_output,
)
from .server import LocalServer, ServerOptions, default_recognizer, serve

__all__ = [
    "AudioEvent",
    "LocalServer",
    "Output",
    "Recognizer",
    "RecognizerError",
    "RecognizerSession",
    "ServerOptions",
    "Transcript",
    "Translation",
    "Utterance",
    "default_recognizer",
    "send_output",
    "serve",
]
