"""The running transcript of a session, from the engine's events.

:class:`TranscriptAssembler` lives here, apart from :mod:`smproto.transcript` (which
only knows results) and :mod:`smproto.events` (which uses it): it is the one module that
needs both.
"""

from __future__ import annotations

from collections.abc import Sequence

from .events import AddPartialTranscript, AddTranscript, RecognitionStarted
from .transcript import Result, _Joiner

__all__ = ["TranscriptAssembler"]


class TranscriptAssembler:
    """The running transcript of a session: finals append, a partial replaces the last.

    Feed it every event with :meth:`add` (events it does not care about are ignored)::

        assembler = TranscriptAssembler()
        while (event := conn.next_event()) is not None:
            assembler.add(event)
        print(assembler.text)

    It learns the word delimiter from ``RecognitionStarted``. With ``channel`` set, only
    that channel's transcripts are assembled (use one assembler per channel).
    """

    def __init__(
        self,
        *,
        word_delimiter: str = " ",
        speaker_labels: bool = False,
        channel: str | None = None,
    ) -> None:
        self._joiner = _Joiner(word_delimiter, speaker_labels)
        self._word_delimiter = word_delimiter
        self._speaker_labels = speaker_labels
        self._channel = channel
        self._final_results: list[Result] = []
        self._partial_results: tuple[Result, ...] = ()
        self._final_text: str | None = ""
        self._text: str | None = ""

    @property
    def final_results(self) -> Sequence[Result]:
        """Every final result so far, in order."""
        return self._final_results

    @property
    def partial_results(self) -> Sequence[Result]:
        """The results of the latest partial (empty after a final)."""
        return self._partial_results

    @property
    def final_text(self) -> str:
        """The text of all finals so far."""
        if self._final_text is None:
            self._final_text = self._joiner.render()
        return self._final_text

    @property
    def text(self) -> str:
        """The finals followed by the latest partial: what to show a user right now."""
        if self._text is None:
            if self._partial_results:
                joiner = self._joiner.copy()
                joiner.feed(self._partial_results)
                self._text = joiner.render()
            else:
                self._text = self.final_text
        return self._text

    def add(self, event: object) -> None:
        """Take one event. Transcript events update the text; ``RecognitionStarted``
        sets the word delimiter; everything else is ignored."""
        if isinstance(event, AddTranscript):
            if self._channel is not None and event.channel != self._channel:
                return
            self.add_final(event.results)
        elif isinstance(event, AddPartialTranscript):
            if self._channel is not None and event.channel != self._channel:
                return
            self.add_partial(event.results)
        elif isinstance(event, RecognitionStarted):
            info = event.language_pack_info
            if info is not None and not self._final_results:
                self.set_word_delimiter(info.word_delimiter)

    def set_word_delimiter(self, word_delimiter: str) -> None:
        """Change the delimiter; only allowed before the first final."""
        if self._final_results:
            raise ValueError("the word delimiter cannot change after the first final")
        self._joiner = _Joiner(word_delimiter, self._speaker_labels)
        self._word_delimiter = word_delimiter
        self._text = None
        self._final_text = ""

    def add_final(self, results: Sequence[Result]) -> None:
        """Append the results of a final transcript; the pending partial is dropped."""
        self._final_results.extend(results)
        self._joiner.feed(results)
        self._partial_results = ()
        self._final_text = None
        self._text = None

    def add_partial(self, results: Sequence[Result]) -> None:
        """Replace the pending partial with these results."""
        self._partial_results = tuple(results)
        self._text = None
