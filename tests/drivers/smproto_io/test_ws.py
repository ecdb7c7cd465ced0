"""MessageHook: how the websockets-based drivers take messages from their connections."""

from __future__ import annotations

from typing import Any

from websockets.frames import Frame, Opcode

from smproto_io.ws import MessageHook


class _Base:
    def __init__(self) -> None:
        self.passed: list[Any] = []

    def process_event(self, event: Any) -> None:
        self.passed.append(event)


class _Conn(MessageHook, _Base):
    pass


def test_messages_reach_the_callback_and_control_frames_do_not() -> None:
    conn = _Conn()
    got: list[str | bytes | None] = []
    conn.attach(got.append)
    ping = Frame(Opcode.PONG, b"x")
    conn.process_event(Frame(Opcode.TEXT, '{"a": "é"}'.encode()))
    conn.process_event(ping)
    conn.process_event(Frame(Opcode.BINARY, b"\x00\x01"))
    assert got == ['{"a": "é"}', b"\x00\x01"]
    assert conn.passed == [ping]  # websockets still sees control frames


def test_fragments_are_joined_and_bad_utf8_is_reported_as_none() -> None:
    conn = _Conn()
    got: list[str | bytes | None] = []
    conn.attach(got.append)
    text = "héllo".encode()
    conn.process_event(Frame(Opcode.TEXT, text[:2], fin=False))  # splits the é
    conn.process_event(Frame(Opcode.CONT, text[2:4], fin=False))
    conn.process_event(Frame(Opcode.CONT, text[4:], fin=True))
    conn.process_event(Frame(Opcode.TEXT, b"\xff\xfe"))
    assert got == ["héllo", None]


def test_early_messages_wait_for_attach_and_detach_drops_the_rest() -> None:
    conn = _Conn()
    got: list[str | bytes | None] = []
    conn.process_event(Frame(Opcode.TEXT, b"first"))
    conn.attach(got.append)
    conn.process_event(Frame(Opcode.TEXT, b"second"))
    conn.detach()
    conn.process_event(Frame(Opcode.TEXT, b"from a connection that is over"))
    assert got == ["first", "second"]
