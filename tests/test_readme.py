"""The README's quickstart works on a fresh machine: in a new virtual environment, its
install command, then its main-job command, then its test command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import venv
from pathlib import Path

import pytest

from tests.support import REPO

README = REPO / "README.md"


def quickstart_commands() -> list[str]:
    text = README.read_text()
    block = re.search(
        r"<!-- quickstart:begin -->\s*```sh\n(.*?)```\s*<!-- quickstart:end -->", text, re.S
    )
    assert block, "README.md lost its quickstart block"
    commands = []
    for line in block.group(1).splitlines():
        line = line.split("  #", 1)[0].strip()
        if line:
            commands.append(line)
    return commands


def test_quickstart_has_install_main_job_and_tests() -> None:
    install, main_job, tests = quickstart_commands()
    assert install.startswith("pip install")
    assert main_job.startswith("smproto transcribe")
    assert tests == "python -m pytest"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(env_dir),
        "PYTHONPATH": "",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.pop("SPEECHMATICS_API_KEY", None)
    install, main_job, tests = quickstart_commands()

    def run(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    installed = run(install + " --quiet", 800)
    assert installed.returncode == 0, installed.stderr[-3000:]
    transcribed = run(main_job, 120)
    assert transcribed.returncode == 0, transcribed.stderr
    heard = set(re.findall(r"[a-z]+", transcribed.stdout.lower()))
    assert {"local", "speech", "server", "computer"} <= heard, transcribed.stdout
    # The test command, on one quick file (the whole suite is what CI runs anyway).
    tested = run(tests + " tests/smproto/test_sans_io.py -q", 300)
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "passed" in tested.stdout
