"""The headline figures of a benchmark script, as a small JSON file (``--summary PATH``),
for ``bench/run_all.py`` to gather into one table.

A summary is ``{"script": ..., "quick": ..., "figures": {key: figure}}``, each figure
``{"label": ..., "value": number, "unit": ..., "note": ...}`` (the note is optional:
a word of context, such as what limited a run). Which keys a script writes is up to
what it measured; ``run_all.py`` shows the ones it knows and leaves out the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["figure", "write_summary"]


def figure(label: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    """One headline figure."""
    out: dict[str, Any] = {"label": label, "value": value, "unit": unit}
    if note:
        out["note"] = note
    return out


def write_summary(
    path: str | Path | None, script: str, figures: dict[str, dict[str, Any]], *, quick: bool
) -> None:
    """Write the summary to ``path`` (nothing when it is ``None``)."""
    if path is None:
        return
    summary = {"script": script, "quick": quick, "figures": figures}
    Path(path).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
