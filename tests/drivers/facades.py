"""The sync and LiveKit drivers behind the async drivers' API, so that one suite runs on
all four: ``facade.connect(url, **options)`` is an async context manager yielding a
session with ``await send_audio(...)``, the other commands, ``async for event in
session`` (smproto events) and the same properties; errors are the same
``smproto.session.SessionError`` s.

- ``smproto_sync``: each blocking call runs in a worker thread (``anyio.to_thread``).
- ``smproto_livekit``: an ``STT`` stream. Audio is pushed as LiveKit frames (the plugin
  applies the flow-control window itself); the events are the smproto events the plugin
  receives (taken where it hands them to its LiveKit layer), and the error is the
  ``SessionError`` the LiveKit ``APIError`` was raised from (``__cause__``): what a
  LiveKit application sees, down to the session's own error.

Run under anyio's asyncio backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import anyio

from smproto import AudioFormat, TranscriptionConfig
from smproto.events import (
    AudioAdded,
    EndOfTranscript,
    Event,
    ServerInfo,
    ServerWarning,
    UnknownMessage,
)
from smproto.session import ReconnectPolicy, SessionError

__all__ = ["DRIVERS", "driver_for"]

#: Every client driver, by name, and the anyio backend it runs on.
DRIVERS = {"asyncio": "asyncio", "trio": "trio", "sync": "asyncio", "livekit": "asyncio"}

_END = object()
#: Events the LiveKit plugin only logs (no SpeechEvent comes of them).
_LOGGED_ONLY = (AudioAdded, ServerInfo, ServerWarning, UnknownMessage)


def driver_for(name: str) -> Any:
    """The driver module (asyncio, trio) or its facade (sync, livekit)."""
    if name in ("asyncio", "trio"):
        return importlib.import_module(f"smproto_{name}")
    # Imported now, not in the test: importing LiveKit takes seconds, and tens of MB
    # under a test's tracemalloc probe.
    for module in (f"smproto_{name}", "livekit.rtc", "livekit.agents", "aiohttp"):
        if name == "livekit" or module == f"smproto_{name}":
            importlib.import_module(module)
    return SYNC if name == "sync" else LIVEKIT


def session_error(exc: BaseException) -> SessionError | None:
    """The ``SessionError`` at the root of ``exc`` (itself, or what it was raised from)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, SessionError):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return None


# --------------------------------------------------------------------------- sync


class _SyncSession:
    def __init__(self, session: Any) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:  # state, connection, audio_in_flight, ...
        return getattr(self._session, name)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(getattr(self._session, method), *args, **kwargs)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)

    async def send_audio(self, chunk: bytes) -> int:
        return int(await self._call("send_audio", chunk))

    async def send_channel_audio(self, channel: str, chunk: bytes) -> int:
        return int(await self._call("send_channel_audio", channel, chunk))

    async def end_of_stream(self) -> None:
        await self._call("end_of_stream")

    async def end_of_channel(self, channel: str) -> None:
        await self._call("end_of_channel", channel)

    async def set_recognition_config(self, *args: Any, **changes: Any) -> TranscriptionConfig:
        result: TranscriptionConfig = await self._call("set_recognition_config", *args, **changes)
        return result

    async def force_end_of_utterance(self, *args: Any, **kwargs: Any) -> None:
        await self._call("force_end_of_utterance", *args, **kwargs)

    async def get_speakers(self, final: bool = False) -> None:
        await self._call("get_speakers", final)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._call("close")

    def __aiter__(self) -> _SyncSession:
        return self

    async def __anext__(self) -> Event:
        event = await anyio.to_thread.run_sync(self._next, abandon_on_cancel=True)
        if event is _END:
            raise StopAsyncIteration
        return event  # type: ignore[no-any-return]

    def _next(self) -> object:
        try:
            return next(self._session)
        except StopIteration:
            return _END


class _SyncFacade:
    __name__ = "smproto_sync"

    @asynccontextmanager
    async def connect(self, url: str, **options: Any) -> AsyncIterator[_SyncSession]:
        import smproto_sync

        manager = smproto_sync.connect(url, **options)
        session = await anyio.to_thread.run_sync(manager.__enter__, abandon_on_cancel=True)
        try:
            yield _SyncSession(session)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(manager.__exit__, type(exc), exc, None)
            raise
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(manager.__exit__, None, None, None)

    async def transcribe(self, source: Any, **options: Any) -> str:
        import smproto_sync

        call = functools.partial(smproto_sync.transcribe, source, **options)
        return str(await anyio.to_thread.run_sync(call))


SYNC = _SyncFacade()


# --------------------------------------------------------------------------- livekit


def _livekit_config(config: TranscriptionConfig) -> Any:
    """The plugin's (seed-shaped) configuration for a language: the stream is then given
    the smproto configuration itself (see :meth:`_LiveKitFacade.connect`)."""
    from smproto_livekit import TranscriptionConfig as PluginConfig

    return PluginConfig(language=config.language)


class _LiveKitSession:
    def __init__(self, stream: Any, events: asyncio.Queue[object]) -> None:
        self._stream = stream
        self._events = events
        self._sent = 0
        self._format: AudioFormat = stream._audio_format
        self._reader: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._read())
        self.failure: SessionError | None = None

    async def _read(self) -> None:
        """LiveKit's side of the stream: it must be read for the stream to run; its
        error is the application's."""
        try:
            async for _ in self._stream:
                pass
        except Exception as exc:
            self.failure = session_error(exc)
            if self.failure is None:
                raise
        finally:
            self._events.put_nowait(_END)

    # The driver's properties, read from the plugin's session.
    @property
    def core(self) -> Any:
        pump = self._stream._pump
        return pump.core if pump is not None else None

    @property
    def state(self) -> Any:
        return self.core.state

    @property
    def connection(self) -> Any:
        return self._stream.connection

    @property
    def audio_in_flight(self) -> Any:
        return self.core.audio_in_flight

    @property
    def dropped_events(self) -> int:
        return int(self.core.dropped_events)

    @property
    def reconnects(self) -> int:
        return int(self._stream.reconnects)

    @property
    def rollovers(self) -> int:
        return int(self._stream.rollovers)

    async def send_audio(self, chunk: bytes) -> int:
        from livekit import rtc

        if self.failure is not None:
            raise self.failure
        fmt = self._format
        samples = len(chunk) // 2
        frame = rtc.AudioFrame(chunk, fmt.sample_rate or 16000, 1, samples)
        try:
            self._stream.push_frame(frame)
        except RuntimeError:  # the stream is closed: it failed (or the session is over)
            await asyncio.gather(self._reader, return_exceptions=True)
            if self.failure is not None:
                raise self.failure from None
            raise
        self._sent += 1
        await asyncio.sleep(0)
        return self._sent

    async def end_of_stream(self) -> None:
        self._stream.end_input()
        await asyncio.sleep(0)

    async def force_end_of_utterance(self, *args: Any, **kwargs: Any) -> None:
        self._stream.flush()

    async def close(self) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> _LiveKitSession:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is _END:
            self._events.put_nowait(_END)
            await asyncio.gather(self._reader, return_exceptions=True)
            if self.failure is not None:
                raise self.failure
            raise StopAsyncIteration
        return event  # type: ignore[return-value]


class _LiveKitFacade:
    __name__ = "smproto_livekit"

    @asynccontextmanager
    async def connect(
        self,
        url: str,
        *,
        transcription_config: TranscriptionConfig,
        audio_format: AudioFormat | None = None,
        reconnect: ReconnectPolicy | bool = True,
        open_timeout: float = 10.0,
        recognition_started_timeout: float = 30.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        ssl: Any = None,
        api_key: str | None = None,
        temporary_key: bool = False,
        management_url: str | None = None,
        **options: Any,
    ) -> AsyncIterator[_LiveKitSession]:
        import aiohttp
        from livekit.agents import APIConnectOptions

        from smproto_livekit import STT, AudioSettings, ConnectionSettings

        fmt = audio_format or AudioFormat()
        policy = (
            reconnect
            if isinstance(reconnect, ReconnectPolicy)
            else ReconnectPolicy()
            if reconnect
            else ReconnectPolicy(max_attempts=0)
        )
        for ignored in ("max_message_size", "event_queue_size"):
            options.pop(ignored, None)  # fixed in the plugin
        # aiohttp's keepalive has one knob: a ping every `heartbeat` seconds, its pong
        # awaited half as long. A pong timeout at least ping_timeout, as websockets' has.
        keepalive = None
        if ping_interval is not None:
            keepalive = max(ping_interval, 2 * (ping_timeout or 0.0))
        http = aiohttp.ClientSession()
        stt = STT(
            transcription_config=_livekit_config(transcription_config),
            connection_settings=ConnectionSettings(
                url=url,
                api_key=api_key,
                get_access_token=temporary_key,
                **({"management_url": management_url} if management_url else {}),
                **({"ssl_context": ssl} if ssl is not None else {}),
            ),
            audio_settings=AudioSettings(encoding=fmt.encoding, sample_rate=fmt.sample_rate),
            http_session=http,
            reconnect_policy=dataclasses_replace(policy, retry_first_connection=False),
            keepalive_interval=keepalive,
            close_timeout=close_timeout,
            **options,
        )
        timeout = min(open_timeout, recognition_started_timeout)
        stream = stt.stream(conn_options=APIConnectOptions(max_retry=0, timeout=timeout))
        stream._config = transcription_config  # the whole configuration, not the seed's part
        events: asyncio.Queue[object] = asyncio.Queue()
        deliver: Callable[[Event], None] = stream._on_event

        def tee(event: Event) -> None:
            # What reaches a LiveKit application: the plugin only logs the rest.
            if not isinstance(event, _LOGGED_ONLY):
                events.put_nowait(event)
            deliver(event)

        stream._on_event = tee
        session = _LiveKitSession(stream, events)
        try:
            # On entry, recognition has started (or the session could not start).
            while session.core is None or not session.core.ready:
                if session._reader.done():
                    break
                await asyncio.sleep(0.005)
            core = session.core
            if core is not None and core.failure is not None:
                raise core.failure  # what LiveKit raises, from this (see session_error)
            if session.failure is not None:
                raise session.failure
            yield session
        finally:
            with anyio.CancelScope(shield=True):
                if not session._reader.done():
                    core = session.core
                    if core is None or not core.finished or not _ended(events):
                        await stream.aclose()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(session._reader), close_timeout + 2)
                await http.close()

    async def transcribe(self, source: Any, **options: Any) -> str:
        raise NotImplementedError("the LiveKit plugin has recognize(), not transcribe()")


def _ended(events: asyncio.Queue[object]) -> bool:
    return any(isinstance(e, EndOfTranscript) for e in list(events._queue))  # type: ignore[attr-defined]


def dataclasses_replace(policy: ReconnectPolicy, **changes: Any) -> ReconnectPolicy:
    import dataclasses

    return dataclasses.replace(policy, **changes)


LIVEKIT = _LiveKitFacade()


def module_for(name: str) -> ModuleType | Any:
    return driver_for(name)
