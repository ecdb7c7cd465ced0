"""Every (state, input) cell of the client's rules table behaves as declared."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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
from smproto._state import (
    CLIENT_INPUTS,
    CLIENT_MACHINE,
    CLIENT_RULES,
    CLIENT_TRANSITIONS,
    Outcome,
    mermaid_diagram,
    rules_markdown,
)
from tests.support import FRAME, REPO, client_in

MULTICHANNEL = TranscriptionConfig(
    language="en", diarization="channel", channel_diarization_labels=["left"]
)


def _message(msg: dict[str, object]) -> Callable[[ClientConnection], None]:
    text = json.dumps(msg)
    return lambda conn: conn.receive_message(text, now=1.0)


# How to apply each input of the table to an engine.
APPLY: dict[str, Callable[[ClientConnection], None]] = {
    "connection_opened": lambda c: c.connection_opened(now=1.0),
    "connection_closed": lambda c: c.connection_closed(1006, "gone", now=1.0),
    "timer_expired": lambda c: c.handle_timer(now=10_000.0),
    "send_audio": lambda c: c.send_audio(FRAME),
    "send_channel_audio": lambda c: c.send_channel_audio("left", FRAME),
    "end_of_stream": lambda c: c.end_of_stream(),
    "end_of_channel": lambda c: c.end_of_channel("right"),
    "end_of_last_channel": lambda c: c.end_of_channel("left"),
    "set_recognition_config": lambda c: c.set_recognition_config(max_delay=2.0),
    "force_end_of_utterance": lambda c: c.force_end_of_utterance(),
    "get_speakers": lambda c: c.get_speakers(),
    "close": lambda c: c.close(),
    "RecognitionStarted": _message({"message": "RecognitionStarted", "id": "x"}),
    "AudioAdded": _message({"message": "AudioAdded", "seq_no": 1}),
    "ChannelAudioAdded": _message({"message": "ChannelAudioAdded", "channel": "left", "seq_no": 1}),
    "AddPartialTranscript": _message(
        {
            "message": "AddPartialTranscript",
            "results": [],
            "metadata": {"start_time": 0, "end_time": 1, "transcript": ""},
        }
    ),
    "AddTranscript": _message(
        {
            "message": "AddTranscript",
            "results": [],
            "metadata": {"start_time": 0, "end_time": 1, "transcript": ""},
        }
    ),
    "AddPartialTranslation": _message(
        {"message": "AddPartialTranslation", "language": "de", "results": []}
    ),
    "AddTranslation": _message({"message": "AddTranslation", "language": "de", "results": []}),
    "EndOfUtterance": _message(
        {"message": "EndOfUtterance", "metadata": {"start_time": 1, "end_time": 1}}
    ),
    "AudioEventStarted": _message(
        {
            "message": "AudioEventStarted",
            "event": {"type": "music", "start_time": 1, "confidence": 0.9},
        }
    ),
    "AudioEventEnded": _message(
        {"message": "AudioEventEnded", "event": {"type": "music", "end_time": 2}}
    ),
    "SpeakersResult": _message({"message": "SpeakersResult", "speakers": []}),
    "Info": _message({"message": "Info", "type": "recognition_quality", "reason": "ok"}),
    "Warning": _message({"message": "Warning", "type": "idle_timeout", "reason": "soon"}),
    "Warning:duration_limit_exceeded": _message(
        {
            "message": "Warning",
            "type": "duration_limit_exceeded",
            "reason": "limit",
            "duration_limit": 60,
        }
    ),
    "Error": _message({"message": "Error", "type": "invalid_config", "reason": "bad"}),
    "EndOfTranscript": _message({"message": "EndOfTranscript"}),
    "<unknown>": _message({"message": "SomethingNew", "field": 1}),
    "<binary>": lambda c: c.receive_message(b"\x00\x01", now=1.0),
    # A well-formed AudioAdded that acknowledges a frame never sent.
    "<violation>": _message({"message": "AudioAdded", "seq_no": 99}),
    "RecognitionStarted:ended": _message({"message": "RecognitionStarted", "id": "y"}),
    "take_over": lambda c: c.take_over(_failed_with_audio()),
    "take_over:ended": lambda c: c.take_over(_failed_with_audio(), end_stream=True),
}


def _failed_with_audio() -> ClientConnection:
    old = client_in(State.STREAMING, frames=3)
    old.connection_closed(1006, "gone", now=0.5)
    old.events()
    return old


def test_every_input_has_an_applier() -> None:
    assert set(APPLY) == set(CLIENT_INPUTS)


def test_rules_cover_every_state() -> None:
    for name, row in CLIENT_RULES.items():
        assert set(row) == set(State), name


def _engine_for(name: str, state: State) -> ClientConnection:
    if name in ("send_channel_audio", "ChannelAudioAdded", "end_of_last_channel"):
        return client_in(state, MULTICHANNEL, frames=1, channel="left")
    if name == "end_of_channel":
        return client_in(
            state,
            TranscriptionConfig(
                language="en", diarization="channel", channel_diarization_labels=["left", "right"]
            ),
            frames=1,
            channel="left",
        )
    if name.startswith("take_over"):
        return client_in(state)  # a connection that has sent nothing yet
    if name == "RecognitionStarted:ended" and state is State.AWAITING_RECOGNITION_STARTED:
        # A resumed connection whose stream had ended before the failure.
        old = client_in(State.DRAINING, frames=1)
        old.connection_closed(1006, "gone", now=0.5)
        new = ClientConnection.resume_from(old)
        new.connection_opened(now=0.6)
        new.actions()
        return new
    return client_in(state, frames=1)


def _dest(trigger: str, state: State) -> State:
    transition = CLIENT_MACHINE.events[trigger].transitions[state.name][0]
    return State[transition.dest]


def check_cell(state: State, name: str) -> None:
    rule = CLIENT_RULES[name][state]
    conn = _engine_for(name, state)
    assert conn.state is state
    apply = APPLY[name]
    if rule.outcome is Outcome.LOCAL_ERROR:
        with pytest.raises(LocalProtocolError) as info:
            apply(conn)
        assert state.name in str(info.value)
        assert conn.state is state
        assert conn.actions() == []
        assert conn.events() == []
    elif rule.outcome is Outcome.REMOTE_ERROR:
        with pytest.raises(RemoteProtocolError) as remote:
            apply(conn)
        assert conn.state is State.FAILED
        assert conn.failure is not None
        assert conn.failure.kind is FailureKind.REMOTE_PROTOCOL_ERROR
        actions = conn.actions()
        assert isinstance(actions[-1], CloseTransport)
        assert remote.value.close_action == actions[-1]
    elif rule.outcome is Outcome.IGNORE:
        apply(conn)
        assert conn.state is state
        assert conn.actions() == []
        assert conn.events() == []
    else:
        apply(conn)
        expected = _dest(rule.trigger, state) if rule.trigger else state
        assert conn.state is expected, f"{name} in {state.name}: {conn.state} != {expected}"


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
@pytest.mark.parametrize("name", CLIENT_INPUTS)
def test_cell(state: State, name: str) -> None:
    check_cell(state, name)


@given(st.sampled_from(list(State)), st.sampled_from(CLIENT_INPUTS))
def test_cell_sampled(state: State, name: str) -> None:
    check_cell(state, name)


def test_machine_is_the_table() -> None:
    for row in CLIENT_TRANSITIONS:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        for source in sources:
            assert _dest(row["trigger"], source) is row["dest"]


def test_triggers_fire_only_from_their_sources() -> None:
    """A trigger fired from a state the table does not list is refused by the machine."""
    from transitions import MachineError

    from smproto._state import fire

    class Model:
        state = State.CLOSED

    with pytest.raises(MachineError):
        fire(CLIENT_MACHINE, Model(), "start")


def test_machine_keeps_no_models() -> None:
    before = list(CLIENT_MACHINE.models)
    conns = [client_in(State.STREAMING) for _ in range(3)]
    assert CLIENT_MACHINE.models == before
    assert all(c.state is State.STREAMING for c in conns)


DIAGRAM = REPO / "docs" / "client-states.mmd"


@pytest.mark.parametrize("role", ["client", "server", "session"])
def test_committed_diagram_is_current(role: str) -> None:
    """docs/<role>-states.mmd is generated from the machine by docs/gen_diagrams.py."""
    assert (REPO / "docs" / f"{role}-states.mmd").read_text() == mermaid_diagram(role), (
        "the state diagram in docs/ is stale: run python docs/gen_diagrams.py"
    )


@pytest.mark.parametrize("role", ["client", "server", "session"])
def test_committed_rules_table_is_current(role: str) -> None:
    assert (REPO / "docs" / f"{role}-rules.md").read_text() == rules_markdown(role), (
        "the rules table in docs/ is stale: run python docs/gen_diagrams.py"
    )


def test_diagram_shows_every_trigger() -> None:
    text = mermaid_diagram("client")
    for row in CLIENT_TRANSITIONS:
        assert f": {row['trigger']}" in text
    for state in State:
        assert state.name in text


def test_session_diagram_shows_every_trigger() -> None:
    from smproto._state import SESSION_TRANSITIONS, SessionState

    text = mermaid_diagram("session")
    for row in SESSION_TRANSITIONS:
        assert row["trigger"] in text
    for state in SessionState:
        assert state.name in text


def test_session_machine_keeps_no_models() -> None:
    from smproto._state import SESSION_MACHINE
    from tests.smproto.session_harness import World, session

    before = list(SESSION_MACHINE.models)
    worlds = [World(session()) for _ in range(3)]
    for world in worlds:
        world.run()
    assert SESSION_MACHINE.models == before


def test_diagram_path_is_inside_docs() -> None:
    assert Path(DIAGRAM).parent.name == "docs"
