"""Slow consumer eviction on the WebSocket fast path, against a real server.

Seed 000, "Backpressure": "Server buffers outgoing events per-connection
(default: 100 events). Beyond that, the slowest consumer is dropped." A fan-out
never waits for a client (STYLE habit 4): ``transports.websockets`` writes each
frame with a non-blocking ``send()``, queues what the kernel does not take in
an ``Outbox`` (100 messages, 1 MiB), and when that is full the router evicts
the connection: a Close if the socket takes it, then an abortive close that
drops the backlog.

The stalled client here is a raw socket with a small SO_RCVBUF that completes
the WebSocket and hub handshakes, joins the group, and then never reads. Fifty
other members of the group read everything, and a publisher sends large
messages to the group. The test proves that the stalled client is cut off, and
that nobody else notices: the readers get every message in order, the
publisher's invocations all complete, and the server's memory does not grow
with what was published to the stalled client.
"""

from __future__ import annotations

import trio

from tests.support.ws_client import (
    HubClient,
    get_stats,
    open_hub_client,
    open_raw_websocket,
    wait_for_stats,
    with_query,
)

HUB_PATH = "/hubs/playground"
GROUP = "firehose"
READERS = 50
PAYLOAD_SIZE = 30_000  # one message stays under the default 32 KiB max_message_size
MESSAGES = 1_200  # about 34 MiB published to the stalled client (and 1.7 GB to the readers)
# The publisher stays at most this far ahead of the slowest reader, so that the
# readers (all in this one test process) can never be the ones evicted.
WINDOW = 16
STALLED_RECEIVE_BUFFER = 4096
RSS_GROWTH_BOUND = 12 * 1024 * 1024
# What a stalled client can still read once it wakes up: its own receive buffer,
# never the server's dropped backlog.
DRAINED_BOUND = 4 * 1024 * 1024
EVICTION_WAIT = 5  # seconds for the eviction to show, once everything was published
CEILING = 60  # seconds; the test takes about 6 on an idle 2-core machine


def payload(sequence: int) -> str:
    return f"{sequence:06d}" + "x" * (PAYLOAD_SIZE - 6)


class Progress:
    """How many group messages each reader has received."""

    def __init__(self, readers: int) -> None:
        self.counts = [0] * readers
        self._changed = trio.Event()

    def advance(self, reader: int) -> None:
        self.counts[reader] += 1
        self._changed.set()

    async def wait_all_reached(self, count: int) -> None:
        while min(self.counts) < count:
            self._changed = trio.Event()
            await self._changed.wait()


async def read_group(
    url: str, token: str, index: int, progress: Progress, release: trio.Event,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One well-behaved member: checks every message's content and order."""
    async with open_hub_client(url, token=token) as client:
        await client.join_group(GROUP)
        task_status.started()
        for sequence in range(MESSAGES):
            message = await client.receive_message()
            assert message["target"] == "Receive", message
            (text,) = message["arguments"]
            assert text[:6] == f"{sequence:06d}", f"reader {index}: got {text[:6]} for {sequence}"
            assert len(text) == PAYLOAD_SIZE
            progress.advance(index)
        await release.wait()  # stay connected until the publisher is done


async def drain_until_closed(stream: trio.abc.ReceiveStream) -> tuple[int, str]:
    """Read until the server's close shows: (bytes read, "eof" or "reset")."""
    total = 0
    try:
        while data := await stream.receive_some(64 * 1024):
            total += len(data)
    except trio.BrokenResourceError:
        return total, "reset"
    return total, "eof"


async def test_slow_consumer_is_evicted_without_hurting_the_others(server):
    token = server.token()
    url = f"{server.ws_url}{HUB_PATH}"
    progress = Progress(READERS)
    release = trio.Event()
    completions: list[dict] = []
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for index in range(READERS):
                await nursery.start(read_group, url, token, index, progress, release)
            stalled_socket = await open_raw_websocket(
                "127.0.0.1", server.port, with_query(HUB_PATH, access_token=token),
                receive_buffer=STALLED_RECEIVE_BUFFER,
            )
            stalled = HubClient(stalled_socket)
            await stalled.handshake()
            await stalled.join_group(GROUP)
            # From here on, nobody reads stalled_socket until the end.

            async with open_hub_client(url, token=token) as publisher:
                before = await get_stats(server.url)
                rss_before = rss_peak = server.rss_bytes()
                for sequence in range(MESSAGES):
                    await progress.wait_all_reached(sequence - WINDOW)
                    completion = await publisher.invoke("SendToGroup", GROUP, payload(sequence))
                    completions.append(completion)
                    if sequence % 50 == 0:
                        rss_peak = max(rss_peak, server.rss_bytes())
                await progress.wait_all_reached(MESSAGES)
                rss_peak = max(rss_peak, server.rss_bytes())
                with trio.move_on_after(EVICTION_WAIT):
                    await wait_for_stats(
                        server.url, lambda stats: stats["hubs"][HUB_PATH]["evictions"] >= 1
                    )
                after = await get_stats(server.url)
                release.set()
            drained, how = 0, "still open"
            with trio.move_on_after(EVICTION_WAIT):
                drained, how = await drain_until_closed(stalled_socket.stream)
            await stalled_socket.aclose()

    # Everyone was connected before publishing: the readers, the stalled one, the publisher.
    assert before["hubs"][HUB_PATH]["connections"] == READERS + 2
    # Memory: what was published to the stalled client was not kept for it.
    published_to_stalled = MESSAGES * PAYLOAD_SIZE
    assert published_to_stalled > 2.5 * RSS_GROWTH_BOUND  # the bound means something
    growth = rss_peak - rss_before
    assert growth < RSS_GROWTH_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB"
    # The stalled client was evicted, and only it.
    assert after["hubs"][HUB_PATH]["evictions"] == 1
    assert after["hubs"][HUB_PATH]["connections"] == READERS + 1
    # The readers got everything in order (checked as they read); so did the publisher.
    assert progress.counts == [MESSAGES] * READERS
    assert len(completions) == MESSAGES
    assert [c for c in completions if "error" in c or c.get("type") != 3] == []
    # The server closed the stalled socket, and its backlog was dropped, not flushed.
    assert how in ("eof", "reset")
    assert drained < DRAINED_BOUND, drained
