"""Driver tests run on both backends with anyio's pytest plugin (no pytest-trio)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

import smproto_asyncio
import smproto_trio
from tests.drivers.netutil import ServerThread


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver(anyio_backend: str) -> ModuleType:
    """The client driver for the backend under test."""
    return smproto_asyncio if anyio_backend == "asyncio" else smproto_trio


@pytest.fixture
def servers() -> Iterator[ServerThread]:
    """Start local servers (in a thread with its own asyncio loop) for one test."""
    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.close()
