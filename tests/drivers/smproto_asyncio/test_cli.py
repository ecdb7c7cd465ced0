"""The ``smproto`` command end to end, as a subprocess: against the embedded default
(a local server started in-process) and against ``smproto serve``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smproto_server.recognizers.offline import offline_available
from smproto_server.recognizers.scripted import synthesize, synthesize_wav
from tests.support import REPO, secret

CLI_KEY = secret("cli")

pytestmark = pytest.mark.timeout(120)

SAMPLE = REPO / "samples" / "hello.wav"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "drivers")]),
    "SPEECHMATICS_API_KEY": "",
}


def smproto(
    *args: str, stdin: bytes | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "smproto_asyncio", *args],
        input=stdin,
        capture_output=True,
        env=ENV,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "words.wav"
    path.write_bytes(
        synthesize_wav(["hello", "world", "good", "morning"], sample_rate=8000, channels=2)
    )
    return path


@pytest.mark.skipif(not offline_available(), reason="the offline recogniser needs pocketsphinx")
def test_embedded_default_transcribes_the_sample() -> None:
    result = smproto("transcribe", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    expected = words((REPO / "samples" / "hello.txt").read_text())
    heard = words(result.stdout)
    assert len(set(expected) & set(heard)) >= 0.7 * len(set(expected)), result.stdout


def test_embedded_scripted_text_output(wav: Path) -> None:
    result = smproto("transcribe", str(wav), "--recognizer", "scripted")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world good morning.\n"


def test_json_output(wav: Path) -> None:
    result = smproto("transcribe", str(wav), "--recognizer", "scripted", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names[:2] == ["ServerInfo", "RecognitionStarted"] and names[-1] == "EndOfTranscript"
    assert "AudioAdded" in names and "AddPartialTranscript" in names
    finals = [e["text"] for e in events if e["event"] == "AddTranscript" and e["text"]]
    assert finals == ["hello", "world", "good", "morning", "."]
    assert all("raw" in e for e in events)


def test_raw_pcm_from_stdin() -> None:
    pcm = synthesize(["thank", "you"], sample_rate=16000)
    raw = ["--encoding", "pcm_s16le", "--sample-rate", "16000", "--recognizer", "scripted"]
    result = smproto("transcribe", "-", *raw, stdin=pcm)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "thank you.\n"


@pytest.fixture
def served() -> Iterator[str]:
    """``smproto serve`` on a free port, with an API key; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "smproto_asyncio", "serve", "--port", "0",
         "--recognizer", "scripted", "--api-key", CLI_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(ws://\S+)", line)
        assert match, line + (process.stderr.read() if process.stderr else "")
        yield match.group(1)
    finally:
        process.send_signal(2)  # Ctrl-C: a clean stop
        try:
            assert process.wait(10) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_against_smproto_serve(served: str, wav: Path) -> None:
    result = smproto("transcribe", str(wav), "--url", served, "--api-key", CLI_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world good morning.\n"
    wrong = secret("wrong")
    bad = smproto("-vv", "transcribe", str(wav), "--url", served, "--api-key", wrong)
    assert bad.returncode == 4 and "not accepted" in bad.stderr
    assert wrong not in bad.stderr and "DEBUG" in bad.stderr  # logs at DEBUG, without the key
    missing = smproto("transcribe", str(wav), "--url", served)
    assert missing.returncode == 4 and "401" in missing.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["transcribe", "no/such/file.wav", "--recognizer", "scripted"], 3, "no such audio file"),
        (["transcribe", "README.md", "--recognizer", "scripted"], 3, "not a WAV file"),
        (["transcribe", "README.md", "--encoding", "pcm_s16le"], 2, "needs --sample-rate"),
        (["transcribe", str(SAMPLE), "--max-delay", "9"], 2, "max_delay"),
        (["transcribe", str(SAMPLE), "--url", "ws://127.0.0.1:9/v2"], 5, "could not connect"),
        (["transcribe", str(SAMPLE), "--region", "eu"], 4, "API key is needed"),
        (["transcribe", str(SAMPLE), "--url", "ws://x/v2", "--region", "eu"], 2, "not allowed"),
        (["serve", "--recognizer", "replay"], 2, "needs --replay"),
    ],
)  # fmt: skip
def test_exit_codes_and_messages(args: list[str], code: int, message: str) -> None:
    result = smproto(*args, timeout=30)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not offline_available(), reason="the offline recogniser needs pocketsphinx")
def test_a_server_error_exits_6() -> None:
    result = smproto("transcribe", str(SAMPLE), "--language", "de", timeout=60)
    assert result.returncode == 6
    assert "invalid_language" in result.stderr


def test_serve_stops_cleanly_on_ctrl_c(served: str) -> None:
    # The fixture sends SIGINT and asserts exit code 0; here the server just has to work.
    start = time.monotonic()
    assert served.startswith("ws://127.0.0.1:")
    assert time.monotonic() - start < 5
