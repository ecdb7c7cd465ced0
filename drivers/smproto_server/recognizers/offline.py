"""The embedded default recogniser: real offline speech recognition with pocketsphinx.

:class:`OfflineRecognizer` recognises English speech on the machine it runs on, with
`pocketsphinx <https://pypi.org/project/pocketsphinx/>`_ (BSD licensed; its US English
acoustic model, dictionary and language model ship inside the wheel, so nothing is
downloaded at run time). Install it with the ``asr`` extra: ``pip install 'smproto[asr]'``.
This module imports without pocketsphinx; :func:`offline_available` says whether it can
run, and :class:`OfflineRecognizer` raises a :class:`RuntimeError` that says why not.

How it works:

- **One worker process per session.** pocketsphinx holds the GIL while it decodes, so
  each session decodes in its own process (``python -c ...`` started with
  :func:`asyncio.create_subprocess_exec`; it talks over its stdin/stdout). A worker has
  its decoder built (~0.3 s, ~100 MB RSS with the language model, ~45 MB with a grammar)
  before a session takes it: ``spare_workers`` (default 1) workers are kept warm, so
  opening a session does not wait for a decoder. Workers are single-use: a session's
  worker ends with the session. A worker exits when its stdin closes, so it never
  outlives the server, even one that was killed.
- **Limits.** At most ``max_sessions`` sessions at once (default: twice the CPUs this
  process may use, at least 2); one more is refused with ``quota_exceeded``. A worker that
  dies or stops answering turns into ``RecognizerError("job_error", ...)``.
- **Output.** Partials (when ``enable_partials``; at most one per ``partial_interval``
  seconds of audio, and only when the words change), finals when pocketsphinx's
  endpointer sees the utterance end (~0.3 s of silence), finals forced so that no word
  waits longer than ``max_delay`` (default 4 s, the protocol's default), and
  ``EndOfUtterance`` once ``end_of_utterance_silence_trigger`` seconds of silence follow
  an utterance. Words are lower case as pocketsphinx spells them; with ``punctuate``
  (the default) a sentence starts with a capital, "i" is "I", and each utterance ends
  with a full stop. Word confidences are pocketsphinx's posterior probabilities (those of
  words finalised early by ``max_delay`` are 1.0: pocketsphinx computes posteriors only
  when an utterance ends).
- **Audio.** Raw ``pcm_s16le``, ``pcm_f32le`` or ``mulaw`` at any sample rate, or WAV
  files (``AudioFormat.file()``; PCM, float, A-law, µ-law, any rate and channel count),
  converted to 16 kHz mono. Other file types end the session with ``invalid_audio_type``.
- **Language.** English only (``en``, ``en-*``); anything else is ``invalid_language``.
- **Not available.** Speaker diarization (with ``diarization="speaker"`` every word's
  speaker is ``"UU"``, unknown), ``additional_vocab``, entities, translation and audio
  events are not done; those settings are accepted and have no effect.
- **Grammar mode.** ``OfflineRecognizer(grammar=["turn the lights on", ...])`` restricts
  the decoder to those sentences, one per utterance (a pause of ~0.3 s ends an utterance;
  a grammar that allowed sequences let pocketsphinx tack stray words onto the end): for
  command-and-control demos, and for tests whose transcripts must not depend on a
  language model.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import pickle
import re
import signal
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import smproto
from smproto.config import StartRecognitionConfig, TranscriptionConfig
from smproto.events import LanguagePackInfo, SpeakerIdentity
from smproto_server.recognizer import Output, RecognizerError

__all__ = ["OfflineRecognizer", "OfflineSession", "offline_available"]

#: The protocol's default ``max_delay``.
DEFAULT_MAX_DELAY: Final = 4.0
_WORKER_MODULE: Final = "smproto_server.recognizers._offline_worker"
_WORKER_CODE: Final = f"from {_WORKER_MODULE} import main; main()"
_HEADER: Final = struct.Struct(">I")
_LANGUAGE_PACK: Final = LanguagePackInfo(
    word_delimiter=" ",
    language_description="English",
    writing_direction="left-to-right",
    itn=False,
    adapted=False,
)


def offline_available() -> bool:
    """Whether pocketsphinx is installed, so that :class:`OfflineRecognizer` can run."""
    try:
        return importlib.util.find_spec("pocketsphinx") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["pocketsphinx"] is None
        return False


def _missing_pocketsphinx() -> RuntimeError:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return RuntimeError(
        "the offline recogniser needs pocketsphinx, which is not installed in this Python "
        f"({sys.executable}, CPython {version}). Install it with: pip install 'smproto[asr]'. "
        "pocketsphinx publishes wheels for CPython 3.10-3.13 on Linux x86-64, macOS and "
        "Windows (for 3.12 only up to pocketsphinx 5.0.x, which the extra pins); elsewhere "
        "pip builds it from source, which needs a C compiler and CMake."
    )


def _default_max_sessions() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(2, 2 * cpus)


@functools.cache
def _dictionary_words(path: str) -> frozenset[str]:
    words = set()
    with open(path, encoding="utf-8") as dictionary:
        for line in dictionary:
            word = line.split(" ", 1)[0]
            if word:
                words.add(re.sub(r"\(\d+\)$", "", word))
    return frozenset(words)


def _grammar_words(sentence: str) -> list[str]:
    return re.sub(r"[^a-z0-9']+", " ", sentence.lower().replace("\u2019", "'")).split()


def _jsgf(sentences: Sequence[str], dictionary: str) -> str:
    """A JSGF grammar whose utterances are one of ``sentences``."""
    if isinstance(sentences, str):
        raise TypeError("grammar must be a sequence of sentences, not one string")
    known = _dictionary_words(dictionary)
    alternatives = []
    unknown: list[str] = []
    for sentence in sentences:
        words = _grammar_words(sentence)
        if not words:
            raise ValueError(f"grammar sentence {sentence!r} has no words")
        unknown += [w for w in words if w not in known and w not in unknown]
        alternatives.append("(" + " ".join(words) + ")")
    if not alternatives:
        raise ValueError("grammar must hold at least one sentence")
    if unknown:
        raise ValueError(
            f"grammar words not in the pocketsphinx dictionary: {', '.join(unknown)} "
            "(spell numbers and symbols as words)"
        )
    return (
        "#JSGF V1.0;\n"
        "grammar smproto;\n"
        "public <utterance> = <sentence>;\n"
        f"<sentence> = {' | '.join(alternatives)};\n"
    )


def _settings_for(config: StartRecognitionConfig, recognizer: OfflineRecognizer) -> Any:
    from smproto_server.recognizers._offline_worker import SessionSettings

    tc = config.transcription_config
    audio = config.audio_format
    return SessionSettings(
        audio_type=audio.type,
        encoding=audio.encoding,
        sample_rate=audio.sample_rate,
        **_tc_settings(tc),
        partial_interval=recognizer.partial_interval,
        punctuate=recognizer.punctuate,
    )


def _tc_settings(tc: TranscriptionConfig) -> dict[str, Any]:
    trigger = (
        tc.conversation_config.end_of_utterance_silence_trigger
        if tc.conversation_config is not None
        else None
    )
    return {
        "language": tc.language,
        "max_delay": tc.max_delay if tc.max_delay is not None else DEFAULT_MAX_DELAY,
        "enable_partials": bool(tc.enable_partials),
        "eou_trigger": trigger or None,
        "speaker": "UU" if tc.diarization in ("speaker", "channel_and_speaker") else None,
    }


def _check_language(language: str) -> None:
    lang = language.lower()
    if lang != "en" and not lang.startswith("en-"):
        raise RecognizerError(
            "invalid_language",
            f"the offline recogniser only knows English ('en'), not {language!r}",
        )


def _exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class _Worker:
    """A worker process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid: int = process.pid
        self.info: dict[str, Any] | None = None
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    @classmethod
    async def start(cls, config: Any) -> _Worker:
        env = dict(os.environ)
        # Make this checkout's (or installation's) packages importable in the child.
        roots = [str(Path(smproto.__file__).resolve().parent.parent)]
        roots.append(str(Path(__file__).resolve().parent.parent.parent))
        if env.get("PYTHONPATH"):
            roots.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(roots))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER_CODE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        worker = cls(process)
        with contextlib.suppress(ConnectionError, OSError):  # it died: ready() says how
            await worker.send(("init", config))
        return worker

    async def send(self, message: object) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._stdin.write(_HEADER.pack(len(payload)) + payload)
        await self._stdin.drain()

    async def recv(self) -> Any:
        header = await self._stdout.readexactly(_HEADER.size)
        payload = await self._stdout.readexactly(_HEADER.unpack(header)[0])
        return pickle.loads(payload)

    async def ready(self, timeout: float) -> None:
        """Wait until the decoder is built."""
        if self.info is not None:
            return
        try:
            reply = await asyncio.wait_for(self.recv(), timeout)
        except TimeoutError:  # before OSError, its base class
            await self.kill()
            raise RecognizerError(
                "job_error", f"the offline recogniser's worker did not start in {timeout:g} s"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            reason = await self.death()
            raise RecognizerError(
                "job_error", f"the offline recogniser's worker failed to start ({reason})"
            ) from exc
        if reply[0] != "ready":
            await self.kill()
            raise RecognizerError(reply[1], reply[2])
        self.info = reply[1]

    async def death(self) -> str:
        """After the pipe broke: wait for the process to end and say how it did."""
        try:
            await asyncio.wait_for(self.process.wait(), 2.0)
        except TimeoutError:
            await self.kill()
            return "its pipe broke"
        return _exit_description(self.process.returncode)

    async def close(self, grace: float = 2.0) -> None:
        """Close its stdin (it exits by itself), then kill it if it does not."""
        if self.process.returncode is None:
            with contextlib.suppress(OSError, RuntimeError):
                self._stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        await self.kill()

    async def kill(self) -> None:
        """End it now and reap it."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()


class OfflineSession:
    """A session of :class:`OfflineRecognizer`: a worker process decoding its audio.

    Implements :class:`smproto_server.recognizer.RecognizerSession`. Requests are served
    one at a time, in order.
    """

    #: English, words delimited by spaces.
    language_pack_info: LanguagePackInfo

    def __init__(self, recognizer: OfflineRecognizer, worker: _Worker, settings: Any) -> None:
        self.language_pack_info = _LANGUAGE_PACK
        self._recognizer = recognizer
        self._worker = worker
        self._settings = settings
        self._lock = asyncio.Lock()
        self._failure: RecognizerError | None = None
        self._closed = False

    @property
    def worker_pid(self) -> int:
        """The process id of this session's worker (for monitoring, or to test a crash)."""
        return self._worker.pid

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def _call(self, message: tuple[Any, ...], audio_bytes: int = 0) -> Any:
        async with self._lock:
            if self._closed:
                raise RecognizerError("job_error", "the offline recogniser session is closed")
            if self._failure is not None:
                raise self._failure
            # A big chunk of audio may take a while (8000 bytes/s is mulaw at 8 kHz).
            timeout = self._recognizer.request_timeout + audio_bytes / 8000
            worker = self._worker
            try:
                await worker.send(message)
                reply = await asyncio.wait_for(worker.recv(), timeout)
            except TimeoutError:  # before OSError, its base class
                await worker.kill()
                self._failure = RecognizerError(
                    "job_error",
                    f"the offline recogniser's worker process {worker.pid} did not answer "
                    f"in {timeout:g} s and was killed",
                )
                raise self._failure from None
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                reason = await worker.death()
                self._failure = RecognizerError(
                    "job_error",
                    f"the offline recogniser's worker process {worker.pid} died ({reason})",
                )
                raise self._failure from exc
            except BaseException:
                # Cancelled between a request and its reply: the pipe is out of step.
                self._failure = RecognizerError(
                    "job_error", "a request to the offline recogniser was cancelled"
                )
                raise
        if reply[0] == "error":
            raise RecognizerError(reply[1], reply[2])
        return reply[1]

    async def _open(self) -> None:
        await self._call(("open", self._settings))

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        """Decode the next chunk of audio; returns partials, finals and end of utterances."""
        result: Sequence[Output] = await self._call(("feed", audio, channel), len(audio))
        return result

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        """Finalise every word heard so far (``timestamp`` is not used: everything taken
        is finalised); returns a forced final and a forced ``Utterance``."""
        result: Sequence[Output] = await self._call(("force", channel))
        return result

    async def reconfigure(self, config: TranscriptionConfig) -> Sequence[Output]:
        """Apply ``max_delay``, ``enable_partials`` and ``conversation_config``."""
        from dataclasses import replace

        _check_language(config.language)
        self._settings = replace(self._settings, **_tc_settings(config))
        result: Sequence[Output] = await self._call(("reconfigure", self._settings))
        return result

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        """Finalise everything (on ``channel``, or every channel)."""
        result: Sequence[Output] = await self._call(("eos", channel))
        return result

    async def speakers(self) -> Sequence[SpeakerIdentity]:
        """pocketsphinx does not identify speakers: always empty."""
        return ()

    async def close(self) -> None:
        """End the worker process (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._worker.close()
        finally:
            self._recognizer._release(self)


class OfflineRecognizer:
    """Offline English speech recognition with pocketsphinx, one worker process a session.

    Implements :class:`smproto_server.recognizer.Recognizer`; see the module docs.

    Args:
        grammar: restrict recognition to these sentences, one per utterance; words
            must be in pocketsphinx's dictionary. ``None`` (the default) recognises
            free speech with pocketsphinx's US English language model.
        max_sessions: the most sessions at once (default: twice the usable CPUs, at
            least 2); one more is refused with ``quota_exceeded``.
        spare_workers: how many workers to keep started with a decoder built, so that
            a new session does not wait ~0.3 s for one.
        partial_interval: at most one partial per this many seconds of audio.
        punctuate: capitalise sentences and end utterances with a full stop.
        request_timeout: seconds a worker may take to answer a request (plus one second
            per 8000 bytes of audio) before it is killed and the session fails.
        startup_timeout: seconds a worker may take to build its decoder.
        decoder_options: extra pocketsphinx ``Decoder`` options (e.g. ``{"beam": 1e-60}``),
            over the defaults ``fwdflat=False, maxhmmpf=3000, loglevel="FATAL"``.

    Raises:
        RuntimeError: pocketsphinx is not installed (see :func:`offline_available`).
        ValueError: a grammar word is not in the dictionary, or an argument is out of range.
    """

    #: The name for logs and the CLI.
    name: str = "offline"

    def __init__(
        self,
        *,
        grammar: Sequence[str] | None = None,
        max_sessions: int | None = None,
        spare_workers: int = 1,
        partial_interval: float = 0.3,
        punctuate: bool = True,
        request_timeout: float = 30.0,
        startup_timeout: float = 60.0,
        decoder_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not offline_available():
            raise _missing_pocketsphinx()
        import pocketsphinx  # type: ignore[import-untyped,import-not-found,unused-ignore]

        from smproto_server.recognizers._offline_worker import WorkerConfig

        if max_sessions is None:
            max_sessions = _default_max_sessions()
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        if spare_workers < 0:
            raise ValueError(f"spare_workers must not be negative, got {spare_workers}")
        if partial_interval < 0 or request_timeout <= 0 or startup_timeout <= 0:
            raise ValueError("partial_interval must be >= 0 and the timeouts > 0")
        options = dict(decoder_options or {})
        jsgf = None
        if grammar is not None:
            dictionary = options.get("dict") or os.path.join(
                pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict"
            )
            jsgf = _jsgf(grammar, str(dictionary))
        self.max_sessions: int = max_sessions
        self.spare_workers: int = spare_workers
        self.partial_interval: float = partial_interval
        self.punctuate: bool = punctuate
        self.request_timeout: float = request_timeout
        self.startup_timeout: float = startup_timeout
        #: The JSGF grammar built from ``grammar`` (None without one).
        self.jsgf: str | None = jsgf
        self._config = WorkerConfig(decoder_options=options, jsgf=jsgf)
        self._sessions: set[OfflineSession] = set()
        self._opening = 0
        self._spares: list[_Worker] = []
        self._closed = False

    @property
    def active_sessions(self) -> int:
        """Sessions open now (or being opened)."""
        return len(self._sessions) + self._opening

    async def warm_up(self) -> None:
        """Start the spare workers now and wait until their decoders are built (optional:
        otherwise they start with the first session)."""
        self._check_open()
        await self._refill()
        for worker in list(self._spares):
            try:
                await worker.ready(self.startup_timeout)
            except RecognizerError:
                self._spares.remove(worker)
                raise

    async def open_session(self, config: StartRecognitionConfig) -> OfflineSession:
        """Open a session: checks the language and the cap, then takes a warm worker.

        Raises:
            RecognizerError: ``invalid_language`` (not English), ``quota_exceeded``
                (``max_sessions`` reached), ``job_error`` (no worker could start).
        """
        self._check_open()
        _check_language(config.transcription_config.language)
        if self.active_sessions >= self.max_sessions:
            raise RecognizerError(
                "quota_exceeded",
                f"the {self.name} recogniser already runs {self.max_sessions} sessions, its limit",
            )
        settings = _settings_for(config, self)
        self._opening += 1
        worker: _Worker | None = None
        try:
            worker = await self._take_worker()
            self._check_open()
            session = OfflineSession(self, worker, settings)
            await session._open()
            self._sessions.add(session)
        except BaseException:
            if worker is not None:
                await worker.kill()
            raise
        finally:
            self._opening -= 1
        with contextlib.suppress(OSError):  # a spare is a nicety; the session is open
            await self._refill()
        return session

    async def aclose(self) -> None:
        """Close every session and end every worker process (idempotent)."""
        self._closed = True
        spares, self._spares = self._spares, []
        await asyncio.gather(
            *(s.close() for s in list(self._sessions)),
            *(w.close(grace=0.5) for w in spares),
            return_exceptions=True,
        )

    async def __aenter__(self) -> OfflineRecognizer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RecognizerError("job_error", f"the {self.name} recogniser is closed")

    def _release(self, session: OfflineSession) -> None:
        self._sessions.discard(session)

    async def _take_worker(self) -> _Worker:
        while self._spares:
            worker = self._spares.pop(0)
            try:
                await worker.ready(self.startup_timeout)
            except RecognizerError:
                continue  # a spare that broke: try the next, or a fresh one
            return worker
        worker = await _Worker.start(self._config)
        await worker.ready(self.startup_timeout)
        return worker

    async def _refill(self) -> None:
        while not self._closed and len(self._spares) < self.spare_workers:
            worker = await _Worker.start(self._config)
            if self._closed:  # aclose() ran while it started
                await worker.kill()
                return
            self._spares.append(worker)
