"""Shared test configuration: Hypothesis profiles and the shared fixtures folder.

Run the deep profile with ``pytest --hypothesis-profile=long``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from tests.support import REPO, SECRETS, require_fixtures

if TYPE_CHECKING:
    from tests.drivers.netutil import ServerThread

# Modest by default (CI time); "long" is the deep run, from one documented command.
settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=False,
    print_blob=True,
)
# 2,000 examples a property: over the engines' receive paths and the stateful tests
# that is some 135,000 examples, about ten minutes on 2 cores (docs/reliability.md).
settings.register_profile(
    "long",
    max_examples=2_000,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


@pytest.fixture
def fixtures() -> Path:
    return require_fixtures()


# ---------------------------------------------------------------------------------------
# Secrets never reach a log line. Every API key the tests use is made by
# tests.support.secret(); a handler on the root logger, at DEBUG level for the whole run,
# looks for each of them in every record of every logger (websockets' handshake logs
# included), and the run fails if one ever appears.


class _SecretScanner(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Our loggers (smproto*, including the ones we give websockets) and anything logged
        # from our code; the official clients' own logs are not ours to police.
        if not (record.name.startswith("smproto") or record.pathname.startswith(_OURS)):
            return
        self.records += 1
        if not SECRETS:
            return
        try:
            text = self.format(record)
        except Exception:  # a record that cannot format is not a leak
            return
        for secret in SECRETS:
            if secret in text:
                self.leaks.append(f"{record.name}: {text[:200]}".replace(secret, "<SECRET>"))


_OURS = (str(REPO / "smproto"), str(REPO / "drivers"))
_SCANNER = _SecretScanner()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_SCANNER)
    root.setLevel(logging.DEBUG)
    # The state machine library logs every transition at DEBUG: keep it quiet.
    logging.getLogger("transitions").setLevel(logging.WARNING)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_SCANNER)
    if _SCANNER.leaks:
        lines = "\n".join(_SCANNER.leaks[:20])
        raise pytest.UsageError(f"an API key appeared in {len(_SCANNER.leaks)} log lines:\n{lines}")


@pytest.fixture
def log_scanner() -> _SecretScanner:
    """The whole-run log scanner (to check it is really listening)."""
    return _SCANNER


# ---------------------------------------------------------------------------------------
# Driver tests run on every client driver: asyncio and trio, and the sync and LiveKit
# drivers behind the same async API (tests/drivers/facades.py), with anyio's pytest
# plugin (no pytest-trio). A test that uses `driver` runs once per driver (restrict it
# with @pytest.mark.drivers("asyncio", ...)), on that driver's backend; another anyio
# test runs on both backends.

#: Every client driver.
ALL_DRIVERS = ("asyncio", "trio", "sync", "livekit")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver" in metafunc.fixturenames:
        from tests.drivers.facades import DRIVERS

        marker = metafunc.definition.get_closest_marker("drivers")
        names = list(marker.args) if marker is not None else list(ALL_DRIVERS)
        # Each driver on its own backend.
        metafunc.parametrize(
            ("driver_name", "anyio_backend"), [(n, DRIVERS[n]) for n in names], ids=names
        )
    elif "anyio_backend" in metafunc.fixturenames and not any(
        "anyio_backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")
    ):
        # Both backends, unless a module gives its own anyio_backend (LiveKit's: asyncio).
        definitions = metafunc._arg2fixturedefs.get("anyio_backend", ())
        if definitions and definitions[-1].func is anyio_backend.__wrapped__:
            metafunc.parametrize("anyio_backend", ["asyncio", "trio"])


@pytest.fixture
def anyio_backend() -> str:
    """Parametrized by pytest_generate_tests (a module may override it)."""
    return "asyncio"


@pytest.fixture
def driver(driver_name: str) -> Any:
    """The client driver under test: a driver module, or its facade (same API)."""
    from tests.drivers.facades import driver_for

    return driver_for(driver_name)


@pytest.fixture
def servers() -> Iterator[ServerThread]:
    """Start local servers (in a thread with its own asyncio loop) for one test."""
    from tests.drivers.netutil import ServerThread

    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.close()
