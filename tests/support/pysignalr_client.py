"""pysignalr (asyncio) driven from a plain pytest test: connect, invoke, bound in time.

The server runs in another process; the client runs in ``asyncio.run`` inside
the test, which is fine for a client (voisnap itself never runs asyncio).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pysignalr.client import SignalRClient
from pysignalr.messages import CompletionMessage

from tests.support.server import ServerProcess

TIMEOUT = 10.0


@asynccontextmanager
async def pysignalr_client(
    server: ServerProcess,
    token: str,
    handlers: dict[str, Any] | None = None,
    protocol: Any = None,
) -> AsyncIterator[SignalRClient]:
    """A connected pysignalr client (JSON, or ``protocol``); its ``run()`` task
    is cancelled on exit. The token goes in the URL: pysignalr sends its
    ``access_token_factory`` result only from its second connection on."""
    options: dict[str, Any] = {"signalr_ping_interval": 1}
    if protocol is not None:
        options["protocol"] = protocol
    client = SignalRClient(f"{server.hub_url()}?access_token={token}", **options)
    for method, handler in (handlers or {}).items():
        client.on(method, handler)
    opened = asyncio.Event()

    async def on_open() -> None:
        opened.set()

    client.on_open(on_open)
    running = asyncio.create_task(client.run())
    waiting = asyncio.create_task(opened.wait())
    try:
        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            raise AssertionError(f"pysignalr stopped before connecting: {running.exception()!r}")
        yield client
    finally:
        for task in (running, waiting):
            task.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)


async def pysignalr_invoke(client: SignalRClient, method: str, *args: Any) -> CompletionMessage:
    """A blocking invocation; the Completion the server sends back."""
    answered: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

    async def on_completion(message: CompletionMessage) -> None:
        answered.set_result(message)

    await client.send(method, list(args), on_invocation=on_completion)
    return await answered


def run_async(scenario: Any, timeout: float = TIMEOUT) -> Any:
    """Run a coroutine in a fresh asyncio loop, bounded by ``timeout``."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await scenario

    return asyncio.run(bounded())
