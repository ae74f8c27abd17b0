"""Approvals across processes (issue 12): two devices decide the same request at once.

Two ``voisnap serve`` processes on one Redis and ONE data dir (a shared SQLite file), behind
the round-robin proxy (``tests/support/cluster.py``). One user has an approvals-hub
connection on each process (``A0`` on process 0, ``A1`` on process 1, proven by ``/stats``;
``A1``'s token has the role ``admin``) and a chat device ``C`` on process 1. ``C`` says
"forget X"; both approvals connections receive ``ApprovalRequested``; then ``A0`` and ``A1``
send their decisions in the same tick (two command lines written together;
``cluster_clients.mjs`` runs commands concurrently), so that each reaches its own process at
the same moment.

Decisions are exactly-once (docs/hubs/approvals.md): one invocation succeeds, the other fails
with an error naming the request and the outcome it lost to; each connection receives exactly
one ``ApprovalResolved``, with the winner's outcome; the task resumes (on either process) and
completes with the reply the winner's outcome calls for, ``delete_note`` running at most once.
Any duplicate ``ApprovalResolved`` would be published when its decision is made; the task's
``TaskCompleted`` on ``C`` comes well after both, and the logs are read after it.

Time-outs are exactly-once too: both processes look for expired requests (every
``--task-lease-renewal``), and one request that nobody decides is announced ``timeOut`` once.
Requests wait ``APPROVAL_TIMEOUT`` s here (decisions in the race come in milliseconds).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Clients, Cluster, cluster_clients, mint_token

pytestmark = pytest.mark.conformance

APPROVAL_TIMEOUT = 3.0
SETTINGS = {"agent_token_delay": "0.01", "approval_timeout": str(APPROVAL_TIMEOUT)}
CHAT_EVENTS = ["TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ToolCallStarted",
               "ToolCallCompleted", "ReceiveMessage", "TaskCompleted", "TaskFailed",
               "TaskCancelled", "SessionNotification", "SessionUpdated"]
APPROVAL_EVENTS = ["ApprovalRequested", "ApprovalResolved", "InfoRequested", "InfoResolved"]
WAIT = 15.0
NOTE = "buy oat milk"
REPLIES = {"approved": f"Deleted the note “{NOTE}”.",
           "rejected": "I did not delete it: The user rejected this action: not now"}
VERBS = {"Approve": "approved", "Reject": "rejected"}


def message(content: str, session_id: str | None) -> dict[str, Any]:
    return {"sessionId": session_id, "agentId": "sophon", "content": content,
            "channelId": "webchat", "attachments": [], "isStreaming": True}


def decision(verb: str, approval_id: str) -> dict[str, Any]:
    if verb == "Reject":
        return {"approvalId": approval_id, "reason": "not now"}
    return {"approvalId": approval_id}


@pytest.fixture(scope="module")
def cluster(module_cluster: StartCluster) -> Cluster:
    return module_cluster(settings=SETTINGS)


@pytest.fixture(scope="module")
def clients(cluster: Cluster) -> Iterator[tuple[Clients, str]]:
    user = f"dana-{uuid.uuid4().hex[:8]}"
    bearer = cluster.token(user)
    # A1's token has the role admin: A1 is in the user's audience twice (the user, and the
    # tenant's administrators), and must still receive each event once.
    as_admin = mint_token(cluster.secret, user, "acme", roles=["admin"])
    with cluster_clients(cluster.hub_url("chat"), timeout=90, transport="WebSockets",
                         protocol="json") as opened:
        approvals = cluster.hub_url("approvals")
        opened.place(cluster, 0, "A0", bearer, url=approvals, targets=APPROVAL_EVENTS)
        opened.place(cluster, 1, "A1", as_admin, url=approvals, targets=APPROVAL_EVENTS)
        opened.place(cluster, 1, "C", bearer, targets=CHAT_EVENTS)
        yield opened, bearer


def race(clients: Clients, *calls: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Write every invoke command before waiting for any answer."""
    tag = uuid.uuid4().hex[:8]
    for index, (client, method, argument) in enumerate(calls):
        clients.scenario.send_line(json.dumps({
            "op": "invoke", "id": f"race-{tag}-{index}", "client": client, "method": method,
            "args": [argument]}))
    return [answer(clients, f"invoked:race-{tag}-{index}") for index in range(len(calls))]


def answer(clients: Clients, event: str) -> dict[str, Any]:
    """The line ``event``, whether it came already (answers come in any order) or not."""
    for line in clients.scenario.events:
        if line["event"] == event:
            return line
    return clients.scenario.wait_for(event, timeout=WAIT)


def events_of(clients: Clients, name: str, target: str, **match: Any) -> list[dict[str, Any]]:
    return [p for p in clients.received(name, target)
            if all(p.get(key) == value for key, value in match.items())]


@pytest.mark.parametrize(("verb0", "verb1"), [("Approve", "Approve"), ("Reject", "Approve")],
                         ids=["approve-approve", "reject-approve"])
def test_two_devices_on_two_processes_decide_at_once(
    cluster: Cluster, clients: tuple[Clients, str], verb0: str, verb1: str,
) -> None:
    devices, bearer = clients
    session_id = f"sess-{uuid.uuid4().hex[:10]}"
    noted = devices.call("C", "SendMessage", message(f"remember {NOTE}", session_id))
    devices.wait("C", target="TaskCompleted", match={"taskId": noted["taskId"]}, timeout=WAIT)
    task_id = devices.call("C", "SendMessage", message(f"forget {NOTE}", session_id))["taskId"]
    requested = [devices.wait(name, target="ApprovalRequested", match={"taskId": task_id},
                              timeout=WAIT)["payload"] for name in ("A0", "A1")]
    assert requested[0] == requested[1]
    approval_id = requested[0]["id"]

    answers = race(devices, ("A0", verb0, decision(verb0, approval_id)),
                   ("A1", verb1, decision(verb1, approval_id)))
    for name in ("A0", "A1"):
        devices.wait(name, target="ApprovalResolved", match={"id": approval_id}, timeout=WAIT)
    devices.wait("C", target="TaskCompleted", match={"taskId": task_id}, timeout=WAIT)

    winners = [i for i, answer in enumerate(answers) if answer["ok"]]
    assert len(winners) == 1, answers
    winner, loser = winners[0], 1 - winners[0]
    outcome = VERBS[(verb0, verb1)[winner]]
    lost = answers[loser]["error"]
    assert approval_id in lost and outcome in lost, lost
    for name in ("A0", "A1"):
        resolved = events_of(devices, name, "ApprovalResolved", id=approval_id)
        assert [r["outcome"] for r in resolved] == [outcome], (name, resolved)
        assert events_of(devices, name, "ApprovalRequested", id=approval_id) == requested[:1]
    replies = events_of(devices, "C", "ReceiveMessage", sessionId=session_id)
    assert [r["content"] for r in replies][-1] == REPLIES[outcome]
    ran = [e for e in events_of(devices, "C", "ToolCallStarted", taskId=task_id)
           if e["toolName"] == "delete_note"]
    assert len(ran) == (1 if outcome == "approved" else 0), ran
    for node in cluster.nodes:
        headers = {"Authorization": f"Bearer {bearer}"}
        stored = httpx.get(f"{node.url}/approvals/{approval_id}", headers=headers, timeout=5,
                           trust_env=False)
        assert stored.status_code == 200 and stored.json()["status"] == outcome, stored.text
        task = httpx.get(f"{node.url}/tasks/{task_id}", headers=headers, timeout=5,
                         trust_env=False)
        assert task.json()["state"] == "completed", task.text


def test_time_out_is_announced_once_by_two_processes(
    cluster: Cluster, clients: tuple[Clients, str],
) -> None:
    """Nobody decides T1's request: each connection gets one ApprovalResolved timeOut, and
    the agent says so. The proof that no second one comes: T2's request, made after T1's
    time-out, times out APPROVAL_TIMEOUT s later, long after both processes have looked
    again (each every 0.5 s) at T1's."""
    devices, bearer = clients
    session_id = f"sess-{uuid.uuid4().hex[:10]}"
    first = devices.call("C", "SendMessage", message(f"forget {NOTE}", session_id))["taskId"]
    approval_id = devices.wait("A0", target="ApprovalRequested", match={"taskId": first},
                               timeout=WAIT)["payload"]["id"]
    for name in ("A0", "A1"):
        devices.wait(name, target="ApprovalResolved", match={"id": approval_id},
                     timeout=WAIT + APPROVAL_TIMEOUT)
    second = devices.call("C", "SendMessage", message("forget nothing", session_id))["taskId"]
    later = devices.wait("A1", target="ApprovalRequested", match={"taskId": second},
                         timeout=WAIT)["payload"]["id"]
    for name in ("A0", "A1"):
        devices.wait(name, target="ApprovalResolved", match={"id": later},
                     timeout=WAIT + APPROVAL_TIMEOUT)
    devices.wait("C", target="TaskCompleted", match={"taskId": second}, timeout=WAIT)
    for name in ("A0", "A1"):
        resolved = events_of(devices, name, "ApprovalResolved", id=approval_id)
        assert resolved == [{"id": approval_id, "outcome": "timeOut", "outcomeDetail": None}], (
            name, resolved)
    replies = [r["content"] for r in events_of(devices, "C", "ReceiveMessage",
                                               sessionId=session_id)]
    assert replies == ["I did not delete it: Nobody approved this action in time."] * 2
    headers = {"Authorization": f"Bearer {bearer}"}
    task = httpx.get(f"{cluster.nodes[0].url}/tasks/{first}", headers=headers, timeout=5,
                     trust_env=False)
    assert task.json()["state"] == "completed", task.text
