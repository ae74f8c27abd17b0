"""Redis goes away and comes back (issue 10, docs/scale-out.md "When Redis goes away").

Two ``voisnap serve`` processes on the session's real Redis (``--cross-process-timeout 2``),
two WebSocket clients on each (proven by ``/stats``): a0, a0b on process 0; b1, b1b on
process 1. a0 and a0b are in group ``here-0``, b1 and b1b in ``here-1``, a0 and b1 in
``across``. The sequence, with a bounded wait for every change:

1. Redis stops: both ``/readyz`` answer 503 ``{"status": "unavailable", "unavailable":
   {"backplane": "<reason>"}}``;
2. each process still delivers group messages among its own clients;
3. AskConnection from a0 to b1 (on the other process) fails with the documented error
   ("Other processes cannot be reached: ...") within the timeout, instead of hanging;
4. no process exited, both still answer ``/healthz``;
5. Redis starts again (same port, empty): both ``/readyz`` answer 200 again, and cross-process
   group delivery resumes by itself, both ways (re-sent until received, bounded: what was
   published while a process was resubscribing is lost, at-most-once); AskConnection across
   processes works again.

And a connection made before the outage is still reachable through the other process after
it: a stateful-reconnect client's resume that lands there is relayed to the owner.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from tests.cluster.conftest import StartCluster
from tests.cluster.proxy import SteeringProxy
from tests.support.cluster import Clients, Cluster, cluster_clients, get_json, wait_until
from tests.support.services import RedisServer

pytestmark = pytest.mark.conformance

CROSS_PROCESS_TIMEOUT = 2.0
UNREACHABLE = "Other processes cannot be reached"
WAIT = 5.0
RECOVERY = 20.0


def readiness(cluster: Cluster) -> list[tuple[int, Any]]:
    return [cluster.readyz(index) for index in range(len(cluster.nodes))]


def all_unavailable(answers: list[tuple[int, Any]]) -> list[tuple[int, Any]] | None:
    return answers if all(status == 503 for status, _ in answers) else None


def resend_until_received(clients: Clients, sender: str, group: str, receiver: str,
                          timeout: float) -> int:
    """Send numbered messages to ``group`` until ``receiver`` gets one; how many were sent."""
    deadline = time.monotonic() + timeout
    for attempt in itertools.count(1):
        payload = f"{group}-from-{sender}-{attempt}"
        clients.call(sender, "SendToGroup", group, payload)
        if "error" not in clients.try_wait(receiver, payload, timeout=0.5):
            return attempt
        if time.monotonic() > deadline:
            raise AssertionError(f"{receiver} received nothing {sender} sent to {group} "
                                 f"in {timeout:g} s ({attempt} messages)")
    raise AssertionError("unreachable")


def test_redis_outage_local_delivery_goes_on_and_cross_process_resumes(
    start_cluster: StartCluster, redis_server: RedisServer,
) -> None:
    cluster = start_cluster(settings={"cross_process_timeout": str(CROSS_PROCESS_TIMEOUT)})
    with cluster_clients(cluster.hub_url(), timeout=120, transport="WebSockets",
                         protocol="json") as clients:
        for name, process in (("a0", 0), ("a0b", 0), ("b1", 1), ("b1b", 1)):
            clients.place(cluster, process, name, cluster.token(name))
        for name, group in (("a0", "here-0"), ("a0b", "here-0"), ("b1", "here-1"),
                            ("b1b", "here-1"), ("a0", "across"), ("b1", "across")):
            clients.call(name, "JoinGroup", group)
        clients.call("b1b", "SendToGroup", "across", "before")
        clients.wait("a0", "before")
        assert readiness(cluster) == [(200, {"status": "ready"})] * 2

        # 1. Redis stops.
        redis_server.stop()
        down = wait_until(lambda: all_unavailable(readiness(cluster)), 10.0,
                          "both /readyz to answer 503")
        # 2. Each process delivers among its own clients.
        clients.call("a0", "SendToGroup", "here-0", "local-0")
        local_0 = clients.try_wait("a0b", "local-0", timeout=WAIT)
        clients.call("b1", "SendToGroup", "here-1", "local-1")
        local_1 = clients.try_wait("b1b", "local-1", timeout=WAIT)
        # 3. A client result across processes fails, within the timeout.
        asked = clients.invoke("a0", "AskConnection", clients.ids["b1"], "are you there?",
                               timeout=CROSS_PROCESS_TIMEOUT + 10)
        # 4. Nobody died.
        exited_during = cluster.exited()
        alive = [get_json(f"{node.url}/healthz")[0] for node in cluster.nodes]

        # 5. Redis comes back.
        redis_server.start()
        wait_until(lambda: readiness(cluster) == [(200, {"status": "ready"})] * 2,
                   RECOVERY, "both /readyz to answer 200 again")
        resend_until_received(clients, "a0", "across", "b1", RECOVERY)
        resend_until_received(clients, "b1", "across", "a0", RECOVERY)
        asked_again = clients.invoke("a0", "AskConnection", clients.ids["b1"], "back?")
        prompts = clients.log("b1")["prompts"]
    exited_after = cluster.exited()

    for status, document in down:
        assert status == 503
        assert document["status"] == "unavailable", document
        assert set(document["unavailable"]) == {"backplane"}, document
        assert isinstance(document["unavailable"]["backplane"], str), document
        assert document["unavailable"]["backplane"], document
    assert "error" not in local_0, local_0
    assert "error" not in local_1, local_1
    assert not asked["ok"], asked
    assert UNREACHABLE in asked["error"], asked
    assert asked["ms"] <= (CROSS_PROCESS_TIMEOUT + 1.5) * 1000, asked
    assert exited_during == [None, None]
    assert alive == [200, 200]
    assert asked_again["ok"], asked_again
    assert asked_again["value"] == {"client": "b1", "question": "back?"}
    assert prompts[-1] == "back?"
    assert exited_after == [None, None], cluster.logs()


def test_redis_restart_connection_of_before_still_resumes_on_other_process(
    start_cluster: StartCluster, redis_server: RedisServer,
) -> None:
    """A connection made before Redis went away is still one server's after it comes back:
    a stateful-reconnect client (``js/cluster_clients.mjs`` through a ``SteeringProxy``) owned
    by process 0 drops after Redis restarted (empty, as a Redis without persistence comes
    back) and resumes on process 1, which must still find the owner and relay it; every
    number sent after cross-process delivery resumed arrives once, in order."""
    cluster = start_cluster()
    proxy = SteeringProxy([node.port for node in cluster.nodes])
    try:
        with cluster_clients(cluster.hub_url(), timeout=60, transport="WebSockets",
                             protocol="json") as clients:
            first_id = clients.open("receiver", cluster.token("rita"),
                                    url=f"http://127.0.0.1:{proxy.port}/hubs/playground",
                                    statefulReconnect=True, keepAliveMs=1000)
            clients.call("receiver", "JoinGroup", "numbers")
            clients.open("sender", cluster.token("sam"), url=cluster.nodes[1].hub_url())
            placed = cluster.wait_connections([1, 1])
            redis_server.stop()
            redis_server.start()
            wait_until(lambda: readiness(cluster) == [(200, {"status": "ready"})] * 2,
                       RECOVERY, "both /readyz to answer 200 again")
            first = resend_until_received(clients, "sender", "numbers", "receiver", RECOVERY)
            proxy.steer(1)
            proxy.hold()
            assert proxy.drop_all() >= 1
            clients.send_range("sender", "SendToGroup", "numbers", 0, 10)
            proxy.release()
            clients.send_range("sender", "SendToGroup", "numbers", 10, 20)
            arrived = clients.try_wait("receiver", 19, timeout=WAIT)
            receiver = clients.log("receiver")
            events = [e for e in clients.scenario.events
                      if e["event"].startswith(("reconnecting:", "closed:"))]
            after = cluster.connections()
    finally:
        proxy.close()
    assert placed == [1, 1]
    assert not events, events
    assert "error" not in arrived, arrived
    numbers = [e["payload"] for e in receiver["events"] if e["target"] == "Receive"]
    assert numbers[first:] == list(range(20)), numbers
    assert receiver["connectionId"] == first_id
    assert after == [1, 1]
