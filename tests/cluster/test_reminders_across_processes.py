"""Reminders across processes (issue 14): each reminder is actioned exactly once.

Two ``voisnap serve`` processes on one Redis and one store (the shared SQLite file of their data
dir, or one PostgreSQL database: ``--database``), each with its own heartbeat every 0.2 s
(``--heartbeat-interval``): both find the same reminders due at about the same moment, and only
the claim in the store (``Store.action_reminder``) decides which of them posts each one. Ana
has three chat devices (official JS client, ``approvals_devices.mjs``), each connected to one
process by its own port:

- ``J0`` on process 0 sets five reminders due in one second, in its session;
- ``L1`` on process 1 joined that session: it receives the reminders' messages across processes;
- ``N1`` on process 1 joined another session: it receives only the notifications.

A sixth reminder, set to come due after the first five, is the sentinel: once every device has
it, each process's heartbeat has run several times past the five. Then, behind a fence, each
device has each of the five exactly once; the session holds each message once (REST); the
store says each was actioned once, by one of the two processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.conftest import StartCluster
from tests.conformance.test_approvals import CLIENT, Devices, join, payloads, reply_of, rest_ok
from tests.support.cluster import Cluster, mint_token, store_rows
from tests.support.node import NodeScenario

pytestmark = pytest.mark.conformance

REMINDERS = [f"stretch {n}" for n in range(5)]
SENTINEL = "drink water"
WAIT = 15.0


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, start_cluster: StartCluster) -> Cluster:
    settings = {"heartbeat_interval": "0.2", "agent_token_delay": "0.01"}
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_server")
        postgres.start()
        settings["database_url"] = postgres.new_database("reminders")
    return start_cluster(settings=settings)


@pytest.fixture
def hubs(cluster: Cluster) -> Iterator[Devices]:
    urls = {f"chat{i}": node.hub_url("chat") for i, node in enumerate(cluster.nodes)}
    with NodeScenario("approvals_devices.mjs", {"urls": urls, **CLIENT}, 60.0) as scenario:
        scenario.wait_for("ready")
        devices = Devices(scenario)
        yield devices
        devices.end()


def ask(
    hubs: Devices, cluster: Cluster, bearer: str, device: str, content: str, session_id: str | None
) -> tuple[str, str]:
    sent = hubs.send(device, content, session_id)
    hubs.wait_done(device, sent["taskId"])
    return sent["sessionId"], reply_of(cluster.nodes[0], bearer, sent["sessionId"], sent["taskId"])


def test_reminders_are_actioned_once_with_two_processes(cluster: Cluster, hubs: Devices) -> None:
    ana = mint_token(cluster.secret, "ana-cluster", "acme")
    hubs.open("J0", "chat0", ana)
    hubs.open("L1", "chat1", ana)
    hubs.open("N1", "chat1", ana)
    own, _ = ask(hubs, cluster, ana, "N1", "what is 1 + 1", None)
    join(hubs, "N1", own)
    session_id, _ = ask(hubs, cluster, ana, "J0", "hello", None)
    join(hubs, "J0", session_id)
    join(hubs, "L1", session_id)
    for text in REMINDERS:
        _, reply = ask(hubs, cluster, ana, "J0", f"remind me in 1 second to {text}", session_id)
        assert reply.startswith("Reminder set for "), reply
    _, reply = ask(hubs, cluster, ana, "J0", f"remind me in 3 seconds to {SENTINEL}", session_id)
    for device in ("J0", "L1", "N1"):
        hubs.wait(
            device,
            "SessionNotification",
            timeout=WAIT,
            kind="heartbeatActioned",
            excerpt=f"Reminder: {SENTINEL}",
        )
    hubs.fence("J0", "L1", "N1")
    events = {device: hubs.events(device) for device in ("J0", "L1", "N1")}

    expected = sorted(f"Reminder: {text}" for text in [*REMINDERS, SENTINEL])
    for device in ("J0", "L1", "N1"):
        notified = payloads(events[device], "SessionNotification", kind="heartbeatActioned")
        assert sorted(n["excerpt"] for n in notified) == expected, device
        assert len({n["refId"] for n in notified}) == len(expected), device
    for device in ("J0", "L1"):
        messages = [
            p["content"]
            for p in payloads(events[device], "ReceiveMessage")
            if p["content"].startswith("Reminder: ")
        ]
        assert sorted(messages) == expected, device
    assert not [p for p in payloads(events["N1"], "ReceiveMessage") if p["sessionId"] == session_id]

    for node in cluster.nodes:  # one store: both processes read the same, once each
        stored = [
            m["content"]
            for m in rest_ok(node, ana, f"/sessions/{session_id}/messages", limit=200)
            if m["role"] == "assistant" and m["content"].startswith("Reminder: ")
        ]
        assert sorted(stored) == expected
    database = cluster.settings.get("database_url") or cluster.data_dir / "voisnap.db"
    rows = store_rows(database, "SELECT status, actioned_by, message_id FROM reminders")
    assert len(rows) == len(expected)
    assert {row[0] for row in rows} == {"actioned"}
    assert all(row[1] for row in rows) and len({row[1] for row in rows}) <= 2  # node ids
    assert len({row[2] for row in rows}) == len(expected)
