"""Helpers shared by the tests: the fixtures folder and engines driven into a state."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from smproto import AudioFormat, ClientConnection, State, TranscriptionConfig

REPO = Path(__file__).resolve().parents[1]

#: Every API key the tests hand to the code (see :func:`secret`); the whole run's log
#: output is scanned for each of them (tests/conftest.py).
SECRETS: set[str] = set()


def secret(name: str = "key") -> str:
    """A distinctive API key for a test, registered for the whole-run log scan."""
    import uuid

    value = f"sk-test-{name}-{uuid.uuid4().hex}"
    SECRETS.add(value)
    return value


def fixtures_dir() -> Path:
    """``../shared/fixtures/speechmatics`` (or ``$SMPROTO_FIXTURES``)."""
    env = os.environ.get("SMPROTO_FIXTURES")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "fixtures" / "speechmatics"


def require_fixtures() -> Path:
    """The fixtures folder, or skip with a clear message (under CI, .ci/run fails instead)."""
    path = fixtures_dir()
    if not (path / "realtime.yaml").is_file():
        message = f"shared fixtures not found at {path} (set SMPROTO_FIXTURES)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": under CI the conformance tests must run")
        pytest.skip(message)
    return path


def chat1_messages() -> list[dict[str, Any]]:
    """The RT protocol messages of the recorded session, in order (the recording's
    own SDK-level message types, such as AddSegment, are left out)."""
    rt_types = {
        "Info",
        "RecognitionStarted",
        "AddPartialTranscript",
        "AddTranscript",
        "EndOfUtterance",
    }
    path = require_fixtures() / "chat1.jsonl"
    out = []
    for line in path.read_text().splitlines():
        payload = json.loads(line)["payload"]
        if payload.get("message") in rt_types:
            out.append(payload)
    return out


def dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


FRAME = b"\x00\x01" * 1600  # 0.1 s of 16 kHz 16-bit audio


def recognition_started(**extra: Any) -> str:
    msg = {
        "message": "RecognitionStarted",
        "id": "test-session",
        "language_pack_info": {"word_delimiter": " ", "language_description": "English"},
    }
    msg.update(extra)
    return json.dumps(msg)


def client_in(
    state: State,
    config: TranscriptionConfig | None = None,
    audio_format: AudioFormat | None = None,
    *,
    frames: int = 0,
    channel: str | None = None,
    **options: Any,
) -> ClientConnection:
    """A client engine driven (through its public API) into ``state``.

    In STREAMING and DRAINING, ``frames`` frames of audio have been sent (on
    ``channel`` with ``send_channel_audio`` when given) and not acknowledged.
    """
    conn = ClientConnection(
        config or TranscriptionConfig(language="en", enable_partials=True),
        audio_format or AudioFormat(),
        **options,
    )
    if state is State.CONNECTING:
        return conn
    conn.connection_opened(now=0.0)
    if state is State.AWAITING_RECOGNITION_STARTED:
        _drain(conn)
        return conn
    if state is State.FAILED:
        conn.connection_closed(1006, "gone", now=0.5)
        _drain(conn)
        return conn
    conn.receive_message(recognition_started(), now=0.1)
    for _ in range(frames):
        if channel is None:
            conn.send_audio(FRAME, now=0.15)
        else:
            conn.send_channel_audio(channel, FRAME, now=0.15)
    if state is State.STREAMING:
        _drain(conn)
        return conn
    conn.end_of_stream(now=0.2)
    if state is State.DRAINING:
        _drain(conn)
        return conn
    assert state is State.CLOSED
    conn.receive_message('{"message": "EndOfTranscript"}', now=0.3)
    _drain(conn)
    return conn


def _drain(conn: ClientConnection) -> None:
    conn.actions()
    conn.events()


class SpecSchemas:
    """JSON-schema validators for the component schemas of the official AsyncAPI spec
    (``realtime.yaml``), with every ``$ref`` resolving inside the whole document."""

    _URI = "urn:smproto-test:speechmatics-realtime"

    def __init__(self, path: Path) -> None:
        import yaml
        from jsonschema import Draft7Validator, validators
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        self.root: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.schemas: dict[str, Any] = self.root["components"]["schemas"]
        self._registry: Registry[Any] = Registry().with_resource(
            self._URI, Resource(contents=self.root, specification=DRAFT7)
        )
        self._validator_cls = Draft7Validator
        # JSON Schema calls 3.0 an integer; a parsed message keeps int and float apart, and
        # with ``strict_numbers`` so does the validator (and bools are never numbers).
        checker = Draft7Validator.TYPE_CHECKER.redefine_many(
            {
                "integer": lambda _checker, value: type(value) is int,
                "number": lambda _checker, value: type(value) is int or type(value) is float,
            }
        )
        self._strict_cls = validators.extend(Draft7Validator, type_checker=checker)
        self._cache: dict[tuple[str, bool], Any] = {}

    def validator(self, name: str, *, strict_numbers: bool = False) -> Any:
        """The validator of ``#/components/schemas/<name>``."""
        key = (name, strict_numbers)
        if key not in self._cache:
            if name not in self.schemas:
                raise KeyError(f"the spec has no schema {name!r}")
            schema = {"$ref": f"{self._URI}#/components/schemas/{name}"}
            cls = self._strict_cls if strict_numbers else self._validator_cls
            self._cache[key] = cls(schema, registry=self._registry)
        return self._cache[key]

    def errors(self, name: str, instance: Any, *, strict_numbers: bool = False) -> list[str]:
        """What is wrong with ``instance`` as a ``name`` (empty when it conforms)."""
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in self.validator(name, strict_numbers=strict_numbers).iter_errors(instance)
        ]

    def message_errors(self, instance: Any, *, strict_numbers: bool = False) -> list[str]:
        """Validate a message against the schema named by its ``message`` field."""
        name = instance.get("message") if isinstance(instance, dict) else None
        if not isinstance(name, str) or name not in self.schemas:
            return [f"<root>: no schema for message type {name!r}"]
        return self.errors(name, instance, strict_numbers=strict_numbers)

    def channel_messages(self, channel: str) -> frozenset[str]:
        """The message names of ``channels.<channel>`` (``publish``: client to server,
        ``subscribe``: server to client)."""
        return frozenset(self.root["channels"][channel]["messages"])


_SPEC_SCHEMAS: dict[Path, SpecSchemas] = {}


def spec_schemas() -> SpecSchemas:
    """The spec's schemas (loaded once), or skip when the fixtures or libraries are absent."""
    path = require_fixtures() / "realtime.yaml"
    pytest.importorskip("yaml", reason="PyYAML is needed to read the spec")
    pytest.importorskip("jsonschema", reason="jsonschema is needed to validate against the spec")
    if path not in _SPEC_SCHEMAS:
        _SPEC_SCHEMAS[path] = SpecSchemas(path)
    return _SPEC_SCHEMAS[path]
