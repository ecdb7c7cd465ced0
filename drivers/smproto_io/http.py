"""The one HTTP request a client makes (for a temporary key), with the standard library.

Blocking: the drivers run it in a worker thread.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from smproto.auth import HTTPRequest

__all__ = ["post"]


def post(request: HTTPRequest, timeout: float) -> tuple[int, bytes]:
    """Perform ``request``; return the status and the body (also for HTTP errors).

    Raises ``OSError`` (including ``urllib.error.URLError``) when there is no answer.
    """
    req = urllib.request.Request(
        request.url, data=request.body, headers=request.header_dict(), method=request.method
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return int(response.status), response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read(1 << 20)
