"""``voisnap serve``: one process, one port, and a graceful shutdown.

Structured concurrency, outermost first (every task has a visible owner):

    lifespan nursery   hypercorn's ASGI lifespan
      services         one nursery each (the store, the task runtime...): started in
                       order, stopped in the reverse order once the connections are gone
      connections      one task per TCP connection (hub WebSocket or hypercorn)
        main           the accept loop, the heartbeat, and the wait for SIGINT/SIGTERM

On a signal, voisnap stops accepting, sends every hub client a Close with
``allowReconnect: true``, tells hypercorn's keep-alive connections to close,
and cancels whatever is left after ``shutdown_timeout``.
"""

from __future__ import annotations

import gc
import logging
import resource
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from .app import VoisnapApp
from .collector import install_collector
from .front_door import FrontDoor
from .hub_server import HubServer, Service
from .hypercorn_bridge import HypercornBridge

log = logging.getLogger(__name__)

BACKLOG = 4096


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit: every connection
    is a descriptor, and the usual soft limit (1024) is far too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """``reuse_port``: one of several workers on the port (``server.workers``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server(
        (host, port), family=family, backlog=BACKLOG, reuse_port=reuse_port
    )
    listener.setblocking(False)
    return listener


def url_of(listener: socket.socket, tls: bool) -> str:
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def serve(
    hubs: HubServer, *, ready: Callable[[str], None] = print, reuse_port: bool = False
) -> None:
    """Run ``hubs`` (from ``create_server`` or ``create_product``) until SIGINT
    or SIGTERM; ``ready`` is told the URL once it listens."""
    settings = hubs.settings
    raise_open_file_limit()
    listener = open_listener(settings.host, settings.port, reuse_port=reuse_port)
    bridge = HypercornBridge(VoisnapApp(hubs), settings)
    front_door = FrontDoor(hubs, bridge)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as lifespan:
            async with services_running(hubs.services):
                await bridge.start(lifespan)
                # What exists now lives as long as the server: keep it out of every
                # future collection, so that full collections stay short.
                gc.collect()
                gc.freeze()
                install_collector()
                await _serve_connections(hubs, front_door, listener, signals, ready)
            # Only now: cancelling the lifespan first would stop the services all at once.
            lifespan.cancel_scope.cancel()


async def _serve_connections(
    hubs: HubServer,
    front_door: FrontDoor,
    listener: socket.socket,
    signals: AsyncIterator[int],
    ready: Callable[[str], None],
) -> None:
    """Accept connections until a signal; then stop accepting and close every
    connection, each with a goodbye, within ``shutdown_timeout``."""
    async with trio.open_nursery() as connections:
        hubs.attach(connections)
        async with trio.open_nursery() as main:
            main.start_soon(front_door.serve, listener, connections)
            main.start_soon(hubs.run_heartbeat)
            ready(f"voisnap listening on {url_of(listener, hubs.settings.tls)}")
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
            main.cancel_scope.cancel()
        listener.close()
        await _shut_down(hubs, front_door.bridge)
        connections.cancel_scope.cancel()


@asynccontextmanager
async def services_running(services: Iterable[Service]) -> AsyncIterator[None]:
    """Start the services in order (the store opens, the task runtime
    recovers...) and stop them in the reverse order. A service may use those
    started before it: stopped all at once, the store could close under a task
    runtime still claiming work."""
    async with AsyncExitStack() as stack:
        for service in services:
            await stack.enter_async_context(_service_running(service))
        yield


@asynccontextmanager
async def _service_running(service: Service) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(service)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


async def _shut_down(hubs: HubServer, bridge: HypercornBridge) -> None:
    """Close hub connections and hypercorn's connections side by side, bounded."""
    with trio.move_on_after(hubs.settings.shutdown_timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hubs.close_all)
            nursery.start_soon(bridge.stop)
