"""A deterministic recogniser for tests: it "hears" words coded as pure tones.

**Tone-coded speech.** A word is a burst of a pure sine tone; silence (every sample below
:data:`SILENCE_THRESHOLD` in magnitude) separates words. Word ``i`` of :data:`VOCABULARY`
is a tone of ``BASE_HZ + i * STEP_HZ`` Hz (300 Hz to 2820 Hz, every 40 Hz), which every
sample rate from 8 kHz up carries; a tone of :data:`MUSIC_HZ` (3300 Hz, outside the
vocabulary) is "music", an audio event. :func:`synthesize` and :func:`synthesize_wav`
make such audio, and :func:`expected_timings` says where each word is::

    audio = synthesize(["hello", "world"])          # 16 kHz pcm_s16le
    expected_timings(["hello", "world"])            # [(0.2, 0.5), (0.7, 1.0)]

The recogniser finds bursts with a silence detector and measures each burst's frequency
from its zero crossings (their count over the time between the first and the last,
with sub-sample interpolation), then takes the nearest vocabulary word. It costs one
pass of a few comparisons per sample, far below real time.

**What it says** (times are sample counts divided by the sample rate, not rounded:
``0.2`` for sample 3200 at 16 kHz; every decision is made at an exact sample count, so
the finals, ends of utterance and audio events do not depend on how the audio is
chunked):

- A burst starts at its first loud sample and ends when :data:`WORD_END_SILENCE` (0.1 s)
  of silence follows its last loud sample. Its word is ``Result("word", start, end)``
  with ``start`` the start of the first loud sample and ``end`` the end of the last one,
  one alternative (confidence 1.0, the session's language, speaker ``"S1"`` when
  ``diarization`` is ``"speaker"`` or ``"channel_and_speaker"``).
- When the burst ends, a final :class:`Transcript` holds just that word, from the end of
  the previous final to the end of the word. Finals are in time order, never overlap,
  never end after the audio fed, and every word is in exactly one final.
- After :data:`PERIOD_SILENCE` (0.6 s) of silence after a word, a final holds a ``"."``
  (``attaches_to="previous"``, ``is_eos=True``, at the end of the last word) and moves
  the final time on to the audio heard minus :data:`FINAL_MARGIN` (0.1 s).
- In silence with nothing pending, an empty final every ``max_delay`` (0.7 s if unset)
  seconds moves the final time on, :data:`FINAL_MARGIN` behind the audio heard.
- Partials (``enable_partials``): :data:`DECISION_SECONDS` (0.1 s) into a burst, then every
  :data:`PARTIAL_INTERVAL` (0.1 s) while it is loud, a partial holds the word as heard so
  far, from the end of the last final to the last loud sample. Within one ``feed``, a
  partial followed by another transcript of the same channel is dropped (it is already
  out of date), so feeding a whole file at once does not flood the client.
- ``EndOfUtterance``: when ``conversation_config.end_of_utterance_silence_trigger`` is
  above 0 and the silence after a word reaches it (once per silence; never before the
  word's final), at the time the silence reached it.
- ``force_end_of_utterance``: the word being heard is finalised now (its end is its last
  loud sample so far; the rest of its burst is ignored), or, with no word in progress,
  an empty final moves the final time to the audio heard; both ``forced=True``, followed
  by a forced ``EndOfUtterance`` at the end of that final. The ``timestamp`` is not used:
  the audio before the request has all been fed when it arrives.
- ``end_of_stream``: one final holds the word in progress, if any, and the ``"."`` still
  owed after the last word, and ends at the end of the audio.
- Translations (with a ``translation_config``): for each final with words, a final
  :class:`Translation` into each target language with one sentence, the words each
  suffixed with ``-<language>`` (``"hello-de world-de"``: a fake, but deterministic,
  translation), spanning the words; with translation partials enabled, each partial
  word also gives a partial translation.
- Audio events (with an ``audio_events_config`` whose ``types`` is unset or includes
  ``"music"``): a burst of :data:`MUSIC_HZ` gives ``AudioEvent("music", start_time=...)``
  once recognised (0.1 s in) and ``AudioEvent("music", end_time=...)`` when it ends. It is
  never a word (also when audio events are off).
- Multichannel: each channel has its own timeline and state; outputs carry the channel.
- Bursts shorter than :data:`MIN_WORD_SECONDS` (30 ms), or with no steady tone, are
  ignored; any sound (music too) interrupts the silence an end of utterance or a ``"."``
  waits for.

:func:`synthesize` makes tones of amplitude 0.5 starting at phase 0, with the samples
near their zero crossings pushed out to twice the silence threshold, so that every sample
of a burst is loud and :func:`expected_timings` is exact.

**Resuming.** A burst is decoded from its own samples only, so feeding a fresh session the
audio from any point inside a silence on gives the same words, with times shifted by the
offset of that point (tests check this with Hypothesis). Times are not rounded, so the
shift is exact to float precision, wherever the cut. Audio resumed from inside a word
gives a fragment of it that ends exactly where the word did: a client that drops results
ending no later than what it already had (as :class:`smproto.ClientConnection` does after
``resume_from``) drops the fragment.
"""

from __future__ import annotations

import asyncio
import io
import math
import sys
import wave
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from smproto.config import StartRecognitionConfig, TranscriptionConfig
from smproto.events import LanguagePackInfo, SpeakerIdentity, TranslatedSentence
from smproto.transcript import Alternative, Result
from smproto_server.audio import AudioDecoder, encode_pcm
from smproto_server.recognizer import (
    AudioEvent,
    Output,
    RecognizerError,
    Transcript,
    Translation,
    Utterance,
)

__all__ = [
    "BASE_HZ",
    "DECISION_SECONDS",
    "DEFAULT_MAX_DELAY",
    "FINAL_MARGIN",
    "MUSIC",
    "MUSIC_HZ",
    "PARTIAL_INTERVAL",
    "PERIOD_SILENCE",
    "SILENCE_THRESHOLD",
    "STEP_HZ",
    "VOCABULARY",
    "WORD_END_SILENCE",
    "ScriptedRecognizer",
    "ScriptedSession",
    "WordSpec",
    "expected_timings",
    "frequency_of",
    "synthesize",
    "synthesize_wav",
    "word_at",
]

#: The words the recogniser knows; word ``i`` is a tone of ``BASE_HZ + i * STEP_HZ``.
VOCABULARY: Final[tuple[str, ...]] = (
    "hello", "world", "the", "a", "and", "to", "of", "in",
    "is", "it", "you", "that", "we", "this", "for", "on",
    "with", "are", "be", "have", "not", "at", "but", "what",
    "all", "can", "your", "they", "he", "she", "was", "will",
    "do", "say", "go", "yes", "no", "thank", "please", "welcome",
    "speech", "text", "time", "good", "morning", "how", "today", "one",
    "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "stop", "start", "test", "okay", "there", "here", "my",
)  # fmt: skip
#: The tone of ``VOCABULARY[0]``, in Hz.
BASE_HZ: Final = 300.0
#: The tone spacing between consecutive words, in Hz.
STEP_HZ: Final = 40.0
#: The pseudo-word of :func:`synthesize` for a burst of music (an audio event).
MUSIC: Final = "<music>"
#: The tone of music, in Hz (above every word's).
MUSIC_HZ: Final = 3300.0
#: A sample is silent when its magnitude is below this.
SILENCE_THRESHOLD: Final = 0.02
#: Seconds of silence that end a burst (its word becomes final).
WORD_END_SILENCE: Final = 0.1
#: Seconds into a burst when it is first recognised (first partial, music start).
DECISION_SECONDS: Final = 0.1
#: Seconds between partials of the same burst.
PARTIAL_INTERVAL: Final = 0.1
#: Seconds of silence after a word that end a sentence (a ``"."`` final).
PERIOD_SILENCE: Final = 0.6
#: ``max_delay`` when the session does not set it.
DEFAULT_MAX_DELAY: Final = 0.7
#: How far behind the audio heard the finals of silence end.
FINAL_MARGIN: Final = 0.1
#: Bursts shorter than this are clicks, not words.
MIN_WORD_SECONDS: Final = 0.03
#: The lowest sample rate :func:`synthesize` accepts (every tone must fit below Nyquist).
MIN_SAMPLE_RATE: Final = 8000
#: The speaker label when diarization is on.
SPEAKER: Final = "S1"

#: A word for :func:`synthesize`: ``"hello"``, or ``("hello", 0.5)`` for a 0.5 s burst.
WordSpec = str | tuple[str, float]

_INDEX: Final = {word: i for i, word in enumerate(VOCABULARY)}
_MUSIC_SPLIT: Final = (BASE_HZ + STEP_HZ * (len(VOCABULARY) - 1) + MUSIC_HZ) / 2
_TONE_AMPLITUDE: Final = 0.5
_NEVER: Final = sys.maxsize

_UNDECIDED: Final = 0
_WORD: Final = 1
_MUSIC: Final = 2
_IGNORED: Final = 3


def frequency_of(word: str) -> float:
    """The tone of ``word`` (a :data:`VOCABULARY` word or :data:`MUSIC`), in Hz."""
    if word == MUSIC:
        return MUSIC_HZ
    index = _INDEX.get(word)
    if index is None:
        raise ValueError(f"{word!r} is not in the scripted VOCABULARY (nor {MUSIC!r})")
    return BASE_HZ + index * STEP_HZ


def word_at(frequency: float) -> str:
    """The word whose tone is nearest ``frequency`` (:data:`MUSIC` above the words)."""
    if frequency >= _MUSIC_SPLIT:
        return MUSIC
    index = round((frequency - BASE_HZ) / STEP_HZ)
    return VOCABULARY[min(max(index, 0), len(VOCABULARY) - 1)]


def _time(samples: int, rate: int) -> float:
    """The time of a sample count: exact (not rounded), so that a timeline restarted at
    any sample shifts by exactly the restart's offset (to float precision)."""
    return samples / rate


def _count(seconds: float, rate: int) -> int:
    return round(seconds * rate)


# ---------------------------------------------------------------------------------------------
# Synthesis


def _layout(
    words: Sequence[WordSpec],
    sample_rate: int,
    word_seconds: float,
    gap_seconds: float,
    lead_seconds: float,
    trail_seconds: float,
) -> tuple[list[tuple[str, int, int]], int]:
    """Each word with its first sample and sample count, and the total sample count."""
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be at least {MIN_SAMPLE_RATE}, got {sample_rate}")
    if gap_seconds < WORD_END_SILENCE:
        raise ValueError(
            f"gap_seconds must be at least WORD_END_SILENCE ({WORD_END_SILENCE}), got {gap_seconds}"
        )
    if lead_seconds < 0 or trail_seconds < 0:
        raise ValueError("lead_seconds and trail_seconds must be >= 0")
    out = []
    pos = _count(lead_seconds, sample_rate)
    gap = _count(gap_seconds, sample_rate)
    for i, spec in enumerate(words):
        word, seconds = (spec, word_seconds) if isinstance(spec, str) else spec
        frequency_of(word)  # validates
        if seconds < 0.05:
            raise ValueError(f"a word must last at least 0.05 s, got {seconds} for {word!r}")
        if i:
            pos += gap
        n = _count(seconds, sample_rate)
        out.append((word, pos, n))
        pos += n
    return out, pos + _count(trail_seconds, sample_rate)


@lru_cache(maxsize=256)
def _tone(frequency: float, n: int, sample_rate: int, amplitude: float) -> tuple[float, ...]:
    # A sine from phase 0. Samples near its zero crossings are pushed out to twice the
    # silence threshold (keeping their sign), so that every sample of a burst is loud and
    # the burst's first and last loud samples are exactly its first and last samples.
    floor = 2 * SILENCE_THRESHOLD
    step = 2 * math.pi * frequency / sample_rate
    out = []
    for k in range(n):
        x = amplitude * math.sin(step * k)
        if -floor < x < floor:
            x = -floor if x < 0 else floor
        out.append(x)
    return tuple(out)


def _samples(
    words: Sequence[WordSpec],
    sample_rate: int,
    word_seconds: float,
    gap_seconds: float,
    lead_seconds: float,
    trail_seconds: float,
) -> list[float]:
    layout, total = _layout(
        words, sample_rate, word_seconds, gap_seconds, lead_seconds, trail_seconds
    )
    samples = [0.0] * total
    for word, start, n in layout:
        samples[start : start + n] = _tone(frequency_of(word), n, sample_rate, _TONE_AMPLITUDE)
    return samples


def synthesize(
    words: Sequence[WordSpec],
    *,
    sample_rate: int = 16000,
    encoding: str = "pcm_s16le",
    word_seconds: float = 0.3,
    gap_seconds: float = 0.2,
    lead_seconds: float = 0.2,
    trail_seconds: float = 0.2,
) -> bytes:
    """Raw audio (``encoding``: ``pcm_s16le``, ``pcm_f32le`` or ``mulaw``) saying ``words``.

    ``lead_seconds`` of silence, then each word as a ``word_seconds`` tone (or the seconds
    given with it, ``("hello", 0.5)``) separated by ``gap_seconds`` of silence (at least
    :data:`WORD_END_SILENCE`), then ``trail_seconds`` of silence. :data:`MUSIC` is a burst
    of music. Raises :class:`ValueError` for unknown words or impossible timings.
    """
    samples = _samples(words, sample_rate, word_seconds, gap_seconds, lead_seconds, trail_seconds)
    return encode_pcm(samples, encoding)


def synthesize_wav(
    words: Sequence[WordSpec],
    *,
    sample_rate: int = 16000,
    channels: int = 1,
    word_seconds: float = 0.3,
    gap_seconds: float = 0.2,
    lead_seconds: float = 0.2,
    trail_seconds: float = 0.2,
) -> bytes:
    """The audio of :func:`synthesize` as a 16-bit PCM WAV file (the same samples in each
    of ``channels`` channels), for ``AudioFormat.file()`` sessions."""
    samples = _samples(words, sample_rate, word_seconds, gap_seconds, lead_seconds, trail_seconds)
    pcm = encode_pcm(samples, "pcm_s16le")
    if channels > 1:
        frames = bytearray()
        for k in range(0, len(pcm), 2):
            frames += pcm[k : k + 2] * channels
        pcm = bytes(frames)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def expected_timings(
    words: Sequence[WordSpec],
    *,
    sample_rate: int = 16000,
    word_seconds: float = 0.3,
    gap_seconds: float = 0.2,
    lead_seconds: float = 0.2,
) -> list[tuple[float, float]]:
    """The ``(start_time, end_time)`` the recogniser gives each of ``words`` (in order,
    :data:`MUSIC` included) in the audio of :func:`synthesize` with the same arguments."""
    layout, _ = _layout(words, sample_rate, word_seconds, gap_seconds, lead_seconds, 0.0)
    return [(_time(start, sample_rate), _time(start + n, sample_rate)) for _, start, n in layout]


# ---------------------------------------------------------------------------------------------
# Recognition


class _Track:
    """One channel's timeline: the silence detector, the burst decoder and the
    deadlines of what is said next. Times are sample counts from the channel's start."""

    __slots__ = (
        "burst_start",
        "channel",
        "clast",
        "cn",
        "deadline",
        "decoder",
        "ended",
        "eou_pending",
        "final_end",
        "in_burst",
        "kind",
        "last_loud",
        "n",
        "needs_period",
        "next_partial",
        "partial_loud",
        "prev",
        "rate",
        "session",
        "word_end",
        "zfirst",
        "zlast",
        "zn",
    )

    def __init__(self, session: ScriptedSession, channel: str | None) -> None:
        self.session = session
        self.channel = channel
        self.decoder = AudioDecoder(session.config.audio_format)
        self.rate = 0
        self.n = 0  # samples heard
        self.final_end = 0  # end of the last final
        self.ended = False
        self.deadline = _NEVER
        # The burst being heard.
        self.in_burst = False
        self.kind = _UNDECIDED
        self.burst_start = 0
        self.last_loud = -1
        self.next_partial = 0
        self.partial_loud = -1
        # Zero crossings of the burst: count, first and last position (in samples), and
        # the count and last position as of its last loud sample.
        self.prev = 0.0
        self.zn = 0
        self.zfirst = 0.0
        self.zlast = 0.0
        self.cn = 0
        self.clast = 0.0
        # After the last word.
        self.word_end = 0
        self.needs_period = False
        self.eou_pending = False

    # -- the sample loop --------------------------------------------------------------------

    def feed(self, audio: bytes, out: list[Output]) -> None:
        if self.ended:
            return
        samples = self.decoder.decode(audio)
        if not samples:
            return
        if not self.rate:
            rate = self.decoder.sample_rate
            assert rate is not None
            self.rate = rate
            self.deadline = self._next_deadline()
        self._process(samples, out)

    def _process(self, samples: list[float], out: list[Output]) -> None:
        # The hot loop: state lives in locals and is written back around the (rare) calls.
        thr = SILENCE_THRESHOLD
        nthr = -thr
        i = self.n
        prev = self.prev
        in_burst = self.in_burst
        zn = self.zn
        zlast = self.zlast
        cn = self.cn
        clast = self.clast
        last_loud = self.last_loud
        deadline = self.deadline
        for x in samples:
            if in_burst and (x < 0.0) is not (prev < 0.0):
                zlast = i - 1 + prev / (prev - x)
                if not zn:
                    self.zfirst = zlast
                zn += 1
            if x >= thr or x <= nthr:
                if not in_burst:
                    self._start_burst(i)
                    in_burst = True
                    zn = 0
                    deadline = self.deadline
                last_loud = i
                cn = zn
                clast = zlast
            prev = x
            i += 1
            if i >= deadline:
                self.n, self.prev, self.in_burst, self.last_loud = i, prev, in_burst, last_loud
                self.zn, self.zlast, self.cn, self.clast = zn, zlast, cn, clast
                self._fire_due(out)
                in_burst, deadline = self.in_burst, self.deadline
        self.n, self.prev, self.in_burst, self.last_loud = i, prev, in_burst, last_loud
        self.zn, self.zlast, self.cn, self.clast = zn, zlast, cn, clast

    def _start_burst(self, i: int) -> None:
        self.in_burst = True
        self.kind = _UNDECIDED
        self.burst_start = i
        self.last_loud = i
        self.partial_loud = -1
        self.zn = self.cn = 0
        # A new sound interrupts the silence an end of utterance waits for.
        self.eou_pending = False
        self.deadline = self._next_deadline()

    # -- decisions ---------------------------------------------------------------------------

    def _samples(self, seconds: float) -> int:
        return round(seconds * self.rate)

    def _next_deadline(self) -> int:
        """The sample count at which something is next due."""
        if self.ended or not self.rate:
            return _NEVER
        s = self.session
        if self.in_burst:
            due = self.last_loud + 1 + self._samples(WORD_END_SILENCE)
            if self.kind == _UNDECIDED:
                due = min(due, self.burst_start + self._samples(DECISION_SECONDS))
            elif self.kind == _WORD and s.partials_wanted:
                due = min(due, self.next_partial)
            return due
        silence = self.last_loud + 1
        due = _NEVER
        if self.eou_pending and s.eou_trigger > 0:
            due = silence + self._samples(s.eou_trigger)
        if self.needs_period:
            return min(due, silence + self._samples(PERIOD_SILENCE))
        return min(due, self.final_end + self._samples(s.max_delay + FINAL_MARGIN))

    def _fire_due(self, out: list[Output]) -> None:
        """Say everything due by now (``self.n``), in time order."""
        n = self.n
        s = self.session
        for _ in range(16):  # a handful of things can be due at one sample
            if self.in_burst:
                if self.kind == _UNDECIDED and n >= self.burst_start + self._samples(
                    DECISION_SECONDS
                ):
                    self._classify(out)
                    self.next_partial = n
                if self.kind == _WORD and s.partials_wanted and n >= self.next_partial:
                    self._partial(out)
                    step = self._samples(PARTIAL_INTERVAL)
                    while self.next_partial <= n:
                        self.next_partial += step
                if n >= self.last_loud + 1 + self._samples(WORD_END_SILENCE):
                    self._end_burst(out)
            if not self.in_burst:
                silence = self.last_loud + 1
                if (
                    self.eou_pending
                    and s.eou_trigger > 0
                    and n >= silence + self._samples(s.eou_trigger)
                ):
                    self.eou_pending = False
                    time = silence + self._samples(s.eou_trigger)
                    out.append(Utterance(_time(time, self.rate), self.channel))
                if self.needs_period:
                    if n >= silence + self._samples(PERIOD_SILENCE):
                        end = max(self.final_end, n - self._samples(FINAL_MARGIN))
                        self._final([self._period()], end, out)
                        self.needs_period = False
                elif n >= self.final_end + self._samples(s.max_delay + FINAL_MARGIN):
                    self._final([], n - self._samples(FINAL_MARGIN), out)
            self.deadline = self._next_deadline()
            if self.deadline > n:
                return
        raise AssertionError(f"scripted recogniser: deadline {self.deadline} stuck at {n}")

    def _decode(self) -> str | None:
        """The word (or :data:`MUSIC`) of the burst so far; None if it has no clear tone."""
        if self.cn < 3 or self.last_loud + 1 - self.burst_start < self._samples(MIN_WORD_SECONDS):
            return None
        span = self.clast - self.zfirst
        if not span > 0:
            return None
        frequency = (self.cn - 1) * self.rate / (2 * span)
        return word_at(frequency) if math.isfinite(frequency) else None

    def _classify(self, out: list[Output]) -> int:
        """Decide what the burst is (announcing music); returns the new kind."""
        word = self._decode()
        if word is None:
            self.kind = _IGNORED
        elif word == MUSIC:
            if self.session.music_events:
                self.kind = _MUSIC
                out.append(
                    AudioEvent(
                        "music", start_time=_time(self.burst_start, self.rate), channel=self.channel
                    )
                )
            else:
                self.kind = _IGNORED
        else:
            self.kind = _WORD
        return self.kind

    def _word(self) -> Result | None:
        """The burst's word result, from what was heard so far."""
        word = self._decode()
        if word is None or word == MUSIC:
            return None
        s = self.session
        return Result(
            "word",
            _time(self.burst_start, self.rate),
            _time(self.last_loud + 1, self.rate),
            (Alternative(word, 1.0, s.language, s.speaker),),
        )

    def _period(self) -> Result:
        s = self.session
        time = _time(max(self.word_end, self.final_end), self.rate)
        return Result(
            "punctuation",
            time,
            time,
            (Alternative(".", 1.0, s.language, s.speaker),),
            attaches_to="previous",
            is_eos=True,
        )

    def _partial(self, out: list[Output]) -> None:
        if self.last_loud == self.partial_loud:
            return  # nothing new heard
        result = self._word()
        if result is None:
            return
        self.partial_loud = self.last_loud
        s = self.session
        if s.enable_partials:
            out.append(
                Transcript(
                    (result,),
                    _time(self.final_end, self.rate),
                    result.end_time,
                    final=False,
                    channel=self.channel,
                )
            )
        if s.translation_partials:
            s.translate([result], final=False, out=out)

    def _end_burst(self, out: list[Output]) -> None:
        kind = self.kind
        if kind == _UNDECIDED:
            kind = self._classify(out)
        if kind == _WORD:
            result = self._word()
            if result is not None:
                self._final_word(result, out, forced=False)
        elif kind == _MUSIC:
            out.append(
                AudioEvent(
                    "music", end_time=_time(self.last_loud + 1, self.rate), channel=self.channel
                )
            )
        self.in_burst = False
        self.kind = _UNDECIDED

    def _final_word(self, result: Result, out: list[Output], *, forced: bool) -> None:
        self.word_end = self.last_loud + 1
        self.needs_period = True
        self.eou_pending = not forced
        self._final([result], self.word_end, out, forced=forced)

    def _final(
        self, results: list[Result], end: int, out: list[Output], *, forced: bool = False
    ) -> None:
        out.append(
            Transcript(
                tuple(results),
                _time(self.final_end, self.rate),
                _time(end, self.rate),
                final=True,
                channel=self.channel,
                forced=forced,
            )
        )
        self.final_end = end
        words = [r for r in results if r.type == "word"]
        if words:
            self.session.translate(words, final=True, out=out)

    # -- commands ----------------------------------------------------------------------------

    def force(self, out: list[Output]) -> None:
        if self.ended:
            return
        if not self.rate:  # nothing heard yet
            out.append(Transcript((), 0.0, 0.0, final=True, channel=self.channel, forced=True))
            out.append(Utterance(0.0, self.channel, forced=True))
            return
        finalised = False
        if (
            self.in_burst
            and self.kind in (_UNDECIDED, _WORD)
            and (self.kind == _WORD or self._classify(out) == _WORD)
        ):
            result = self._word()
            if result is not None:
                self._final_word(result, out, forced=True)
                finalised = True
            # The rest of this burst belongs to the word just finalised.
            self.kind = _IGNORED
        if not finalised:
            self._final([], max(self.n, self.final_end), out, forced=True)
        self.eou_pending = False
        out.append(Utterance(_time(self.final_end, self.rate), self.channel, forced=True))
        self._fire_due(out)

    def finish(self, out: list[Output]) -> None:
        if self.ended:
            return
        self.decoder.finish()
        self.ended = True
        self.deadline = _NEVER
        if not self.rate:
            return
        results: list[Result] = []
        if self.in_burst:
            kind = self.kind
            if kind == _UNDECIDED:
                kind = self._classify(out)
            if kind == _WORD:
                result = self._word()
                if result is not None:
                    results.append(result)
                    self.word_end = self.last_loud + 1
                    self.needs_period = True
            elif kind == _MUSIC:
                out.append(
                    AudioEvent(
                        "music", end_time=_time(self.last_loud + 1, self.rate), channel=self.channel
                    )
                )
            self.in_burst = False
        if self.needs_period:
            results.append(self._period())
            self.needs_period = False
        end = max(self.n, self.final_end)
        if results or end > self.final_end:
            self._final(results, end, out)

    def reconfigured(self, out: list[Output]) -> None:
        if self.ended or not self.rate:
            return
        self.deadline = self._next_deadline()
        if self.deadline <= self.n:
            self._fire_due(out)


def _drop_stale_partials(out: list[Output]) -> list[Output]:
    """Drop each partial followed, in the same batch, by a transcript of the same channel
    (or a translation into the same language): it is out of date before it is sent."""
    if len(out) < 2:
        return out
    kept: list[Output] = []
    channels: set[str | None] = set()
    languages: set[str] = set()
    for item in reversed(out):
        if isinstance(item, Transcript):
            if not item.final and item.channel in channels:
                continue
            channels.add(item.channel)
        elif isinstance(item, Translation):
            if not item.final and item.language in languages:
                continue
            languages.add(item.language)
        kept.append(item)
    kept.reverse()
    return kept


class ScriptedSession:
    """A session of :class:`ScriptedRecognizer` (see the module documentation)."""

    def __init__(self, recognizer: ScriptedRecognizer, config: StartRecognitionConfig) -> None:
        self.config = config
        self._recognizer = recognizer
        self._tracks: dict[str | None, _Track] = {}
        self._closed = False
        self._speaker_heard = False
        language = config.transcription_config.language
        delimiter = "" if language in ("ja", "cmn") else " "
        #: Sent in ``RecognitionStarted``.
        self.language_pack_info = LanguagePackInfo(
            delimiter, "Scripted (tone-coded)", "left-to-right", False, False
        )
        translation = config.translation_config
        self.targets: tuple[str, ...] = tuple(translation.target_languages) if translation else ()
        self.translation_partials = bool(
            translation is not None and translation.enable_partials and self.targets
        )
        events = config.audio_events_config
        self.music_events = events is not None and (events.types is None or "music" in events.types)
        self._apply(config.transcription_config)

    def _apply(self, tc: TranscriptionConfig) -> None:
        self.language = tc.language
        self.speaker = SPEAKER if tc.diarization in ("speaker", "channel_and_speaker") else None
        self.enable_partials = bool(tc.enable_partials)
        self.partials_wanted = self.enable_partials or self.translation_partials
        max_delay = DEFAULT_MAX_DELAY if tc.max_delay is None else float(tc.max_delay)
        self.max_delay = max(max_delay, WORD_END_SILENCE)
        trigger = None
        if tc.conversation_config is not None:
            trigger = tc.conversation_config.end_of_utterance_silence_trigger
        self.eou_trigger = float(trigger or 0.0)

    def _track(self, channel: str | None) -> _Track:
        track = self._tracks.get(channel)
        if track is None:
            track = self._tracks[channel] = _Track(self, channel)
        return track

    def translate(self, words: Sequence[Result], *, final: bool, out: list[Output]) -> None:
        """The fake translations of ``words`` into each target language."""
        if not self.targets:
            return
        for language in self.targets:
            text = " ".join(f"{w.content}-{language}" for w in words)
            sentence = TranslatedSentence(
                text, words[0].start_time, words[-1].end_time, words[0].speaker
            )
            out.append(Translation(language, (sentence,), final))

    async def feed(self, audio: bytes, channel: str | None = None) -> Sequence[Output]:
        """Hear the next chunk of ``channel``'s audio; returns what became due."""
        delay = self._recognizer.feed_delay
        if delay > 0:
            await asyncio.sleep(delay)
        out: list[Output] = []
        self._track(channel).feed(audio, out)
        self._note_speakers(out)
        return _drop_stale_partials(out)

    async def force_end_of_utterance(
        self, timestamp: float | None, channel: str | None = None
    ) -> Sequence[Output]:
        """Finalise the word being heard (on ``channel``, or every channel), ``forced``."""
        out: list[Output] = []
        tracks = self._tracks.values() if channel is None else [self._track(channel)]
        for track in list(tracks) or [self._track(None)]:
            track.force(out)
        self._note_speakers(out)
        return out

    async def reconfigure(self, config: TranscriptionConfig) -> Sequence[Output]:
        """Apply a new ``enable_partials``, ``max_delay`` or ``conversation_config``."""
        self._apply(config)
        out: list[Output] = []
        for track in self._tracks.values():
            track.reconfigured(out)
        self._note_speakers(out)
        return out

    async def end_of_stream(self, channel: str | None = None) -> Sequence[Output]:
        """Finalise ``channel`` (or every channel)."""
        out: list[Output] = []
        tracks = self._tracks.values() if channel is None else [self._track(channel)]
        for track in list(tracks):
            track.finish(out)
        self._note_speakers(out)
        return out

    async def speakers(self) -> Sequence[SpeakerIdentity]:
        """``[SpeakerIdentity("S1", ("scripted-S1",))]`` once a word was said with speaker
        diarization on, else ``[]``."""
        if self._speaker_heard:
            return [SpeakerIdentity(SPEAKER, (f"scripted-{SPEAKER}",))]
        return []

    async def close(self) -> None:
        """Free the session's place in the recogniser's quota."""
        if not self._closed:
            self._closed = True
            self._recognizer._session_closed()

    def _note_speakers(self, out: list[Output]) -> None:
        if self._speaker_heard or self.speaker is None:
            return
        for item in out:
            if (
                isinstance(item, Transcript)
                and item.final
                and any(r.type == "word" and r.speaker for r in item.results)
            ):
                self._speaker_heard = True
                return


class ScriptedRecognizer:
    """The deterministic tone-coded recogniser (see the module documentation).

    ``max_sessions`` refuses a session (``quota_exceeded``) while that many are open;
    ``feed_delay`` makes every ``feed`` sleep that long first (a slow recogniser, to
    back-pressure the client in tests). Any language is accepted.
    """

    name = "scripted"

    def __init__(self, *, max_sessions: int | None = None, feed_delay: float = 0.0) -> None:
        if max_sessions is not None and max_sessions < 0:
            raise ValueError(f"max_sessions must be >= 0, got {max_sessions}")
        if feed_delay < 0:
            raise ValueError(f"feed_delay must be >= 0, got {feed_delay}")
        self.max_sessions = max_sessions
        self.feed_delay = feed_delay
        #: Sessions opened and not yet closed.
        self.open_sessions = 0

    async def open_session(self, config: StartRecognitionConfig) -> ScriptedSession:
        """A new session; raises ``RecognizerError("quota_exceeded")`` when full."""
        if self.max_sessions is not None and self.open_sessions >= self.max_sessions:
            raise RecognizerError(
                "quota_exceeded",
                f"the scripted recogniser is limited to {self.max_sessions} concurrent sessions",
            )
        self.open_sessions += 1
        return ScriptedSession(self, config)

    def _session_closed(self) -> None:
        self.open_sessions -= 1

    async def aclose(self) -> None:
        """Nothing to release."""
