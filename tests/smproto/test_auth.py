"""Temporary keys, handshake headers and session URLs, as data; secrets stay out of sight."""

from __future__ import annotations

import json

import pytest

from smproto import TemporaryKeyError, parse_temporary_key_response, temporary_key_request
from smproto.auth import handshake_headers, redact, session_url

KEY = "sk-super-secret-0123456789"


def test_temporary_key_request() -> None:
    request = temporary_key_request(KEY, ttl=120, client_ref="user-7")
    assert request.method == "POST"
    assert request.url == "https://mp.speechmatics.com/v1/api_keys?type=rt"
    headers = request.header_dict()
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"ttl": 120, "client_ref": "user-7"}
    custom = temporary_key_request(KEY, base_url="http://127.0.0.1:8080/", region="usa")
    assert custom.url == "http://127.0.0.1:8080/v1/api_keys?type=rt"
    assert json.loads(custom.body) == {"ttl": 60, "region": "usa"}


def test_request_repr_hides_the_key() -> None:
    request = temporary_key_request(KEY)
    assert KEY not in repr(request) and KEY not in str(request)
    assert "Bearer ***" in repr(request)


@pytest.mark.parametrize("ttl", [59, 86_401, 60.0, True, "60"])
def test_ttl_range(ttl: object) -> None:
    with pytest.raises(ValueError, match="ttl"):
        temporary_key_request(KEY, ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "  ", None, "a\r\nX-Evil: 1"])
def test_bad_keys(key: object) -> None:
    with pytest.raises(ValueError) as info:
        temporary_key_request(key)  # type: ignore[arg-type]
    assert "X-Evil" not in str(info.value)


def test_parse_success() -> None:
    body = json.dumps({"apikey_id": "abc", "key_value": "temp-key"}).encode()
    assert parse_temporary_key_response(201, body) == "temp-key"
    assert parse_temporary_key_response(200, body.decode()) == "temp-key"


@pytest.mark.parametrize(
    ("status", "body", "retryable", "match"),
    [
        (401, b'{"detail": "bad key"}', False, "refused"),
        (403, b"forbidden", False, "refused"),
        (429, b"slow down", True, "try again"),
        (503, b"<html>", True, "try again"),
        (404, b"nope", False, "HTTP 404"),
        (201, b"not json", False, "not JSON"),
        (201, b'{"key": "x"}', False, "key_value"),
        (201, b"[1]", False, "key_value"),
        (201, b'{"key_value": ""}', False, "key_value"),
    ],
)
def test_parse_errors(status: int, body: bytes, retryable: bool, match: str) -> None:
    with pytest.raises(TemporaryKeyError, match=match) as info:
        parse_temporary_key_response(status, body)
    assert info.value.retryable is retryable
    assert info.value.status == status


def test_error_never_echoes_the_key() -> None:
    body = f'{{"error": "key {KEY} is unknown"}}'.encode()
    with pytest.raises(TemporaryKeyError) as info:
        parse_temporary_key_response(401, body, redact_secrets=[KEY])
    assert KEY not in str(info.value) and "***" in str(info.value)


def test_long_bodies_are_truncated() -> None:
    with pytest.raises(TemporaryKeyError) as info:
        parse_temporary_key_response(500, b"x" * 10_000)
    assert len(str(info.value)) < 400


def test_handshake_headers() -> None:
    assert handshake_headers(KEY) == [("Authorization", f"Bearer {KEY}")]
    assert handshake_headers(None, {"X-Trace": "1"}) == [("X-Trace", "1")]
    assert handshake_headers(KEY, [("X-A", "1"), ("X-A", "2")])[1:] == [("X-A", "1"), ("X-A", "2")]
    for name in ("Authorization", "authorization", " AUTHORIZATION "):
        with pytest.raises(ValueError, match="cannot set Authorization"):
            handshake_headers(KEY, {name: "Bearer other"})
    with pytest.raises(ValueError, match="line break"):
        handshake_headers(KEY, {"X-A": "1\r\nX-B: 2"})


def test_session_url() -> None:
    assert session_url("wss://eu2.rt.speechmatics.com/v2") == "wss://eu2.rt.speechmatics.com/v2"
    assert session_url("ws://127.0.0.1:9000/v2/en", sdk="smproto/0.1 asyncio") == (
        "ws://127.0.0.1:9000/v2/en?sm-sdk=smproto%2F0.1%20asyncio"
    )
    assert session_url("wss://h/v2?x=1", sdk="s", jwt="a+b") == "wss://h/v2?x=1&sm-sdk=s&jwt=a%2Bb"
    with pytest.raises(ValueError, match="ws://"):
        session_url("https://h/v2")


def test_redact() -> None:
    assert redact(f"a {KEY} b {KEY}", [KEY, None, ""]) == "a *** b ***"
