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
    "SERVER_INPUTS",
    "SERVER_MACHINE",
    "SERVER_RULES",
    "SERVER_TRANSITIONS",
    "SESSION_INPUTS",
    "SESSION_MACHINE",
    "SESSION_RULES",
    "SESSION_TRANSITIONS",
    "Outcome",
    "Rule",
    "ServerState",
    "SessionState",
    "State",
    "allowed_states",
    "fire",
    "mermaid_diagram",
    "rules_markdown",
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
    # RecognitionStarted received by a resumed connection whose stream had ended: the
    # replay goes out, then the end of the stream.
    {
        "trigger": "start_drained",
        "source": State.AWAITING_RECOGNITION_STARTED,
        "dest": State.DRAINING,
    },
    # end_of_stream(), the last end_of_channel(), Warning duration_limit_exceeded, or
    # take_over() of a connection whose stream had ended.
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
    #: (Sessions) Not now: a connection is being made; the driver waits and tries again.
    WAIT = "wait"
    #: (Sessions) Refused with the session's failure (a ``SessionError``): it is over.
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of a rules table."""

    outcome: Outcome
    trigger: str | None = None
    #: For a server's REMOTE_ERROR: the type of the Error it answers with.
    detail: str | None = None

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
    # take_over(): a connection that has just started continues another one (a
    # reconnect or a planned rollover); ":ended" when that stream had already ended.
    "take_over": _row(LOCAL, LOCAL, OK, LOCAL, LOCAL, LOCAL),
    "take_over:ended": _row(LOCAL, LOCAL, _trig("drain"), LOCAL, LOCAL, LOCAL),
    # Server messages.
    "RecognitionStarted": _row(LOCAL, _trig("start"), REMOTE, REMOTE, IGNORE, IGNORE),
    # RecognitionStarted for a connection made by resume_from() after the stream ended.
    "RecognitionStarted:ended": _row(LOCAL, _trig("start_drained"), REMOTE, REMOTE, IGNORE, IGNORE),
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
    # A message allowed in the state but wrong in itself: bad JSON, a wrong shape, an
    # acknowledgement of audio never sent or going backwards.
    "<violation>": _row(LOCAL, REMOTE, REMOTE, REMOTE, IGNORE, IGNORE),
}

CLIENT_INPUTS: Final = tuple(CLIENT_RULES)


def allowed_states(rules: Mapping[str, Mapping[State, Rule]], name: str) -> frozenset[State]:
    """The states in which input ``name`` is handled (outcome OK, with or without trigger)."""
    return frozenset(s for s, rule in rules[name].items() if rule.outcome is Outcome.OK)


def _check_rules(
    rules: Mapping[str, Mapping[Any, Rule]], machine: Machine, states: type[enum.Enum]
) -> None:
    """Every rule covers every state, and every trigger a rule fires is valid from that
    rule's state (checked at import)."""
    for name, row in rules.items():
        assert set(row) == set(states), f"rule {name!r} does not cover every state"
        for state, rule in row.items():
            if rule.trigger is None:
                continue
            event = machine.events[rule.trigger]
            if state.name not in event.transitions:
                raise MachineError(f"rule {name!r} fires {rule.trigger!r} from {state.name}")


_check_rules(CLIENT_RULES, CLIENT_MACHINE, State)


# ---------------------------------------------------------------------------
# The server role.


class ServerState(enum.Enum):
    """Where a server-side connection is in its life.

    ::

        HANDSHAKE → AWAITING_START → STARTING → STREAMING → DRAINING → CLOSED
                (any live state) → FAILED
    """

    #: The WebSocket upgrade has not been answered yet.
    HANDSHAKE = "HANDSHAKE"
    #: Upgraded; waiting for ``StartRecognition``.
    AWAITING_START = "AWAITING_START"
    #: A valid ``StartRecognition`` arrived; the application is starting its recogniser.
    STARTING = "STARTING"
    #: ``RecognitionStarted`` sent: audio is accepted.
    STREAMING = "STREAMING"
    #: The stream ended (``EndOfStream``, every channel ended, or the duration limit);
    #: the application is flushing its last transcripts.
    DRAINING = "DRAINING"
    #: ``EndOfTranscript`` sent, the handshake refused, or the application closed.
    CLOSED = "CLOSED"
    #: An ``Error`` was sent, or the client went away early.
    FAILED = "FAILED"

    def __repr__(self) -> str:
        return f"ServerState.{self.name}"

    def __str__(self) -> str:
        return self.name


_SERVER_LIVE = [
    ServerState.HANDSHAKE,
    ServerState.AWAITING_START,
    ServerState.STARTING,
    ServerState.STREAMING,
    ServerState.DRAINING,
]

#: The server's triggers: name, source state(s), destination.
SERVER_TRANSITIONS: Final[list[dict[str, Any]]] = [
    # handshake() accepted the upgrade.
    {"trigger": "accept", "source": ServerState.HANDSHAKE, "dest": ServerState.AWAITING_START},
    # handshake() refused it (an HTTP error answers the upgrade).
    {"trigger": "reject", "source": ServerState.HANDSHAKE, "dest": ServerState.CLOSED},
    # A valid StartRecognition arrived.
    {"trigger": "request", "source": ServerState.AWAITING_START, "dest": ServerState.STARTING},
    # start_recognition(): RecognitionStarted sent.
    {"trigger": "start", "source": ServerState.STARTING, "dest": ServerState.STREAMING},
    # EndOfStream, the last EndOfChannel, or the audio duration limit.
    {"trigger": "drain", "source": ServerState.STREAMING, "dest": ServerState.DRAINING},
    # end_of_transcript(): EndOfTranscript sent.
    {"trigger": "finish", "source": ServerState.DRAINING, "dest": ServerState.CLOSED},
    # close(): the application ends the connection.
    {"trigger": "close", "source": _SERVER_LIVE[1:], "dest": ServerState.CLOSED},
    # An Error sent (by the engine or the application), or the client gone early.
    {"trigger": "fail", "source": _SERVER_LIVE, "dest": ServerState.FAILED},
]

#: The machine that runs :data:`SERVER_TRANSITIONS`. It has no models of its own.
SERVER_MACHINE: Final = Machine(
    model=None,
    states=ServerState,
    transitions=SERVER_TRANSITIONS,
    initial=ServerState.HANDSHAKE,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


def _srow(
    handshake: Rule,
    awaiting: Rule,
    starting: Rule,
    streaming: Rule,
    draining: Rule,
    closed: Rule,
    failed: Rule,
) -> dict[ServerState, Rule]:
    return {
        ServerState.HANDSHAKE: handshake,
        ServerState.AWAITING_START: awaiting,
        ServerState.STARTING: starting,
        ServerState.STREAMING: streaming,
        ServerState.DRAINING: draining,
        ServerState.CLOSED: closed,
        ServerState.FAILED: failed,
    }


# The client sent something the protocol does not allow now: the engine answers with
# an Error of this type (and its close code), and the connection fails.
_PROTOCOL = Rule(Outcome.REMOTE_ERROR, "fail", "protocol_error")
_INVALID = Rule(Outcome.REMOTE_ERROR, "fail", "invalid_message")

# A client message that needs a running recognition.
_S_SESSION = _srow(LOCAL, _PROTOCOL, _PROTOCOL, OK, IGNORE, IGNORE, IGNORE)
# Something the application sends while recognition runs (transcripts, ...).
_S_RESULT = _srow(LOCAL, LOCAL, LOCAL, OK, OK, LOCAL, LOCAL)

#: For every server input and state, what happens. Inputs named after a client
#: message are that message arriving; ``"<binary>"`` is a binary audio frame and
#: ``"<unknown>"`` an unknown or unparseable message.
SERVER_RULES: Final[Mapping[str, Mapping[ServerState, Rule]]] = {
    # Transport events.
    "handshake_accepted": _srow(_trig("accept"), LOCAL, LOCAL, LOCAL, LOCAL, LOCAL, LOCAL),
    "handshake_rejected": _srow(_trig("reject"), LOCAL, LOCAL, LOCAL, LOCAL, LOCAL, LOCAL),
    "connection_closed": _srow(_FAIL, _FAIL, _FAIL, _FAIL, _FAIL, OK, OK),
    # A limit reached: no StartRecognition, idle (STREAMING only), session length; and
    # in CLOSED, a client slow to close after EndOfTranscript (the engine closes).
    "timer_expired": _srow(IGNORE, _FAIL, IGNORE, _FAIL, _FAIL, OK, IGNORE),
    # A limit approaching: idle_timeout and session_timeout warnings.
    "timer_warning": _srow(IGNORE, IGNORE, IGNORE, OK, OK, OK, IGNORE),
    # Client messages.
    "StartRecognition": _srow(
        LOCAL, _trig("request"), _PROTOCOL, _PROTOCOL, _PROTOCOL, IGNORE, IGNORE
    ),
    "<binary>": _srow(LOCAL, _PROTOCOL, _PROTOCOL, OK, OK, IGNORE, IGNORE),
    # Audio that takes the session past max_audio_seconds: Warning
    # duration_limit_exceeded, and the stream ends as if EndOfStream had come.
    "<binary>:over_limit": _srow(LOCAL, _PROTOCOL, _PROTOCOL, _trig("drain"), OK, IGNORE, IGNORE),
    "AddChannelAudio": _srow(LOCAL, _PROTOCOL, _PROTOCOL, OK, OK, IGNORE, IGNORE),
    "EndOfStream": _srow(LOCAL, _PROTOCOL, _PROTOCOL, _trig("drain"), IGNORE, IGNORE, IGNORE),
    "EndOfChannel": _S_SESSION,
    "EndOfChannel:last": _srow(LOCAL, _PROTOCOL, _PROTOCOL, _trig("drain"), IGNORE, IGNORE, IGNORE),
    "SetRecognitionConfig": _S_SESSION,
    "ForceEndOfUtterance": _S_SESSION,
    "GetSpeakers": _srow(LOCAL, _PROTOCOL, _PROTOCOL, OK, OK, IGNORE, IGNORE),
    "<unknown>": _srow(LOCAL, _INVALID, _INVALID, _INVALID, _INVALID, IGNORE, IGNORE),
    # Any first message on a connection whose credential was refused (in band).
    "<unauthorised>": _srow(
        LOCAL,
        Rule(Outcome.REMOTE_ERROR, "fail", "not_authorised"),
        IGNORE,
        IGNORE,
        IGNORE,
        IGNORE,
        IGNORE,
    ),
    # Application commands.
    "start_recognition": _srow(LOCAL, LOCAL, _trig("start"), LOCAL, LOCAL, LOCAL, LOCAL),
    "send_result": _S_RESULT,
    "send_notice": _srow(LOCAL, OK, OK, OK, OK, LOCAL, LOCAL),
    "send_error": _srow(LOCAL, _FAIL, _FAIL, _FAIL, _FAIL, IGNORE, IGNORE),
    "end_of_transcript": _srow(LOCAL, LOCAL, LOCAL, LOCAL, _trig("finish"), LOCAL, LOCAL),
    "close": _srow(LOCAL, _CLOSE, _CLOSE, _CLOSE, _CLOSE, IGNORE, IGNORE),
}

SERVER_INPUTS: Final = tuple(SERVER_RULES)

_check_rules(SERVER_RULES, SERVER_MACHINE, ServerState)


# ---------------------------------------------------------------------------
# The client session: one stream of audio over as many connections as it takes.


class SessionState(enum.Enum):
    """Where a client session (``smproto.session.ClientSession``) is in its life.

    ::

        IDLE → OPENING → ACTIVE ⇄ ROLLING_OVER
                 ↑  ↓      ↓          ↓
               BACKING_OFF ←──────────┘ (a retryable failure)
        ACTIVE → DRAINING → CLOSED;  any live state → CLOSED (close()) or FAILED
    """

    #: Created; :meth:`~smproto.session.ClientSession.start` not called yet.
    IDLE = "IDLE"
    #: A connection is being made (key, handshake, ``RecognitionStarted``): the first
    #: one, or one that continues a failed one.
    OPENING = "OPENING"
    #: Recognition runs on the current connection: audio may be sent.
    ACTIVE = "ACTIVE"
    #: The current connection still runs while the next one opens, before a limit the
    #: server announced (make before break); audio still goes to the current one.
    ROLLING_OVER = "ROLLING_OVER"
    #: A connection failed and a new one will be made after a delay.
    BACKING_OFF = "BACKING_OFF"
    #: The stream has ended; waiting for ``EndOfTranscript``.
    DRAINING = "DRAINING"
    #: Finished: ``EndOfTranscript`` received, or the application closed the session.
    CLOSED = "CLOSED"
    #: Given up: see the session's ``failure``.
    FAILED = "FAILED"

    def __repr__(self) -> str:
        return f"SessionState.{self.name}"

    def __str__(self) -> str:
        return self.name


_S = SessionState
_SESSION_LIVE = [_S.IDLE, _S.OPENING, _S.ACTIVE, _S.ROLLING_OVER, _S.BACKING_OFF, _S.DRAINING]
_SESSION_RUNNING = _SESSION_LIVE[1:]

#: The session's triggers: name, source state(s), destination.
SESSION_TRANSITIONS: Final[list[dict[str, Any]]] = [
    # start(): the first connection is asked for.
    {"trigger": "start", "source": _S.IDLE, "dest": _S.OPENING},
    # The connection being made got RecognitionStarted (":drained" when the stream had
    # ended meanwhile: the connection replays, then ends the stream).
    {"trigger": "started", "source": _S.OPENING, "dest": _S.ACTIVE},
    {"trigger": "started_drained", "source": _S.OPENING, "dest": _S.DRAINING},
    # Warning session_timeout, or max_session_seconds: the next connection opens.
    {"trigger": "roll_over", "source": _S.ACTIVE, "dest": _S.ROLLING_OVER},
    # The next connection started and took over; or it could not be made.
    {"trigger": "rolled_over", "source": _S.ROLLING_OVER, "dest": _S.ACTIVE},
    {"trigger": "rollover_failed", "source": _S.ROLLING_OVER, "dest": _S.ACTIVE},
    # end_of_stream(), the last end_of_channel(), or the server's duration limit.
    {"trigger": "drain", "source": [_S.ACTIVE, _S.ROLLING_OVER], "dest": _S.DRAINING},
    # A retryable failure, within the policy and the retry budget.
    {
        "trigger": "back_off",
        "source": [_S.OPENING, _S.ACTIVE, _S.ROLLING_OVER, _S.DRAINING],
        "dest": _S.BACKING_OFF,
    },
    # The delay has passed: the next attempt.
    {"trigger": "retry", "source": _S.BACKING_OFF, "dest": _S.OPENING},
    # EndOfTranscript on the current connection.
    {"trigger": "finish", "source": _S.DRAINING, "dest": _S.CLOSED},
    # close(): the application aborts.
    {"trigger": "close", "source": _SESSION_LIVE, "dest": _S.CLOSED},
    # A failure that is not retried (not retryable, attempts or budget used up, a
    # lossless resume impossible).
    {"trigger": "fail", "source": _SESSION_RUNNING, "dest": _S.FAILED},
]

#: The machine that runs :data:`SESSION_TRANSITIONS`. It has no models of its own.
SESSION_MACHINE: Final = Machine(
    model=None,
    states=SessionState,
    transitions=SESSION_TRANSITIONS,
    initial=SessionState.IDLE,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


def _sess(
    idle: Rule,
    opening: Rule,
    active: Rule,
    rolling_over: Rule,
    backing_off: Rule,
    draining: Rule,
    closed: Rule,
    failed: Rule,
) -> dict[SessionState, Rule]:
    return {
        _S.IDLE: idle,
        _S.OPENING: opening,
        _S.ACTIVE: active,
        _S.ROLLING_OVER: rolling_over,
        _S.BACKING_OFF: backing_off,
        _S.DRAINING: draining,
        _S.CLOSED: closed,
        _S.FAILED: failed,
    }


WAIT = Rule(Outcome.WAIT)
FAILURE = Rule(Outcome.FAILURE)
_DRAIN = _trig("drain")
_BACK_OFF = _trig("back_off")


def _when(cells: Mapping[SessionState, Rule]) -> dict[SessionState, Rule]:
    """A row that is ignored in every state but those given."""
    return {state: cells.get(state, IGNORE) for state in SessionState}


# A command for the running recognition: waits while a connection is being made.
_S_COMMAND = _sess(LOCAL, WAIT, OK, OK, WAIT, LOCAL, LOCAL, FAILURE)
# Something that happens to the session: handled where it can happen, ignored elsewhere.
_S_GIVE_UP = _sess(IGNORE, _FAIL, _FAIL, _FAIL, _FAIL, _FAIL, IGNORE, IGNORE)

#: For every session input and state, what happens. Commands come from the application;
#: the other inputs are what the session concludes from its connections and timers.
SESSION_RULES: Final[Mapping[str, Mapping[SessionState, Rule]]] = {
    # Commands.
    "start": _sess(_trig("start"), LOCAL, LOCAL, LOCAL, LOCAL, LOCAL, LOCAL, LOCAL),
    "send_audio": _S_COMMAND,
    "send_channel_audio": _S_COMMAND,
    "set_recognition_config": _S_COMMAND,
    "force_end_of_utterance": _S_COMMAND,
    # Ignored once the stream ended (as by the engine).
    "end_of_channel": _sess(LOCAL, WAIT, OK, OK, WAIT, IGNORE, LOCAL, FAILURE),
    "get_speakers": _sess(LOCAL, WAIT, OK, OK, WAIT, OK, LOCAL, FAILURE),
    # While a connection is being made, the end is remembered: the next one ends the
    # stream once it has replayed the audio.
    # The drain follows from the connection's (stream_ended), as for the other ends.
    "end_of_stream": _sess(LOCAL, OK, OK, OK, OK, IGNORE, IGNORE, FAILURE),
    "close": _sess(_CLOSE, _CLOSE, _CLOSE, _CLOSE, _CLOSE, _CLOSE, IGNORE, IGNORE),
    # What the session concludes.
    "connection_started": _when({_S.OPENING: _trig("started")}),
    "connection_started:drained": _when({_S.OPENING: _trig("started_drained")}),
    "stream_ended": _when({_S.ACTIVE: _DRAIN, _S.ROLLING_OVER: _DRAIN, _S.DRAINING: OK}),
    "end_of_transcript": _when({_S.DRAINING: _trig("finish")}),
    "failure:retry": _when(
        {
            _S.OPENING: _BACK_OFF,
            _S.ACTIVE: _BACK_OFF,
            _S.ROLLING_OVER: _BACK_OFF,
            _S.DRAINING: _BACK_OFF,
        }
    ),
    "failure:give_up": _S_GIVE_UP,
    "backoff_elapsed": _when({_S.BACKING_OFF: _trig("retry")}),
    "budget_spent": _S_GIVE_UP,
    "rollover_due": _when({_S.ACTIVE: _trig("roll_over")}),
    "next_started": _when({_S.ROLLING_OVER: _trig("rolled_over")}),
    "next_failed": _when({_S.ROLLING_OVER: _trig("rollover_failed")}),
}

SESSION_INPUTS: Final = tuple(SESSION_RULES)

_check_rules(SESSION_RULES, SESSION_MACHINE, SessionState)


def _role(role: str) -> tuple[type[enum.Enum], list[dict[str, Any]], Any, Mapping[str, Any]]:
    if role == "client":
        return State, CLIENT_TRANSITIONS, State.CONNECTING, CLIENT_RULES
    if role == "server":
        return ServerState, SERVER_TRANSITIONS, ServerState.HANDSHAKE, SERVER_RULES
    if role == "session":
        return SessionState, SESSION_TRANSITIONS, SessionState.IDLE, SESSION_RULES
    raise ValueError(f"unknown role {role!r} (expected 'client', 'server' or 'session')")


def mermaid_diagram(role: str = "client") -> str:
    """The state diagram of ``role``'s machine, as mermaid source (no graphviz needed)."""
    from transitions.extensions.diagrams import GraphMachine

    states, transitions, initial, _ = _role(role)

    class _Model:
        pass

    graph_machine = GraphMachine(
        model=None,
        states=states,
        transitions=transitions,
        initial=initial,
        auto_transitions=False,
        graph_engine="mermaid",
        title="smproto client session" if role == "session" else f"smproto {role} connection",
        show_state_attributes=False,
    )
    model = _Model()
    graph_machine.add_model(model)
    source: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    # Drop the styling of the model's current state, so the diagram is the same
    # whatever state the throwaway model happens to be in.
    lines = [ln.rstrip() for ln in source.splitlines() if not ln.strip().startswith("Class ")]
    return "\n".join(lines) + "\n"


def rules_markdown(role: str = "client") -> str:
    """The rules table of ``role`` as a markdown table (for the docs)."""
    state_type, _, _, rules = _role(role)
    states = list(state_type)
    lines = [
        "| input | " + " | ".join(s.name for s in states) + " |",
        "|---|" + "---|" * len(states),
    ]
    for name, row in rules.items():
        cells = []
        for state in states:
            rule = row[state]
            if rule.outcome is Outcome.OK:
                cells.append(f"→ {rule.trigger}" if rule.trigger else "ok")
            elif rule.outcome is Outcome.IGNORE:
                cells.append("ignored")
            elif rule.outcome is Outcome.LOCAL_ERROR:
                cells.append("LocalProtocolError")
            elif rule.outcome is Outcome.WAIT:
                cells.append("wait")
            elif rule.outcome is Outcome.FAILURE:
                cells.append("raises the failure")
            elif rule.detail:
                cells.append(f"Error {rule.detail}")
            else:
                cells.append("RemoteProtocolError")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
