"""Routing across processes (issue 10, "How it is proven": the matrix).

Two ``voisnap serve`` processes on one Redis behind a round-robin proxy (every new TCP
connection goes to the next process; no sticky sessions), driven by the official
``@microsoft/signalr`` client (``js/cluster_clients.mjs``), whose every HTTP request is a new
TCP connection, for each transport and protocol (Server-Sent Events with JSON only).

For each combination, the ``routes`` fixture places five clients, each proven by the
processes' ``/stats`` to live where it should (P0 = process 0, P1 = process 1):

    a   alice@acme   P0      b2  bob@acme     P0      d   dave@globex  P0
    b   bob@acme     P1      c   bob@globex   P1  (the same user id, another tenant)

and runs, in order, waiting for each delivery before the next step:

1. a and c join a group of the same name, each in its own tenant;
2. b (P1) sends to the group: a (P0) receives it; then a sends to it itself;
3. d (P0) sends to globex's group: c (P1) receives it;
4. a sends to user bob: b (P1) and b2 (P0) receive it, c (bob of globex) must not;
5. b broadcasts to acme, c broadcasts to globex;
6. AskConnection: a (P0) asks b (P1) and b asks a: each target's Prompt handler answers;
   asking an unknown id and c's id (another tenant, on P1) fails with "does not exist";
7. fences: d broadcasts to globex (from P0, behind every acme message a published), b to
   acme (from P1, behind c's broadcast): once they arrive, a message wrongly routed to
   another tenant would have arrived too.

The tests below read what each client received. Waits that time out are recorded, not
raised, so that every test reports on its own part.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Clients, Cluster, cluster_clients, wait_until

pytestmark = pytest.mark.conformance

MATRIX = [
    ("WebSockets", "json"),
    ("WebSockets", "messagepack"),
    ("ServerSentEvents", "json"),
    ("LongPolling", "json"),
    ("LongPolling", "messagepack"),
]
WAIT = 5.0
NO_SUCH = "Connection '{}' does not exist."
GONE_AT_ONCE = 1.0  # seconds; well under the 2 s disconnect timeout of FAST_SETTINGS


@pytest.fixture(scope="module")
def cluster(module_cluster: StartCluster) -> Cluster:
    return module_cluster()


def place_all(clients: Clients, cluster: Cluster, tag: str) -> dict[str, str]:
    people = {
        "a": (0, f"alice-{tag}", "acme"),
        "b": (1, f"bob-{tag}", "acme"),
        "b2": (0, f"bob-{tag}", "acme"),
        "c": (1, f"bob-{tag}", "globex"),
        "d": (0, f"dave-{tag}", "globex"),
    }
    return {name: clients.place(cluster, process, name, cluster.token(user, tenant))
            for name, (process, user, tenant) in people.items()}


def run_routes(clients: Clients, ids: dict[str, str], tag: str) -> dict[str, Any]:
    """Steps 1-7 of the module docstring; what each wait and invocation answered."""
    seen: dict[str, Any] = {}
    room = f"room-{tag}"

    def send(name: str, method: str, *args: Any) -> None:
        seen[f"{name}.{method}{args}"] = clients.invoke(name, method, *args)

    def expect(key: str, name: str, payload: Any) -> None:
        seen[key] = clients.try_wait(name, payload, timeout=WAIT)

    send("a", "JoinGroup", room)
    send("c", "JoinGroup", room)
    send("b", "SendToGroup", room, "acme-room-from-P1")
    expect("group P1->P0", "a", "acme-room-from-P1")
    send("a", "SendToGroup", room, "acme-room-from-P0")
    expect("group P0->P0", "a", "acme-room-from-P0")
    send("d", "SendToGroup", room, "globex-room-from-P0")
    expect("globex group P0->P1", "c", "globex-room-from-P0")
    send("a", "SendToUser", f"bob-{tag}", "to-bob")
    expect("user P0->P1", "b", "to-bob")
    expect("user P0->P0", "b2", "to-bob")
    send("b", "Broadcast", "acme-all")
    for name in ("a", "b", "b2"):
        expect(f"broadcast to {name}", name, "acme-all")
    send("c", "Broadcast", "globex-all")
    for name in ("c", "d"):
        expect(f"broadcast to {name}", name, "globex-all")
    seen["ask P0->P1"] = clients.invoke("a", "AskConnection", ids["b"], "from a to b")
    seen["ask P1->P0"] = clients.invoke("b", "AskConnection", ids["a"], "from b to a")
    seen["ask unknown"] = clients.invoke("a", "AskConnection", f"no-such-{tag}", "anyone?")
    seen["ask other tenant"] = clients.invoke("a", "AskConnection", ids["c"], "globex?")
    send("d", "Broadcast", "globex-fence")
    send("b", "Broadcast", "acme-fence")
    for name in ("a", "b", "b2"):
        expect(f"fence {name}", name, "acme-fence")
    for name in ("c", "d"):
        expect(f"fence {name}", name, "globex-fence")
    seen["logs"] = {name: clients.log(name) for name in ids}
    return seen


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{t}-{p}" for t, p in MATRIX])
def routes(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[dict[str, Any]]:
    transport, protocol = request.param
    tag = f"{transport}-{protocol}"
    assert cluster.proxy is not None
    proxied_before = sum(cluster.proxy.connections_per_backend)
    with cluster_clients(cluster.hub_url(), timeout=90, transport=transport,
                         protocol=protocol) as clients:
        ids = place_all(clients, cluster, tag)
        seen = run_routes(clients, ids, tag)
        seen["ids"] = ids
        seen["tag"] = tag
        seen["transport"] = transport
        seen["transports"] = dict(clients.transports)
    # Counted once the clients are gone: every request they had made by the logs above has
    # reached the proxy by then.
    seen["tcp connections"] = sum(cluster.proxy.connections_per_backend) - proxied_before
    began = time.monotonic()
    wait_until(lambda: cluster.connections() == [0, 0], 10.0, "every connection to end")
    seen["gone after"] = time.monotonic() - began
    yield seen


def received(routes: dict[str, Any], name: str) -> list[Any]:
    return [e["payload"] for e in routes["logs"][name]["events"] if e["target"] == "Receive"]


def arrived(routes: dict[str, Any], key: str) -> None:
    answer = routes[key]
    assert "error" not in answer, f"{key}: {answer['error']}; the client saw {answer['seen']}"


def invocations_succeeded(routes: dict[str, Any], method: str) -> None:
    for key, answer in routes.items():
        if key.partition(".")[2].startswith(method + "("):
            assert answer["ok"], f"{key} failed: {answer['error']}"


# -- delivery --------------------------------------------------------------------------------


def test_routing_group_send_reaches_member_on_other_process(routes: dict[str, Any]) -> None:
    invocations_succeeded(routes, "JoinGroup")
    invocations_succeeded(routes, "SendToGroup")
    arrived(routes, "group P1->P0")
    arrived(routes, "group P0->P0")
    arrived(routes, "globex group P0->P1")


def test_routing_send_to_user_reaches_every_connection_on_every_process(
    routes: dict[str, Any],
) -> None:
    invocations_succeeded(routes, "SendToUser")
    arrived(routes, "user P0->P1")
    arrived(routes, "user P0->P0")


def test_routing_broadcast_reaches_tenant_on_every_process(routes: dict[str, Any]) -> None:
    invocations_succeeded(routes, "Broadcast")
    for name in ("a", "b", "b2", "c", "d"):
        arrived(routes, f"broadcast to {name}")


def test_routing_each_client_receives_exactly_its_own_tenants_messages(
    routes: dict[str, Any],
) -> None:
    """Nothing crosses tenants, on one process or across two: c is bob of globex in a group
    named like acme's, on the process acme's sender is on; d is globex on the other."""
    for name in ("a", "b", "b2", "c", "d"):
        arrived(routes, f"fence {name}")
    assert received(routes, "a") == [
        "acme-room-from-P1", "acme-room-from-P0", "acme-all", "acme-fence"]
    assert received(routes, "b") == ["to-bob", "acme-all", "acme-fence"]
    assert received(routes, "b2") == ["to-bob", "acme-all", "acme-fence"]
    assert received(routes, "c") == ["globex-room-from-P0", "globex-all", "globex-fence"]
    assert received(routes, "d") == ["globex-all", "globex-fence"]


def test_routing_stopped_clients_end_on_their_process_at_once(routes: dict[str, Any]) -> None:
    """A client's stop ends its connection on the process that owns it (for long polling, the
    DELETE, relayed when it lands on the other process), not the disconnect timeout later."""
    assert routes["gone after"] < GONE_AT_ONCE, routes["gone after"]


def test_routing_clients_use_the_transport_under_test(routes: dict[str, Any]) -> None:
    expected = {"WebSockets": "WebSocketTransport", "ServerSentEvents": "ServerSentEventsTransport",
                "LongPolling": "LongPollingTransport"}[routes["transport"]]
    assert set(routes["transports"].values()) == {expected}, routes["transports"]


def test_routing_every_request_is_a_new_tcp_connection(routes: dict[str, Any]) -> None:
    """The clients' HTTP requests (negotiate, polls, POSTs) and WebSockets each took a turn
    of the round robin: none was sent down a kept-alive connection to the same process."""
    logs = routes["logs"].values()
    made = sum(len(log["requests"]) + log["webSockets"] for log in logs)
    assert made >= 2 * len(logs)  # at least a negotiate and a transport request each
    assert routes["tcp connections"] >= made, (routes["tcp connections"], made)


# -- client results across processes ---------------------------------------------------------


def test_routing_ask_connection_on_other_process_returns_its_answer(
    routes: dict[str, Any],
) -> None:
    there, back = routes["ask P0->P1"], routes["ask P1->P0"]
    assert there["ok"], there
    assert there["value"] == {"client": "b", "question": "from a to b"}
    assert back["ok"], back
    assert back["value"] == {"client": "a", "question": "from b to a"}
    assert routes["logs"]["b"]["prompts"] == ["from a to b"]
    assert routes["logs"]["a"]["prompts"] == ["from b to a"]


def test_routing_ask_connection_unknown_or_other_tenant_does_not_exist(
    routes: dict[str, Any],
) -> None:
    unknown, foreign = routes["ask unknown"], routes["ask other tenant"]
    assert not unknown["ok"], unknown
    assert NO_SUCH.format(f"no-such-{routes['tag']}") in unknown["error"], unknown
    assert not foreign["ok"], foreign
    assert NO_SUCH.format(routes["ids"]["c"]) in foreign["error"], foreign
    assert routes["logs"]["c"]["prompts"] == []
