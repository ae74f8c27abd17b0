"""Peer: the `websockets` library's server with ``websockets.broadcast()``.

The fastest plain-Python fan-out we know: each message is encoded into one frame
once and written to every connection without waiting. Subscribers connect to
``/sub``; whatever the publisher sends on ``/pub`` goes to every subscriber.

    python -m bench.peers.websockets_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

subscribers: set[ServerConnection] = set()


async def handler(connection: ServerConnection) -> None:
    if connection.request.path == "/pub":
        async for message in connection:
            broadcast(subscribers, message)
        return
    subscribers.add(connection)
    try:
        await connection.wait_closed()
    finally:
        subscribers.discard(connection)


async def main(host: str, port: int) -> None:
    # compression=None: the load generator offers none, and broadcast() would
    # have to compress once per connection otherwise.
    async with serve(handler, host, port, compression=None, max_queue=None, backlog=4096) as server:
        bound = server.sockets[0].getsockname()
        print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.host, arguments.port))
