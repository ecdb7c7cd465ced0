"""Where a client's API key comes from, when the application gives none."""

from __future__ import annotations

import os

from smproto.auth import API_KEY_VARIABLE

__all__ = ["resolve_api_key"]


def resolve_api_key(api_key: str | None) -> str | None:
    """``api_key``, or else ``SPEECHMATICS_API_KEY`` from the environment (an empty value
    counts as none); ``None`` when neither is set (a local server needs no key)."""
    if api_key is not None:
        return api_key
    return os.environ.get(API_KEY_VARIABLE) or None
