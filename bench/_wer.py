"""Word error rate: word-level Levenshtein distance over the reference length."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["normalise", "reference_from_jsonl", "wer"]


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes inside words are kept)."""
    text = text.lower().replace("\u2019", "'")
    words = re.sub(r"[^a-z0-9']+", " ", text).split()
    return [w.strip("'") for w in words if w.strip("'")]


def wer(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """(substitutions + deletions + insertions) / len(reference)."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref_word != hyp_word),  # substitution or match
                )
            )
        previous = current
    return previous[-1] / len(reference)


def reference_from_jsonl(path: Path) -> list[str]:
    """The words of every ``AddTranscript`` in a recorded session, normalised."""
    words: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            payload = json.loads(line).get("payload", {})
            if payload.get("message") != "AddTranscript":
                continue
            for result in payload.get("results", []):
                if result.get("type") == "word":
                    words += normalise(result["alternatives"][0]["content"])
    return words
