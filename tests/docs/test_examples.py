"""The example programs of the documentation (docs/examples/*.py), run as a user runs
them: in a subprocess, against a local server on 127.0.0.1 started by the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smproto_server import LocalServer
from smproto_server.recognizers import ScriptedRecognizer
from smproto_server.recognizers.scripted import synthesize_wav
from tests.drivers.netutil import ServerThread
from tests.support import REPO

EXAMPLES = REPO / "docs" / "examples"
WORDS = ["hello", "world", "the", "speech", "good", "morning"]
TRANSCRIPT = "hello world the speech good morning."

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def servers() -> Iterator[ServerThread]:
    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def server(servers: ServerThread) -> LocalServer:
    return servers.serve(recognizer=ScriptedRecognizer())


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "words.wav"
    # 44.1 kHz stereo: the examples convert it (smproto.audio.wav_to_pcm).
    path.write_bytes(synthesize_wav(WORDS, sample_rate=44100, channels=2, gap_seconds=0.3))
    return path


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SPEECHMATICS_API_KEY", None)
    # As from a checkout without an install: the drivers are importable from drivers/.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "drivers")])
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.parametrize("name", ["threads_client.py", "asyncio_client.py", "trio_client.py"])
def test_example_prints_the_transcript(name: str, server: LocalServer, wav: Path) -> None:
    done = run_example(name, server.url, str(wav))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == TRANSCRIPT
    # Each final as it came, with its start time: the words in order.
    finals = [line.split("] ", 1)[1] for line in lines[:-1]]
    assert [f for f in finals if f != "."] == WORDS


def test_threads_example_reconnects_without_loss(servers: ServerThread, wav: Path) -> None:
    """The threads example (smproto_sync): the first connection is cut mid-stream (and
    the second one too); the transcript is still complete, with no word repeated."""
    server = servers.serve(recognizer=ScriptedRecognizer())
    proxy = servers.proxy(server, [900, 700])  # bytes to the client
    done = run_example("threads_client.py", f"ws://127.0.0.1:{proxy.port}/v2", str(wav))
    assert done.returncode == 0, done.stderr
    assert "reconnected" in done.stderr
    assert proxy.connections == 3
    lines = done.stdout.splitlines()
    assert lines[-1] == TRANSCRIPT
    finals = [line.split("] ", 1)[1] for line in lines[:-1]]
    assert [f for f in finals if f != "."] == WORDS


def test_examples_fail_cleanly(wav: Path) -> None:
    """A refused connection is reported, with exit status 1 (not a traceback)."""
    for name in ("asyncio_client.py", "trio_client.py", "threads_client.py"):
        done = run_example(name, "ws://127.0.0.1:9/v2", str(wav))
        assert done.returncode == 1, done.stderr
        assert "failed:" in done.stderr and "Traceback" not in done.stderr


def test_the_pytest_example_passes() -> None:
    """docs/examples/test_offline_app.py, the server guide's pytest fixtures, run as a
    user runs them."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(EXAMPLES / "test_offline_app.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


def test_the_engine_by_hand() -> None:
    """docs/examples/engine_by_hand.py (the sans-IO guide's walk through the contract)
    runs, and its assertions hold."""
    done = run_example("engine_by_hand.py")
    assert done.returncode == 0, done.stderr
    states = [line.split(": ")[1] for line in done.stdout.splitlines() if line.startswith("state")]
    assert states == ["CONNECTING", "STREAMING", "DRAINING", "CLOSED"]
    assert 'send: {"message":"EndOfStream","last_seq_no":1}' in done.stdout


def test_the_custom_recogniser(wav: Path) -> None:
    """docs/examples/custom_recognizer.py: a recogniser written against the
    smproto_server.Recognizer protocol, serving a real session. The script is longer
    than the audio: the words left are said at the end of the stream."""
    script = "one two three four five six seven eight nine ten eleven twelve"
    done = run_example("custom_recognizer.py", script, str(wav))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == script


def test_record_then_replay(servers: ServerThread, server: LocalServer, wav: Path) -> None:
    """docs/examples/record_session.py records a session; the replay recogniser plays it
    back to another client, final for final."""
    from smproto_server.recognizers import ReplayRecognizer

    recording = wav.with_suffix(".jsonl")
    done = run_example("record_session.py", server.url, str(wav), str(recording))
    assert done.returncode == 0, done.stderr
    replay = servers.serve(recognizer=ReplayRecognizer(recording))
    replayed = run_example("threads_client.py", replay.url, str(wav))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines()[-1] == TRANSCRIPT
