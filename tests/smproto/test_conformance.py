"""Every message the client engine sends conforms to the official AsyncAPI spec.

Configurations and commands are generated (``smproto.testing``); each ``SendText`` is
validated against the JSON schema of its message type in ``realtime.yaml``, and each
``SendBinary`` is an ``AddAudio`` frame. ``EndOfStream.last_seq_no`` (and
``EndOfChannel.last_seq_no`` per channel) is the number of frames sent.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smproto import (
    AudioEventsConfig,
    AudioFormat,
    ClientConnection,
    CloseTransport,
    SendBinary,
    SendText,
    State,
    TranscriptionConfig,
    TranslationConfig,
)
from smproto.actions import Action
from smproto.testing import (
    CLIENT_MESSAGE_TYPES,
    audio_events_configs,
    audio_formats,
    mid_session_changes,
    recognition_started_messages,
    transcription_configs,
    translation_configs,
)
from tests.support import SpecSchemas, spec_schemas

pytestmark = [
    pytest.mark.fixtures,
    pytest.mark.filterwarnings("ignore:TranscriptionConfig.operating_point:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def spec() -> SpecSchemas:
    return spec_schemas()


def test_add_audio_is_a_binary_frame_in_the_spec(spec: SpecSchemas) -> None:
    assert spec.schemas["AddAudio"] == {"type": "string", "format": "binary"}
    assert set(CLIENT_MESSAGE_TYPES) | {"AddAudio"} == spec.channel_messages("publish")


# ============================================================================================
# Commands
# ============================================================================================

chunks = st.binary(min_size=1, max_size=64)
timestamps = st.none() | st.floats(0, 1e6) | st.integers(0, 100_000) | st.just(0.0)


def commands(labels: tuple[str, ...], multichannel: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    """One application command (or a server ack), as a tuple to interpret."""
    channel = st.sampled_from(labels)
    common = [
        st.tuples(
            st.just("config"), mid_session_changes(), st.sampled_from(["kw", "whole", "lang"])
        ),
        st.tuples(st.just("force"), timestamps, st.none() | channel),
        st.tuples(st.just("speakers"), st.booleans()),
        st.tuples(st.just("ack")),
    ]
    if multichannel:
        audio = [
            st.tuples(st.just("channel_audio"), channel, chunks),
            st.tuples(st.just("channel_audio"), channel, chunks),
            st.tuples(st.just("end_channel"), channel),
        ]
    else:
        audio = [st.tuples(st.just("audio"), chunks), st.tuples(st.just("audio"), chunks)]
    return st.one_of(*audio, *common)


@dataclass
class Expected:
    """What the test itself sent, to check the engine's messages against."""

    frames: list[bytes] = field(default_factory=list)
    channel_frames: dict[str, list[bytes]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    texts: list[dict[str, Any]] = field(default_factory=list)


def run(conn: ClientConnection, command: tuple[Any, ...], expected: Expected) -> None:
    """Apply ``command`` if it is valid now (invalid ones are skipped, not tested here)."""
    kind = command[0]
    streaming = conn.state is State.STREAMING
    if kind == "speakers":
        conn.get_speakers(final=command[1])
        expected.texts.append({"message": "GetSpeakers", "final": command[1]})
    elif not streaming:
        return
    elif kind == "audio":
        seq_no = conn.send_audio(command[1])
        expected.frames.append(command[1])
        assert seq_no == len(expected.frames)
    elif kind == "channel_audio":
        channel, chunk = command[1], command[2]
        if channel in expected.ended:
            return
        seq_no = conn.send_channel_audio(channel, chunk)
        expected.channel_frames.setdefault(channel, []).append(chunk)
        assert seq_no == len(expected.channel_frames[channel])
    elif kind == "end_channel":
        if command[1] in expected.ended:
            return
        conn.end_of_channel(command[1])
        expected.ended.add(command[1])
    elif kind == "config":
        changes, how = command[1], command[2]
        current = conn.transcription_config
        if how == "whole":
            new = conn.set_recognition_config(current.with_changes(**changes))
        elif how == "lang":
            new = conn.set_recognition_config(language=current.language, **changes)
        else:
            new = conn.set_recognition_config(**changes)
        assert new == current.with_changes(**changes)
        assert current.changed_fields(new) <= set(changes)
        expected.texts.append(
            {"message": "SetRecognitionConfig", "transcription_config": new.mid_session_dict()}
        )
    elif kind == "force":
        timestamp, channel = command[1], command[2]
        conn.force_end_of_utterance(timestamp, channel=channel)
        msg: dict[str, Any] = {"message": "ForceEndOfUtterance"}
        if timestamp is not None:
            msg["timestamp"] = timestamp
        if channel is not None:
            msg["channel"] = channel
        expected.texts.append(msg)
    elif kind == "ack":
        sent = conn.frames_sent
        if sent > conn.frames_acknowledged:
            conn.receive_message(json.dumps({"message": "AudioAdded", "seq_no": sent}), now=1.0)


def check_sent(
    spec: SpecSchemas, actions: list[Action], expected: Expected
) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Every action conforms; returns the binary frames and the JSON messages sent."""
    frames: list[bytes] = []
    messages: list[dict[str, Any]] = []
    for action in actions:
        if isinstance(action, SendBinary):
            assert type(action.data) is bytes and action.data  # AddAudio: a binary frame
            frames.append(action.data)
            continue
        assert isinstance(action, SendText), f"unexpected {action!r}"
        msg = json.loads(action.text)
        assert type(msg) is dict and msg.get("message") in CLIENT_MESSAGE_TYPES, msg
        assert spec.errors(msg["message"], msg) == [], msg
        # The spec's integers are JSON integers: no 3.0 for 3.
        assert spec.errors(msg["message"], msg, strict_numbers=True) == [], msg
        messages.append(msg)
    return frames, messages


# ============================================================================================
# The property
# ============================================================================================


@given(data=st.data())
def test_every_message_the_client_sends_conforms_to_the_spec(
    spec: SpecSchemas, data: st.DataObject
) -> None:
    cfg: TranscriptionConfig = data.draw(
        transcription_configs(extra=data.draw(st.booleans())), label="config"
    )
    fmt: AudioFormat = data.draw(audio_formats(), label="format")
    translation: TranslationConfig | None = data.draw(st.none() | translation_configs())
    audio_events: AudioEventsConfig | None = data.draw(st.none() | audio_events_configs())
    multichannel = data.draw(st.booleans(), label="multichannel")
    labels = tuple(cfg.channel_diarization_labels or ())
    channel_ids = None
    if multichannel and not labels:
        labels = ("left", "right")
        if data.draw(st.booleans(), label="channel_ids"):
            channel_ids = labels  # the server names the channels
    if not labels:
        labels = ("left",)

    conn = ClientConnection(
        cfg, fmt, translation_config=translation, audio_events_config=audio_events
    )
    conn.connection_opened(now=0.0)
    actions = conn.actions()
    started = data.draw(recognition_started_messages(channel_ids=channel_ids), label="started")
    conn.receive_message(json.dumps(started), now=0.1)
    assert conn.state is State.STREAMING

    expected = Expected()
    for command in data.draw(st.lists(commands(labels, multichannel), min_size=2, max_size=20)):
        run(conn, command, expected)
        actions += conn.actions()
    if data.draw(st.booleans(), label="end_of_stream") and conn.state is State.STREAMING:
        conn.end_of_stream()
        conn.end_of_stream()  # ignored: the stream has ended
        assert conn.state is State.DRAINING
        for final in data.draw(st.lists(st.booleans(), max_size=2), label="get_speakers"):
            run(conn, ("speakers", final), expected)
    actions += conn.actions()

    frames, messages = check_sent(spec, actions, expected)
    assert messages[0]["message"] == "StartRecognition"
    assert messages[0]["transcription_config"] == cfg.to_dict()
    assert frames == expected.frames
    kinds = Counter(m["message"] for m in messages)
    assert kinds["StartRecognition"] == 1

    # EndOfStream: once, and last_seq_no is the number of frames sent.
    ends = [m for m in messages if m["message"] == "EndOfStream"]
    assert len(ends) <= 1
    if ends:
        assert conn.state is State.DRAINING
        assert ends[0]["last_seq_no"] == len(frames) == conn.frames_sent
        assert not any(m["message"] == "EndOfChannel" for m in messages)
        assert messages.index(ends[0]) > max(
            (i for i, m in enumerate(messages) if m["message"] == "AddChannelAudio"), default=-1
        )

    # Channel audio: base64 of the chunks, in order; EndOfChannel counts them.
    sent_by_channel: dict[str, list[bytes]] = {}
    for msg in messages:
        if msg["message"] == "AddChannelAudio":
            chunk = base64.b64decode(msg["data"], validate=True)
            sent_by_channel.setdefault(msg["channel"], []).append(chunk)
    assert sent_by_channel == expected.channel_frames
    channel_ends = [m for m in messages if m["message"] == "EndOfChannel"]
    assert len({m["channel"] for m in channel_ends}) == len(channel_ends), "one end per channel"
    for end in channel_ends:
        assert end["last_seq_no"] == len(sent_by_channel.get(end["channel"], []))
    assert expected.ended <= {m["channel"] for m in channel_ends}

    # The other messages are the commands, in order (StartRecognition, audio and ends aside).
    others = [
        m
        for m in messages
        if m["message"] in ("GetSpeakers", "SetRecognitionConfig", "ForceEndOfUtterance")
    ]
    assert len(others) == len(expected.texts)
    for got, want in zip(others, expected.texts, strict=True):
        if want["message"] == "ForceEndOfUtterance" and "timestamp" not in want:
            # The engine adds the audio sent so far, except for file formats.
            if fmt.bytes_per_second:
                assert got.pop("timestamp") >= 0
            else:
                assert "timestamp" not in got
        assert got == want
    assert not any(isinstance(a, CloseTransport) for a in actions)


@given(
    frames=st.lists(chunks, max_size=30),
    acks=st.lists(st.integers(0, 30), max_size=5),
    fmt=audio_formats(),
)
def test_end_of_stream_counts_the_frames_sent(
    spec: SpecSchemas, frames: list[bytes], acks: list[int], fmt: AudioFormat
) -> None:
    """Whatever was acknowledged, EndOfStream.last_seq_no is the number of frames sent."""
    conn = ClientConnection(TranscriptionConfig(), fmt, max_audio_in_flight_seconds=0.001)
    conn.connection_opened(now=0.0)
    conn.receive_message(json.dumps({"message": "RecognitionStarted"}), now=0.0)
    acked = 0
    for i, chunk in enumerate(frames, start=1):
        assert conn.send_audio(chunk, now=float(i)) == i  # the window is the driver's business
        for ack in acks:
            if acked <= ack <= i:
                conn.receive_message(json.dumps({"message": "AudioAdded", "seq_no": ack}), now=i)
                acked = ack
    conn.end_of_stream()
    (end,) = [
        json.loads(a.text)
        for a in conn.actions()
        if isinstance(a, SendText) and "EndOfStream" in a.text
    ]
    assert spec.errors("EndOfStream", end) == []
    assert end == {"message": "EndOfStream", "last_seq_no": len(frames)}
