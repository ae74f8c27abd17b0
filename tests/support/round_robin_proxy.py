"""A round-robin TCP proxy on 127.0.0.1, in front of several backends, for tests.

For tests of many voisnap processes behind one address (a load balancer without sticky
sessions): every NEW TCP connection goes to the next backend in turn, and its bytes are piped
both ways until both sides are done. Half-close is passed on: when one side sends EOF, the
proxy shuts down the write side of the other (``send_eof``) and keeps piping the other way.
A reset on either side aborts the other (SO_LINGER 0), as a failing network path would. A
backend that refuses the connection gets the client closed; the turn is not given to another.

Two forms: ``async with open_round_robin_proxy(backends) as proxy`` inside trio, and
``RoundRobinProxyThread(backends)`` (start/stop, or ``with``) for synchronous tests that drive
other processes; it runs the same trio proxy in a thread of its own.

``route_next_to(i)`` and ``advance(n)`` move the turn (for a test that must know where a
client's connections land); ``connections_per_backend`` counts what each backend was given.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import trio

__all__ = ["RoundRobinProxy", "RoundRobinProxyThread", "open_round_robin_proxy"]

LINGER_ABORT = struct.pack("ii", 1, 0)
CHUNK = 65536

Address = tuple[str, int]


class RoundRobinProxy:
    """The proxy's state and its trio tasks; ``serve`` listens until cancelled."""

    def __init__(self, backends: Sequence[Address]) -> None:
        if not backends:
            raise ValueError("a round-robin proxy needs at least one backend")
        self.backends = list(backends)
        self.connections_per_backend = [0] * len(self.backends)
        self.port = 0
        self._turn = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    @property
    def next_backend(self) -> int:
        """The backend the next new connection goes to."""
        return self._turn

    def route_next_to(self, index: int) -> None:
        """Send the next new connection to backend ``index``; the turns go on from there."""
        if not 0 <= index < len(self.backends):
            raise IndexError(f"no backend {index} (there are {len(self.backends)})")
        self._turn = index

    def advance(self, steps: int = 1) -> None:
        """Skip ``steps`` turns, as if that many connections had come."""
        self._turn = (self._turn + steps) % len(self.backends)

    def _next_backend(self) -> int:
        index = self._turn
        self._turn = (self._turn + 1) % len(self.backends)
        self.connections_per_backend[index] += 1
        return index

    async def _handle(self, client: trio.SocketStream) -> None:
        host, port = self.backends[self._next_backend()]
        try:
            backend = await trio.open_tcp_stream(host, port)
        except OSError:
            await client.aclose()
            return
        async with client, backend, trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, backend, nursery.cancel_scope)
            nursery.start_soon(_pipe, backend, client, nursery.cancel_scope)


async def _pipe(source: trio.SocketStream, destination: trio.SocketStream,
                pair: trio.CancelScope) -> None:
    """Copy until EOF, then pass the EOF on; on a reset, abort both sides of the pair."""
    try:
        while data := await source.receive_some(CHUNK):
            await destination.send_all(data)
        await destination.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        for stream in (source, destination):
            with contextlib.suppress(OSError):
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
        pair.cancel()


@contextlib.asynccontextmanager
async def open_round_robin_proxy(backends: Sequence[Address]) -> AsyncIterator[RoundRobinProxy]:
    proxy = RoundRobinProxy(backends)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


class RoundRobinProxyThread:
    """The same proxy in a thread running its own ``trio.run``, for synchronous tests."""

    def __init__(self, backends: Sequence[Address]) -> None:
        self.proxy = RoundRobinProxy(backends)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def ws_url(self) -> str:
        return self.proxy.ws_url

    @property
    def connections_per_backend(self) -> list[int]:
        return list(self.proxy.connections_per_backend)

    @property
    def next_backend(self) -> int:
        return self.proxy.next_backend

    def route_next_to(self, index: int) -> None:
        """``RoundRobinProxy.route_next_to``, run in the proxy's own thread."""
        self._in_proxy_thread(self.proxy.route_next_to, index)

    def advance(self, steps: int = 1) -> None:
        self._in_proxy_thread(self.proxy.advance, steps)

    def _in_proxy_thread(self, function: Callable[..., None], *args: object) -> None:
        if self._token is None:
            raise RuntimeError("the round-robin proxy is not running")
        trio.from_thread.run_sync(function, *args, trio_token=self._token)

    def start(self, timeout: float = 10.0) -> RoundRobinProxyThread:
        self._thread = threading.Thread(target=self._run, name="round-robin-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError("round-robin proxy did not start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> RoundRobinProxyThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # reported by start(); the thread must not die silently
            self._error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.proxy.serve)
                self._ready.set()
