"""Transcribe a WAV file with the sans-IO engine on plain threads: no asyncio, no trio.

    python docs/examples/threads_client.py URL FILE.wav

One thread owns the engine (``smproto.ClientConnection``) and runs the loop in
``run_connection``; a reader thread puts each message from the WebSocket on a queue.
Everything the engine learns arrives through that queue, and the loop waits on it no
longer than the engine's next deadline (``get_timer()``). A live application would
have its capture thread put audio on the same queue.

When a connection fails with a retryable error, the next one is made with
``ClientConnection.resume_from()``: it replays the audio no final transcript covered
yet, so the transcript has no gap and no repeat.

The API key comes from ``SPEECHMATICS_API_KEY`` (a local ``smproto serve`` needs none).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection as WebSocket
from websockets.sync.client import connect

from smproto import (
    ClientConnection,
    CloseTransport,
    RemoteProtocolError,
    SendBinary,
    SendText,
    State,
    TranscriptAssembler,
    TranscriptionConfig,
    events,
)
from smproto.audio import pcm_chunks, wav_to_pcm
from smproto.auth import handshake_headers, session_url
from smproto.session import ReconnectPolicy, error_for_failure


class TransportClosed(NamedTuple):
    """What the reader thread puts on the queue when the connection is gone."""

    code: int | None
    reason: str


Incoming = str | bytes | TransportClosed


def read_messages(ws: WebSocket, inbox: queue.Queue[Incoming]) -> None:
    """The reader thread: every message from the server, then how the connection ended."""
    try:
        while True:
            inbox.put(ws.recv())
    except ConnectionClosed as exc:
        close = exc.rcvd
        inbox.put(TransportClosed(close.code if close else None, close.reason if close else ""))


def perform(conn: ClientConnection, ws: WebSocket) -> None:
    """Carry out the engine's actions on the WebSocket, in order."""
    for action in conn.actions():
        try:
            if isinstance(action, SendText):
                ws.send(action.text)
            elif isinstance(action, SendBinary):
                ws.send(action.data)
            elif isinstance(action, CloseTransport):
                ws.close(action.code, action.reason)
        except ConnectionClosed:
            return  # the reader thread reports how the connection ended


def run_connection(
    conn: ClientConnection,
    url: str,
    api_key: str | None,
    audio: Iterator[bytes],
    transcript: TranscriptAssembler,
) -> events.ConnectionClosed:
    """Run one connection to its end; return its last event."""
    headers = handshake_headers(api_key)  # Authorization: Bearer <key>, if there is a key
    try:
        ws = connect(session_url(url, sdk="smproto-threads-example"), additional_headers=headers)
    except InvalidStatus:
        raise  # the server answered with an HTTP error (a bad key is 401): do not retry
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        # Never opened: for the engine, a connection lost before it began (retryable).
        conn.connection_closed(None, f"could not connect: {exc}", now=time.monotonic())
        closed = conn.events()[-1]
        assert isinstance(closed, events.ConnectionClosed)
        return closed

    inbox: queue.Queue[Incoming] = queue.Queue()
    with ws:
        threading.Thread(target=read_messages, args=(ws, inbox), daemon=True).start()
        conn.connection_opened(now=time.monotonic())
        while True:
            # 1. Commands: send audio while the flow-control window has room.
            while conn.state is State.STREAMING and not conn.audio_window_full:
                chunk = next(audio, None)
                if chunk is None:
                    conn.end_of_stream(now=time.monotonic())  # ignored if already ended
                    break
                conn.send_audio(chunk, now=time.monotonic())

            # 2. Outputs: write what the engine asks for, show what it tells.
            perform(conn, ws)
            while (event := conn.next_event()) is not None:
                transcript.add(event)
                if isinstance(event, events.AddTranscript) and event.text:
                    print(f"[{event.start_time:7.2f}s] {event.text}", flush=True)
                elif isinstance(event, events.ServerWarning | events.ServerError):
                    print(f"server {event.type}: {event.reason}", file=sys.stderr)
                elif isinstance(event, events.ConnectionClosed):
                    return event  # always the last event of a connection

            # 3. Inputs: the next message, or the next deadline, whichever comes first.
            deadline = conn.get_timer()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = inbox.get(timeout=timeout)
            except queue.Empty:
                conn.handle_timer(now=time.monotonic())
                continue
            if isinstance(item, TransportClosed):
                conn.connection_closed(item.code, item.reason, now=time.monotonic())
            else:
                try:
                    conn.receive_message(item, now=time.monotonic())
                except RemoteProtocolError as exc:
                    # The engine is FAILED and has queued its close: step 2 performs it.
                    print(f"protocol error: {exc}", file=sys.stderr)


def main(url: str, wav_path: str) -> int:
    audio_format, pcm = wav_to_pcm(Path(wav_path).read_bytes())
    audio = pcm_chunks(pcm, audio_format, seconds=0.1)  # shared by every connection
    api_key = os.environ.get("SPEECHMATICS_API_KEY")
    transcript = TranscriptAssembler()
    policy = ReconnectPolicy()
    conn = ClientConnection(TranscriptionConfig("en", enable_partials=True), audio_format)
    attempt = 0
    while True:
        try:
            closed = run_connection(conn, url, api_key, audio, transcript)
        except InvalidStatus as exc:
            print(f"the server refused the connection: {exc}", file=sys.stderr)
            return 1
        failure = closed.failure
        if failure is None:
            print(transcript.final_text)
            return 0
        error = error_for_failure(failure)  # the drivers' typed error, and its retry advice
        attempt = 1 if conn.frames_acknowledged else attempt + 1  # progress resets the count
        if not policy.should_retry(error, attempt):
            print(f"failed: {failure.reason}", file=sys.stderr)
            return 1
        delay = policy.delay(error, attempt)
        print(f"{failure.reason}; reconnecting in {delay:.1f}s", file=sys.stderr)
        time.sleep(delay)
        conn = ClientConnection.resume_from(conn)  # replays what no final covered


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} URL FILE.wav")
    sys.exit(main(sys.argv[1], sys.argv[2]))
