"""The local server over real WebSockets on 127.0.0.1, driven by our client engine."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from smproto import (
    Result,
    State,
    TranscriptionConfig,
)
from smproto.config import StartRecognitionConfig
from smproto.config import TranscriptionConfig as TC
from smproto.events import (
    AddTranscript,
    AudioAdded,
    EndOfTranscript,
    LanguagePackInfo,
    RecognitionStarted,
    ServerError,
    ServerInfo,
    SpeakerIdentity,
)
from smproto.events import (
    ConnectionClosed as ClosedEvent,
)
from smproto.transcript import Alternative
from smproto_server import RecognizerError, ServerOptions, Transcript, serve
from smproto_server.recognizer import Output
from tests.drivers.smproto_server._client_loop import run_client


@dataclass
class CountingSession:
    """Says ``chunkN`` for the N-th chunk of audio, as a final."""

    delay: float = 0.0
    chunks: int = 0
    closed: bool = False
    language_pack_info: LanguagePackInfo = field(default_factory=LanguagePackInfo)

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.chunks += 1
        t = (self.chunks - 1) * 0.1
        word = Result("word", t, t + 0.1, (Alternative(f"chunk{self.chunks}", 1.0),))
        return [Transcript([word], t, t + 0.1, final=True, channel=channel)]

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        return []

    async def reconfigure(self, config: TC) -> Sequence[Output]:
        return []

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        return []

    async def speakers(self) -> Sequence[SpeakerIdentity]:
        return []

    async def close(self) -> None:
        self.closed = True


@dataclass
class CountingRecognizer:
    name: str = "counting"
    delay: float = 0.0
    sessions: list[CountingSession] = field(default_factory=list)
    closed: bool = False

    async def open_session(self, config: StartRecognitionConfig) -> CountingSession:
        if config.transcription_config.language == "xx":
            raise RecognizerError("invalid_language", "xx is not a language")
        session = CountingSession(self.delay)
        self.sessions.append(session)
        return session

    async def aclose(self) -> None:
        self.closed = True


def test_a_whole_session() -> None:
    async def main() -> None:
        recognizer = CountingRecognizer()
        async with await serve("127.0.0.1", 0, recognizer=recognizer) as server:
            assert server.url.startswith("ws://127.0.0.1:")
            conn, events, _ = await run_client(server.url + "/en?sm-sdk=test", 12)
            assert conn.state is State.CLOSED and conn.failure is None
            kinds = [type(e) for e in events]
            assert kinds[0] is ServerInfo and kinds[1] is RecognitionStarted
            assert sum(k is AudioAdded for k in kinds) == 12
            finals = [e for e in events if isinstance(e, AddTranscript)]
            assert [f.text for f in finals] == [f"chunk{i}" for i in range(1, 13)]
            assert kinds[-2:] == [EndOfTranscript, ClosedEvent]
            closed = events[-1]
            assert isinstance(closed, ClosedEvent) and closed.code == 1000
            info = events[0]
            assert isinstance(info, ServerInfo) and info.type == "concurrent_session_usage"
            await asyncio.sleep(0.05)
            assert recognizer.sessions[0].closed
            assert server.active_sessions == 0 and server.total_sessions == 1
        assert recognizer.closed

    asyncio.run(main())


def test_sockets_are_the_listening_sockets() -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=CountingRecognizer()) as server:
            sockets = server.sockets
            assert [s.getsockname() for s in sockets] == [("127.0.0.1", server.port)]
            assert sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1

    asyncio.run(main())


def test_wrong_key_in_band_and_missing_key_at_handshake() -> None:
    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=CountingRecognizer(), api_keys=["k1", "k2"]
        ) as server:
            conn, events, _ = await run_client(
                server.url, 1, headers={"Authorization": "Bearer nope"}
            )
            error = next(e for e in events if isinstance(e, ServerError))
            assert error.type == "not_authorised"
            closed = next(e for e in events if isinstance(e, ClosedEvent))
            assert closed.code == 4001
            with pytest.raises(InvalidStatus) as info:
                await run_client(server.url, 1)
            assert info.value.response.status_code == 401
            conn, events, _ = await run_client(
                server.url, 2, headers={"Authorization": "Bearer k2"}
            )
            assert conn.state is State.CLOSED and conn.failure is None
            conn, events, _ = await run_client(server.url + "?jwt=k1", 2)
            assert conn.state is State.CLOSED and conn.failure is None

    asyncio.run(main())


def test_wrong_key_refused_at_handshake_when_asked() -> None:
    async def main() -> None:
        async with await serve(
            "127.0.0.1",
            0,
            recognizer=CountingRecognizer(),
            api_keys=["k"],
            auth_failure="handshake",
        ) as server:
            with pytest.raises(InvalidStatus) as info:
                await run_client(server.url, 1, headers={"Authorization": "Bearer bad"})
            assert info.value.response.status_code == 401

    asyncio.run(main())


def test_unknown_path_is_404() -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=CountingRecognizer()) as server:
            with pytest.raises(InvalidStatus) as info:
                await run_client(server.url.replace("/v2", "/v1"), 1)
            assert info.value.response.status_code == 404

    asyncio.run(main())


@pytest.mark.parametrize(
    ("config", "error_type", "code"),
    [
        (TranscriptionConfig(language="xx"), "invalid_language", 4004),
        (TranscriptionConfig(language="en", extra={"made_up": 1}), "invalid_config", 1003),
    ],
)
def test_refused_configs(config: TranscriptionConfig, error_type: str, code: int) -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=CountingRecognizer()) as server:
            conn, events, _ = await run_client(server.url, 1, config=config)
            error = next(e for e in events if isinstance(e, ServerError))
            assert error.type == error_type
            assert next(e for e in events if isinstance(e, ClosedEvent)).code == code
            assert conn.state is State.FAILED

    asyncio.run(main())


def test_session_cap_is_quota_exceeded() -> None:
    async def main() -> None:
        recognizer = CountingRecognizer(delay=0.05)
        async with await serve("127.0.0.1", 0, recognizer=recognizer, max_sessions=1) as server:
            first = asyncio.create_task(run_client(server.url, 20))
            while server.active_sessions == 0:
                await asyncio.sleep(0.01)
            _conn, events, _ = await run_client(server.url, 1)
            error = next(e for e in events if isinstance(e, ServerError))
            assert error.type == "quota_exceeded" and error.retryable
            assert next(e for e in events if isinstance(e, ClosedEvent)).code == 4005
            ok, _, _ = await first
            assert ok.state is State.CLOSED

    asyncio.run(main())


def test_a_slow_recogniser_paces_the_acks() -> None:
    """Acks follow the recogniser: a client with a small window cannot run ahead."""

    async def main() -> None:
        recognizer = CountingRecognizer(delay=0.03)
        async with await serve("127.0.0.1", 0, recognizer=recognizer) as server:
            conn, events, elapsed = await run_client(server.url, 20, window=0.2)
            assert conn.state is State.CLOSED
            assert elapsed >= 20 * 0.03
            assert sum(isinstance(e, AudioAdded) for e in events) == 20

    asyncio.run(main())


def test_many_sessions_at_once() -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=CountingRecognizer()) as server:
            results = await asyncio.gather(*(run_client(server.url, 8) for _ in range(12)))
            for conn, events, _ in results:
                assert conn.state is State.CLOSED
                assert len([e for e in events if isinstance(e, AddTranscript)]) == 8
            assert server.total_sessions == 12

    asyncio.run(main())


def test_graceful_shutdown_closes_open_sessions() -> None:
    async def main() -> None:
        recognizer = CountingRecognizer()
        server = await serve("127.0.0.1", 0, recognizer=recognizer)
        async with connect(server.url) as ws:
            start = {
                "message": "StartRecognition",
                "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
                "transcription_config": {"language": "en"},
            }
            await ws.send(json.dumps(start))
            await ws.recv()  # Info
            await ws.recv()  # RecognitionStarted
            await server.aclose(grace=0.2)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert recognizer.closed and recognizer.sessions[0].closed

    asyncio.run(main())


def test_protocol_limits_from_options() -> None:
    async def main() -> None:
        options = ServerOptions(start_timeout=0.2)
        async with (
            await serve("127.0.0.1", 0, recognizer=CountingRecognizer(), options=options) as server,
            connect(server.url) as ws,
        ):
            await ws.recv()  # Info
            error: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert error["message"] == "Error" and error["type"] == "protocol_error"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)

    asyncio.run(main())
