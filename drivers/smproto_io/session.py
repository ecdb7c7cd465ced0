"""What the ``websockets``-based client drivers share around their session: the split of
``connect()``'s arguments, and the session object's read-only view.

Each driver's ``connect()`` spells out its keyword arguments (the same in every
driver); :func:`open_session` splits them into the sans-IO session's and the
transport's. :class:`SessionView` is the part of a driver's ``Session`` that only reads
the session.
"""

from __future__ import annotations

import ssl as ssl_module
from typing import Any

from smproto import AudioInFlight, ClientConnection
from smproto._state import SessionState
from smproto.session import ClientSession

from .keys import resolve_api_key

__all__ = ["TRANSPORT_OPTIONS", "SessionView", "open_session"]

#: The arguments of ``connect()`` that are the transport's, not the session's
#: (``open_timeout`` is both: the session bounds the key and the handshake with it).
TRANSPORT_OPTIONS = ("ssl", "close_timeout", "ping_interval", "ping_timeout", "max_message_size")


def open_session(sdk: str, arguments: dict[str, Any]) -> tuple[ClientSession, dict[str, Any]]:
    """The session that ``connect(**arguments)`` asks for, and the transport's options.

    The API key comes from ``SPEECHMATICS_API_KEY`` when none is given. ``ssl`` must be an
    ``SSLContext`` or ``None``: a value such as ``False`` (how some libraries turn
    verification off) is a ``TypeError``, never "do not verify".
    """
    arguments = dict(arguments)
    ssl = arguments.get("ssl")
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise TypeError(
            f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}: certificates "
            "are always verified, unless the context given says otherwise"
        )
    transport = {name: arguments.pop(name) for name in TRANSPORT_OPTIONS}
    transport["open_timeout"] = arguments["open_timeout"]
    arguments["api_key"] = resolve_api_key(arguments.get("api_key"))
    return ClientSession(sdk=sdk, **arguments), transport


class SessionView:
    """A driver's ``Session``, as far as it only reads the sans-IO session (:attr:`core`)."""

    #: The sans-IO session that decides everything; the driver does its IO.
    core: ClientSession

    def __repr__(self) -> str:  # never shows a key
        return f"<{type(self).__name__} {self.core!r}>"

    @property
    def state(self) -> SessionState:
        """Where the session is (``ACTIVE``, ``ROLLING_OVER``, ``DRAINING``, ...)."""
        return self.core.state

    @property
    def connection(self) -> ClientConnection:
        """The current connection's sans-IO engine (a new one after a reconnect)."""
        return self.core.connection

    @property
    def audio_in_flight(self) -> AudioInFlight:
        """Audio sent but not yet acknowledged."""
        return self.core.audio_in_flight

    @property
    def dropped_events(self) -> int:
        """Events dropped because the application read too slowly (never finals)."""
        return self.core.dropped_events

    @property
    def reconnects(self) -> int:
        """How many times a failed connection was replaced."""
        return self.core.reconnects

    @property
    def rollovers(self) -> int:
        """How many times the session moved to a new connection before a limit."""
        return self.core.rollovers
