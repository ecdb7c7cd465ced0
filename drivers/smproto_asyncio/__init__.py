"""smproto_asyncio: the asyncio driver of smproto (see its issue; not implemented yet)."""

from __future__ import annotations

__all__: list[str] = []
