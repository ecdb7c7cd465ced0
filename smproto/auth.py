"""Authentication as data: temporary keys, handshake headers and the session URL.

Speechmatics lets a long-lived API key mint a short-lived *temporary key*::

    POST https://mp.speechmatics.com/v1/api_keys?type=rt
    Authorization: Bearer <api key>
    {"ttl": 60}

    201 Created
    {"apikey_id": "...", "key_value": "<temporary key>"}

:func:`temporary_key_request` builds that request and
:func:`parse_temporary_key_response` reads the answer; a driver does the HTTP.

Secrets stay secret: an :class:`HTTPRequest` prints its ``Authorization`` header as
``Bearer ***``, and error messages never quote a key (pass the keys to ``redact``
when the response body could echo one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .errors import TemporaryKeyError

__all__ = [
    "API_KEY_VARIABLE",
    "DEFAULT_MANAGEMENT_URL",
    "DEFAULT_RT_URL",
    "HTTPRequest",
    "handshake_headers",
    "mask_credentials",
    "parse_temporary_key_response",
    "redact",
    "session_url",
    "temporary_key_request",
]

#: The management platform that issues temporary keys.
DEFAULT_MANAGEMENT_URL: Final = "https://mp.speechmatics.com"
#: The default real-time endpoint.
DEFAULT_RT_URL: Final = "wss://eu2.rt.speechmatics.com/v2"

_MIN_TTL, _MAX_TTL = 60, 86_400

#: The environment variable a client takes the API key from when none is given (the
#: drivers read it: ``smproto_io.keys.resolve_api_key``; the core reads no environment).
API_KEY_VARIABLE: Final = "SPEECHMATICS_API_KEY"


_CREDENTIALS = (
    (re.compile(r"(?i)(bearer\s+)[^\s'\",]+"), r"\1***"),
    (re.compile(r"(?i)(jwt=)[^&\s'\",]+"), r"\1***"),
)


def mask_credentials(text: str) -> str:
    """``text`` with bearer tokens and ``jwt=`` query parameters masked (``***``)."""
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """An HTTP request for a driver to perform. Its repr hides credentials."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = field(repr=False)

    def __repr__(self) -> str:
        shown = [
            (name, "Bearer ***" if name.lower() == "authorization" else value)
            for name, value in self.headers
        ]
        return f"HTTPRequest(method={self.method!r}, url={self.url!r}, headers={shown!r})"

    def header_dict(self) -> dict[str, str]:
        """The headers as a dict (for HTTP clients that want one)."""
        return dict(self.headers)


def _check_key(api_key: object) -> str:
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError("an API key is required (a non-empty string)")
    if any(c in api_key for c in "\r\n"):
        raise ValueError("the API key contains a line break")
    return api_key


def temporary_key_request(
    api_key: str,
    *,
    ttl: int = 60,
    base_url: str = DEFAULT_MANAGEMENT_URL,
    region: str | None = None,
    client_ref: str | None = None,
) -> HTTPRequest:
    """The request that mints a temporary real-time key valid for ``ttl`` seconds.

    ``ttl`` is 60 to 86400. ``client_ref`` ties the key to one of your end users
    (recommended when the key reaches a browser); ``region`` is for enterprise
    accounts.
    """
    key = _check_key(api_key)
    if type(ttl) is not int or not _MIN_TTL <= ttl <= _MAX_TTL:
        raise ValueError(
            f"ttl must be an integer from {_MIN_TTL} to {_MAX_TTL} seconds, got {ttl!r}"
        )
    if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    payload: dict[str, object] = {"ttl": ttl}
    if region is not None:
        payload["region"] = region
    if client_ref is not None:
        payload["client_ref"] = client_ref
    return HTTPRequest(
        method="POST",
        url=base_url.rstrip("/") + "/v1/api_keys?type=rt",
        headers=(
            ("Authorization", f"Bearer {key}"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ),
        body=json.dumps(payload).encode(),
    )


def _excerpt(body: bytes | str, secrets: Iterable[str | None]) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(redact(text, secrets).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def parse_temporary_key_response(
    status: int, body: bytes | str, *, redact_secrets: Iterable[str | None] = ()
) -> str:
    """The temporary key from the endpoint's answer.

    Raises :class:`~smproto.errors.TemporaryKeyError`: for 401/403 (the API key was
    refused), 429 and 5xx (retryable), any other non-2xx status, or a 2xx body
    without a ``key_value`` string. Pass the API key as ``redact_secrets`` so a
    body that echoes it cannot leak it into the message.
    """
    secrets = list(redact_secrets)
    if status in (401, 403):
        raise TemporaryKeyError(
            f"the API key was refused by the temporary-key endpoint (HTTP {status}): "
            f"{_excerpt(body, secrets)}",
            status=status,
        )
    if status == 429 or 500 <= status <= 599:
        raise TemporaryKeyError(
            f"the temporary-key endpoint is unavailable (HTTP {status}); try again later: "
            f"{_excerpt(body, secrets)}",
            status=status,
            retryable=True,
        )
    if not 200 <= status <= 299:
        raise TemporaryKeyError(
            f"the temporary-key endpoint answered HTTP {status} (expected 201): "
            f"{_excerpt(body, secrets)}",
            status=status,
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise TemporaryKeyError(
            f"the temporary-key endpoint answered HTTP {status} with a body that is not JSON: "
            f"{_excerpt(body, secrets)}",
            status=status,
        ) from None
    key = data.get("key_value") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key:
        raise TemporaryKeyError(
            f"the temporary-key endpoint answered HTTP {status} without a 'key_value': "
            f"{_excerpt(body, secrets)}",
            status=status,
        )
    return key


def handshake_headers(
    api_key: str | None,
    extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """The WebSocket handshake headers: ``Authorization: Bearer <key>`` plus extras.

    Extra headers can never set ``Authorization`` (a :class:`ValueError` says so);
    header names and values must not contain line breaks.
    """
    headers: list[tuple[str, str]] = []
    if api_key is not None:
        headers.append(("Authorization", f"Bearer {_check_key(api_key)}"))
    if extra_headers is None:
        return headers
    items = extra_headers.items() if isinstance(extra_headers, Mapping) else extra_headers
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("extra header names and values must be strings")
        if name.strip().lower() == "authorization":
            raise ValueError(
                "extra_headers cannot set Authorization; pass the key as api_key instead"
            )
        if any(c in name + value for c in "\r\n\0"):
            raise ValueError(f"extra header {name!r} contains a line break")
        headers.append((name, value))
    return headers


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _quote(value: str) -> str:
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in value)


def session_url(
    url: str = DEFAULT_RT_URL, *, sdk: str | None = None, jwt: str | None = None
) -> str:
    """The URL to open: ``url`` with ``sm-sdk`` (and, for browsers, ``jwt``) in its query.

    ``sm-sdk`` tells Speechmatics which client is connecting; ``jwt`` carries a
    temporary key where headers cannot be set (prefer the ``Authorization`` header).
    """
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise ValueError(f"the URL must start with ws:// or wss://, got {url!r}")
    fragment = ""
    if "#" in url:
        url, fragment = url.split("#", 1)
        fragment = "#" + fragment
    params = []
    if sdk:
        params.append(f"sm-sdk={_quote(sdk)}")
    if jwt:
        params.append(f"jwt={_quote(jwt)}")
    if not params:
        return url + fragment
    separator = "&" if "?" in url else "?"
    if url.endswith(("?", "&")):
        separator = ""
    return url + separator + "&".join(params) + fragment
