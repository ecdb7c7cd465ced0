"""``python -m smproto_asyncio``: the ``smproto`` command."""

from __future__ import annotations

from .cli import run

run()
