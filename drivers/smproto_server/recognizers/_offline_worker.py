"""Private to the offline recogniser: the worker process and its decoding engine.

One worker process serves one session (pocketsphinx holds the GIL while it decodes, so
sessions only run in parallel in separate processes). The parent starts it as
``python -m smproto_server.recognizers._offline_worker`` and talks to it over the
child's stdin/stdout with :func:`write_frame`/:func:`read_frame` (a 4-byte big-endian
length and a pickle). The conversation:

    parent → ("init", WorkerConfig)       worker → ("ready", info) | ("error", type, reason)
    parent → ("open", SessionSettings)    worker → ("ok", None)
    parent → ("feed", audio, channel)     worker → ("ok", [outputs])
    parent → ("force", channel)           worker → ("ok", [outputs])
    parent → ("reconfigure", settings)    worker → ("ok", [])
    parent → ("eos", channel)             worker → ("ok", [outputs])
    parent closes stdin                   worker exits

A failed request answers ``("error", error_type, reason)``. The worker exits when its
stdin ends, so it never outlives the server (even one killed with SIGKILL).

:class:`ChannelEngine` turns one channel's 16 kHz audio into outputs: pocketsphinx's
``Endpointer`` splits the audio into utterances, the ``Decoder`` decodes each, and the
engine emits throttled partials, finals when an utterance ends, finals forced so that no
word waits longer than ``max_delay``, and ``EndOfUtterance`` after the configured silence.

With a :class:`FinalDecoder` (the whisper recogniser's, :mod:`._whisper_decoder`) the
engine keeps the audio of the utterance and the finals' words are that decoder's:
pocketsphinx still gives the partials, the utterance boundaries and the moments when
``max_delay`` makes a final due (see :meth:`ChannelEngine._force_finals`).
"""

from __future__ import annotations

import os
import pickle
import re
import resource
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final, NamedTuple, Protocol

from smproto.transcript import Alternative, Result
from smproto_server.recognizer import Output, Transcript, Utterance
from smproto_server.recognizers._offline_audio import (
    TARGET_RATE,
    AudioTypeError,
    Converter,
    make_converter,
)

__all__ = [
    "DEFAULT_DECODER_OPTIONS",
    "ChannelEngine",
    "FinalDecoder",
    "SessionSettings",
    "WorkerConfig",
    "WorkerSession",
    "build_decoder",
    "main",
    "read_frame",
    "write_frame",
]

#: Decoder options that keep pocketsphinx well under real time (the second, "flat" pass
#: costs about as much as the first and buys little on conversational speech).
DEFAULT_DECODER_OPTIONS: Final[dict[str, Any]] = {
    "fwdflat": False,
    "maxhmmpf": 3000,
    "loglevel": "FATAL",
}
#: How often (in seconds of audio) the engine looks at the running hypothesis.
UPDATE_INTERVAL: Final = 0.1
#: A final decoder's words that end within this many seconds of the end of the audio it
#: decoded are not finalised early (by ``max_delay``) unless they are due: the decoder
#: had too little of what follows them (at most half of ``max_delay``).
STABLE_MARGIN: Final = 1.0
#: Audio kept for the final decoder while pocketsphinx hears no word in it (seconds).
IDLE_AUDIO: Final = 5.0
#: After a final forced by ``max_delay``, this much of its audio (seconds) is decoded again
#: before the pending words, for context; the words heard in it again are dropped.
FINAL_OVERLAP: Final = 1.0
_SENTENCE_END: Final = frozenset(".?!")
_HEADER: Final = struct.Struct(">I")
_ALTERNATE: Final = re.compile(r"\(\d+\)$")


# ---------------------------------------------------------------------------------------
# Framing


def write_frame(stream: BinaryIO, obj: object) -> None:
    """Write one message (a length-prefixed pickle) and flush."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    """Read one message from a file descriptor; ``None`` at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    payload = _read_exact(fd, _HEADER.unpack(header)[0])
    if payload is None:
        return None
    return pickle.loads(payload)


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker needs to build its decoder (the same for every session)."""

    decoder_options: dict[str, Any] = field(default_factory=dict)
    #: A JSGF grammar that restricts the decoder, or None for the language model.
    jsgf: str | None = None
    #: A ``_whisper_decoder.WhisperConfig``: decode finals with Whisper (None: pocketsphinx).
    whisper: Any = None


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """One session's settings, from its ``StartRecognition`` (and ``SetRecognitionConfig``)."""

    audio_type: str = "raw"
    encoding: str | None = "pcm_s16le"
    sample_rate: int | None = TARGET_RATE
    language: str = "en"
    #: Finalise words whose end is older than this (seconds of audio).
    max_delay: float = 4.0
    enable_partials: bool = False
    #: Seconds of silence after an utterance before ``EndOfUtterance``; None: never.
    eou_trigger: float | None = None
    #: Put on every word (``"UU"``, unknown, when diarization is asked for).
    speaker: str | None = None
    #: At most one partial per this many seconds of audio.
    partial_interval: float = 0.3
    #: Capitalise sentences and end each utterance with a full stop.
    punctuate: bool = True


def build_decoder(config: WorkerConfig) -> Any:
    """Build a pocketsphinx decoder (imports pocketsphinx)."""
    from pocketsphinx import Decoder  # type: ignore[import-untyped,import-not-found,unused-ignore]

    options = {**DEFAULT_DECODER_OPTIONS, **config.decoder_options}
    if config.jsgf is not None:
        options["lm"] = None  # the grammar replaces the 27 MB language model
    decoder = Decoder(**options)
    if config.jsgf is not None:
        decoder.add_jsgf_string("grammar", config.jsgf)
        decoder.activate_search("grammar")
    return decoder


def build_final_decoder(config: WorkerConfig) -> FinalDecoder | None:
    """Load the finals' decoder the configuration asks for (None: pocketsphinx's own)."""
    if config.whisper is None:
        return None
    from smproto_server.recognizers._whisper_decoder import WhisperDecoder

    return WhisperDecoder(config.whisper)


def _make_endpointer() -> Any:
    from pocketsphinx import Endpointer  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return Endpointer()


# ---------------------------------------------------------------------------------------
# The engine


class _Word(NamedTuple):
    content: str
    start: float
    end: float
    confidence: float
    #: A punctuation mark that follows the word (final decoders only).
    punctuation: str = ""


class FinalDecoder(Protocol):
    """Decodes the audio of finals in place of pocketsphinx (Whisper)."""

    def decode(self, pcm: bytes) -> list[tuple[str, str, float, float, float]]:
        """16 kHz mono s16le → ``(content, punctuation, start, end, confidence)`` for each
        word, times from the start of ``pcm``."""
        ...


def _word_content(raw: str) -> str | None:
    """A dictionary word without its ``(2)`` pronunciation suffix; None for fillers
    (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``, ``++GARBAGE++``, and grammar
    searches' ``(null)`` transitions)."""
    if not raw or raw[0] in "<[+(":
        return None
    return _ALTERNATE.sub("", raw)


def _capitalise(word: str, sentence_start: bool) -> str:
    if word == "i" or word.startswith("i'"):
        return "I" + word[1:]
    if sentence_start:
        return word[:1].upper() + word[1:]
    return word


class ChannelEngine:
    """Recognise one channel: 16 kHz mono s16le in, :data:`Output` out.

    ``decoder`` is a pocketsphinx ``Decoder`` and ``make_endpointer`` builds a
    pocketsphinx ``Endpointer`` (both passed in so that tests can count on them);
    ``finals``, when given, decodes the finals' words.
    """

    def __init__(
        self,
        decoder: Any,
        settings: SessionSettings,
        channel: str | None = None,
        make_endpointer: Callable[[], Any] = _make_endpointer,
        finals: FinalDecoder | None = None,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self._decoder = decoder
        self._finals = finals
        # With a final decoder: the utterance's audio not final yet (it starts at
        # _audio_start), the end of the first word it left pending, and the time up to
        # which pocketsphinx's words were looked at.
        self._audio = bytearray()
        self._audio_start = 0.0
        self._pending_end: float | None = None
        self._forced_until = 0.0
        self._make_endpointer = make_endpointer
        self._ep = make_endpointer()
        self._frame_bytes: int = self._ep.frame_bytes
        self._frames_per_second = float(decoder.get_config()["frate"])
        self._ep_base = 0.0  # the time of the current endpointer's first sample
        self._pending = bytearray()  # less than a frame
        self._samples = 0  # samples given to the endpointer(s)
        self._in_utt = False
        self._utt_offset = 0.0  # the time of the decoder's frame 0
        self._decoded_end = 0.0  # the end of the audio given to the decoder
        self._utt_words = 0  # words made final in the current utterance
        self._final_until = 0.0  # words before this time are final
        self._span_end = 0.0  # end_time of the last final
        self._sentence_start = True
        self._partial_key: tuple[str, ...] = ()  # the words of the partial on display
        self._next_update = 0.0
        self._next_partial = 0.0
        self._eou_at: float | None = None

    @property
    def now(self) -> float:
        """Seconds of this channel's audio taken so far."""
        return self._samples / TARGET_RATE

    # -- inputs -----------------------------------------------------------------------

    def feed(self, pcm: bytes) -> list[Output]:
        """Take 16 kHz mono s16le audio (any length)."""
        out: list[Output] = []
        pending = self._pending
        pending += pcm
        size = self._frame_bytes
        whole = len(pending) - len(pending) % size
        for i in range(0, whole, size):
            self._frame(bytes(pending[i : i + size]), out)
        del pending[:whole]
        return out

    def force_end_of_utterance(self) -> list[Output]:
        """Finalise everything taken so far (``ForceEndOfUtterance``)."""
        out: list[Output] = []
        self._flush_endpointer()
        self._end_utterance(out, forced=True)
        self._eou_at = None
        out.append(Utterance(round(self.now, 3), self.channel, forced=True))
        return out

    def end_of_stream(self) -> list[Output]:
        """No more audio: finalise everything."""
        out: list[Output] = []
        self._flush_endpointer()
        self._end_utterance(out, forced=False)
        if self._eou_at is not None:
            # The stream ended before the silence did: the speaker has stopped all the same.
            self._eou_at = None
            out.append(Utterance(round(self.now, 3), self.channel))
        return out

    def reconfigure(self, settings: SessionSettings) -> None:
        """Apply new settings (``max_delay``, partials, end of utterance)."""
        if not settings.eou_trigger:
            self._eou_at = None
        if settings.enable_partials and not self.settings.enable_partials:
            self._next_partial = 0.0
        self.settings = settings

    # -- the frame loop ---------------------------------------------------------------

    def _frame(self, frame: bytes, out: list[Output]) -> None:
        ep = self._ep
        was_in_speech = ep.in_speech
        speech = ep.process(frame)
        self._samples += len(frame) // 2
        if speech is not None:
            if not was_in_speech:
                self._eou_at = None  # the speaker went on before the silence trigger
                self._start_utterance(self._ep_base + ep.speech_start)
            self._decode(speech)
            if not ep.in_speech:
                self._end_utterance(out, forced=False)
        now = self.now
        if self._in_utt and now >= self._next_update:
            self._update(out)
        if self._eou_at is not None and now >= self._eou_at and not ep.in_speech:
            self._eou_at = None
            out.append(Utterance(round(now, 3), self.channel))

    def _flush_endpointer(self) -> None:
        """Decode the audio the endpointer is holding back (it lags by its window)."""
        if not self._ep.in_speech:
            return
        tail = bytes(self._pending)
        self._samples += len(tail) // 2
        self._pending.clear()
        rest = self._ep.end_stream(tail or b"\0\0")
        if rest:
            self._decode(rest)
        self._ep = self._make_endpointer()
        self._ep_base = self.now

    def _start_utterance(self, start: float) -> None:
        self._decoder.start_utt()
        self._in_utt = True
        self._utt_offset = self._decoded_end = start
        self._utt_words = 0
        self._audio.clear()
        self._audio_start = self._forced_until = start
        self._pending_end = None

    def _decode(self, speech: bytes) -> None:
        if not self._in_utt:  # speech goes on after a forced end of utterance
            self._start_utterance(self._decoded_end)
        self._decoder.process_raw(speech, False, False)
        self._decoded_end += len(speech) / (2 * TARGET_RATE)
        if self._finals is not None:
            self._audio += speech

    def _words(self) -> list[_Word]:
        """The current (or just ended) utterance's words that are not final yet."""
        offset, fps, final_until = self._utt_offset, self._frames_per_second, self._final_until
        words = []
        for seg in self._decoder.seg() or ():
            content = _word_content(seg.word)
            if content is None:
                continue
            start = round(offset + seg.start_frame / fps, 3)
            end = round(offset + (seg.end_frame + 1) / fps, 3)
            if (start + end) / 2 < final_until:
                continue  # already final (the hypothesis may have moved it a little)
            confidence = round(min(1.0, max(0.0, float(seg.prob))), 3)
            words.append(_Word(content, start, end, confidence))
        return words

    def _update(self, out: list[Output]) -> None:
        """Every UPDATE_INTERVAL: finalise what max_delay says is due, send a partial."""
        now = self.now
        self._next_update = now + UPDATE_INTERVAL
        words = self._words()
        # Finalise what would otherwise wait longer than max_delay before the next update.
        deadline = now - self.settings.max_delay + UPDATE_INTERVAL
        finalised = False
        if self._finals is not None:
            finalised = self._force_finals(words, deadline, out)
            if finalised:
                words = self._words()
        else:
            due = 0
            while due < len(words) and words[due].end <= deadline:
                due += 1
            if due:
                out.append(self._final(words[:due], forced=False, eos=False))
                words = words[due:]
                finalised = True
        if self.settings.enable_partials and (finalised or now >= self._next_partial):
            key = tuple(w.content for w in words)
            if key != self._partial_key:
                self._next_partial = now + self.settings.partial_interval
                self._partial_key = key
                out.append(
                    Transcript(
                        self._results(words, self._sentence_start),
                        self._span_end,
                        round(max(self._decoded_end, self._span_end), 3),
                        final=False,
                        channel=self.channel,
                    )
                )

    def _force_finals(self, words: list[_Word], deadline: float, out: list[Output]) -> bool:
        """With a final decoder: when a word is due (one of pocketsphinx's, or one the
        final decoder left pending), decode the pending audio and finalise its words that
        end by the deadline, or further on but at least ``STABLE_MARGIN`` (at most half
        of ``max_delay``) before the end of that audio. Returns whether a final was sent.

        Pocketsphinx's words that end before the stretch looked at do not trigger it
        again, so decoding does not repeat every update while the two decoders disagree.
        """
        ends = [w.start for w in words if w.end > self._forced_until]
        if self._pending_end is not None:
            ends.append(self._pending_end)
        if not ends:
            # Pocketsphinx hears nothing: keep only the recent audio for the final decoder.
            self._trim_audio(self._decoded_end - IDLE_AUDIO)
            return False
        if min(ends) > deadline:
            return False
        margin = min(STABLE_MARGIN, self.settings.max_delay / 2)
        limit = max(deadline, self._decoded_end - margin)
        decoded = self._final_words()
        due = 0
        while due < len(decoded) and decoded[due].end <= limit:
            due += 1
        self._forced_until = limit
        self._pending_end = decoded[due].start if due < len(decoded) else None
        if not due:
            return False
        out.append(self._final(decoded[:due], forced=False, eos=False))
        self._trim_audio(self._final_until - FINAL_OVERLAP)
        return True

    def _final_words(self) -> list[_Word]:
        """The final decoder's words for the pending audio, on the session's timeline:
        in order, not overlapping, and after every final word."""
        assert self._finals is not None
        offset, end = self._audio_start, self._decoded_end
        floor = self._final_until
        words = []
        for content, mark, start, stop, confidence in self._finals.decode(bytes(self._audio)):
            if offset + (start + stop) / 2 < self._final_until:
                continue  # final already: heard again in the audio kept for context
            first = round(min(max(offset + start, floor), end), 3)
            last = round(min(max(offset + stop, first), end), 3)
            words.append(_Word(content, first, last, round(confidence, 3), mark))
            floor = last
        return words

    def _trim_audio(self, until: float) -> None:
        """Drop the pending audio before ``until`` (whole samples)."""
        samples = int((until - self._audio_start) * TARGET_RATE)
        if samples > 0:
            del self._audio[: 2 * samples]
            self._audio_start += samples / TARGET_RATE

    def _end_utterance(self, out: list[Output], *, forced: bool) -> None:
        words: list[_Word] = []
        if self._in_utt:
            self._decoder.end_utt()
            self._in_utt = False
            words = self._words()
        if self._finals is not None:
            # Pocketsphinx heard nothing pending: the final decoder is not asked (it may
            # make words up from noise).
            heard = words or self._pending_end is not None
            words = self._final_words() if heard else []
            self._audio.clear()
            self._pending_end = None
        had_words = bool(self._utt_words or words)
        if words or had_words or forced or self._partial_key:
            out.append(self._final(words, forced=forced, eos=had_words))
        if had_words and self.settings.eou_trigger and not forced:
            self._eou_at = self._final_until + self.settings.eou_trigger
        self._utt_words = 0

    def _final(self, words: list[_Word], *, forced: bool, eos: bool) -> Transcript:
        results = self._results(words, self._sentence_start)
        if words:
            self._final_until = words[-1].end
            self._sentence_start = words[-1].punctuation in _SENTENCE_END
            self._utt_words += len(words)
        if eos and self.settings.punctuate and not self._sentence_start:
            t = self._final_until
            results.append(
                Result(
                    "punctuation",
                    t,
                    t,
                    (Alternative(".", 1.0, self.settings.language, self.settings.speaker),),
                    attaches_to="previous",
                    is_eos=True,
                )
            )
            self._sentence_start = True
        if eos and not words:
            end = max(self._span_end, self._final_until)
        elif words:
            end = words[-1].end
        else:
            end = max(self._span_end, round(min(self._decoded_end, self.now), 3))
        start = min(self._span_end, words[0].start) if words else self._span_end
        self._span_end = end
        self._partial_key = ()
        return Transcript(results, start, end, final=True, channel=self.channel, forced=forced)

    def _results(self, words: list[_Word], sentence_start: bool) -> list[Result]:
        settings = self.settings
        punctuate = settings.punctuate
        results = []
        for word in words:
            content = _capitalise(word.content, sentence_start) if punctuate else word.content
            sentence_start = False
            alternative = Alternative(content, word.confidence, settings.language, settings.speaker)
            results.append(Result("word", word.start, word.end, (alternative,)))
            if word.punctuation and punctuate:
                sentence_start = word.punctuation in _SENTENCE_END
                mark = Alternative(word.punctuation, 1.0, settings.language, settings.speaker)
                results.append(
                    Result(
                        "punctuation",
                        word.end,
                        word.end,
                        (mark,),
                        attaches_to="previous",
                        is_eos=sentence_start,
                    )
                )
        return results


# ---------------------------------------------------------------------------------------
# A worker's session: audio conversion and one engine per channel


class WorkerSession:
    """One session in a worker: converts each channel's audio and runs its engine."""

    def __init__(
        self,
        decoder: Any,
        settings: SessionSettings,
        make_decoder: Callable[[], Any],
        finals: FinalDecoder | None = None,
    ) -> None:
        self.settings = settings
        self._spare_decoder: Any = decoder
        self._make_decoder = make_decoder
        self._finals = finals
        self._engines: dict[str | None, ChannelEngine] = {}
        self._converters: dict[str | None, Converter] = {}

    def _engine(self, channel: str | None) -> ChannelEngine:
        engine = self._engines.get(channel)
        if engine is None:
            decoder, self._spare_decoder = self._spare_decoder, None
            if decoder is None:
                decoder = self._make_decoder()  # a second channel needs its own decoder
            engine = ChannelEngine(decoder, self.settings, channel, finals=self._finals)
            self._engines[channel] = engine
            s = self.settings
            self._converters[channel] = make_converter(s.audio_type, s.encoding, s.sample_rate)
        return engine

    def feed(self, audio: bytes, channel: str | None) -> list[Output]:
        engine = self._engine(channel)
        return engine.feed(self._converters[channel].convert(audio))

    def force_end_of_utterance(self, channel: str | None) -> list[Output]:
        engines = [self._engine(channel)] if channel is not None else list(self._engines.values())
        if not engines:
            engines = [self._engine(None)]
        out: list[Output] = []
        for engine in engines:
            out += engine.force_end_of_utterance()
        return out

    def end_of_stream(self, channel: str | None) -> list[Output]:
        channels: list[str | None]
        if channel is not None:
            channels = [channel]
        else:
            channels = list(self._engines) or [None]
        out: list[Output] = []
        for ch in channels:
            engine = self._engine(ch)
            out += engine.feed(self._converters[ch].finish())
            out += engine.end_of_stream()
        return out

    def reconfigure(self, settings: SessionSettings) -> None:
        self.settings = settings
        for engine in self._engines.values():
            engine.reconfigure(settings)


# ---------------------------------------------------------------------------------------
# The process


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """The worker process's main loop (stdin/stdout carry the conversation)."""
    # Ctrl-C in a terminal reaches the whole process group: the server decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol away from anything a C library might print on fd 1.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    message = read_frame(0)
    if message is None or message[0] != "init":
        return
    config: WorkerConfig = message[1]
    started = time.perf_counter()
    try:
        decoder = build_decoder(config)
    except Exception as exc:
        write_frame(out, ("error", "job_error", f"cannot start pocketsphinx: {exc!r}"))
        return
    try:
        finals = build_final_decoder(config)
    except Exception as exc:
        write_frame(out, ("error", "job_error", f"cannot load the Whisper model: {exc!r}"))
        return
    write_frame(
        out,
        (
            "ready",
            {
                "pid": os.getpid(),
                "build_seconds": time.perf_counter() - started,
                "rss_mb": _rss_mb(),
            },
        ),
    )
    session: WorkerSession | None = None
    while True:
        message = read_frame(0)
        if message is None:
            return
        op = message[0]
        try:
            reply: Any = None
            if op == "open":
                session = WorkerSession(decoder, message[1], lambda: build_decoder(config), finals)
            elif session is None:
                raise RuntimeError(f"{op!r} before 'open'")
            elif op == "feed":
                reply = session.feed(message[1], message[2])
            elif op == "force":
                reply = session.force_end_of_utterance(message[1])
            elif op == "eos":
                reply = session.end_of_stream(message[1])
            elif op == "reconfigure":
                session.reconfigure(replace(message[1]))
                reply = []
            else:
                raise RuntimeError(f"unknown request {op!r}")
        except AudioTypeError as exc:
            write_frame(out, ("error", "invalid_audio_type", str(exc)))
        except Exception as exc:
            traceback.print_exc()
            write_frame(out, ("error", "job_error", f"{type(exc).__name__}: {exc}"))
        else:
            write_frame(out, ("ok", reply))


if __name__ == "__main__":
    main()
