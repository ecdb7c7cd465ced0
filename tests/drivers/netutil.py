"""Network helpers for driver tests: a local server in a thread of its own, a TCP proxy
that can cut or silence connections, and a tiny HTTP server for the temporary-key
endpoint. Everything binds to 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from smproto_server import LocalServer, serve


class LoopThread:
    """An asyncio event loop running in a daemon thread (so trio tests can use it too)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Cancel what still runs (as ``asyncio.run`` does), then stop and close the loop.

        A task left pending on a closed loop is finalised by the garbage collector later,
        where websockets' connection handler then fails to close (an unraisable
        ``RuntimeError: coroutine ignored GeneratorExit`` in some unrelated test)."""

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with suppress(Exception):
            self.run(cancel_the_rest(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Proxy:
    """A TCP proxy in front of a server. Connection number ``i`` (0-based) is cut — both
    sockets closed abruptly — once ``cut_after[i]`` bytes have gone from the server to
    the client (or, with ``silence=True``, it stops forwarding anything in either
    direction without closing: a half-open connection)."""

    target_port: int
    cut_after: list[int | None] = field(default_factory=list)
    silence: bool = False
    connections: int = 0
    port: int = 0
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        limit = self.cut_after[index] if index < len(self.cut_after) else None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        count = 0
        frozen = False

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            nonlocal count, frozen
            while True:
                data = await src.read(4096)
                if not data:
                    return
                if frozen:
                    continue  # a half-open connection: nothing gets through, nothing closes
                if down and limit is not None:
                    room = limit - count
                    if len(data) >= room:
                        if self.silence:
                            frozen = True
                            continue
                        dst.write(data[:room])
                        return  # cut: both sockets are aborted below
                    count += len(data)
                dst.write(data)
                await dst.drain()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer, False)),
            asyncio.ensure_future(pipe(up_reader, writer, True)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()


class ServerThread:
    """``smproto_server.serve()`` (and optional proxies) in a loop thread of their own."""

    def __init__(self) -> None:
        self.loop_thread = LoopThread()
        self.servers: list[LocalServer] = []
        self.proxies: list[Proxy] = []

    def serve(self, **kwargs: Any) -> LocalServer:
        async def start() -> LocalServer:
            return await serve("127.0.0.1", 0, **kwargs)

        server: LocalServer = self.loop_thread.run(start())
        self.servers.append(server)
        return server

    def proxy(
        self, server: LocalServer, cut_after: list[int | None], *, silence: bool = False
    ) -> Proxy:
        proxy = Proxy(server.port, list(cut_after), silence)
        self.loop_thread.run(proxy.start())
        self.proxies.append(proxy)
        return proxy

    def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return self.loop_thread.run(fn())

    def close(self) -> None:
        for proxy in self.proxies:
            self.loop_thread.run(proxy.stop())
        for server in self.servers:
            with suppress(Exception):
                self.loop_thread.run(server.aclose(grace=0.5), timeout=10)
        self.loop_thread.stop()


@dataclass
class KeyEndpoint:
    """A local stand-in for the temporary-key endpoint (POST /v1/api_keys?type=rt)."""

    status: int = 201
    body: bytes = b'{"apikey_id": "id-1", "key_value": "temporary-key-1"}'
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0


@contextmanager
def key_endpoint(endpoint: KeyEndpoint) -> Iterator[KeyEndpoint]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            endpoint.requests.append(
                {
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "body": json.loads(self.rfile.read(length) or b"null"),
                }
            )
            self.send_response(endpoint.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(endpoint.body)))
            self.end_headers()
            self.wfile.write(endpoint.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        httpd.shutdown()
        httpd.server_close()
