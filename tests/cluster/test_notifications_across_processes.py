"""Notifications across processes (issue 13): published on one process, received on the other.

Two ``voisnap serve`` processes on one Redis and one data dir (a shared SQLite file), behind
the round-robin proxy (``tests/support/cluster.py``), started with ``--license-expires``
five days from today. Ana (role ``admin``) has a notifications connection ``A0`` on process 0,
Bob (same tenant) ``B1`` on process 1, Gil (another tenant, admin) ``G1`` on process 1 (each
placement proven by ``/stats``). Each REST call below goes to one process by its own port:

- an admin notification for Ana, posted on process 1, reaches ``A0`` on process 0;
- Bob's insight card, added on process 0, reaches ``B1`` on process 1;
- Ana's announcement, posted on process 0, reaches ``B1`` on process 1 and not ``G1``: Gil's
  own announcement, posted after it on process 0, is the sentinel that ``G1`` receives;
- the feed read from either process is the same (one store).

That a day's ``LicenseWarning`` is sent once by several processes is the claim's business,
proven where it can be driven through midnights: tests/notifications/test_license.py (two
apps on one database) and tests/storage/test_store_notifications.py (claims at once).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster, cluster_clients, mint_token

pytestmark = pytest.mark.conformance

EVENTS = [
    "InsightCardAdded",
    "InsightCardDismissed",
    "DocumentIndexed",
    "SystemAnnouncement",
    "LicenseWarning",
]
WAIT = 15.0
DAYS_LEFT = 5


def post(cluster: Cluster, process: int, bearer: str, path: str, body: Any) -> Any:
    response = httpx.post(
        f"{cluster.nodes[process].url}{path}",
        json=body,
        timeout=5.0,
        headers={"Authorization": f"Bearer {bearer}"},
        trust_env=False,
    )
    assert response.status_code == 201, (path, response.status_code, response.text)
    return response.json()


def feed(cluster: Cluster, process: int, bearer: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{cluster.nodes[process].url}/notifications",
        timeout=5.0,
        headers={"Authorization": f"Bearer {bearer}"},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_notifications_published_on_one_process_reach_the_other(
    start_cluster: StartCluster,
) -> None:
    expires = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=DAYS_LEFT)
    cluster = start_cluster(settings={"license_expires": expires.isoformat()})
    tag = uuid.uuid4().hex[:8]
    ana, bob, gil = f"ana-{tag}", f"bob-{tag}", f"gil-{tag}"
    tokens = {
        "ana": mint_token(cluster.secret, ana, "acme", roles=["admin"]),
        "bob": mint_token(cluster.secret, bob, "acme"),
        "gil": mint_token(cluster.secret, gil, "globex", roles=["admin"]),
    }
    with cluster_clients(
        cluster.hub_url("notifications"), timeout=90, transport="WebSockets", protocol="json"
    ) as clients:
        clients.place(cluster, 0, "A0", tokens["ana"], targets=EVENTS)
        clients.place(cluster, 1, "B1", tokens["bob"], targets=EVENTS)
        clients.place(cluster, 1, "G1", tokens["gil"], targets=EVENTS)
        warning = clients.wait(
            "A0", target="LicenseWarning", match={"daysLeft": DAYS_LEFT}, timeout=WAIT
        )["payload"]

        indexed = post(
            cluster,
            1,
            tokens["ana"],
            "/admin/notifications",
            {
                "event": "DocumentIndexed",
                "payload": {"documentId": "d1", "chunks": 3},
                "audience": {"user": ana},
            },
        )
        clients.wait("A0", target="DocumentIndexed", match={"documentId": "d1"}, timeout=WAIT)

        card = post(cluster, 0, tokens["bob"], "/insights", {"title": "T", "body": "B"})
        clients.wait("B1", target="InsightCardAdded", match={"id": card["id"]}, timeout=WAIT)

        announcement = {"title": "Acme only", "body": "Hi", "severity": "info"}
        post(cluster, 0, tokens["ana"], "/admin/announcements", announcement)
        clients.wait("B1", target="SystemAnnouncement", match={"title": "Acme only"}, timeout=WAIT)
        sentinel = {"title": "Globex only", "body": "Hi", "severity": "info"}
        post(cluster, 0, tokens["gil"], "/admin/announcements", sentinel)
        clients.wait(
            "G1", target="SystemAnnouncement", match={"title": "Globex only"}, timeout=WAIT
        )
        received = {name: clients.log(name)["events"] for name in ("A0", "B1", "G1")}

    assert warning == {"expiresAt": expires.isoformat(), "daysLeft": DAYS_LEFT}
    assert [e["target"] for e in received["G1"]] == ["LicenseWarning", "SystemAnnouncement"]
    assert [e["target"] for e in received["B1"]] == ["InsightCardAdded", "SystemAnnouncement"]
    assert [e["target"] for e in received["A0"]][:2] == ["LicenseWarning", "DocumentIndexed"]
    assert feed(cluster, 0, tokens["ana"]) == feed(cluster, 1, tokens["ana"])
    assert indexed in feed(cluster, 0, tokens["ana"])
