"""Documents across processes (issue 14): uploaded on one, indexed once, found from the other.

Two ``voisnap serve`` processes on one Redis and one store (a shared SQLite file in their data
dir, or one PostgreSQL database), behind the round-robin proxy (``tests/support/cluster.py``).
Ana has a notifications connection ``A0`` on process 0 and a chat connection ``C1`` on
process 1 (each placement proven by ``/stats``). Both processes run an indexer that polls for
uploads every second; the one where a document is uploaded is woken at once, so the two race
for every document:

- six documents, uploaded alternately on process 1 and process 0: ``A0`` receives a
  ``DocumentUploaded`` and a ``DocumentIndexed`` for each, and the feed (read from either
  process) holds exactly one ``DocumentIndexed`` per document: each was indexed once;
- ``C1`` asks ``sophon`` (its task may run on either process) to search for a word of a
  document uploaded on process 0, and the reply names that document.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster, cluster_clients, mint_token

pytestmark = pytest.mark.conformance

EVENTS = ["DocumentUploaded", "DocumentIndexed"]
WAIT = 15.0
COUNT = 6


def call(
    cluster: Cluster, process: int, bearer: str, method: str, path: str, **options: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}", **options.pop("headers", {})}
    url = f"{cluster.nodes[process].url}{path}"
    return httpx.request(method, url, headers=headers, timeout=5.0, trust_env=False, **options)


def upload(cluster: Cluster, process: int, bearer: str, name: str, text: str) -> str:
    response = call(
        cluster,
        process,
        bearer,
        "POST",
        "/documents",
        content=text.encode(),
        params={"name": name},
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 201, response.text
    return response.json()["documentId"]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_documents_indexed_once_and_found_across_processes(
    start_cluster: StartCluster, request: pytest.FixtureRequest, store: str
) -> None:
    settings = {}
    if store == "postgres":  # the same, with FOR UPDATE SKIP LOCKED and tsvector
        settings["database_url"] = request.getfixturevalue("postgres_url")
    cluster = start_cluster(settings=settings)
    tag = uuid.uuid4().hex[:8]
    ana = f"ana-{tag}"
    bearer = mint_token(cluster.secret, ana, "acme")
    words = [f"tapir{n}x{tag}" for n in range(COUNT)]
    with cluster_clients(
        cluster.hub_url("notifications"), timeout=120, transport="WebSockets", protocol="json"
    ) as clients:
        clients.place(cluster, 0, "A0", bearer, targets=EVENTS)
        clients.place(
            cluster, 1, "C1", bearer, url=cluster.hub_url("chat"), targets=["SessionNotification"]
        )
        ids = [
            upload(
                cluster,
                1 - n % 2,
                bearer,
                f"notes {n}.txt",
                f"Day {n}: a {words[n]} crossed the road.",
            )
            for n in range(COUNT)
        ]
        for document_id in ids:
            clients.wait(
                "A0", target="DocumentIndexed", match={"documentId": document_id}, timeout=WAIT
            )
        sent = clients.call(
            "C1",
            "SendMessage",
            {
                "sessionId": None,
                "agentId": "sophon",
                "channelId": "webchat",
                "attachments": [],
                "isStreaming": True,
                "content": f"search my documents for {words[COUNT - 1]}",
            },
        )
        clients.wait(
            "C1",
            target="SessionNotification",
            match={"refId": sent["taskId"], "kind": "taskCompleted"},
            timeout=WAIT,
        )
        received = clients.log("A0")["events"]

    feeds = [
        call(cluster, process, bearer, "GET", "/notifications", params={"limit": "200"}).json()
        for process in (0, 1)
    ]
    assert feeds[0] == feeds[1]
    indexed = Counter(
        n["payload"]["documentId"] for n in feeds[0] if n["event"] == "DocumentIndexed"
    )
    assert indexed == Counter({document_id: 1 for document_id in ids}), feeds[0]
    live = Counter((e["target"], e["payload"]["documentId"]) for e in received)
    assert live == Counter({(event, document_id): 1 for document_id in ids for event in EVENTS}), (
        received
    )
    for process in (0, 1):
        states = {
            d["documentId"]: (d["state"], d["chunks"])
            for d in call(cluster, process, bearer, "GET", "/documents").json()
        }
        assert states == {document_id: ("indexed", 1) for document_id in ids}

    messages = call(cluster, 0, bearer, "GET", f"/sessions/{sent['sessionId']}/messages").json()
    reply = [m["content"] for m in messages if m["taskId"] == sent["taskId"]]
    assert len(reply) == 1 and f"({ids[COUNT - 1]}), part 1:" in reply[0], messages
