"""Typed transcript results, joining them into text, and assembling a running transcript.

A transcript message carries a list of *results*: words, punctuation marks and
entities, each with timings and one or more *alternatives* (the content, its
confidence, speaker, language and tags). :func:`parse_results` turns the wire
list into :class:`Result` tuples (validating the shape on the way);
:func:`join_results` joins results into text by the rules of the legacy
Speechmatics SDK's ``convert_to_txt``:

- results are grouped by (speaker, language); groups are separated by a newline,
  and with ``speaker_labels=True`` a ``SPEAKER: S1`` line opens each speaker's turn;
- within a group, words (and entities, by their written form) are separated by the
  language's word delimiter (``" "``, or ``""`` for languages such as Japanese);
- punctuation attaches to the previous word (the default), the next word, both
  (``for-sure``), or none (stands alone);
- a ``speaker_change`` result (legacy speaker-change detection) is shown as ``<sc>``
  on its own line;
- unlike the legacy joiner, nothing is dropped: a mark with no word to attach to
  stands alone, and a mark attached to the next word waits for it even past another.

:class:`~smproto.TranscriptAssembler` (:mod:`smproto.assembler`) keeps the running
text of a session: finals append, and each partial replaces the previous partial. It
joins across messages, so a final that holds only a full stop attaches it to the last
word of the previous one.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from .errors import SmprotoError

__all__ = [
    "Alternative",
    "Result",
    "TranscriptFormatError",
    "join_results",
    "parse_results",
]


class TranscriptFormatError(SmprotoError, ValueError):
    """A list of results does not have the shape the protocol specifies."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 40, 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 4


def _brief(value: object) -> str:
    """A short repr for error messages, cheap and bounded however deep the value nests."""
    return _REPR.repr(value)


class Alternative(NamedTuple):
    """One candidate content for a result."""

    #: The word or punctuation mark.
    content: str
    #: 0.0 (least confident) to 1.0. Meaningless in partials.
    confidence: float
    #: The language of the word, e.g. ``"en"``.
    language: str | None = None
    #: Who said it, e.g. ``"S1"``, when diarization is on.
    speaker: str | None = None
    #: e.g. ``("disfluency",)`` or ``("profanity",)``.
    tags: tuple[str, ...] = ()
    #: ``"ltr"`` or ``"rtl"`` when the server says how to display the content.
    display_direction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (``RecognitionAlternative``), without unset fields."""
        out: dict[str, Any] = {"content": self.content, "confidence": self.confidence}
        if self.language is not None:
            out["language"] = self.language
        if self.speaker is not None:
            out["speaker"] = self.speaker
        if self.tags:
            out["tags"] = list(self.tags)
        if self.display_direction is not None:
            out["display"] = {"direction": self.display_direction}
        return out


class Result(NamedTuple):
    """One word, punctuation mark or entity of a transcript.

    The convenience properties read the first (best) alternative.
    """

    #: ``"word"``, ``"punctuation"``, ``"entity"``, or a type this version does not know.
    type: str
    start_time: float
    end_time: float
    alternatives: tuple[Alternative, ...] = ()
    #: For punctuation: ``"previous"`` (when absent), ``"next"``, ``"both"`` or ``"none"``.
    attaches_to: str | None = None
    #: For punctuation: whether it ends a sentence.
    is_eos: bool = False
    #: For entities: the class, e.g. ``"money"``.
    entity_class: str | None = None
    #: For entities: the words as spoken (``Two dollars five cents``).
    spoken_form: tuple[Result, ...] = ()
    #: For entities: the formatted words (``$2.05``).
    written_form: tuple[Result, ...] = ()
    volume: float | None = None
    #: The channel, when the server puts it on the result (multichannel).
    channel: str | None = None

    @property
    def content(self) -> str:
        """The best alternative's content (``""`` when there is none)."""
        alts = self.alternatives
        if alts:
            return alts[0].content
        if self.written_form:
            return " ".join(r.content for r in self.written_form)
        return ""

    @property
    def confidence(self) -> float | None:
        """The best alternative's confidence."""
        return self.alternatives[0].confidence if self.alternatives else None

    @property
    def speaker(self) -> str | None:
        """The best alternative's speaker label."""
        return self.alternatives[0].speaker if self.alternatives else None

    @property
    def language(self) -> str | None:
        """The best alternative's language."""
        return self.alternatives[0].language if self.alternatives else None

    @property
    def tags(self) -> tuple[str, ...]:
        """The best alternative's tags."""
        return self.alternatives[0].tags if self.alternatives else ()

    def to_dict(self) -> dict[str, Any]:
        """The wire form (``RecognitionResult``), as :func:`parse_results` reads it."""
        out: dict[str, Any] = {
            "type": self.type,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "alternatives": [a.to_dict() for a in self.alternatives],
        }
        if self.attaches_to is not None:
            out["attaches_to"] = self.attaches_to
        if self.type == "punctuation":
            out["is_eos"] = self.is_eos
        if self.entity_class is not None:
            out["entity_class"] = self.entity_class
        if self.spoken_form:
            out["spoken_form"] = [r.to_dict() for r in self.spoken_form]
        if self.written_form:
            out["written_form"] = [r.to_dict() for r in self.written_form]
        if self.volume is not None:
            out["volume"] = self.volume
        if self.channel is not None:
            out["channel"] = self.channel
        return out

    def shifted(self, offset: float) -> Result:
        """The same result with every time (including entity forms) moved by ``offset``."""
        return self._replace(
            start_time=self.start_time + offset,
            end_time=self.end_time + offset,
            spoken_form=tuple(r.shifted(offset) for r in self.spoken_form),
            written_form=tuple(r.shifted(offset) for r in self.written_form),
        )


# ---------------------------------------------------------------------------
# Parsing. This runs for every transcript message, so it is written for speed:
# no per-field helper calls on the common path, type checks by identity.


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise TranscriptFormatError(f"{what} must be a string, got {_brief(value)}")


_tuple_new = tuple.__new__
_NO_TAGS: tuple[str, ...] = ()


def _parse_alternatives(raw: Any) -> tuple[Alternative, ...]:
    if type(raw) is not list:
        raise TranscriptFormatError(f"alternatives must be a list, got {_brief(raw)}")
    out = []
    for alt in raw:
        if type(alt) is not dict:
            raise TranscriptFormatError(f"an alternative must be an object, got {_brief(alt)}")
        get = alt.get
        content = get("content")
        confidence = get("confidence", 0.0)
        language = get("language")
        speaker = get("speaker")
        if (
            type(content) is not str
            or (type(confidence) is not float and type(confidence) is not int)
            or (language is not None and type(language) is not str)
            or (speaker is not None and type(speaker) is not str)
        ):
            raise TranscriptFormatError(
                "an alternative needs a string content, a numeric confidence, and string "
                f"language and speaker when present; got {_brief(alt)}"
            )
        tags = _NO_TAGS
        direction = None
        if "tags" in alt or "display" in alt:
            raw_tags = get("tags")
            if raw_tags is not None:
                if type(raw_tags) is not list or not all(type(t) is str for t in raw_tags):
                    raise TranscriptFormatError(
                        f"alternative tags must be a list of strings, got {_brief(raw_tags)}"
                    )
                tags = tuple(raw_tags)
            display = get("display")
            if display is not None:
                if type(display) is not dict:
                    raise TranscriptFormatError(f"display must be an object, got {_brief(display)}")
                direction = _opt_str(display.get("direction"), "display.direction")
        out.append(
            _tuple_new(Alternative, (content, confidence, language, speaker, tags, direction))
        )
    return tuple(out)


def _parse_result(r: Any, offset: float) -> Result:
    if type(r) is not dict:
        raise TranscriptFormatError(f"a result must be an object, got {_brief(r)}")
    get = r.get
    rtype = get("type")
    start: Any = get("start_time")
    end: Any = get("end_time")
    ts, te = type(start), type(end)
    if (
        type(rtype) is not str
        or (ts is not float and ts is not int)
        or (te is not float and te is not int)
    ):
        raise TranscriptFormatError(
            f"a result needs a string type and numeric start_time and end_time; got {_brief(r)}"
        )
    raw_alts = get("alternatives")
    alts = _parse_alternatives(raw_alts) if raw_alts is not None else ()
    if offset:
        start += offset
        end += offset
    if len(r) == 4 and raw_alts is not None:
        # The common case: a word with just type, times and alternatives.
        return _tuple_new(Result, (rtype, start, end, alts, None, False, None, (), (), None, None))
    attaches_to = get("attaches_to")
    if attaches_to is not None and type(attaches_to) is not str:
        raise TranscriptFormatError(f"attaches_to must be a string, got {_brief(attaches_to)}")
    is_eos = get("is_eos", False)
    if type(is_eos) is not bool:
        raise TranscriptFormatError(f"is_eos must be a boolean, got {_brief(is_eos)}")
    volume = get("volume")
    if volume is not None and type(volume) is not float and type(volume) is not int:
        raise TranscriptFormatError(f"volume must be a number, got {_brief(volume)}")
    channel = get("channel")
    if channel is not None and type(channel) is not str:
        raise TranscriptFormatError(f"result channel must be a string, got {_brief(channel)}")
    if rtype != "entity":
        return _tuple_new(
            Result, (rtype, start, end, alts, attaches_to, is_eos, None, (), (), volume, channel)
        )
    entity_class = _opt_str(get("entity_class"), "entity_class")
    spoken = get("spoken_form")
    written = get("written_form")
    spoken_form = _parse_form(spoken, "spoken_form", offset) if spoken is not None else ()
    written_form = _parse_form(written, "written_form", offset) if written is not None else ()
    return _tuple_new(
        Result,
        (
            rtype,
            start,
            end,
            alts,
            attaches_to,
            is_eos,
            entity_class,
            spoken_form,
            written_form,
            volume,
            channel,
        ),
    )


def _parse_form(raw: Any, what: str, offset: float) -> tuple[Result, ...]:
    if type(raw) is not list:
        raise TranscriptFormatError(f"{what} must be a list, got {_brief(raw)}")
    return tuple(_parse_result(r, offset) for r in raw)


def parse_results(raw: Any, *, offset: float = 0.0) -> tuple[Result, ...]:
    """Parse the ``results`` list of a transcript message.

    ``offset`` is added to every time (used after a resumed connection so that all
    times lie on one continuous timeline). Raises :class:`TranscriptFormatError`
    when the shape is not the protocol's; extra fields are ignored.
    """
    if type(raw) is not list:
        raise TranscriptFormatError(f"results must be a list, got {_brief(raw)}")
    return tuple([_parse_result(r, offset) for r in raw])


# ---------------------------------------------------------------------------
# Joining.


def _group_key(result: Result) -> tuple[str | None, str | None]:
    alts = result.alternatives
    if alts:
        a = alts[0]
        return (a.speaker, a.language)
    return (None, None)


def _token_text(result: Result) -> str:
    if result.type == "entity":
        if result.alternatives:
            return result.alternatives[0].content
        if result.written_form:
            return " ".join(r.content for r in result.written_form)
        return ""
    return result.alternatives[0].content if result.alternatives else ""


class _Group:
    """The words of one (speaker, language) run, joined as the legacy SDK joins them."""

    __slots__ = ("contents", "key", "pending")

    def __init__(self, key: tuple[str | None, str | None]) -> None:
        self.key = key
        self.contents: list[str] = []
        # Punctuation waiting to attach to the next word.
        self.pending = ""

    def copy(self) -> _Group:
        g = _Group(self.key)
        g.contents = list(self.contents)
        g.pending = self.pending
        return g

    def add(self, result: Result) -> None:
        rtype = result.type
        if rtype in {"word", "entity"}:
            self.contents.append(self.pending + _token_text(result))
            self.pending = ""
        elif rtype == "punctuation":
            mark = _token_text(result)
            attaches = result.attaches_to or "previous"
            # Unlike the legacy joiner, a mark with nothing to attach to is kept, not
            # dropped: a final that holds only "." still shows it.
            if attaches == "previous":
                if self.contents:
                    self.contents[-1] += mark
                else:
                    self.contents.append(mark)
            elif attaches == "next":
                self.pending += mark
            elif attaches == "none":
                self.contents.append(mark)
            elif attaches == "both":
                self.pending = (self.contents.pop() if self.contents else "") + self.pending + mark
        # Other types (e.g. speaker_change) are handled by the caller.

    def render(self, delimiter: str) -> str:
        if self.pending:
            return delimiter.join([*self.contents, self.pending])
        return delimiter.join(self.contents)


class _Joiner:
    """Incremental form of :func:`join_results`: feed results, render at any time."""

    __slots__ = ("_closed_text", "_current", "_delimiter", "_labels", "_speaker")

    def __init__(self, delimiter: str, speaker_labels: bool) -> None:
        self._delimiter = delimiter
        self._labels = speaker_labels
        # Text of the groups already closed, each followed by "\n".
        self._closed_text = ""
        self._current: _Group | None = None
        self._speaker: str | None = None  # the last speaker label printed

    def copy(self) -> _Joiner:
        j = _Joiner(self._delimiter, self._labels)
        j._closed_text = self._closed_text
        j._current = self._current.copy() if self._current is not None else None
        j._speaker = self._speaker
        return j

    def _close_current(self) -> None:
        if self._current is not None:
            self._closed_text += self._current.render(self._delimiter) + "\n"
            self._current = None

    def _open(self, key: tuple[str | None, str | None]) -> None:
        self._close_current()
        speaker = key[0]
        if self._labels and speaker and speaker != self._speaker:
            self._speaker = speaker
            self._closed_text += f"SPEAKER: {speaker}\n"
        self._current = _Group(key)

    def feed(self, results: Iterable[Result]) -> None:
        for result in results:
            if result.type == "speaker_change":
                self._close_current()
                self._closed_text += "<sc>\n"
                continue
            key = _group_key(result)
            current = self._current
            if current is None or current.key != key:
                self._open(key)
                current = self._current
                assert current is not None
            current.add(result)

    def render(self) -> str:
        text = self._closed_text
        if self._current is not None:
            text += self._current.render(self._delimiter)
        return text.rstrip()


def join_results(
    results: Iterable[Result], *, word_delimiter: str = " ", speaker_labels: bool = False
) -> str:
    """Join results into plain text, by the rules described in this module's docstring.

    ``word_delimiter`` comes from ``RecognitionStarted.language_pack_info``
    (``" "`` for most languages, ``""`` for e.g. Japanese and Mandarin).
    """
    joiner = _Joiner(word_delimiter, speaker_labels)
    joiner.feed(results)
    return joiner.render()
