"""The lifecycle of an smproto connection, declared once, as data.

Everything that changes an engine's ``state`` is in this file (h11's rule):

- :data:`CLIENT_TRANSITIONS` is the table of triggers, executed at runtime by the
  ``transitions`` library (:data:`CLIENT_MACHINE`, ``auto_transitions=False``);
- :data:`CLIENT_RULES` says, for every input an engine can receive (a command from
  the application, a message from the server, a transport event) and every state,
  what happens: allowed, allowed and firing a trigger, ignored, a
  ``LocalProtocolError`` (the application misused the engine) or a
  ``RemoteProtocolError`` (the server broke the protocol).

The engines read these tables; the tests check the engines against them cell by
cell; the state diagram in ``docs/`` is drawn from the same machine.

The machine is shared by all connections and holds no reference to any of them:
a trigger is fired with the connection passed in (:func:`fire`), so a connection
dropped without ``close()`` is simply garbage. Hot paths (audio frames, acks,
transcripts) only *read* ``state``; they never fire a trigger.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from transitions import Machine, MachineError

__all__ = [
    "CLIENT_INPUTS",
    "CLIENT_MACHINE",
    "CLIENT_RULES",
    "CLIENT_TRANSITIONS",
    "Outcome",
    "Rule",
    "State",
    "allowed_states",
    "fire",
    "mermaid_diagram",
]


class State(enum.Enum):
    """Where a connection is in its life.

    ::

        CONNECTING → AWAITING_RECOGNITION_STARTED → STREAMING → DRAINING → CLOSED
                 ↘───────────────↘──────────────────↘───────────↘→ FAILED
    """

    #: Created; the transport is not open yet.
    CONNECTING = "CONNECTING"
    #: ``StartRecognition`` sent; waiting for ``RecognitionStarted``.
    AWAITING_RECOGNITION_STARTED = "AWAITING_RECOGNITION_STARTED"
    #: Recognition running: audio may be sent.
    STREAMING = "STREAMING"
    #: No more audio (``EndOfStream`` sent, or the server's duration limit hit);
    #: waiting for ``EndOfTranscript``.
    DRAINING = "DRAINING"
    #: Finished: ``EndOfTranscript`` received, or the application closed the connection.
    CLOSED = "CLOSED"
    #: Finished badly: see the connection's ``failure``.
    FAILED = "FAILED"

    def __repr__(self) -> str:
        return f"State.{self.name}"

    def __str__(self) -> str:
        return self.name


_LIVE = [
    State.CONNECTING,
    State.AWAITING_RECOGNITION_STARTED,
    State.STREAMING,
    State.DRAINING,
]

#: The client's triggers: name, source state(s), destination.
CLIENT_TRANSITIONS: Final[list[dict[str, Any]]] = [
    # connection_opened(): StartRecognition is sent.
    {"trigger": "open", "source": State.CONNECTING, "dest": State.AWAITING_RECOGNITION_STARTED},
    # RecognitionStarted received.
    {"trigger": "start", "source": State.AWAITING_RECOGNITION_STARTED, "dest": State.STREAMING},
    # end_of_stream(), the last end_of_channel(), or Warning duration_limit_exceeded.
    {"trigger": "drain", "source": State.STREAMING, "dest": State.DRAINING},
    # EndOfTranscript received.
    {"trigger": "finish", "source": State.DRAINING, "dest": State.CLOSED},
    # close(): the application aborts.
    {"trigger": "close", "source": _LIVE, "dest": State.CLOSED},
    # Server Error, remote protocol error, a timer, or the transport lost.
    {"trigger": "fail", "source": _LIVE, "dest": State.FAILED},
]

#: The machine that runs :data:`CLIENT_TRANSITIONS`. It has no models of its own.
CLIENT_MACHINE: Final = Machine(
    model=None,
    states=State,
    transitions=CLIENT_TRANSITIONS,
    initial=State.CONNECTING,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


def fire(machine: Machine, model: Any, trigger: str) -> None:
    """Fire ``trigger`` on ``model`` (anything with a ``state`` attribute).

    Raises ``transitions.MachineError`` when the trigger is not valid in the model's
    state; the engines only fire triggers their rules allow, so that is a bug.
    """
    machine.events[trigger].trigger(model)


class Outcome(enum.Enum):
    """What an engine does with an input in a given state."""

    #: Handled; the state changes only if the rule names a trigger.
    OK = "ok"
    #: Silently dropped (e.g. a late server message after the connection failed).
    IGNORE = "ignore"
    #: Refused with ``LocalProtocolError``; nothing changes.
    LOCAL_ERROR = "local_error"
    #: The peer broke the protocol: ``RemoteProtocolError``, the connection fails.
    REMOTE_ERROR = "remote_error"


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of a rules table."""

    outcome: Outcome
    trigger: str | None = None

    def __str__(self) -> str:
        if self.trigger:
            return f"{self.outcome.value} → {self.trigger}"
        return self.outcome.value


OK = Rule(Outcome.OK)
IGNORE = Rule(Outcome.IGNORE)
LOCAL = Rule(Outcome.LOCAL_ERROR)
REMOTE = Rule(Outcome.REMOTE_ERROR, "fail")


def _trig(name: str) -> Rule:
    return Rule(Outcome.OK, name)


def _row(
    connecting: Rule, awaiting: Rule, streaming: Rule, draining: Rule, closed: Rule, failed: Rule
) -> dict[State, Rule]:
    return {
        State.CONNECTING: connecting,
        State.AWAITING_RECOGNITION_STARTED: awaiting,
        State.STREAMING: streaming,
        State.DRAINING: draining,
        State.CLOSED: closed,
        State.FAILED: failed,
    }


_FAIL = _trig("fail")
_CLOSE = _trig("close")

# A server message that only makes sense once recognition has started.
_SESSION_MESSAGE = _row(LOCAL, REMOTE, OK, OK, IGNORE, IGNORE)
# A command that needs a running recognition.
_STREAMING_COMMAND = _row(LOCAL, LOCAL, OK, LOCAL, LOCAL, LOCAL)

#: For every client input and state, what happens. Inputs named after a server
#: message are that message arriving; ``"<binary>"`` is a binary message and
#: ``"<unknown>"`` a message type this version does not know.
CLIENT_RULES: Final[Mapping[str, Mapping[State, Rule]]] = {
    # Transport events.
    "connection_opened": _row(_trig("open"), LOCAL, LOCAL, LOCAL, LOCAL, LOCAL),
    "connection_closed": _row(_FAIL, _FAIL, _FAIL, _FAIL, OK, OK),
    "timer_expired": _row(IGNORE, _FAIL, _FAIL, _FAIL, IGNORE, IGNORE),
    # Commands.
    "send_audio": _STREAMING_COMMAND,
    "send_channel_audio": _STREAMING_COMMAND,
    "end_of_stream": _row(LOCAL, LOCAL, _trig("drain"), IGNORE, LOCAL, LOCAL),
    "end_of_channel": _row(LOCAL, LOCAL, OK, IGNORE, LOCAL, LOCAL),
    "end_of_last_channel": _row(LOCAL, LOCAL, _trig("drain"), IGNORE, LOCAL, LOCAL),
    "set_recognition_config": _STREAMING_COMMAND,
    "force_end_of_utterance": _STREAMING_COMMAND,
    "get_speakers": _row(LOCAL, LOCAL, OK, OK, LOCAL, LOCAL),
    "close": _row(_CLOSE, _CLOSE, _CLOSE, _CLOSE, IGNORE, IGNORE),
    # Server messages.
    "RecognitionStarted": _row(LOCAL, _trig("start"), REMOTE, REMOTE, IGNORE, IGNORE),
    "AudioAdded": _SESSION_MESSAGE,
    "ChannelAudioAdded": _SESSION_MESSAGE,
    "AddPartialTranscript": _SESSION_MESSAGE,
    "AddTranscript": _SESSION_MESSAGE,
    "AddPartialTranslation": _SESSION_MESSAGE,
    "AddTranslation": _SESSION_MESSAGE,
    "EndOfUtterance": _SESSION_MESSAGE,
    "AudioEventStarted": _SESSION_MESSAGE,
    "AudioEventEnded": _SESSION_MESSAGE,
    "SpeakersResult": _SESSION_MESSAGE,
    "Info": _row(LOCAL, OK, OK, OK, IGNORE, IGNORE),
    "Warning": _row(LOCAL, OK, OK, OK, IGNORE, IGNORE),
    "Warning:duration_limit_exceeded": _row(LOCAL, OK, _trig("drain"), OK, IGNORE, IGNORE),
    "Error": _row(LOCAL, _FAIL, _FAIL, _FAIL, IGNORE, IGNORE),
    "EndOfTranscript": _row(LOCAL, REMOTE, REMOTE, _trig("finish"), IGNORE, IGNORE),
    "<unknown>": _row(LOCAL, OK, OK, OK, IGNORE, IGNORE),
    "<binary>": _row(LOCAL, REMOTE, REMOTE, REMOTE, IGNORE, IGNORE),
}

CLIENT_INPUTS: Final = tuple(CLIENT_RULES)


def allowed_states(rules: Mapping[str, Mapping[State, Rule]], name: str) -> frozenset[State]:
    """The states in which input ``name`` is handled (outcome OK, with or without trigger)."""
    return frozenset(s for s, rule in rules[name].items() if rule.outcome is Outcome.OK)


def _check_rules(rules: Mapping[str, Mapping[State, Rule]], machine: Machine) -> None:
    """Every trigger a rule fires must be valid from that rule's state (checked at import)."""
    for name, row in rules.items():
        assert set(row) == set(State), f"rule {name!r} does not cover every state"
        for state, rule in row.items():
            if rule.trigger is None:
                continue
            event = machine.events[rule.trigger]
            if state.name not in event.transitions:
                raise MachineError(f"rule {name!r} fires {rule.trigger!r} from {state.name}")


_check_rules(CLIENT_RULES, CLIENT_MACHINE)


def mermaid_diagram(role: str = "client") -> str:
    """The state diagram of ``role``'s machine, as mermaid source (no graphviz needed)."""
    from transitions.extensions.diagrams import GraphMachine

    if role != "client":
        raise ValueError(f"unknown role {role!r}")
    transitions = CLIENT_TRANSITIONS

    class _Model:
        pass

    graph_machine = GraphMachine(
        model=None,
        states=State,
        transitions=transitions,
        initial=State.CONNECTING,
        auto_transitions=False,
        graph_engine="mermaid",
        title=f"smproto {role} connection",
        show_state_attributes=False,
    )
    model = _Model()
    graph_machine.add_model(model)
    source: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    # Drop the styling of the model's current state, so the diagram is the same
    # whatever state the throwaway model happens to be in.
    lines = [ln.rstrip() for ln in source.splitlines() if not ln.strip().startswith("Class ")]
    return "\n".join(lines) + "\n"
