"""``/v1/events`` across processes (issue 20): two ``voisnap serve`` processes on one
Redis, with and without one NATS. Process 0 runs no tasks, so a task's events come from
process 1. With ``--nats-url`` events cross through NATS only, without through the
backplane; either way every subscriber gets each event once.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.cluster.conftest import StartCluster
from tests.events.test_events import chat, events_of, ingest, subscribe
from tests.support.services import NatsServer
from tests.support.stream_client import StreamClient


async def _count_until_marker(client: StreamClient) -> list[object]:
    """The data of every event before the marker event (whose data is "end")."""
    seen = []
    while (event := await client.until_type("event"))["data"] != "end":
        seen.append(event["data"])
    return seen


async def _each_event_once_on_every_process(cluster) -> None:
    near, far = cluster.nodes
    service = cluster.token("svc", roles=["service"])
    with trio.fail_after(30):
        async with events_of(near, cluster.token("ada")) as here, \
                events_of(far, cluster.token("bob")) as there:
            await subscribe(here, "all", "events.acme.>")
            await subscribe(there, "all", "events.acme.notice.>")
            for n in range(20):
                await ingest(near if n % 2 else far, service, f"events.acme.notice.n.p.{n}", n)
            await ingest(near, service, "events.acme.notice.n.p.end", "end")
            assert await _count_until_marker(here) == list(range(20))
            assert await _count_until_marker(there) == list(range(20))
            # A task run by the far process (the near one runs none) reaches the near one.
            await chat(near, cluster.token("ada"), "hello")
            await here.until(lambda e: ".tasks.task.completed." in e.get("topic", ""))
    states = [e["data"]["status"] for e in here.log
              if e["type"] == "event" and ".tasks.task." in e["topic"]]
    assert states == ["queued", "started", "completed"]


async def test_across_processes_through_nats_each_event_once(
    start_cluster: StartCluster, nats_server: NatsServer, tmp_path: Path
) -> None:
    cluster = start_cluster(settings={"nats_url": nats_server.url, "agent_token_delay": "0.001"},
                            node_settings=[{"agent_workers": "0"}])
    await _each_event_once_on_every_process(cluster)


async def test_across_processes_through_the_backplane_each_event_once(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    cluster = start_cluster(settings={"agent_token_delay": "0.001"},
                            node_settings=[{"agent_workers": "0"}])
    await _each_event_once_on_every_process(cluster)
