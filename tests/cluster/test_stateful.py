"""Stateful reconnect landing on the other process (issue 10, "No sticky sessions").

Two ``voisnap serve`` processes on one Redis. The receiver (the official client with
``withStatefulReconnect()``) connects through a ``SteeringProxy``: its negotiate and first
WebSocket go to process 0, which owns the connection from then on (proven by ``/stats``). The
sender connects to process 1 directly and sends numbers to a group the receiver joined, one
invocation each. Then the proxy steers new connections to process 1 and holds them, resets
every connection through it (the receiver's WebSocket drops, without a Close), the sender
sends more numbers while the receiver is away, and the held WebSocket goes through to process
1, which must relay it to the owner as a whole. The receiver must get every number once, in
order, with the same connection id, without ever seeing itself reconnect or close.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.conftest import StartCluster
from tests.cluster.proxy import SteeringProxy
from tests.support.cluster import Cluster, cluster_clients, wait_until

pytestmark = pytest.mark.conformance

WAIT = 10.0


@pytest.fixture(scope="module")
def cluster(module_cluster: StartCluster) -> Cluster:
    return module_cluster()


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[SteeringProxy]:
    proxy = SteeringProxy([node.port for node in cluster.nodes])
    yield proxy
    proxy.close()


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_stateful_reconnect_on_other_process_delivers_every_number_once_in_order(
    cluster: Cluster, proxy: SteeringProxy, protocol: str,
) -> None:
    group = f"numbers-{protocol}"
    cluster.wait_connections([0, 0])
    with cluster_clients(cluster.hub_url(), timeout=60, transport="WebSockets",
                         protocol=protocol) as clients:
        first_id = clients.open("receiver", cluster.token("rita"),
                                url=f"http://127.0.0.1:{proxy.port}/hubs/playground",
                                statefulReconnect=True, keepAliveMs=1000)
        clients.call("receiver", "JoinGroup", group)
        clients.open("sender", cluster.token("sam"), url=cluster.nodes[1].hub_url())
        placed = cluster.wait_connections([1, 1])
        assert proxy.connections_to == [2, 0]  # negotiate and the WebSocket, both to process 0

        clients.send_range("sender", "SendToGroup", group, 0, 30)
        clients.wait("receiver", 29, timeout=WAIT)
        proxy.steer(1)
        proxy.hold()
        assert proxy.drop_all() >= 1
        clients.send_range("sender", "SendToGroup", group, 30, 60)
        proxy.release()
        clients.send_range("sender", "SendToGroup", group, 60, 90)
        clients.wait("receiver", 89, timeout=WAIT)
        echoed = clients.invoke("receiver", "Echo", "after the move")
        receiver = clients.log("receiver")
        after = cluster.connections()
        moved_to = list(proxy.connections_to)
        events = [e["event"] for e in clients.scenario.events]  # before the clients stop

    assert placed == [1, 1]
    assert moved_to[1] >= 1, "the receiver's new WebSocket never went to process 1"
    numbers = [e["payload"] for e in receiver["events"] if e["target"] == "Receive"]
    assert numbers == list(range(90))
    assert receiver["connectionId"] == first_id
    assert receiver["webSockets"] == 2  # the first, and the one it resumed on
    assert not [e for e in events if e.startswith(("reconnecting:", "closed:"))], events
    assert echoed["ok"] and echoed["value"] == "after the move", echoed
    # Process 0 still holds the receiver; process 1 holds the sender, and only relays.
    assert after == [1, 1]
    wait_until(lambda: cluster.connections() == [0, 0], WAIT, "both clients gone")


def test_stateful_reconnect_moves_twice_and_back_to_owner(
    cluster: Cluster, proxy: SteeringProxy,
) -> None:
    """Two drops: the first resume lands on process 1 (relayed), the second back on process
    0, the owner itself. Every number once, in order, on one connection."""
    group = "numbers-twice"
    cluster.wait_connections([0, 0])
    with cluster_clients(cluster.hub_url(), timeout=60, transport="WebSockets",
                         protocol="json") as clients:
        first_id = clients.open("receiver", cluster.token("rita"),
                                url=f"http://127.0.0.1:{proxy.port}/hubs/playground",
                                statefulReconnect=True, keepAliveMs=1000)
        clients.call("receiver", "JoinGroup", group)
        clients.open("sender", cluster.token("sam"), url=cluster.nodes[1].hub_url())
        placed = cluster.wait_connections([1, 1])
        clients.send_range("sender", "SendToGroup", group, 0, 20)
        clients.wait("receiver", 19, timeout=WAIT)
        for hop, (process, start) in enumerate([(1, 20), (0, 60)]):
            proxy.steer(process)
            proxy.hold()
            assert proxy.drop_all() >= 1, f"hop {hop}: nothing to drop"
            clients.send_range("sender", "SendToGroup", group, start, start + 20)
            proxy.release()
            clients.send_range("sender", "SendToGroup", group, start + 20, start + 40)
            clients.try_wait("receiver", start + 39, timeout=WAIT)
        receiver = clients.log("receiver")
        after = cluster.connections()
        moved_to = list(proxy.connections_to)
        events = [e["event"] for e in clients.scenario.events]

    assert placed == [1, 1]
    assert moved_to == [3, 1], moved_to  # negotiate, WebSocket, last resume; first resume
    numbers = [e["payload"] for e in receiver["events"] if e["target"] == "Receive"]
    assert numbers == list(range(100))
    assert receiver["connectionId"] == first_id
    assert receiver["webSockets"] == 3
    assert not [e for e in events if e.startswith(("reconnecting:", "closed:"))], events
    assert after == [1, 1]
