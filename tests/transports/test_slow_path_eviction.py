"""Slow consumer eviction on the ASGI WebSocket path (through hypercorn).

A WebSocket upgrade that arrives on a keep-alive connection already handed to
hypercorn takes the ASGI path. hypercorn shields its socket writes, so a write
stuck on a stalled client can never be cancelled; when a fan-out finds such a
client's outbox full, voisnap must cut the socket off itself
(``transports.sockets``) so that the client is really gone and the kernel frees
what it held for it (seed 000, "Backpressure").
"""

from __future__ import annotations

import trio

from tests.support.ws_client import (
    HubClient,
    open_hub_client,
    open_websocket_after_request,
    wait_for_stats,
    with_query,
)

HUB_PATH = "/hubs/playground"
GROUP = "firehose"
PAYLOAD = "x" * 30_000
CEILING = 60


async def drain_until_closed(stream: trio.abc.ReceiveStream) -> str:
    try:
        while await stream.receive_some(64 * 1024):
            pass
    except trio.BrokenResourceError:
        return "reset"
    return "eof"


async def test_slow_path_stalled_client_is_evicted_and_cut_off(start_server) -> None:
    server = start_server(settings={"outbox_capacity": "10"})
    token = server.token()
    with trio.fail_after(CEILING):
        websocket, first = await open_websocket_after_request(
            "127.0.0.1", server.port, with_query(HUB_PATH, access_token=token)
        )
        assert first.status == 200
        stalled = HubClient(websocket)
        await stalled.handshake()
        await stalled.join_group(GROUP)
        # From here on, nobody reads the stalled socket.
        async with open_hub_client(f"{server.ws_url}{HUB_PATH}", token=token) as publisher:
            sent = 0
            evicted = False
            while not evicted:
                for _ in range(20):  # tens of MiB at most: kernel buffers, then the outbox
                    await publisher.invoke("SendToGroup", GROUP, PAYLOAD)
                    sent += 1
                stats = await wait_for_stats(server.url, lambda stats: True)
                evicted = stats["hubs"][HUB_PATH]["evictions"] >= 1
                assert sent < 5_000, "the stalled client was never evicted"
            # The evicted connection ends, although its client reads nothing: its
            # stuck write was made to fail. Only the publisher is left.
            ended = False
            with trio.move_on_after(10):
                await wait_for_stats(server.url, lambda stats: stats["connections"] == 1)
                ended = True
            assert ended, "the evicted connection is still stuck in a write"
        how = await drain_until_closed(websocket.stream)
    assert how in ("eof", "reset")
