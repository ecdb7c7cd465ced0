"""The official Speechmatics clients complete whole sessions against ``serve()``.

Both official Python clients from the package registry talk to our server over
127.0.0.1: the new SDK (``speechmatics-rt``: ``AsyncClient``, ``AsyncMultiChannelClient``)
and the legacy one (``speechmatics-python``: ``WebsocketClient``). The audio is tone-coded
"speech" from the scripted recogniser, so every word, time and partial is known in
advance (see :mod:`smproto_server.recognizers.scripted`).

What the server did is read from its side: ``websockets`` logs every frame a connection
writes and reads at DEBUG (``> CLOSE 4001 ...``, ``< TEXT '{"message": "EndOfStream",
...}'``), which gives the close code the server sent and the messages the client sent,
whatever the client chooses to report.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Frame

from smproto.config import StartRecognitionConfig
from smproto_server import LocalServer, RecognizerError, serve
from smproto_server.recognizers import ScriptedRecognizer, ScriptedSession
from smproto_server.recognizers.scripted import expected_timings, synthesize

with warnings.catch_warnings():  # the legacy package warns that it is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("speechmatics.rt", reason="speechmatics-rt (the new SDK) is not installed")
    pytest.importorskip(
        "speechmatics.client", reason="speechmatics-python (the legacy SDK) is not installed"
    )
    import speechmatics.rt as rt
    from speechmatics.client import WebsocketClient  # type: ignore[import-untyped]
    from speechmatics.exceptions import TranscriptionError  # type: ignore[import-untyped]
    from speechmatics.models import (  # type: ignore[import-untyped]
        AudioSettings,
        ConnectionSettings,
    )
    from speechmatics.models import TranscriptionConfig as LegacyConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "interop-key"
FRAME_BYTES = 3200  # 0.1 s of 16 kHz pcm_s16le
RT_FORMAT = rt.AudioFormat(
    encoding=rt.AudioEncoding.PCM_S16LE, sample_rate=16000, chunk_size=FRAME_BYTES
)
LEGACY_FORMAT = AudioSettings(encoding="pcm_s16le", sample_rate=16000, chunk_size=FRAME_BYTES)
WORDS = ["hello", "world", "good", "morning"]

Message = dict[str, Any]


def frames_in(audio: bytes) -> int:
    return math.ceil(len(audio) / FRAME_BYTES)


# --------------------------------------------------------------------------- the server side


class ServerLog:
    """The frames the server wrote (``>``) and read (``<``), from websockets' DEBUG log.

    Whatever logger the server hands websockets, its frames are the DEBUG records
    ``"> CLOSE ..."``, ``"< TEXT ..."``; the clients' own frames go to
    ``websockets.client`` and are left out.
    """

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        caplog.set_level(logging.DEBUG)

    @property
    def lines(self) -> list[str]:
        return [
            message
            for r in self._caplog.records
            if r.levelno == logging.DEBUG
            and not r.name.startswith("websockets.client")
            and (message := r.getMessage())[:2] in ("> ", "< ")
        ]

    @property
    def closes_sent(self) -> list[int]:
        """The close codes the server sent, in order."""
        return [int(m[1]) for line in self.lines if (m := re.match(r"> CLOSE (\d+)", line))]

    def received(self, message: str) -> list[Message]:
        """The client's text messages of type ``message`` (short ones: the log elides
        longer payloads)."""
        out = []
        for line in self.lines:
            m = re.match(r"< TEXT '(.*)' \[\d+ bytes\]$", line)
            if m and f'"message": "{message}"' in m[1]:
                out.append(json.loads(m[1]))
        return out

    def binary_frames_before(self, message: str) -> int:
        """How many binary frames the server read before the text message ``message``."""
        count = 0
        for line in self.lines:
            if line.startswith("< BINARY"):
                count += 1
            elif line.startswith("< TEXT") and f'"message": "{message}"' in line:
                return count
        raise AssertionError(f"the server never read a {message}")


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> ServerLog:
    # Long enough to log the short control messages whole (the default elides at 75).
    monkeypatch.setattr(Frame, "MAX_LOG_SIZE", 600)
    return ServerLog(caplog)


class EnglishOnly(ScriptedRecognizer):
    """The scripted recogniser, refusing every language but English."""

    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        language = config.transcription_config.language
        if language != "en":
            raise RecognizerError("invalid_language", f"{language!r} is not supported")
        return await super().open_session(config)


async def until_idle(server: LocalServer) -> None:
    """Wait (briefly) for the server to finish its sessions."""
    for _ in range(200):
        if server.active_sessions == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{server.active_sessions} sessions still open")


# --------------------------------------------------------------------- what the client saw


def of(messages: Sequence[Message], kind: str, channel: str | None = None) -> list[Message]:
    return [
        m
        for m in messages
        if m["message"] == kind and (channel is None or m.get("channel") == channel)
    ]


def contents(message: Message) -> list[str]:
    return [r["alternatives"][0]["content"] for r in message["results"]]


def check_transcripts(
    messages: Sequence[Message],
    words: Sequence[str],
    *,
    partials_for: Sequence[str] = (),
    channel: str | None = None,
) -> None:
    """The finals say exactly ``words`` at the scripted times, then a full stop; the
    words in ``partials_for`` were each announced by partials (0.1 s, 0.2 s and 0.3 s
    in), and the other words by none."""
    finals = of(messages, "AddTranscript", channel)
    said = [
        (r["alternatives"][0]["content"], r["start_time"], r["end_time"])
        for f in finals
        for r in f["results"]
        if r["type"] == "word"
    ]
    expected = [(w, s, e) for w, (s, e) in zip(words, expected_timings(words), strict=True)]
    assert said == [(w, pytest.approx(s), pytest.approx(e)) for w, s, e in expected]
    # One final per word, then the full stop; they tile the timeline from 0.
    with_words = [f for f in finals if f["results"]]
    assert [contents(f) for f in with_words] == [[w] for w in words] + [["."]]
    assert finals[0]["metadata"]["start_time"] == 0.0
    for before, after in itertools.pairwise(finals):
        assert after["metadata"]["start_time"] == pytest.approx(before["metadata"]["end_time"])
    # Partials: each between the final before its word and the word's own final.
    transcripts = [
        m
        for m in messages
        if m["message"] in ("AddTranscript", "AddPartialTranscript")
        and (channel is None or m.get("channel") == channel)
    ]
    for word, (start, end) in zip(words, expected_timings(words), strict=True):
        final_at = next(
            i for i, m in enumerate(transcripts) if m in finals and contents(m) == [word]
        )
        run: list[Message] = []
        for m in reversed(transcripts[:final_at]):
            if m["message"] == "AddTranscript":
                break
            run.insert(0, m)
        if word in partials_for:
            assert [contents(p) for p in run] == [[word]] * 3, word
            ends = [p["metadata"]["end_time"] for p in run]
            assert ends == pytest.approx([start + 0.1, start + 0.2, end]), word
        else:
            assert run == [], word


# ------------------------------------------------------------------ speechmatics-rt (new SDK)


def rt_recorder(client: rt.AsyncClient | rt.AsyncMultiChannelClient) -> list[Message]:
    messages: list[Message] = []
    for kind in rt.ServerMessageType:
        client.on(kind, messages.append)
    return messages


@pytest.mark.timeout(30)
def test_rt_async_client_whole_session_with_partials(server_log: ServerLog) -> None:
    audio = synthesize(WORDS)
    frames = frames_in(audio)

    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=ScriptedRecognizer(), api_keys=[KEY]
        ) as server:
            async with rt.AsyncClient(api_key=KEY, url=server.url) as client:
                messages = rt_recorder(client)
                await client.transcribe(
                    io.BytesIO(audio),
                    transcription_config=rt.TranscriptionConfig(
                        language="en", enable_partials=True
                    ),
                    audio_format=RT_FORMAT,
                    timeout=15,
                )
            await until_idle(server)

        kinds = [m["message"] for m in messages]
        assert kinds[:2] == ["Info", "RecognitionStarted"]
        assert kinds[-1] == "EndOfTranscript" and kinds.count("EndOfTranscript") == 1
        assert [m["seq_no"] for m in of(messages, "AudioAdded")] == list(range(1, frames + 1))
        assert not of(messages, "Error") and not of(messages, "Warning")
        check_transcripts(messages, WORDS, partials_for=WORDS)
        # A clean close: the client closed with 1000 after EndOfTranscript, and the
        # server answered in kind.
        assert server_log.closes_sent == [1000]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_rt_async_client_last_seq_no_quirk_is_tolerated(server_log: ServerLog) -> None:
    """The new SDK's ``EndOfStream.last_seq_no`` is the last *acknowledged* frame (its
    ``AudioAdded`` handler overwrites its frame counter). With acks behind the audio
    (a recogniser that takes 10 ms a frame) it is lower than the frames sent: the
    server still takes every frame and finishes the transcript."""
    audio = synthesize(WORDS)
    frames = frames_in(audio)

    async def main() -> None:
        recognizer = ScriptedRecognizer(feed_delay=0.01)
        async with await serve("127.0.0.1", 0, recognizer=recognizer, api_keys=[KEY]) as server:
            async with rt.AsyncClient(api_key=KEY, url=server.url) as client:
                messages = rt_recorder(client)
                await client.start_session(
                    transcription_config=rt.TranscriptionConfig(language="en"),
                    audio_format=RT_FORMAT,
                )
                for i in range(0, len(audio), FRAME_BYTES):
                    await client.send_audio(audio[i : i + FRAME_BYTES])
                async with asyncio.timeout(5):
                    while not of(messages, "AudioAdded"):
                        await asyncio.sleep(0.001)
                await asyncio.wait_for(client.stop_session(), 15)
            await until_idle(server)

        (eos,) = server_log.received("EndOfStream")
        assert 1 <= eos["last_seq_no"] < frames  # the quirk happened
        assert [m["seq_no"] for m in of(messages, "AudioAdded")] == list(range(1, frames + 1))
        check_transcripts(messages, WORDS)
        assert messages[-1]["message"] == "EndOfTranscript"
        assert not of(messages, "Error")
        assert server_log.closes_sent == [1000]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_rt_multichannel_client(server_log: ServerLog) -> None:
    """``AsyncMultiChannelClient`` works against a spec-conforming server, with one catch:
    its ``transcribe()`` returns once it has sent ``EndOfChannel`` for every channel,
    without waiting for the transcripts; the application must wait for
    ``EndOfTranscript`` itself before leaving the client (which closes the connection)."""
    left, right = ["hello", "world"], ["good", "morning"]
    sources = {"left": synthesize(left), "right": synthesize(right)}
    frames = frames_in(sources["left"])
    assert frames == frames_in(sources["right"])  # it stops every channel at the first EOF

    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=ScriptedRecognizer(), api_keys=[KEY]
        ) as server:
            done = asyncio.Event()
            async with rt.AsyncMultiChannelClient(api_key=KEY, url=server.url) as client:
                messages = rt_recorder(client)
                client.on(rt.ServerMessageType.END_OF_TRANSCRIPT, lambda _: done.set())
                await client.transcribe(
                    {name: io.BytesIO(audio) for name, audio in sources.items()},
                    transcription_config=rt.TranscriptionConfig(language="en"),
                    audio_format=RT_FORMAT,
                    timeout=15,
                )
                await asyncio.wait_for(done.wait(), 15)
            await until_idle(server)

        started = of(messages, "RecognitionStarted")[0]
        assert started["channel_ids"] == ["left", "right"]
        for channel, words in (("left", left), ("right", right)):
            acks = of(messages, "ChannelAudioAdded", channel)
            assert [m["seq_no"] for m in acks] == list(range(1, frames + 1))
            check_transcripts(messages, words, channel=channel)
        assert all(m.get("channel") in ("left", "right") for m in of(messages, "AddTranscript"))
        assert not of(messages, "AudioAdded")
        ends = server_log.received("EndOfChannel")
        assert sorted((m["channel"], m["last_seq_no"]) for m in ends) == [
            ("left", frames),
            ("right", frames),
        ]
        assert messages[-1]["message"] == "EndOfTranscript"
        assert server_log.closes_sent == [1000]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_rt_bad_key_is_not_authorised(server_log: ServerLog) -> None:
    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=ScriptedRecognizer(), api_keys=[KEY]
        ) as server:
            async with rt.AsyncClient(api_key="not-the-key", url=server.url) as client:
                errors: list[Message] = []
                client.on(rt.ServerMessageType.ERROR, errors.append)
                # The server refuses before StartRecognition: depending on which comes
                # first, the SDK's send fails (TransportError, naming the 4001 close) or
                # it reads the Error (TranscriptionError); either way its handler saw it.
                with pytest.raises((rt.TransportError, rt.TranscriptionError)) as info:
                    await client.transcribe(
                        io.BytesIO(synthesize(["hello"])),
                        transcription_config=rt.TranscriptionConfig(language="en"),
                        audio_format=RT_FORMAT,
                        timeout=15,
                    )
            await until_idle(server)
        assert [e["type"] for e in errors] == ["not_authorised"]
        assert "4001" in str(info.value) or "not accepted" in str(info.value)
        assert server_log.closes_sent == [4001]

    asyncio.run(main())


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("config", "error_type", "close_code"),
    [
        # Neither SDK checks max_delay: the out-of-range value reaches the server.
        (rt.TranscriptionConfig(language="en", max_delay=100.0), "invalid_config", 1003),
        (rt.TranscriptionConfig(language="xx"), "invalid_language", 4004),
    ],
    ids=["max_delay", "language"],
)
def test_rt_refused_config(
    server_log: ServerLog, config: rt.TranscriptionConfig, error_type: str, close_code: int
) -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=EnglishOnly(), api_keys=[KEY]) as server:
            async with rt.AsyncClient(api_key=KEY, url=server.url) as client:
                errors: list[Message] = []
                client.on(rt.ServerMessageType.ERROR, errors.append)
                with pytest.raises(rt.TranscriptionError) as info:
                    await client.transcribe(
                        io.BytesIO(synthesize(["hello"])),
                        transcription_config=config,
                        audio_format=RT_FORMAT,
                        timeout=15,
                    )
            await until_idle(server)
        assert [e["type"] for e in errors] == [error_type]
        assert str(info.value) == errors[0]["reason"]
        assert server_log.closes_sent == [close_code]

    asyncio.run(main())


# ----------------------------------------------------------- speechmatics-python (legacy)


def legacy_client(url: str, key: str = KEY) -> tuple[Any, list[Message]]:
    settings = ConnectionSettings(
        url=url, auth_token=key, generate_temp_token=False, ssl_context=None
    )
    client = WebsocketClient(settings)
    messages: list[Message] = []
    client.add_event_handler("all", messages.append)
    return client, messages


class CueStream:
    """An async file-like stream of ``audio`` that calls ``cue()`` when a read starts
    at byte ``at`` or later (once): a deterministic point in the audio to act at."""

    def __init__(self, audio: bytes, at: int, cue: Any) -> None:
        self.audio, self.at, self.cue, self.pos = audio, at, cue, 0

    async def read(self, size: int) -> bytes:
        if self.cue is not None and self.pos >= self.at:
            self.cue()
            self.cue = None
        chunk = self.audio[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk


@pytest.mark.timeout(30)
def test_legacy_whole_session_with_set_recognition_config(server_log: ServerLog) -> None:
    """``run()`` with a stream; after 1.1 s of audio (the silence between "world" and
    "good") ``update_transcription_config`` turns partials on: the client sends
    ``SetRecognitionConfig`` before its next frame, and only the words after it get
    partials."""
    audio = synthesize(WORDS)
    frames = frames_in(audio)
    cue_frame = 11

    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=ScriptedRecognizer(), api_keys=[KEY]
        ) as server:
            client, messages = legacy_client(server.url)
            stream = CueStream(
                audio,
                cue_frame * FRAME_BYTES,
                lambda: client.update_transcription_config(
                    LegacyConfig(language="en", enable_partials=True)
                ),
            )
            await asyncio.wait_for(
                client.run(
                    stream, LegacyConfig(language="en", enable_partials=False), LEGACY_FORMAT
                ),
                15,
            )
            await until_idle(server)

        kinds = [m["message"] for m in messages]
        assert kinds[:2] == ["Info", "RecognitionStarted"]
        assert kinds[-1] == "EndOfTranscript"
        assert [m["seq_no"] for m in of(messages, "AudioAdded")] == list(range(1, frames + 1))
        check_transcripts(messages, WORDS, partials_for=["good", "morning"])
        (change,) = server_log.received("SetRecognitionConfig")
        assert change["transcription_config"]["enable_partials"] is True
        assert server_log.binary_frames_before("SetRecognitionConfig") == cue_frame
        (eos,) = server_log.received("EndOfStream")
        assert eos["last_seq_no"] == frames  # the legacy SDK counts the frames it sent
        assert not of(messages, "Error") and not of(messages, "Warning")
        assert server_log.closes_sent == [1000]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_legacy_multichannel(server_log: ServerLog) -> None:
    """Channel stream pairs: ``AddChannelAudio`` per channel, ``EndOfChannel`` for each,
    finals tagged with their channel, one ``EndOfTranscript``."""
    left, right = ["hello", "world", "the"], ["good", "morning", "today"]
    sources = {"left": synthesize(left), "right": synthesize(right)}
    frames = frames_in(sources["left"])

    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=ScriptedRecognizer(), api_keys=[KEY]
        ) as server:
            client, messages = legacy_client(server.url)
            config = LegacyConfig(
                language="en", diarization="channel", channel_diarization_labels=["left", "right"]
            )
            pairs = {name: io.BytesIO(audio) for name, audio in sources.items()}
            await asyncio.wait_for(client.run(pairs, config, LEGACY_FORMAT), 15)
            await until_idle(server)

        started = of(messages, "RecognitionStarted")[0]
        assert started["channel_ids"] == ["left", "right"]
        for channel, words in (("left", left), ("right", right)):
            acks = of(messages, "ChannelAudioAdded", channel)
            assert [m["seq_no"] for m in acks] == list(range(1, frames + 1))
            check_transcripts(messages, words, channel=channel)
        assert all(m.get("channel") in ("left", "right") for m in of(messages, "AddTranscript"))
        ends = server_log.received("EndOfChannel")
        assert sorted((m["channel"], m["last_seq_no"]) for m in ends) == [
            ("left", frames),
            ("right", frames),
        ]
        assert messages[-1]["message"] == "EndOfTranscript"
        assert server_log.closes_sent == [1000]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_legacy_bad_key(server_log: ServerLog) -> None:
    """The legacy client sends ``StartRecognition`` right after the upgrade and only then
    starts reading, so a refusal sent at once (our server's) usually reaches it as the
    4001 close of its failed send (``ConnectionClosedError``), not as the ``Error``
    message; if it reads the ``Error`` first, it raises ``TranscriptionError``."""

    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, recognizer=ScriptedRecognizer(), api_keys=[KEY]
        ) as server:
            client, messages = legacy_client(server.url, "not-the-key")
            with pytest.raises((ConnectionClosedError, TranscriptionError)) as info:
                await asyncio.wait_for(
                    client.run(
                        io.BytesIO(synthesize(["hello"])),
                        LegacyConfig(language="en"),
                        LEGACY_FORMAT,
                    ),
                    15,
                )
            await until_idle(server)
        if isinstance(info.value, ConnectionClosedError):
            assert info.value.rcvd is not None and info.value.rcvd.code == 4001
            assert info.value.rcvd.reason == "the API key was not accepted"
        else:
            assert [m["type"] for m in of(messages, "Error")] == ["not_authorised"]
        assert not of(messages, "RecognitionStarted")
        assert server_log.closes_sent == [4001]

    asyncio.run(main())


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("language", "max_delay", "error_type", "close_code"),
    [("en", 100.0, "invalid_config", 1003), ("xx", None, "invalid_language", 4004)],
    ids=["max_delay", "language"],
)
def test_legacy_refused_config(
    server_log: ServerLog,
    language: str,
    max_delay: float | None,
    error_type: str,
    close_code: int,
) -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, recognizer=EnglishOnly(), api_keys=[KEY]) as server:
            client, messages = legacy_client(server.url)
            with pytest.raises(TranscriptionError) as info:
                await asyncio.wait_for(
                    client.run(
                        io.BytesIO(synthesize(["hello"])),
                        LegacyConfig(language=language, max_delay=max_delay),
                        LEGACY_FORMAT,
                    ),
                    15,
                )
            await until_idle(server)
        errors = of(messages, "Error")
        assert [e["type"] for e in errors] == [error_type]
        assert str(info.value) == errors[0]["reason"]
        assert not of(messages, "RecognitionStarted")
        assert server_log.closes_sent == [close_code]

    asyncio.run(main())
