"""Fuzzing the client engine's receive path, in every state.

Whatever the server sends, ``receive_message()`` either returns or raises
``RemoteProtocolError`` (``LocalProtocolError`` only in CONNECTING, where receiving is the
application's misuse). Nothing else may escape. The oracle is the rules table: each input is
classified the way the engine dispatches it, and the outcome must be the table's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import (
    ClientConnection,
    CloseTransport,
    FailureKind,
    LocalProtocolError,
    RemoteProtocolError,
    State,
    TranscriptionConfig,
)
from smproto._state import CLIENT_RULES, CLIENT_TRANSITIONS, Outcome
from smproto.events import (
    AddPartialTranscript,
    AddPartialTranslation,
    AddTranscript,
    AddTranslation,
    AudioAdded,
    AudioEventEnded,
    AudioEventStarted,
    ChannelAudioAdded,
    EndOfTranscript,
    EndOfUtterance,
    Event,
    RecognitionStarted,
    ServerError,
    ServerInfo,
    ServerWarning,
    SpeakersResult,
    UnknownMessage,
)
from smproto.testing import (
    SERVER_MESSAGE_TYPES,
    mutated_message_texts,
    mutated_messages,
    server_messages,
)
from tests.support import SpecSchemas, chat1_messages, client_in, spec_schemas

STATES = list(State)
FRAMES = 3
MULTICHANNEL = TranscriptionConfig(
    language="en", diarization="channel", channel_diarization_labels=["left", "right"]
)

# The event each server message becomes when the engine takes it.
EVENT_FOR: dict[str, type[Event]] = {
    "RecognitionStarted": RecognitionStarted,
    "AudioAdded": AudioAdded,
    "ChannelAudioAdded": ChannelAudioAdded,
    "AddPartialTranscript": AddPartialTranscript,
    "AddTranscript": AddTranscript,
    "AddPartialTranslation": AddPartialTranslation,
    "AddTranslation": AddTranslation,
    "EndOfUtterance": EndOfUtterance,
    "AudioEventStarted": AudioEventStarted,
    "AudioEventEnded": AudioEventEnded,
    "SpeakersResult": SpeakersResult,
    "Info": ServerInfo,
    "Warning": ServerWarning,
    "Error": ServerError,
    "EndOfTranscript": EndOfTranscript,
}


def test_oracle_covers_the_rules_table() -> None:
    assert set(EVENT_FOR) == set(SERVER_MESSAGE_TYPES)
    assert set(SERVER_MESSAGE_TYPES) <= set(CLIENT_RULES)


def engine(state: State, multichannel: bool = False) -> ClientConnection:
    """An engine in ``state`` with FRAMES unacknowledged frames when streaming or draining
    (on channel "left" of two when ``multichannel``)."""
    if multichannel:
        return client_in(state, MULTICHANNEL, frames=FRAMES, channel="left")
    return client_in(state, frames=FRAMES)


# ============================================================================================
# The oracle
# ============================================================================================


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: it may be deep)."""
    best = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            best = max(best, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return best


def classify(data: str | bytes) -> tuple[str, str, Any, bool]:
    """(rule name, kind, parsed message, deep) as the engine dispatches ``data``.

    kind: ``binary``, ``bad_json``, ``not_object``, ``no_type``, ``unknown_type`` or ``known``.
    deep: the value parses here but is nested so deep that the engine, a few frames deeper in
    the stack, may hit the recursion limit first and see invalid JSON instead.
    """
    if not isinstance(data, str):
        # A binary frame holding a UTF-8 JSON object is read as text (the official
        # clients read it so); anything else binary is refused.
        if data.lstrip()[:1] != b"{":
            return "<binary>", "binary", None, False
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return "<binary>", "binary", None, False
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 10_000)  # parse what the engine may parse, and more
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except ValueError:
        return "<unknown>", "bad_json", None, False
    except RecursionError:  # pragma: no cover - deeper than any input here
        return "<unknown>", "bad_json", None, True
    finally:
        sys.setrecursionlimit(limit)
    deep = _depth(value) > limit // 2
    if type(value) is not dict:
        return "<unknown>", "not_object", value, deep
    mtype = value.get("message")
    if type(mtype) is not str:
        return "<unknown>", "no_type", value, deep
    if mtype not in EVENT_FOR:
        return "<unknown>", "unknown_type", value, deep
    if mtype == "Warning" and value.get("type") == "duration_limit_exceeded":
        return "Warning:duration_limit_exceeded", "known", value, deep
    return mtype, "known", value, deep


def destination(state: State, trigger: str | None) -> State:
    if trigger is None:
        return state
    for transition in CLIENT_TRANSITIONS:
        sources = transition["source"]
        sources = sources if isinstance(sources, list) else [sources]
        if transition["trigger"] == trigger and state in sources:
            dest: State = transition["dest"]
            return dest
    raise AssertionError(f"no transition {trigger!r} from {state}")


def well_typed(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint (the event's documented field type)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(well_typed(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # an int is fine where a float is expected; a bool is not
        return type(value) in (int, float)
    if hint in (int, str, bool):
        return type(value) is hint
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(well_typed(v, args[0]) for v in value)
        return len(args) == len(value) and all(map(well_typed, value, args))
    if origin is dict:
        return type(value) is dict
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return type(value) is hint and all(
            well_typed(getattr(value, name), field_hint)
            for name, field_hint in typing.get_type_hints(hint).items()
        )
    if isinstance(hint, type):
        return isinstance(value, hint)
    raise AssertionError(f"no check for {hint!r}")


def check_event(event: Event) -> None:
    """Every field of an event has its declared type (the engine validated what it parsed)."""
    assert isinstance(event, Event)
    hints = typing.get_type_hints(type(event))
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        assert well_typed(value, hints[f.name]), (type(event).__name__, f.name, value)


def check_consistent(conn: ClientConnection) -> None:
    inflight = conn.audio_in_flight
    assert inflight.frames >= 0 and inflight.bytes >= 0 and inflight.seconds >= 0
    assert 0 <= conn.frames_acknowledged <= conn.frames_sent
    assert (conn.failure is not None) == (conn.state is State.FAILED)
    timer = conn.get_timer()
    assert timer is None or isinstance(timer, float)
    assert repr(conn)


def receive_and_check(conn: ClientConnection, data: str | bytes, now: float = 1.0) -> bool:
    """Feed ``data`` and check the outcome against the rules table. Returns whether it was
    taken without an error."""
    old = conn.state
    name, kind, msg, deep = classify(data)
    rule = CLIENT_RULES[name][old]
    try:
        conn.receive_message(data, now=now)
    except RemoteProtocolError as exc:
        if deep:  # the engine may have found it invalid JSON: "<unknown>" is OK when live
            rule = CLIENT_RULES["<unknown>"][old]
        assert rule.outcome in (Outcome.REMOTE_ERROR, Outcome.OK), (rule, name, old)
        assert kind != "unknown_type" or deep or rule.outcome is not Outcome.OK
        assert conn.state is State.FAILED
        assert conn.failure is not None
        assert conn.failure.kind is FailureKind.REMOTE_PROTOCOL_ERROR
        assert not conn.failure.retryable
        actions = conn.actions()
        assert actions and isinstance(actions[-1], CloseTransport)
        assert actions[-1] == exc.close_action
        assert actions[-1].code == (1003 if kind == "binary" else 1002)
        assert len(actions[-1].reason.encode("utf-8")) <= 123
        for event in conn.events():
            check_event(event)
        check_consistent(conn)
        return False
    except LocalProtocolError:
        assert old is State.CONNECTING and rule.outcome is Outcome.LOCAL_ERROR
        assert conn.state is old and conn.actions() == [] and conn.events() == []
        return False
    # Returned normally.
    events = conn.events()
    actions = conn.actions()
    for event in events:
        check_event(event)
    check_consistent(conn)
    assert rule.outcome in (Outcome.OK, Outcome.IGNORE), (rule, name, old, data)
    if rule.outcome is Outcome.IGNORE:
        assert conn.state is old and events == [] and actions == []
        return True
    assert kind in ("known", "unknown_type"), (kind, data)
    if kind == "unknown_type":
        assert conn.state is old and actions == []
        assert len(events) == 1 and isinstance(events[0], UnknownMessage)
        assert events[0].message == msg["message"] and events[0].raw == msg
        return True
    assert conn.state is destination(old, rule.trigger), (name, old, conn.state)
    assert len(events) == 1 and isinstance(events[0], EVENT_FOR[msg["message"]])
    assert events[0].raw == msg  # type: ignore[attr-defined]
    if msg["message"] in ("Error", "EndOfTranscript"):
        assert actions and isinstance(actions[-1], CloseTransport)
    else:
        assert not any(isinstance(a, CloseTransport) for a in actions)
    return True


# ============================================================================================
# Inputs
# ============================================================================================

nows = st.floats(min_value=0, max_value=1e9)

# Every code point, lone surrogates included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: json.dumps writes NaN/Infinity
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
# The fields the engine reads, so that random values reach the handlers.
FIELDS = [
    "seq_no",
    "channel",
    "metadata",
    "results",
    "type",
    "reason",
    "code",
    "event",
    "speakers",
    "language",
    "format",
    "forced",
    "id",
    "orchestrator_version",
    "language_pack_info",
    "channel_ids",
    "duration_limit",
]
typed_objects = st.builds(
    lambda name, fields: {"message": name, **fields},
    st.sampled_from(SERVER_MESSAGE_TYPES) | any_text,
    st.dictionaries(st.sampled_from(FIELDS) | any_text, json_values, max_size=5),
)
json_texts = st.one_of(json_values, typed_objects).map(json.dumps)


@pytest.fixture(scope="module")
def chat1() -> list[dict[str, Any]]:
    return chat1_messages()


@pytest.fixture(scope="module")
def spec() -> SpecSchemas:
    return spec_schemas()


# ============================================================================================
# One message, every state
# ============================================================================================


@pytest.mark.parametrize("state", STATES, ids=str)
@given(data=st.binary(max_size=200), now=nows)
def test_arbitrary_bytes(state: State, data: bytes, now: float) -> None:
    receive_and_check(engine(state), data, now)


@pytest.mark.parametrize("state", STATES, ids=str)
@given(data=any_text, now=nows)
def test_arbitrary_text(state: State, data: str, now: float) -> None:
    receive_and_check(engine(state), data, now)


@pytest.mark.parametrize("state", STATES, ids=str)
@given(data=json_texts, now=nows, multichannel=st.booleans())
def test_arbitrary_json(state: State, data: str, now: float, multichannel: bool) -> None:
    receive_and_check(engine(state, multichannel), data, now)


@pytest.mark.fixtures
@pytest.mark.parametrize("state", STATES, ids=str)
@given(data=st.data(), now=nows)
def test_mutated_real_messages(
    chat1: list[dict[str, Any]], state: State, data: st.DataObject, now: float
) -> None:
    text = data.draw(mutated_messages(st.sampled_from(chat1)), label="mutated")
    receive_and_check(engine(state), text, now)


@pytest.mark.parametrize("state", STATES, ids=str)
@given(data=mutated_message_texts(max_seq_no=FRAMES + 1, channels=["left"]), now=nows)
def test_mutated_generated_messages(state: State, data: str, now: float) -> None:
    receive_and_check(engine(state, multichannel=False), data, now)


@pytest.mark.parametrize("mtype", SERVER_MESSAGE_TYPES)
@given(data=st.data())
def test_one_field_of_a_valid_message_set_to_anything(mtype: str, data: st.DataObject) -> None:
    """Each field a handler reads, given any JSON value (the handlers' type checks)."""
    channels = data.draw(st.sampled_from([None, ["left"]]), label="channels")
    msg = data.draw(server_messages([mtype], max_seq_no=FRAMES, channels=channels))
    key = data.draw(st.sampled_from(sorted(set(msg) - {"message"} | set(FIELDS))), label="key")
    msg[key] = data.draw(json_values, label="value")
    state = data.draw(
        st.sampled_from([State.STREAMING, State.AWAITING_RECOGNITION_STARTED, State.DRAINING])
    )
    receive_and_check(engine(state, multichannel=mtype == "ChannelAudioAdded"), json.dumps(msg))


@pytest.mark.parametrize("state", STATES, ids=str)
@given(
    msg=server_messages(max_seq_no=FRAMES, channels=["left"]),
    multichannel=st.booleans(),
)
def test_valid_messages_are_taken_where_the_rules_allow_them(
    state: State, msg: dict[str, Any], multichannel: bool
) -> None:
    """Spec-valid messages, within what the session allows, never raise RemoteProtocolError
    in a state whose rule for them is OK."""
    conn = engine(state, multichannel)
    if msg["message"] == "AudioAdded" and multichannel:
        msg = {"message": "ChannelAudioAdded", "channel": "left", "seq_no": msg["seq_no"]}
    if msg["message"] == "ChannelAudioAdded" and not multichannel:
        msg = {"message": "AudioAdded", "seq_no": msg["seq_no"]}
    name, *_ = classify(json.dumps(msg))
    taken = receive_and_check(conn, json.dumps(msg))
    if CLIENT_RULES[name][state].outcome is Outcome.OK:
        assert taken, msg


def _session_allows(conn: ClientConnection, msg: dict[str, Any]) -> bool:
    """Whether a spec-valid message also fits this session (acks within what was sent) and
    avoids the one field the engine reads beyond the spec (``channel`` on results)."""
    mtype = msg["message"]
    if mtype == "AudioAdded":
        return bool(conn.frames_acknowledged <= msg["seq_no"] <= conn.frames_sent)
    if mtype == "ChannelAudioAdded":
        return False  # single-stream engine: no channel was ever sent
    if mtype in ("AddTranscript", "AddPartialTranscript"):
        return not _odd_result_channel(msg["results"])
    return True


def _odd_result_channel(results: Any) -> bool:
    for result in results:
        if isinstance(result, dict):
            channel = result.get("channel")
            if channel is not None and type(channel) is not str:
                return True
            for form in ("spoken_form", "written_form"):
                if isinstance(result.get(form), list) and _odd_result_channel(result[form]):
                    return True
    return False


@pytest.mark.fixtures
@pytest.mark.parametrize("state", [State.AWAITING_RECOGNITION_STARTED, State.STREAMING], ids=str)
@given(data=st.data())
def test_mutations_that_stay_valid_are_taken(
    chat1: list[dict[str, Any]], spec: SpecSchemas, state: State, data: st.DataObject
) -> None:
    """A mutation that leaves a message conforming to the spec (an unknown key, a dropped
    optional field, ...) must not make the engine reject it."""
    base = st.sampled_from(chat1) | server_messages(max_seq_no=FRAMES)
    text = data.draw(mutated_messages(base), label="mutated")
    conn = engine(state)
    name, kind, msg, deep = classify(text)
    conforms = (
        kind == "known"
        and not deep
        and spec.message_errors(msg, strict_numbers=True) == []
        and _session_allows(conn, msg)
    )
    taken = receive_and_check(conn, text)
    if conforms and CLIENT_RULES[name][state].outcome is Outcome.OK:
        assert taken, text


# ============================================================================================
# Sequences
# ============================================================================================


@pytest.mark.parametrize("state", STATES, ids=str)
@given(
    inputs=st.lists(
        st.one_of(
            st.binary(max_size=20),
            any_text,
            json_texts,
            mutated_message_texts(max_seq_no=FRAMES + 1, channels=["left"]),
            server_messages(max_seq_no=FRAMES + 1, channels=["left"]).map(json.dumps),
        ),
        max_size=12,
    ),
    multichannel=st.booleans(),
    start=nows,
)
def test_sequences_of_fuzzed_messages(
    state: State, inputs: list[str | bytes], multichannel: bool, start: float
) -> None:
    conn = engine(state, multichannel)
    now = start
    for data in inputs:
        now += 0.01
        receive_and_check(conn, data, now)
    # Whatever happened, the engine still answers the transport and the application.
    conn.handle_timer(now=now + 1e6)
    conn.connection_closed(1006, "gone", now=now + 2e6)
    assert conn.state in (State.CLOSED, State.FAILED)
    check_consistent(conn)


# ============================================================================================
# Deep nesting, depth by depth around the recursion limit
# ============================================================================================

# Where the nested value goes (VALUE).
SHAPES = {
    "bare": "VALUE",
    "seq_no": '{"message":"AudioAdded","seq_no":VALUE}',
    "reason": '{"message":"Info","type":"x","reason":VALUE}',
    "results": '{"message":"AddTranscript","metadata":{"start_time":0,"end_time":1,'
    '"transcript":""},"results":VALUE}',
    "unknown": '{"message":"SomethingNew","payload":VALUE}',
    "spoken_form": '{"message":"AddTranscript","metadata":{"start_time":0,"end_time":1,'
    '"transcript":""},"results":[{"type":"entity","start_time":0,"end_time":1,'
    '"spoken_form":VALUE}]}',
    "written_form": '{"message":"AddTranscript","metadata":{"start_time":0,"end_time":1,'
    '"transcript":""},"results":[{"type":"entity","start_time":0,"end_time":1,'
    '"written_form":[{"type":"word","start_time":0,"end_time":1,"alternatives":VALUE}]}]}',
}


def _nesting_cases() -> list[Any]:
    cases = []
    for state in (State.AWAITING_RECOGNITION_STARTED, State.STREAMING):
        for shape in SHAPES:
            cases.append(pytest.param(state, shape, id=f"{state}-{shape}"))
    return cases


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


@pytest.mark.parametrize(("state", "shape"), _nesting_cases())
def test_nesting_at_every_depth_up_to_past_the_recursion_limit(state: State, shape: str) -> None:
    """Deterministic: every nesting depth from where parsing nearly hits the recursion limit
    (which depends on how deep the caller's stack already is) to past it."""
    limit = sys.getrecursionlimit()
    low = max(40, limit - _stack_depth() - 80)
    for depth in [*range(1, 40), *range(low, limit + 60)]:
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            text = SHAPES[shape].replace("VALUE", opener * depth + "1" + closer * depth)
            receive_and_check(engine(state), text)


def test_values_python_parses_oddly() -> None:
    """Numbers that overflow, integers too long to parse, lone surrogates."""
    odd = [
        '{"message":"AudioAdded","seq_no":1e400}',
        '{"message":"AudioAdded","seq_no":' + "1" * 5000 + "}",
        '{"message":"AudioAdded","seq_no":-0}',
        '{"message":"AddTranscript","metadata":{"start_time":-1e400,"end_time":1e400,'
        '"transcript":""},"results":[]}',
        '{"message":"EndOfUtterance","metadata":{"start_time":1e400,"end_time":-1e400}}',
        '{"message":"Info","type":"\\ud800","reason":"\\udfff"}',
        '{"message":"\\ud800"}',
        '{"message":"Error","type":"\\ud800","reason":"' + "\\ud800" * 200 + '"}',
        '{"message":"AudioAdded","seq_no":1,"seq_no":"x"}',
        '{"message":"AudioAdded","seq_no":NaN}',
        "\ud800",
    ]
    for state in STATES:
        for text in odd:
            receive_and_check(engine(state), text)
    assert math.isinf(json.loads("1e400"))
