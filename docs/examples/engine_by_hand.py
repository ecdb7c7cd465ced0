"""The client engine's whole contract, by hand: no network, no event loop, no clock.

    python docs/examples/engine_by_hand.py

Everything a driver does is here, in order: tell the engine what happened (an input,
with the time), carry out what it asks (``actions()``), show what it says
(``next_event()``), and wake it at its deadline (``get_timer()``). The server's side of
the conversation is typed in as the JSON the real service sends.
"""

from __future__ import annotations

from smproto import (
    AudioFormat,
    ClientConnection,
    CloseTransport,
    FailureKind,
    SendBinary,
    SendText,
    State,
    TranscriptionConfig,
    events,
)

FRAME = bytes(3200)  # 0.1 s of 16 kHz 16-bit mono silence

conn = ClientConnection(TranscriptionConfig("en"), AudioFormat(sample_rate=16000))
print("state:", conn.state)  # CONNECTING

# The WebSocket is open (at t=100 s on whatever monotonic clock the driver uses).
conn.connection_opened(now=100.0)
[start] = conn.actions()
assert isinstance(start, SendText)
print("send:", start.text)  # {"message":"StartRecognition",...}
assert conn.get_timer() == 130.0  # RecognitionStarted is due within 30 s

# The server answers.
conn.receive_message('{"message": "RecognitionStarted", "id": "s-1"}', now=100.4)
assert isinstance(conn.next_event(), events.RecognitionStarted)
print("state:", conn.state)  # STREAMING

# Audio: each frame gets a seq_no; the engine counts it until the server acks it.
assert conn.send_audio(FRAME, now=100.5) == 1
assert isinstance(conn.actions()[0], SendBinary)
assert conn.audio_in_flight.seconds == 0.1 and not conn.audio_window_full
assert conn.get_timer() == 130.5  # an ack is due within 30 s of the frame
conn.receive_message('{"message": "AudioAdded", "seq_no": 1}', now=100.6)
assert conn.next_event() == events.AudioAdded(1, {"message": "AudioAdded", "seq_no": 1})
assert conn.audio_in_flight.frames == 0 and conn.get_timer() is None

# A transcript arrives as a typed event (and keeps the raw message as .raw).
conn.receive_message(
    '{"message": "AddTranscript", "format": "2.9",'
    ' "metadata": {"start_time": 0.0, "end_time": 0.1, "transcript": "hello "},'
    ' "results": [{"type": "word", "start_time": 0.0, "end_time": 0.1,'
    ' "alternatives": [{"content": "hello", "confidence": 0.98}]}]}',
    now=100.7,
)
final = conn.next_event()
assert isinstance(final, events.AddTranscript)
print("final:", final.text, final.results[0].alternatives[0].confidence)

# The end: EndOfStream says how many frames were *sent*; then wait for EndOfTranscript.
conn.end_of_stream(now=100.8)
[end] = conn.actions()
assert isinstance(end, SendText)
print("send:", end.text)  # {"message":"EndOfStream","last_seq_no":1}
print("state:", conn.state)  # DRAINING
assert conn.get_timer() == 160.8  # EndOfTranscript is due within 60 s
conn.receive_message('{"message": "EndOfTranscript"}', now=101.0)
assert isinstance(conn.next_event(), events.EndOfTranscript)
assert conn.actions() == [CloseTransport(1000, "")]  # the driver closes the WebSocket
conn.connection_closed(1000, "", now=101.1)  # ... and reports that it is closed
closed = conn.next_event()
assert isinstance(closed, events.ConnectionClosed) and closed.failure is None
print("state:", conn.state)  # CLOSED
assert conn.next_event() is None  # ConnectionClosed is always the last event

# A deadline that passes fails the connection, with a reason and retry advice.
late = ClientConnection(TranscriptionConfig("en"))
late.connection_opened(now=0.0)
late.actions()
deadline = late.get_timer()
assert deadline is not None
late.handle_timer(now=deadline)
assert late.state is State.FAILED and late.failure is not None
assert late.failure.kind is FailureKind.TIMEOUT and late.failure.retryable
print("failed:", late.failure.reason)  # no RecognitionStarted within 30s
[close] = late.actions()
assert close == CloseTransport(1001, late.failure.reason)

# A failed connection is resumed on a new one, which replays unacknowledged audio.
again = ClientConnection.resume_from(late)
assert again.state is State.CONNECTING
