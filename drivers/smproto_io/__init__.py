"""smproto_io: the IO helpers every smproto driver shares, none of them protocol.

- :mod:`smproto_io.http`: the one HTTP request a client makes (a temporary key), with
  the standard library (blocking: drivers run it in a worker thread).
- :mod:`smproto_io.keys`: the API key from ``SPEECHMATICS_API_KEY`` when none is given.
- :mod:`smproto_io.log`: loggers that never show a credential (for ``websockets``).
- :mod:`smproto_io.ws`: the message hook the ``websockets``-based drivers put on their
  connections, to take each message where it is parsed.

Everything that decides something (what to open, when to retry, what an error means)
is in :mod:`smproto.session`; these only move bytes. Import the modules you need: this
package imports none of them, so that a driver without ``websockets`` (LiveKit's, on
aiohttp) can use the others.
"""

from __future__ import annotations

__all__: list[str] = []
