"""The plugin's logger (``smproto_livekit``)."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("smproto_livekit")
