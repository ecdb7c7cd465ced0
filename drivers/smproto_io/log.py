"""Logging that never shows a credential.

``websockets`` logs the handshake request at DEBUG level, ``Authorization`` header
included. The drivers (and the local server) give it a logger whose filter masks bearer
tokens and ``jwt`` query parameters in every record, whatever the application's logging
configuration.
"""

from __future__ import annotations

import logging

from smproto.auth import mask_credentials

__all__ = ["redacting_logger"]


class _MaskCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


def redacting_logger(name: str) -> logging.Logger:
    """The logger ``name``, with a filter that masks credentials in its records."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _MaskCredentials) for f in logger.filters):
        logger.addFilter(_MaskCredentials())
    return logger
