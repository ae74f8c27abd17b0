"""Schedules across processes (issue 14): a slot fires once, whichever processes look.

Two ``voisnap serve`` processes on one Redis, sharing one store (the SQLite file of their
data dir, or one PostgreSQL database), behind the round-robin proxy; both run a scheduler.
Ana's notifications connections live one on each process (``/stats`` proves it). A schedule
due every two seconds (``*/2 * * * * *``) fires for several slots; then, per slot, the store
holds exactly one workflow run, and each connection received exactly one ``CronFired`` per
run, each ``at`` a different slot: neither process fired a slot the other fired.
"""

from __future__ import annotations

import collections
import uuid
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster, cluster_clients, mint_token, store_rows, wait_until
from tests.support.services import PostgresServer

pytestmark = pytest.mark.conformance

EVENTS = [
    "CronFired",
    "CronFailed",
    "WorkflowRunStarted",
    "WorkflowRunCompleted",
    "WorkflowRunFailed",
]
SLOTS = 5
WAIT = 30.0


def call(
    cluster: Cluster, process: int, bearer: str, method: str, path: str, body: Any = None
) -> Any:
    response = httpx.request(
        method,
        f"{cluster.nodes[process].url}{path}",
        json=body,
        timeout=5.0,
        headers={"Authorization": f"Bearer {bearer}"},
        trust_env=False,
    )
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    return response.json()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_schedules_two_processes_fire_each_slot_once(
    start_cluster: StartCluster, request: pytest.FixtureRequest, database: str
) -> None:
    settings = {}
    if database == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        postgres.start()
        settings["database_url"] = postgres.new_database("schedules")
    cluster = start_cluster(settings=settings)
    store = settings.get("database_url") or cluster.data_dir / "voisnap.db"
    ana = f"ana-{uuid.uuid4().hex[:8]}"
    bearer = mint_token(cluster.secret, ana, "acme")
    with cluster_clients(
        cluster.hub_url("notifications"), timeout=120, transport="WebSockets", protocol="json"
    ) as clients:
        clients.place(cluster, 0, "N0", bearer, targets=EVENTS)
        clients.place(cluster, 1, "N1", bearer, targets=EVENTS)
        made = call(
            cluster,
            0,
            bearer,
            "POST",
            "/schedules",
            {"cron": "*/2 * * * * *", "agentId": "sophon", "prompt": "what is 2 + 2"},
        )
        schedule_id = made["scheduleId"]
        for name in ("N0", "N1"):
            clients.wait(name, target="WorkflowRunCompleted", match={}, count=SLOTS, timeout=WAIT)
        call(cluster, 1, bearer, "PATCH", f"/schedules/{schedule_id}", {"paused": True})
        rows = store_rows(
            store, "SELECT slot, state FROM workflow_runs WHERE schedule_id = ?", schedule_id
        )
        # A run claimed just before the pause still ends; wait for its events too.
        for name in ("N0", "N1"):
            clients.wait(name, target="CronFired", match={}, count=len(rows), timeout=WAIT)
        fired = {name: clients.received(name, "CronFired") for name in ("N0", "N1")}
    per_slot = collections.Counter(str(slot) for slot, _ in rows)
    assert len(rows) >= SLOTS and set(per_slot.values()) == {1}, per_slot
    for name, payloads in fired.items():
        ats = [payload["at"] for payload in payloads]
        assert len(ats) == len(rows) == len(set(ats)), (name, ats, rows)
        assert {payload["scheduleId"] for payload in payloads} == {schedule_id}
    assert fired["N0"] == fired["N1"]
    wait_until(
        lambda: all(
            state == "completed"
            for (state,) in store_rows(
                store, "SELECT state FROM workflow_runs WHERE schedule_id = ?", schedule_id
            )
        ),
        WAIT,
        "every run to complete",
    )
