"""Hypothesis strategies for testing code that speaks the Speechmatics RT protocol.

This module needs `Hypothesis <https://hypothesis.readthedocs.io>`_, an optional
dependency: install it with the ``testing`` extra (``pip install "smproto[testing]"``).
Importing :mod:`smproto` itself never imports Hypothesis; only ``smproto.testing`` does.

What is here:

* **Configurations** -- :func:`transcription_configs`, :func:`audio_formats`,
  :func:`translation_configs`, :func:`audio_events_configs` (and the smaller pieces they are
  built from), plus :func:`mid_session_changes` for ``set_recognition_config()``. Every value
  is valid: building it never raises, and the ``StartRecognition`` it produces conforms to the
  official AsyncAPI spec.
* **Server messages** -- :func:`server_messages` and one strategy per message type
  (:func:`transcript_messages`, :func:`audio_added_messages`, ...). They generate *valid*
  messages, as ``dict`` objects in the wire shape, each conforming to its schema in the spec.
  Parameters tie them to a session (``max_seq_no=``, ``start=``/``end=``, ``channels=``).
* **Hostile input** -- :func:`mutated_messages` breaks valid messages (drops keys, changes
  types, inserts unknown keys, nests deeply, truncates the text, swaps the message type) and
  returns JSON *text*; :func:`fuzzed_messages` adds raw bytes, arbitrary text and arbitrary JSON.
* **Whole sessions** -- :func:`server_sessions` is the server side of a plausible session (see
  its docstring for exactly what "plausible" guarantees).

Example: garbage from the server is a ``RemoteProtocolError`` and nothing else, and a client
survives any plausible session (the test suite runs this example)::

    import json

    from hypothesis import given, strategies as st

    from smproto import ClientConnection, RemoteProtocolError, State, TranscriptionConfig
    from smproto.testing import fuzzed_messages, server_sessions

    def streaming_client() -> ClientConnection:
        conn = ClientConnection(TranscriptionConfig("en"))
        conn.connection_opened(now=0.0)
        conn.receive_message('{"message": "RecognitionStarted"}', now=0.0)
        return conn

    @given(fuzzed_messages())
    def test_garbage(data):
        conn = streaming_client()
        try:
            conn.receive_message(data, now=1.0)
        except RemoteProtocolError:
            assert conn.state is State.FAILED

    @given(st.integers(0, 50).flatmap(lambda n: st.tuples(st.just(n), server_sessions(n))))
    def test_session(case):
        frames, messages = case
        conn = ClientConnection(TranscriptionConfig("en"))
        conn.connection_opened(now=0.0)
        for text in messages:
            kind = json.loads(text)["message"]
            if kind == "AudioAdded":  # the server acknowledges only audio it has received
                while conn.frames_sent < json.loads(text)["seq_no"]:
                    conn.send_audio(bytes(3200))
            elif kind == "EndOfTranscript":
                while conn.frames_sent < frames:
                    conn.send_audio(bytes(3200))
                conn.end_of_stream()
            conn.receive_message(text, now=1.0)
        assert conn.state is State.CLOSED

Everything returns ordinary Hypothesis strategies: combine them with ``.map``, ``.filter``,
``st.one_of`` and ``st.lists`` as usual.
"""

from __future__ import annotations

import base64
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .config import (
    AudioEventsConfig,
    AudioFilteringConfig,
    AudioFormat,
    ConversationConfig,
    KnownSpeaker,
    PunctuationOverrides,
    SpeakerDiarizationConfig,
    TranscriptFilteringConfig,
    TranscriptionConfig,
    TranslationConfig,
    VocabEntry,
    WordReplacement,
)
from .transcript import join_results, parse_results

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "ERROR_TYPES",
    "INFO_TYPES",
    "SERVER_MESSAGE_TYPES",
    "WARNING_TYPES",
    "Message",
    "audio_added_messages",
    "audio_event_ended_messages",
    "audio_event_started_messages",
    "audio_events_configs",
    "audio_filtering_configs",
    "audio_formats",
    "audio_frames",
    "channel_audio_added_messages",
    "client_messages",
    "conversation_configs",
    "end_of_transcript_messages",
    "end_of_utterance_messages",
    "error_messages",
    "extra_fields",
    "fuzzed_client_messages",
    "fuzzed_messages",
    "info_messages",
    "json_values",
    "known_speaker_lists",
    "mid_session_changes",
    "mutated_message_texts",
    "mutated_messages",
    "punctuation_overrides",
    "recognition_started_messages",
    "server_messages",
    "server_sessions",
    "speaker_diarization_configs",
    "speaker_labels",
    "speakers_result_messages",
    "start_recognition_messages",
    "transcript_filtering_configs",
    "transcript_messages",
    "transcription_configs",
    "translation_configs",
    "translation_messages",
    "vocab_entries",
    "warning_messages",
]

#: Every message type a server sends in RT protocol v2 (the spec's ``subscribe`` channel).
SERVER_MESSAGE_TYPES: Final[tuple[str, ...]] = (
    "RecognitionStarted",
    "AudioAdded",
    "ChannelAudioAdded",
    "AddPartialTranscript",
    "AddTranscript",
    "AddPartialTranslation",
    "AddTranslation",
    "EndOfUtterance",
    "AudioEventStarted",
    "AudioEventEnded",
    "SpeakersResult",
    "Info",
    "Warning",
    "Error",
    "EndOfTranscript",
)

#: Every JSON message type a client sends (the spec's ``publish`` channel but binary ``AddAudio``).
CLIENT_MESSAGE_TYPES: Final[tuple[str, ...]] = (
    "StartRecognition",
    "AddChannelAudio",
    "EndOfStream",
    "EndOfChannel",
    "ForceEndOfUtterance",
    "SetRecognitionConfig",
    "GetSpeakers",
)

#: ``Info.type`` values in the spec (``InfoTypeEnum``).
INFO_TYPES: Final[tuple[str, ...]] = ("recognition_quality", "concurrent_session_usage")
#: ``Warning.type`` values in the spec (``WarningTypeEnum``).
WARNING_TYPES: Final[tuple[str, ...]] = (
    "duration_limit_exceeded",
    "unsupported_translation_pair",
    "idle_timeout",
    "session_timeout",
    "empty_translation_target_list",
    "add_audio_after_eos",
    "speaker_id",
)
#: ``Error.type`` values in the spec (``ErrorTypeEnum``).
ERROR_TYPES: Final[tuple[str, ...]] = (
    "invalid_message",
    "invalid_model",
    "invalid_language",
    "invalid_config",
    "invalid_audio_type",
    "invalid_output_format",
    "not_authorised",
    "not_allowed",
    "job_error",
    "protocol_error",
    "quota_exceeded",
    "timelimit_exceeded",
    "idle_timeout",
    "session_timeout",
    "unknown_error",
)

#: A message in its wire shape: a ``dict`` as ``json.loads`` returns it.
Message = dict[str, Any]

# ============================================================================================
# Configurations
# ============================================================================================

# The spec's pattern for labels a client must not use (SpeakersInputItem.label, ``not``).
_SPEC_RESERVED_LABEL: Final = re.compile(r"^(S\d+|UU|\s+.*|\S+.*\s+)$")


def _words(max_size: int = 8) -> SearchStrategy[str]:
    return st.text(min_size=1, max_size=max_size)


def _unique_words(max_size: int = 4) -> SearchStrategy[tuple[str, ...]]:
    return st.lists(_words(), max_size=max_size, unique=True).map(tuple)


def _maybe(strategy: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """``None`` (unset) or a value of ``strategy``."""
    return st.none() | strategy


def _seconds(low: float, high: float) -> SearchStrategy[float]:
    """Floats in ``[low, high]``, with whole numbers (as floats) often."""
    return st.floats(min_value=low, max_value=high) | st.integers(
        min_value=math.ceil(low), max_value=math.floor(high)
    ).map(float)


def vocab_entries() -> SearchStrategy[VocabEntry]:
    """Valid :class:`~smproto.config.VocabEntry` values."""
    return st.builds(
        VocabEntry,
        _words(),
        _maybe(st.lists(_words(), min_size=1, max_size=3).map(tuple)),
    )


def speaker_labels() -> SearchStrategy[str]:
    """Labels a client may give a known speaker (not ``S1``, ``UU``, nor padded)."""
    return _words(10).filter(lambda s: s.strip() == s and not _SPEC_RESERVED_LABEL.search(s))


@st.composite
def known_speaker_lists(draw: st.DrawFn) -> tuple[KnownSpeaker, ...]:
    """Known speakers with at most 50 identifiers in all, none shared between speakers."""
    identifiers = draw(st.lists(_words(6), min_size=0, max_size=12, unique=True))
    speakers: list[KnownSpeaker] = []
    while identifiers:
        take = draw(st.integers(min_value=1, max_value=len(identifiers)))
        speakers.append(KnownSpeaker(draw(speaker_labels()), tuple(identifiers[:take])))
        identifiers = identifiers[take:]
    return tuple(speakers)


def speaker_diarization_configs() -> SearchStrategy[SpeakerDiarizationConfig]:
    """Valid :class:`~smproto.config.SpeakerDiarizationConfig` values."""
    return st.builds(
        SpeakerDiarizationConfig,
        max_speakers=_maybe(st.integers(min_value=2, max_value=100)),
        speaker_sensitivity=_maybe(_seconds(0, 1)),
        prefer_current_speaker=_maybe(st.booleans()),
        get_speakers=_maybe(st.booleans()),
        speakers=_maybe(known_speaker_lists()),
    )


def audio_filtering_configs() -> SearchStrategy[AudioFilteringConfig]:
    """Valid :class:`~smproto.config.AudioFilteringConfig` values."""
    return st.builds(AudioFilteringConfig, volume_threshold=_maybe(_seconds(0, 100)))


def transcript_filtering_configs() -> SearchStrategy[TranscriptFilteringConfig]:
    """Valid :class:`~smproto.config.TranscriptFilteringConfig` values."""
    replacement = st.builds(WordReplacement, _words(), st.text(max_size=8))
    return st.builds(
        TranscriptFilteringConfig,
        remove_disfluencies=_maybe(st.booleans()),
        replacements=_maybe(st.lists(replacement, max_size=3).map(tuple)),
    )


def punctuation_overrides() -> SearchStrategy[PunctuationOverrides]:
    """Valid :class:`~smproto.config.PunctuationOverrides` values."""
    marks = st.just(("all",)) | st.lists(st.characters(exclude_characters="\n"), max_size=4).map(
        tuple
    )
    return st.builds(
        PunctuationOverrides,
        permitted_marks=_maybe(marks),
        sensitivity=_maybe(_seconds(0, 1)),
    )


def conversation_configs() -> SearchStrategy[ConversationConfig]:
    """Valid :class:`~smproto.config.ConversationConfig` values."""
    return st.builds(ConversationConfig, end_of_utterance_silence_trigger=_maybe(_seconds(0, 2)))


def json_values() -> SearchStrategy[Any]:
    """Small arbitrary JSON values (finite numbers), e.g. what a future wire field might carry."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=6)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    )


def extra_fields() -> SearchStrategy[dict[str, Any]]:
    """Unmodelled ``transcription_config`` fields (``x_...``), as a client might add them."""
    keys = st.from_regex(r"x_[a-z_]{1,8}", fullmatch=True)
    return st.dictionaries(keys, json_values(), min_size=1, max_size=3)


@st.composite
def transcription_configs(draw: st.DrawFn, *, extra: bool = True) -> TranscriptionConfig:
    """Valid :class:`~smproto.config.TranscriptionConfig` values, exercising every field.

    Some use the deprecated ``operating_point`` (its ``DeprecationWarning`` is silenced while
    the value is built). ``extra=False`` never sets :attr:`TranscriptionConfig.extra`.
    """
    models = st.sampled_from(["standard", "enhanced", "melia-1"])
    model, operating_point = draw(
        st.sampled_from(["neither", "model", "operating_point"]).flatmap(
            lambda which: st.tuples(
                models if which == "model" else st.none(),
                models if which == "operating_point" else st.none(),
            )
        )
    )
    language_hints = draw(_maybe(_unique_words()))
    strict = draw(_maybe(st.booleans())) if language_hints else None
    vocab = st.lists(_words() | vocab_entries(), max_size=4).map(tuple)
    kwargs: dict[str, Any] = {
        "domain": draw(_maybe(_words())),
        "output_locale": draw(_maybe(_words())),
        "additional_vocab": draw(_maybe(vocab)),
        "diarization": draw(
            _maybe(st.sampled_from(["none", "speaker", "channel", "channel_and_speaker"]))
        ),
        "max_delay": draw(_maybe(_seconds(0.7, 4))),
        "max_delay_mode": draw(_maybe(st.sampled_from(["flexible", "fixed"]))),
        "speaker_diarization_config": draw(_maybe(speaker_diarization_configs())),
        "audio_filtering_config": draw(_maybe(audio_filtering_configs())),
        "transcript_filtering_config": draw(_maybe(transcript_filtering_configs())),
        "enable_partials": draw(_maybe(st.booleans())),
        "enable_entities": draw(_maybe(st.booleans())),
        "model": model,
        "operating_point": operating_point,
        "punctuation_overrides": draw(_maybe(punctuation_overrides())),
        "conversation_config": draw(_maybe(conversation_configs())),
        "channel_diarization_labels": draw(_maybe(_unique_words())),
        "language_hints": language_hints,
        "language_hints_strict": strict,
        "extra": draw(_maybe(extra_fields())) if extra else None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return TranscriptionConfig(draw(_words(5)), **kwargs)


def audio_formats() -> SearchStrategy[AudioFormat]:
    """Valid :class:`~smproto.config.AudioFormat` values, raw and file."""
    raw = st.builds(
        AudioFormat,
        type=st.just("raw"),
        encoding=_maybe(st.sampled_from(["pcm_s16le", "pcm_f32le", "mulaw"])),
        sample_rate=_maybe(
            st.sampled_from([8000, 16000, 22050, 44100, 48000])
            | st.integers(min_value=1, max_value=384_000)
        ),
    )
    return raw | st.just(AudioFormat.file())


def translation_configs() -> SearchStrategy[TranslationConfig]:
    """Valid :class:`~smproto.config.TranslationConfig` values (including an empty target list)."""
    return st.builds(TranslationConfig, _unique_words(), enable_partials=_maybe(st.booleans()))


def audio_events_configs() -> SearchStrategy[AudioEventsConfig]:
    """Valid :class:`~smproto.config.AudioEventsConfig` values."""
    return st.builds(AudioEventsConfig, _maybe(_unique_words()))


def mid_session_changes() -> SearchStrategy[dict[str, Any]]:
    """Keyword arguments for ``ClientConnection.set_recognition_config()``: a valid change.

    At least one of ``max_delay``, ``max_delay_mode``, ``enable_partials``,
    ``audio_filtering_config`` and ``conversation_config`` (the fields the protocol lets a
    session change), e.g. ``{"max_delay": 2.0, "enable_partials": False}``.
    """
    return st.fixed_dictionaries(
        {},
        optional={
            "max_delay": _seconds(0.7, 4),
            "max_delay_mode": st.sampled_from(["flexible", "fixed"]),
            "enable_partials": st.booleans(),
            "audio_filtering_config": audio_filtering_configs(),
            "conversation_config": conversation_configs(),
        },
    ).filter(bool)


# ============================================================================================
# Server messages
# ============================================================================================

_WORDS: Final = (
    "hello",
    "welcome",
    "to",
    "speechmatics",
    "the",
    "weather",
    "is",
    "nice",
    "today",
    "we",
    "are",
    "testing",
    "real",
    "time",
    "yes",
    "thank",
    "you",
    "Café",
    "naïve",
    "東京",
)
# (mark, attaches_to, is_eos)
_PUNCTUATION: Final = (
    (".", "previous", True),
    (",", "previous", False),
    ("?", "previous", True),
    ("!", "previous", True),
    ("¿", "next", False),
    ("-", "both", False),
    ("&", "none", False),
)
# (entity_class, spoken words, written content, written words)
_ENTITIES: Final = (
    ("money", ("two", "dollars"), "$2", ("$2",)),
    ("cardinal", ("twenty", "three"), "23", ("23",)),
    ("date", ("march", "third"), "March 3rd", ("March", "3rd")),
    ("percentage", ("ten", "percent"), "10%", ("10%",)),
)
_SPEAKERS: Final = ("S1", "S2", "S3", "UU")
_AUDIO_EVENT_TYPES: Final = ("music", "laughter", "applause")
_DEFAULT_CHANNELS: Final = ("left", "right")
_SENTENCES: Final = ("Hallo Welt.", "Wie geht es dir?", "Bonjour.", "Merci beaucoup !", "Ja.")

# Centiseconds: the server reports times to two decimals.
_CS: Final = 100


def _check_range(start: float, end: float | None) -> tuple[float, float]:
    if not (_is_number(start) and math.isfinite(start) and start >= 0):
        raise ValueError(f"start must be a finite number >= 0, got {start!r}")
    if end is None:
        return float(start), float(start) + 10.0
    if not (_is_number(end) and math.isfinite(end) and end >= start):
        raise ValueError(f"end must be a finite number >= start ({start!r}), got {end!r}")
    return float(start), float(end)


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def _check_channels(channels: Sequence[str] | None) -> tuple[str, ...] | None:
    if channels is None:
        return None
    if isinstance(channels, str):
        raise TypeError("channels must be a sequence of channel names, not a string")
    result = tuple(channels)
    if not result or not all(type(c) is str and c for c in result):
        raise ValueError("channels must be a non-empty sequence of non-empty strings")
    return result


def _check_types(types: Iterable[str] | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if types is None:
        return list(allowed)
    if isinstance(types, str):
        raise TypeError(f"{what} must be an iterable of names, not a string")
    chosen = list(dict.fromkeys(types))
    unknown = [t for t in chosen if t not in allowed]
    if unknown or not chosen:
        raise ValueError(f"{what} must be a non-empty subset of {list(allowed)}; got {chosen}")
    return chosen


def _time(cs: int, low: float, high: float) -> float:
    """A centisecond count as seconds, kept inside ``[low, high]`` despite rounding."""
    return min(high, max(low, cs / _CS))


def _confidence() -> SearchStrategy[float]:
    return st.integers(min_value=0, max_value=100).map(lambda c: c / 100) | st.floats(0.0, 1.0)


def _word_content() -> SearchStrategy[str]:
    return st.sampled_from(_WORDS) | st.text(min_size=1, max_size=10)


@st.composite
def _alternative(
    draw: st.DrawFn, content: str, language: str, speaker: str | None, tags: bool = False
) -> Message:
    alt: Message = {"content": content, "confidence": draw(_confidence())}
    if draw(st.integers(0, 4)):
        alt["language"] = language
    if speaker is not None:
        alt["speaker"] = speaker
    if tags and draw(st.integers(0, 5)) == 0:
        alt["tags"] = draw(st.sampled_from([["disfluency"], ["profanity"], []]))
    if draw(st.integers(0, 9)) == 0:
        alt["display"] = {"direction": draw(st.sampled_from(["ltr", "rtl"]))}
    return alt


@st.composite
def _results(
    draw: st.DrawFn,
    low: float,
    high: float,
    *,
    max_results: int,
    language: str,
    speakers: bool,
    final: bool,
) -> list[Message]:
    """Words, punctuation and entities in order, every time within ``[low, high]``."""
    lo_cs, hi_cs = math.ceil(low * _CS), math.floor(high * _CS)
    if hi_cs < lo_cs:
        return []
    kinds = draw(
        st.lists(
            st.sampled_from(["word", "word", "word", "punctuation", "entity"]),
            max_size=max_results,
        )
    )
    timed = sum(1 for k in kinds if k != "punctuation")
    points = sorted(
        draw(st.lists(st.integers(lo_cs, hi_cs), min_size=2 * timed, max_size=2 * timed))
    )
    speaker = draw(st.sampled_from(_SPEAKERS)) if speakers else None
    results: list[Message] = []
    last_end = low
    for kind in kinds:
        if speakers and draw(st.integers(0, 5)) == 0:
            speaker = draw(st.sampled_from(_SPEAKERS))
        if kind == "punctuation":
            mark, attaches_to, is_eos = draw(st.sampled_from(_PUNCTUATION))
            result: Message = {
                "type": "punctuation",
                "start_time": last_end,
                "end_time": last_end,
                "attaches_to": attaches_to,
                "is_eos": is_eos,
                "alternatives": [draw(_alternative(mark, language, speaker))],
            }
        else:
            start = _time(points.pop(0), low, high)
            end = _time(points.pop(0), start, high)
            last_end = end
            if kind == "word":
                content = draw(_word_content())
                result = {
                    "type": "word",
                    "start_time": start,
                    "end_time": end,
                    "alternatives": [draw(_alternative(content, language, speaker, tags=True))],
                }
                if final and draw(st.integers(0, 3)) == 0:
                    # A second, less likely alternative.
                    other = draw(_alternative(draw(_word_content()), language, speaker))
                    result["alternatives"].append(other)
            else:
                entity_class, spoken, written, written_words = draw(st.sampled_from(_ENTITIES))
                result = {
                    "type": "entity",
                    "start_time": start,
                    "end_time": end,
                    "entity_class": entity_class,
                    "alternatives": [draw(_alternative(written, language, speaker))],
                    "spoken_form": _form(spoken, start, end, language, speaker),
                    "written_form": _form(written_words, start, end, language, speaker),
                }
            if draw(st.integers(0, 7)) == 0:
                result["volume"] = draw(st.floats(0.0, 100.0))
        results.append(result)
    return results


def _form(
    words: Sequence[str], start: float, end: float, language: str, speaker: str | None
) -> list[Message]:
    """The spoken or written form of an entity: its words, splitting its time evenly."""
    step = (end - start) / len(words)
    out = []
    for i, word in enumerate(words):
        alt: Message = {"content": word, "confidence": 1.0, "language": language}
        if speaker is not None:
            alt["speaker"] = speaker
        out.append(
            {
                "type": "word",
                "start_time": round(start + i * step, 6),
                "end_time": round(end if i == len(words) - 1 else start + (i + 1) * step, 6),
                "alternatives": [alt],
            }
        )
    return out


def _joined(results: list[Message], word_delimiter: str) -> str:
    """``metadata.transcript``: the results joined as the server joins them."""
    return join_results(parse_results(results), word_delimiter=word_delimiter)


@st.composite
def _transcript(
    draw: st.DrawFn,
    start: float,
    end: float,
    final: bool | None,
    channels: tuple[str, ...] | None,
    forced: bool | None,
    max_results: int,
    language: str,
    word_delimiter: str,
) -> Message:
    is_final = draw(st.booleans()) if final is None else final
    speakers = draw(st.booleans())
    results = draw(
        _results(
            start,
            end,
            max_results=max_results,
            language=language,
            speakers=speakers,
            final=is_final,
        )
    )
    msg: Message = {"message": "AddTranscript" if is_final else "AddPartialTranscript"}
    if draw(st.integers(0, 5)):
        msg["format"] = "2.9"
    msg["results"] = results
    msg["metadata"] = {
        "start_time": start,
        "end_time": end,
        "transcript": _joined(results, word_delimiter),
    }
    if channels is not None:
        channel = draw(st.sampled_from(channels))
        on_results = draw(st.booleans())
        if results and on_results:
            # Some servers put the channel on every result instead of the message.
            for result in results:
                result["channel"] = channel
        else:
            msg["channel"] = channel
    if forced or (forced is None and draw(st.integers(0, 4)) == 0):
        msg["forced"] = True
    return msg


def transcript_messages(
    *,
    start: float = 0.0,
    end: float | None = None,
    final: bool | None = None,
    channels: Sequence[str] | None = None,
    forced: bool | None = None,
    max_results: int = 8,
    language: str = "en",
    word_delimiter: str = " ",
) -> SearchStrategy[Message]:
    """Valid ``AddTranscript`` / ``AddPartialTranscript`` messages.

    The message covers exactly ``[start, end]`` (its ``metadata`` times; ``end`` defaults to
    ``start`` + 10 s) and its results lie inside, in order, on a 10 ms grid as the server's do:
    words (sometimes with a second alternative, disfluency tags or a ``display`` direction),
    punctuation (``attaches_to``/``is_eos``, at the end time of the word before), entities
    (``entity_class`` with ``spoken_form``/``written_form``), speakers on half of the messages,
    and ``metadata.transcript`` is the results joined with ``word_delimiter``.

    Args:
        final: ``True`` for ``AddTranscript`` only, ``False`` for ``AddPartialTranscript`` only,
            ``None`` for both.
        channels: when given, each message belongs to one of these channels, named either at
            the message's root (as the spec says) or on every result (as some servers do).
        forced: ``True``: always ``"forced": true``; ``False``: never; ``None``: sometimes.
        max_results: the most results in one message.
    """
    low, high = _check_range(start, end)
    if max_results < 0:
        raise ValueError(f"max_results must be >= 0, got {max_results!r}")
    return _transcript(
        low,
        high,
        final,
        _check_channels(channels),
        forced,
        max_results,
        language,
        word_delimiter,
    )


@st.composite
def _translation(
    draw: st.DrawFn, start: float, end: float, final: bool | None, languages: tuple[str, ...]
) -> Message:
    is_final = draw(st.booleans()) if final is None else final
    count = draw(st.integers(0, 3))
    points = sorted(
        draw(
            st.lists(
                st.integers(math.ceil(start * _CS), math.floor(end * _CS)),
                min_size=2 * count,
                max_size=2 * count,
            )
        )
        if math.floor(end * _CS) >= math.ceil(start * _CS)
        else []
    )
    results = []
    while points:
        sentence: Message = {
            "content": draw(st.sampled_from(_SENTENCES) | st.text(max_size=20)),
            "start_time": _time(points.pop(0), start, end),
            "end_time": _time(points.pop(0), start, end),
        }
        if draw(st.booleans()):
            sentence["speaker"] = draw(st.sampled_from(_SPEAKERS))
        results.append(sentence)
    msg: Message = {"message": "AddTranslation" if is_final else "AddPartialTranslation"}
    if draw(st.booleans()):
        msg["format"] = "2.9"
    msg["language"] = draw(st.sampled_from(languages))
    msg["results"] = results
    return msg


def translation_messages(
    *,
    start: float = 0.0,
    end: float | None = None,
    final: bool | None = None,
    languages: Sequence[str] = ("de", "fr"),
) -> SearchStrategy[Message]:
    """Valid ``AddTranslation`` / ``AddPartialTranslation`` messages.

    Zero to three translated sentences whose times lie in ``[start, end]`` (``end`` defaults
    to ``start`` + 10 s), in one of ``languages``; ``final`` as in :func:`transcript_messages`.
    """
    low, high = _check_range(start, end)
    langs = tuple(languages)
    if isinstance(languages, str) or not langs or not all(type(x) is str for x in langs):
        raise ValueError("languages must be a non-empty sequence of language codes")
    return _translation(low, high, final, langs)


@st.composite
def _end_of_utterance(
    draw: st.DrawFn,
    start: float,
    end: float,
    channels: tuple[str, ...] | None,
    forced: bool | None,
) -> Message:
    lo_cs, hi_cs = math.ceil(start * _CS), math.floor(end * _CS)
    at = _time(draw(st.integers(lo_cs, hi_cs)), start, end) if hi_cs >= lo_cs else start
    metadata: Message = {"start_time": at, "end_time": at}
    if draw(st.integers(0, 9)) == 0:
        metadata = {}  # the spec requires neither time
    msg: Message = {"message": "EndOfUtterance", "metadata": metadata}
    if draw(st.booleans()):
        msg["format"] = "2.9"
    if channels is not None:
        msg["channel"] = draw(st.sampled_from(channels))
    if forced or (forced is None and draw(st.integers(0, 4)) == 0):
        msg["forced"] = True
    return msg


def end_of_utterance_messages(
    *,
    start: float = 0.0,
    end: float | None = None,
    channels: Sequence[str] | None = None,
    forced: bool | None = None,
) -> SearchStrategy[Message]:
    """Valid ``EndOfUtterance`` messages at a time in ``[start, end]``.

    As the server does, ``metadata.start_time == metadata.end_time`` (now and then both are
    left out, which the spec allows); ``channels`` and ``forced`` as in
    :func:`transcript_messages`.
    """
    low, high = _check_range(start, end)
    return _end_of_utterance(low, high, _check_channels(channels), forced)


def _check_seq_range(min_seq_no: int, max_seq_no: int) -> None:
    if type(min_seq_no) is not int or type(max_seq_no) is not int:
        raise TypeError("min_seq_no and max_seq_no must be integers")
    if not 0 <= min_seq_no <= max_seq_no:
        raise ValueError(
            f"need 0 <= min_seq_no <= max_seq_no, got min_seq_no={min_seq_no}, "
            f"max_seq_no={max_seq_no}"
        )


def audio_added_messages(*, max_seq_no: int = 1000, min_seq_no: int = 1) -> SearchStrategy[Message]:
    """Valid ``AudioAdded`` acknowledgements with ``min_seq_no <= seq_no <= max_seq_no``.

    A client that has sent ``n`` frames accepts any ``seq_no`` from its last acknowledged
    frame up to ``n``: pass ``max_seq_no=n`` (and ``min_seq_no=`` the last ack) to stay within
    what the session allows.
    """
    _check_seq_range(min_seq_no, max_seq_no)
    return st.builds(
        lambda seq_no: {"message": "AudioAdded", "seq_no": seq_no},
        st.integers(min_seq_no, max_seq_no),
    )


def channel_audio_added_messages(
    *, channels: Sequence[str] = _DEFAULT_CHANNELS, max_seq_no: int = 1000, min_seq_no: int = 1
) -> SearchStrategy[Message]:
    """Valid ``ChannelAudioAdded`` acknowledgements for one of ``channels``."""
    _check_seq_range(min_seq_no, max_seq_no)
    names = _check_channels(channels)
    assert names is not None
    return st.builds(
        lambda channel, seq_no: {
            "message": "ChannelAudioAdded",
            "channel": channel,
            "seq_no": seq_no,
        },
        st.sampled_from(names),
        st.integers(min_seq_no, max_seq_no),
    )


@st.composite
def _recognition_started(
    draw: st.DrawFn, channel_ids: tuple[str, ...] | None, word_delimiter: str | None
) -> Message:
    msg: Message = {"message": "RecognitionStarted"}
    if draw(st.integers(0, 9)):
        msg["orchestrator_version"] = draw(
            st.sampled_from(["2025.08.29127+289170c022.HEAD", "2025.11.07+cd4ff775c0+14.7.0"])
        )
    if draw(st.integers(0, 9)):
        msg["id"] = str(draw(st.uuids()))
    if word_delimiter is not None or draw(st.integers(0, 9)):
        info: Message = {
            "word_delimiter": word_delimiter
            if word_delimiter is not None
            else draw(st.sampled_from([" ", " ", ""]))
        }
        info.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "language_description": st.sampled_from(["English", "Japanese"]),
                        "writing_direction": st.sampled_from(["left-to-right", "right-to-left"]),
                        "itn": st.booleans(),
                        "adapted": st.booleans(),
                    },
                )
            )
        )
        msg["language_pack_info"] = info
    if channel_ids is not None:
        msg["channel_ids"] = list(channel_ids)
    return msg


def recognition_started_messages(
    *, channel_ids: Sequence[str] | None = None, word_delimiter: str | None = None
) -> SearchStrategy[Message]:
    """Valid ``RecognitionStarted`` messages.

    With ``channel_ids`` (a multichannel session) they carry exactly those channels; with
    ``word_delimiter`` they always carry a ``language_pack_info`` with that delimiter.
    """
    ids = None if channel_ids is None else tuple(channel_ids)
    if ids is not None and not all(type(c) is str for c in ids):
        raise ValueError("channel_ids must be strings")
    return _recognition_started(ids, word_delimiter)


@st.composite
def _audio_event(
    draw: st.DrawFn, started: bool, start: float, end: float, channels: tuple[str, ...] | None
) -> Message:
    lo_cs, hi_cs = math.ceil(start * _CS), math.floor(end * _CS)
    at = _time(draw(st.integers(lo_cs, hi_cs)), start, end) if hi_cs >= lo_cs else start
    etype = draw(st.sampled_from(_AUDIO_EVENT_TYPES) | st.text(min_size=1, max_size=10))
    if started:
        event: Message = {"type": etype, "start_time": at, "confidence": draw(_confidence())}
    else:
        event = {"type": etype, "end_time": at}
    msg: Message = {"message": "AudioEventStarted" if started else "AudioEventEnded"}
    msg["event"] = event
    if channels is not None:
        msg["channel"] = draw(st.sampled_from(channels))
    return msg


def audio_event_started_messages(
    *, start: float = 0.0, end: float | None = None, channels: Sequence[str] | None = None
) -> SearchStrategy[Message]:
    """Valid ``AudioEventStarted`` messages (music, laughter, ...) at a time in ``[start, end]``."""
    low, high = _check_range(start, end)
    return _audio_event(True, low, high, _check_channels(channels))


def audio_event_ended_messages(
    *, start: float = 0.0, end: float | None = None, channels: Sequence[str] | None = None
) -> SearchStrategy[Message]:
    """Valid ``AudioEventEnded`` messages at a time in ``[start, end]``."""
    low, high = _check_range(start, end)
    return _audio_event(False, low, high, _check_channels(channels))


def speakers_result_messages() -> SearchStrategy[Message]:
    """Valid ``SpeakersResult`` messages: labelled speakers with opaque identifiers."""
    identifier = st.binary(min_size=1, max_size=24).map(
        lambda b: base64.b64encode(b).decode("ascii")
    )
    speaker = st.fixed_dictionaries(
        {
            "label": st.sampled_from(_SPEAKERS[:3]) | speaker_labels(),
            "speaker_identifiers": st.lists(identifier, min_size=1, max_size=3, unique=True),
        }
    )
    return st.builds(
        lambda speakers: {"message": "SpeakersResult", "speakers": speakers},
        st.lists(speaker, max_size=3),
    )


def _notice_tail() -> SearchStrategy[Message]:
    return st.fixed_dictionaries(
        {},
        optional={
            "code": st.integers(min_value=1000, max_value=4999),
            "seq_no": st.integers(min_value=0, max_value=10_000),
        },
    )


@st.composite
def _info(draw: st.DrawFn, types: list[str]) -> Message:
    itype = draw(st.sampled_from(types))
    msg: Message = {"message": "Info", "type": itype}
    if itype == "recognition_quality":
        quality = draw(st.sampled_from(["broadcast", "telephony"]))
        msg["reason"] = f"Running recognition using a {quality} model quality."
        msg["quality"] = quality
    else:
        usage = draw(st.integers(0, 200))
        quota = draw(st.integers(1, 200))
        msg["reason"] = f"{usage} concurrent sessions active out of quota {quota}"
        msg["usage"] = usage
        msg["quota"] = quota
        msg["last_updated"] = draw(st.sampled_from(["2025-09-22T16:51:01Z", ""]))
        if draw(st.booleans()):
            msg["region"] = draw(st.sampled_from(["eu", "us"]))
    msg.update(draw(_notice_tail()))
    return msg


def info_messages(types: Iterable[str] | None = None) -> SearchStrategy[Message]:
    """Valid ``Info`` messages of the given :data:`INFO_TYPES` (default: all)."""
    return _info(_check_types(types, INFO_TYPES, "types"))


@st.composite
def _warning(draw: st.DrawFn, types: list[str]) -> Message:
    wtype = draw(st.sampled_from(types))
    msg: Message = {"message": "Warning", "type": wtype}
    msg["reason"] = draw(st.sampled_from([f"{wtype.replace('_', ' ')}", ""]) | st.text(max_size=30))
    if wtype == "duration_limit_exceeded":
        msg["duration_limit"] = draw(st.sampled_from([7200, 60.0]) | st.floats(0, 1e6))
    msg.update(draw(_notice_tail()))
    return msg


def warning_messages(types: Iterable[str] | None = None) -> SearchStrategy[Message]:
    """Valid ``Warning`` messages of the given :data:`WARNING_TYPES` (default: all).

    Note that ``duration_limit_exceeded`` ends the stream: a client moves to ``DRAINING``.
    """
    return _warning(_check_types(types, WARNING_TYPES, "types"))


@st.composite
def _error(draw: st.DrawFn, types: list[str]) -> Message:
    etype = draw(st.sampled_from(types))
    msg: Message = {"message": "Error", "type": etype}
    msg["reason"] = draw(st.sampled_from([etype.replace("_", " "), ""]) | st.text(max_size=30))
    msg.update(draw(_notice_tail()))
    return msg


def error_messages(types: Iterable[str] | None = None) -> SearchStrategy[Message]:
    """Valid ``Error`` messages of the given :data:`ERROR_TYPES` (default: all).

    An ``Error`` ends the session: a client moves to ``FAILED``.
    """
    return _error(_check_types(types, ERROR_TYPES, "types"))


def end_of_transcript_messages() -> SearchStrategy[Message]:
    """The ``EndOfTranscript`` message (a fresh dict each time)."""
    return st.builds(lambda: {"message": "EndOfTranscript"})


def server_messages(
    types: Iterable[str] | None = None,
    *,
    max_seq_no: int = 1000,
    start: float = 0.0,
    end: float | None = None,
    channels: Sequence[str] | None = None,
    translation_languages: Sequence[str] = ("de", "fr"),
) -> SearchStrategy[Message]:
    """Valid server messages, as ``dict`` objects, of the given :data:`SERVER_MESSAGE_TYPES`.

    Every message conforms to its schema in the official AsyncAPI spec. By default every type
    is generated; note that some change a client's state (``RecognitionStarted``, ``Error``,
    ``EndOfTranscript``, a ``Warning`` of type ``duration_limit_exceeded``) and that whether a
    message is welcome depends on the session (see :func:`server_sessions` for whole sessions).

    Args:
        types: the message types to generate (default: all).
        max_seq_no: the highest ``seq_no`` an ``AudioAdded``/``ChannelAudioAdded`` carries
            (the frames the client has sent); with ``0``, no acknowledgement is generated
            unless asked for in ``types`` (then it is ``0``).
        start, end: the time span of transcripts, translations, utterances and audio events
            (``end`` defaults to ``start`` + 10 s).
        channels: when given, the channel of multichannel messages (transcripts, utterances,
            audio events, ``ChannelAudioAdded``); otherwise only ``ChannelAudioAdded`` names a
            channel, ``"left"`` or ``"right"``.
        translation_languages: the target languages of translations.
    """
    explicit = types is not None
    chosen = _check_types(types, SERVER_MESSAGE_TYPES, "types")
    low, high = _check_range(start, end)
    names = _check_channels(channels)
    if max_seq_no < 0:
        raise ValueError(f"max_seq_no must be >= 0, got {max_seq_no!r}")
    min_seq = min(1, max_seq_no)
    if max_seq_no == 0 and not explicit:
        chosen = [t for t in chosen if t not in ("AudioAdded", "ChannelAudioAdded")]
    makers: dict[str, SearchStrategy[Message]] = {
        "RecognitionStarted": recognition_started_messages(channel_ids=names),
        "AudioAdded": audio_added_messages(max_seq_no=max_seq_no, min_seq_no=min_seq),
        "ChannelAudioAdded": channel_audio_added_messages(
            channels=names or _DEFAULT_CHANNELS, max_seq_no=max_seq_no, min_seq_no=min_seq
        ),
        "AddPartialTranscript": transcript_messages(
            start=low, end=high, final=False, channels=names
        ),
        "AddTranscript": transcript_messages(start=low, end=high, final=True, channels=names),
        "AddPartialTranslation": translation_messages(
            start=low, end=high, final=False, languages=translation_languages
        ),
        "AddTranslation": translation_messages(
            start=low, end=high, final=True, languages=translation_languages
        ),
        "EndOfUtterance": end_of_utterance_messages(start=low, end=high, channels=names),
        "AudioEventStarted": audio_event_started_messages(start=low, end=high, channels=names),
        "AudioEventEnded": audio_event_ended_messages(start=low, end=high, channels=names),
        "SpeakersResult": speakers_result_messages(),
        "Info": info_messages(),
        "Warning": warning_messages(),
        "Error": error_messages(),
        "EndOfTranscript": end_of_transcript_messages(),
    }
    return st.one_of([makers[t] for t in chosen])


# ============================================================================================
# Mutations
# ============================================================================================


class _Raw:
    """JSON text to splice verbatim into a serialised message."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"_Raw({self.text[:40]!r})"


def _serialise(value: Any) -> str:
    """Like ``json.dumps`` (non-ASCII kept), but with :class:`_Raw` spliced in as is."""
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{_serialise(v)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_serialise(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# JSON tokens Python's json module reads into values no valid message has: non-finite
# constants, numbers that overflow a float, an integer past int_max_str_digits, lone
# surrogates, and duplicated keys.
_RAW_TOKENS: Final = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1" + "0" * 5000,
    '"\\ud800"',
    '"\\udfff x"',
    '"\\u0000"',
    "-0",
    "-0.0",
    '{"a":1,"a":[]}',
)

_KINDS: Final = ("null", "bool", "int", "float", "str", "list", "dict")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "raw"


def _scalars() -> SearchStrategy[Any]:
    return (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )


def _small_json() -> SearchStrategy[Any]:
    return st.recursive(
        _scalars(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=5,
    )


def _value_of_kind(kind: str) -> SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "bool":
        return st.booleans()
    if kind == "int":
        return (
            st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63), 10**30]) | st.integers()
        )
    if kind == "float":
        return st.sampled_from([0.5, -0.0, 1e308, -1e308, 5e-324, 1.0]) | st.floats(
            allow_nan=False, allow_infinity=False
        )
    if kind == "str":
        return st.sampled_from(["", "0", "1.5", "true", "null", "S1", *SERVER_MESSAGE_TYPES]) | (
            st.text(max_size=12)
        )
    if kind == "list":
        return st.lists(_small_json(), max_size=3)
    return st.dictionaries(st.text(max_size=6), _small_json(), max_size=3)


_NodePath = tuple[str | int, ...]


def _paths(value: Any, prefix: _NodePath = ()) -> list[_NodePath]:
    """Every node's path (the root is ``()``), depth first."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


@st.composite
def _node(draw: st.DrawFn, paths: list[_NodePath]) -> _NodePath:
    """A path, drawing its depth first so that shallow nodes (the fields handlers read
    first) are as likely as the many deep ones of a long transcript."""
    by_depth: dict[int, list[_NodePath]] = {}
    for path in paths:
        by_depth.setdefault(len(path), []).append(path)
    depth = draw(st.sampled_from(sorted(by_depth)))
    return draw(st.sampled_from(by_depth[depth]))


def _get(value: Any, path: _NodePath) -> Any:
    for step in path:
        value = value[step]
    return value


def _set_at(root: Any, path: _NodePath, new: Any) -> Any:
    """Replace the node at ``path`` (returns the new root, which changes when path is ``()``)."""
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


_MUTATIONS: Final = (
    "drop",
    "retype",
    "retype",
    "raw_token",
    "unknown_key",
    "nest",
    "swap_type",
    "truncate",
)


@st.composite
def _mutated(draw: st.DrawFn, base: SearchStrategy[Mapping[str, Any]]) -> str:
    message: Any = json.loads(json.dumps(draw(base)))  # a private deep copy
    original = _serialise(message)
    operations = draw(st.lists(st.sampled_from(_MUTATIONS), min_size=1, max_size=3))
    truncate = "truncate" in operations
    for operation in operations:
        if operation == "truncate":
            continue
        paths = _paths(message)
        if operation == "drop":
            removable = [p for p in paths if p]
            if not removable:
                message = {}
                continue
            path = draw(_node(removable))
            del _get(message, path[:-1])[path[-1]]
        elif operation in ("retype", "raw_token"):
            # The root is a candidate too: the message becomes a non-object.
            path = draw(_node(paths))
            if operation == "raw_token":
                new: Any = _Raw(draw(st.sampled_from(_RAW_TOKENS)))
            else:
                current = _kind(_get(message, path))
                kind = draw(st.sampled_from([k for k in _KINDS if k != current]))
                new = draw(_value_of_kind(kind))
            message = _set_at(message, path, new)
        elif operation == "unknown_key":
            objects = [p for p in paths if isinstance(_get(message, p), dict)]
            if not objects:
                message = {"": message}
                continue
            target = _get(message, draw(_node(objects)))
            key = draw(st.text(max_size=10))
            while key in target:
                key += "_"
            target[key] = draw(_small_json())
        elif operation == "nest":
            path = draw(_node(paths))
            depth = draw(st.sampled_from([2, 3, 10, 100, 990, 1000, 5000]) | st.integers(1, 1200))
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            inner = _serialise(_get(message, path))
            message = _set_at(message, path, _Raw(opener * depth + inner + closer * depth))
        else:  # swap_type
            names = [*SERVER_MESSAGE_TYPES, *CLIENT_MESSAGE_TYPES, "", "addtranscript"]
            current_name = message.get("message") if isinstance(message, dict) else None
            name = draw(st.sampled_from([n for n in names if n != current_name]))
            if isinstance(message, dict):
                message["message"] = name
            else:
                message = {"message": name, "value": message}
    text = _serialise(message)
    if truncate or text == original:  # (two changes of one value may undo each other)
        text = text[: draw(st.integers(0, len(text) - 1))] if text else text
    return text


def mutated_messages(
    base: Mapping[str, Any] | SearchStrategy[Mapping[str, Any]],
) -> SearchStrategy[str]:
    """Broken versions of a valid message, as JSON **text**.

    ``base`` is a message ``dict`` or a strategy of them (e.g. :func:`server_messages`, or
    ``st.sampled_from(recorded_messages)``). One to three mutations are applied, each to a
    node chosen anywhere in the message:

    * drop a key (or a list item);
    * change a value's type: ``str``/``int``/``float``/``bool``/``null``/list/object, with
      edge values such as ``2**63``, ``-1``, ``1e308``, ``-0.0``, ``""`` (the whole message
      may become a non-object);
    * splice in raw JSON tokens that Python reads into odd values: ``NaN``, ``Infinity``,
      ``1e400`` (overflows to infinity), a 5001-digit integer, lone surrogates, a duplicated key;
    * insert unknown keys;
    * nest a value deeply (up to 5000 levels: past Python's recursion limit);
    * swap the ``message`` field to another type's name (a server's, a client's, or none);
    * truncate the JSON text.

    The result is text, not a dict, so that the truncated and non-standard forms are possible;
    at least one mutation is always applied, so it is never ``base``'s own (compact) JSON.
    """
    strategy: SearchStrategy[Mapping[str, Any]]
    if isinstance(base, SearchStrategy):
        strategy = base
    elif isinstance(base, Mapping):
        strategy = st.just(base)
    else:
        raise TypeError(f"base must be a message dict or a strategy, got {type(base).__name__}")
    return _mutated(strategy)


def mutated_message_texts(
    types: Iterable[str] | None = None,
    *,
    max_seq_no: int = 1000,
    channels: Sequence[str] | None = None,
) -> SearchStrategy[str]:
    """:func:`mutated_messages` of :func:`server_messages`: broken server messages, as text."""
    return mutated_messages(server_messages(types, max_seq_no=max_seq_no, channels=channels))


def fuzzed_messages(*, max_seq_no: int = 1000) -> SearchStrategy[str | bytes]:
    """Anything a broken or hostile server might send as one WebSocket message.

    Raw bytes (a binary message), arbitrary text (lone surrogates included), arbitrary JSON
    values (including objects with a random or a real ``message`` field, and ``NaN``),
    :func:`mutated_message_texts`, and valid :func:`server_messages` as text.
    """
    json_any = st.recursive(
        _scalars() | st.floats(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=10,
    )
    typed = st.builds(
        lambda name, rest: {**rest, "message": name},
        st.sampled_from(SERVER_MESSAGE_TYPES) | st.text(max_size=12),
        st.dictionaries(st.text(max_size=8), json_any, max_size=4),
    )
    return st.one_of(
        st.binary(max_size=64),
        st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
        (json_any | typed).map(json.dumps),
        mutated_message_texts(max_seq_no=max_seq_no),
        server_messages(max_seq_no=max_seq_no).map(json.dumps),
    )


# ============================================================================================
# Client messages (for testing servers)
# ============================================================================================


@st.composite
def start_recognition_messages(draw: st.DrawFn) -> Message:
    """A valid ``StartRecognition`` (configs from :func:`transcription_configs` and friends)."""
    from .config import start_recognition_message

    message: Message = start_recognition_message(
        draw(transcription_configs(extra=False)),
        draw(audio_formats()),
        draw(_maybe(translation_configs())),
        draw(_maybe(audio_events_configs())),
    )
    return message


def _client_message(
    kind: str, channels: tuple[str, ...], max_seq_no: int
) -> SearchStrategy[Message]:
    channel = st.sampled_from(channels)
    seq = st.integers(0, max_seq_no)
    if kind == "StartRecognition":
        return start_recognition_messages()
    if kind == "AddChannelAudio":
        return st.builds(
            lambda c, data: {
                "message": "AddChannelAudio",
                "channel": c,
                "data": base64.b64encode(data).decode("ascii"),
            },
            channel,
            st.binary(min_size=2, max_size=64),
        )
    if kind == "EndOfStream":
        return st.builds(lambda n: {"message": "EndOfStream", "last_seq_no": n}, seq)
    if kind == "EndOfChannel":
        return st.builds(
            lambda c, n: {"message": "EndOfChannel", "channel": c, "last_seq_no": n}, channel, seq
        )
    if kind == "SetRecognitionConfig":

        def build(changes: dict[str, Any]) -> Message:
            from .config import TranscriptionConfig

            config = TranscriptionConfig("en").with_changes(**changes)
            return {
                "message": "SetRecognitionConfig",
                "transcription_config": config.mid_session_dict(),
            }

        return mid_session_changes().map(build)
    if kind == "ForceEndOfUtterance":
        return st.fixed_dictionaries(
            {"message": st.just("ForceEndOfUtterance")},
            optional={"timestamp": _seconds(0, 1000), "channel": channel},
        )
    if kind == "GetSpeakers":
        return st.fixed_dictionaries(
            {"message": st.just("GetSpeakers")}, optional={"final": st.booleans()}
        )
    raise ValueError(f"{kind!r} is not a client message type (AddAudio is binary)")


def client_messages(
    types: Iterable[str] | None = None,
    *,
    channels: Sequence[str] | None = None,
    max_seq_no: int = 1000,
) -> SearchStrategy[Message]:
    """Valid client→server JSON messages of the spec (``AddAudio`` is a binary frame,
    :func:`audio_frames`), each conforming to its schema in the spec.

    ``types`` limits the message types; ``channels`` names the channels of
    ``AddChannelAudio``/``EndOfChannel``/``ForceEndOfUtterance`` (default left/right).
    """
    allowed = tuple(t for t in CLIENT_MESSAGE_TYPES if t != "AddAudio")
    kinds = _check_types(types, allowed, "client message type")
    chans = _check_channels(channels) or _DEFAULT_CHANNELS
    return st.one_of(*[_client_message(k, chans, max_seq_no) for k in kinds])


def audio_frames(*, max_size: int = 6400) -> SearchStrategy[bytes]:
    """Binary audio frames (``AddAudio``): non-empty, any content."""
    return st.binary(min_size=1, max_size=max_size)


def fuzzed_client_messages(*, channels: Sequence[str] | None = None) -> SearchStrategy[str | bytes]:
    """Anything a broken or hostile client might send as one WebSocket message: audio
    frames, arbitrary text and JSON, valid :func:`client_messages` and broken ones."""
    valid = client_messages(channels=channels)
    json_any = st.recursive(
        _scalars() | st.floats(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=10,
    )
    typed = st.builds(
        lambda name, rest: {**rest, "message": name},
        st.sampled_from(CLIENT_MESSAGE_TYPES) | st.text(max_size=12),
        st.dictionaries(st.text(max_size=8), json_any, max_size=4),
    )
    return st.one_of(
        audio_frames(max_size=64),
        st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
        (json_any | typed).map(json.dumps),
        mutated_messages(valid),
        valid.map(json.dumps),
    )


# ============================================================================================
# Whole sessions
# ============================================================================================


def _dumps(msg: Message) -> str:
    return json.dumps(msg, ensure_ascii=False)


@st.composite
def _session(
    draw: st.DrawFn,
    frames: int,
    frame_seconds: float,
    partials: bool,
    infos: bool,
    end_of_utterance: bool,
    translation_languages: tuple[str, ...],
    audio_events: bool,
    word_delimiter: str | None,
) -> list[str]:
    out: list[str] = []
    if infos:
        for itype in draw(st.lists(st.sampled_from(INFO_TYPES), max_size=2, unique=True)):
            out.append(_dumps(draw(info_messages([itype]))))
    started = draw(recognition_started_messages(word_delimiter=word_delimiter))
    delimiter = started.get("language_pack_info", {}).get("word_delimiter", " ")
    out.append(_dumps(started))

    def final_until(until: float, low: float) -> None:
        """A final (and what goes with it) from ``low`` to ``until``."""
        out.append(
            _dumps(
                draw(
                    transcript_messages(
                        start=low,
                        end=until,
                        final=True,
                        forced=False,
                        word_delimiter=delimiter,
                    )
                )
            )
        )
        for language in translation_languages:
            out.append(
                _dumps(
                    draw(
                        translation_messages(start=low, end=until, final=True, languages=[language])
                    )
                )
            )
        if end_of_utterance and draw(st.booleans()):
            out.append(
                _dumps(draw(end_of_utterance_messages(start=until, end=until, forced=False)))
            )

    acked = 0
    covered = 0.0  # the end of the last final
    max_step = max(1, frames // 4)
    while acked < frames:
        acked += draw(st.integers(1, min(max_step, frames - acked)))
        out.append(_dumps({"message": "AudioAdded", "seq_no": acked}))
        heard = round(acked * frame_seconds, 6)
        action = draw(st.sampled_from(["none", "partial", "final", "both"]))
        if partials and action in ("partial", "both"):
            out.append(
                _dumps(
                    draw(
                        transcript_messages(
                            start=covered,
                            end=heard,
                            final=False,
                            forced=False,
                            word_delimiter=delimiter,
                        )
                    )
                )
            )
            for language in translation_languages:
                partial = translation_messages(
                    start=covered, end=heard, final=False, languages=[language]
                )
                out.append(_dumps(draw(partial)))
        if action in ("final", "both"):
            until = round(
                draw(st.integers(math.ceil(covered * _CS), math.floor(heard * _CS))) / _CS, 6
            )
            until = min(heard, max(covered, until))
            final_until(until, covered)
            covered = until
        if audio_events and draw(st.integers(0, 3)) == 0:
            started_event = draw(audio_event_started_messages(start=covered, end=heard))
            out.append(_dumps(started_event))
            ended = draw(
                audio_event_ended_messages(start=started_event["event"]["start_time"], end=heard)
            )
            ended["event"]["type"] = started_event["event"]["type"]
            out.append(_dumps(ended))
    total = round(frames * frame_seconds, 6)
    if total > covered or draw(st.booleans()):
        final_until(max(total, covered), covered)
    out.append(_dumps({"message": "EndOfTranscript"}))
    return out


def server_sessions(
    frames: int,
    *,
    frame_seconds: float = 0.1,
    partials: bool = True,
    infos: bool = True,
    end_of_utterance: bool = True,
    translation_languages: Sequence[str] = (),
    audio_events: bool = False,
    word_delimiter: str | None = None,
) -> SearchStrategy[list[str]]:
    """The server side of a plausible session with a client that sends ``frames`` frames.

    Each example is the list of message **texts** the server sends, in order. "Plausible"
    means, and is guaranteed:

    * zero to two ``Info`` messages (``recognition_quality``, ``concurrent_session_usage``),
      then exactly one ``RecognitionStarted``;
    * ``AudioAdded`` acknowledgements with strictly increasing ``seq_no``, never above
      ``frames``; when ``frames > 0`` the last one is exactly ``frames`` (every frame is
      acknowledged) and it comes before ``EndOfTranscript``;
    * transcripts only for audio already acknowledged: after the ack of frame ``k``, no
      transcript ends after ``k * frame_seconds``. Finals are contiguous (each starts where the
      previous ended, the first at 0) and the last one ends at ``frames * frame_seconds``;
      partials run from the end of the last final to at most the audio acknowledged;
    * ``EndOfUtterance`` (if ``end_of_utterance``) only right after a final, at its end time;
      translations (one per language of ``translation_languages``) beside transcripts;
      ``AudioEventStarted``/``AudioEventEnded`` pairs (if ``audio_events``) within the audio
      acknowledged;
    * exactly one ``EndOfTranscript``, last; no ``Error``, no ``Warning``, no ``forced``
      messages, no ``SpeakersResult``, no multichannel messages;
    * every message conforms to its schema in the official spec.

    To play a session against a client engine: send at least ``seq_no`` frames before feeding
    an ``AudioAdded`` (the server cannot acknowledge audio it has not received), and send all
    ``frames`` frames and call ``end_of_stream()`` before feeding ``EndOfTranscript``. Draw
    ``frames`` itself with ``st.integers(...).flatmap(lambda n: server_sessions(n))``-style
    composition when it should vary.
    """
    if type(frames) is not int or frames < 0:
        raise ValueError(f"frames must be an integer >= 0, got {frames!r}")
    if not (_is_number(frame_seconds) and 0 < frame_seconds < math.inf):
        raise ValueError(f"frame_seconds must be a finite number > 0, got {frame_seconds!r}")
    languages = tuple(translation_languages)
    if isinstance(translation_languages, str) or not all(type(x) is str for x in languages):
        raise ValueError("translation_languages must be a sequence of language codes")
    return _session(
        frames,
        float(frame_seconds),
        partials,
        infos,
        end_of_utterance,
        languages,
        audio_events,
        word_delimiter,
    )
