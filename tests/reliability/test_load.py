"""Load, in CI: 20 concurrent real-time sessions of 6 seconds from one process.

The sessions (the asyncio driver, 0.1 s chunks paced at real time; see
``bench/bench_load.py``, whose code this runs) talk to ``serve()`` with the scripted
recogniser, in a thread of this process. Every session must get exactly the words said,
at exactly the expected times (none lost, none duplicated); memory must stay bounded
(RSS sampled during the run); and once the sessions are over nothing may be left
behind: no file descriptor, no asyncio task (client or server side), no engine object.
The long version (100-200 sessions of 60 s) is ``python bench/bench_load.py``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from bench.bench_load import LoadResult, open_fds, run_load
from smproto import ClientConnection, ServerConnection
from smproto_asyncio import Session
from smproto_server.recognizers import ScriptedRecognizer
from smproto_server.recognizers.scripted import ScriptedSession
from tests.drivers.netutil import ServerThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SESSIONS = 20
SECONDS = 6.0
#: Peak RSS growth allowed over the run, client and server together (measured: 1 to
#: 3 MiB; the audio of all the sessions is under 4 MiB).
RSS_BOUND_KIB = 64 * 1024
#: The objects one session creates that must all be gone afterwards.
SESSION_TYPES = (ClientConnection, Session, ServerConnection, ScriptedSession)


def alive() -> dict[str, int]:
    gc.collect()
    counts = dict.fromkeys((t.__name__ for t in SESSION_TYPES), 0)
    for obj in gc.get_objects():
        kind = type(obj)  # (isinstance() would dereference weak proxies)
        if kind in SESSION_TYPES:
            counts[kind.__name__] += 1
    return counts


async def _server_tasks() -> int:
    me = asyncio.current_task()
    return len([t for t in asyncio.all_tasks() if t is not me])


async def _settle(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def test_concurrent_realtime_sessions(servers: ServerThread) -> None:
    server = servers.serve(recognizer=ScriptedRecognizer())
    server_tasks_before = servers.call(_server_tasks)
    before = alive()

    async def main() -> tuple[LoadResult, int, int, list[asyncio.Task[Any]]]:
        gc.collect()
        fds_before = open_fds()
        result = await run_load(server.url, SESSIONS, SECONDS)
        await _settle(lambda: open_fds() <= fds_before and not server._handlers)
        me = asyncio.current_task()
        return result, fds_before, open_fds(), [t for t in asyncio.all_tasks() if t is not me]

    result, fds_before, fds_after, tasks_after = asyncio.run(main())

    failed = [(s.error, s.lost, s.duplicated, s.complete) for s in result.failed]
    assert not failed, f"{len(failed)} sessions went wrong: {failed[:3]}"
    assert result.words_received == result.words_expected == SESSIONS * 11
    assert sum(s.lost for s in result.sessions) == 0
    assert sum(s.duplicated for s in result.sessions) == 0
    rss = [client for _, client, _ in result.rss]
    assert len(rss) > SECONDS * 2  # sampled all along
    assert max(rss) - rss[0] < RSS_BOUND_KIB, f"RSS grew by {(max(rss) - rss[0]) // 1024} MiB"
    assert fds_after == fds_before, f"file descriptors: {fds_before} before, {fds_after} after"
    assert tasks_after == [], tasks_after
    assert server.active_sessions == 0 and not server._handlers
    assert servers.call(_server_tasks) == server_tasks_before
    assert alive() == before, f"session objects still alive: {alive()} (before: {before})"
