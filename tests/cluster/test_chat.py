"""The chat hub across processes (issue 10): two devices of one user on two processes.

Two ``voisnap serve`` processes on one Redis and ONE data dir (a shared SQLite file), behind
the round-robin proxy. Device A lives on process 0, device B on process 1 (proven by
``/stats``); both are the same user. A's first ``SendMessage`` creates a session (A joins it);
B joins it (``JoinSession``). Then A sends a message in it (the ``SendMessage`` arrives at
process 0, which runs its task in issue 10; docs/hubs/chat.md "Tasks across processes" lets
any process claim it since issue 11), and B sends one (at process 1). Every event of both
tasks (docs/hubs/chat.md: TaskQueued, TaskStarted, AgentStatus, StreamChunk..., ReceiveMessage,
TaskCompleted) must reach both devices, in the seed's order, and the streamed deltas must add
up to the reply; REST on either process reads the same history from the shared store.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster, cluster_clients

pytestmark = pytest.mark.conformance

SETTINGS = {"agent_token_delay": "0.01"}
CHAT_EVENTS = [
    "TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ToolCallStarted",
    "ToolCallCompleted", "ReceiveMessage", "TaskCompleted", "TaskFailed", "TaskCancelled",
]
LETTERS = {"TaskQueued": "Q", "TaskStarted": "S", "AgentStatus": "A", "StreamChunk": "C",
           "ToolCallStarted": "T", "ToolCallCompleted": "D", "ReceiveMessage": "R",
           "TaskCompleted": "F"}
SEED_ORDER = re.compile(r"QSA[ACTD]*CRF")
WAIT = 15.0


def message(content: str, session_id: str | None) -> dict[str, Any]:
    return {"sessionId": session_id, "agentId": "sophon", "content": content,
            "channelId": "webchat", "attachments": [], "isStreaming": True}


def long_message(words: int = 20) -> str:
    """The built-in agent's introduction quotes the message: a reply of many chunks."""
    return "hello there, " + " ".join(f"word{i}" for i in range(words))


@pytest.fixture(scope="module")
def cluster(module_cluster: StartCluster) -> Cluster:
    return module_cluster(settings=SETTINGS)


@pytest.fixture(scope="module")
def chat(cluster: Cluster) -> Iterator[dict[str, Any]]:
    bearer = cluster.token(f"ana-{uuid.uuid4().hex[:8]}")
    with cluster_clients(cluster.hub_url("chat"), timeout=90, transport="WebSockets",
                         protocol="json") as clients:
        clients.place(cluster, 0, "A", bearer, targets=CHAT_EVENTS)
        clients.place(cluster, 1, "B", bearer, targets=CHAT_EVENTS)
        first = clients.call("A", "SendMessage", message("hello, I am Ana", None))
        session_id = first["sessionId"]
        clients.wait("A", target="TaskCompleted", match={"taskId": first["taskId"]},
                     timeout=WAIT)
        clients.call("B", "JoinSession", session_id)
        sent = {}
        for device in ("A", "B"):
            sent[device] = clients.call(device, "SendMessage",
                                        message(long_message(), session_id))
            for watcher in ("A", "B"):
                clients.try_wait(watcher, target="TaskCompleted",
                                 match={"taskId": sent[device]["taskId"]}, timeout=WAIT)
        events = {device: clients.log(device)["events"] for device in ("A", "B")}
    yield {"token": bearer, "session": session_id, "sent": sent, "events": events}


def of_task(events: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The task's events: those naming it, and the ReceiveMessage between its first and last
    (a reply names its message, not its task; the tasks run one after the other)."""
    indexes = [i for i, e in enumerate(events) if e["payload"].get("taskId") == task_id]
    if not indexes:
        return []
    return [e for e in events[indexes[0]:indexes[-1] + 1]
            if e["payload"].get("taskId") == task_id or e["target"] == "ReceiveMessage"]


def streamed(task_events: list[dict[str, Any]]) -> str:
    return "".join(e["payload"]["delta"] for e in task_events if e["target"] == "StreamChunk")


def reply(task_events: list[dict[str, Any]]) -> str | None:
    replies = [e["payload"] for e in task_events if e["target"] == "ReceiveMessage"]
    assert len(replies) == 1, replies
    return replies[0]["content"]


@pytest.mark.parametrize("sender", ["A", "B"], ids=["sent-on-process-0", "sent-on-process-1"])
@pytest.mark.parametrize("device", ["A", "B"])
def test_chat_task_events_reach_both_devices(chat: dict[str, Any], sender: str,
                                             device: str) -> None:
    task_id = chat["sent"][sender]["taskId"]
    task_events = of_task(chat["events"][device], task_id)
    word = "".join(LETTERS.get(e["target"], "?") for e in task_events)
    assert SEED_ORDER.fullmatch(word), (
        f"{device} saw {[e['target'] for e in task_events]} for {sender}'s task")
    assert streamed(task_events) == reply(task_events)
    assert task_events[-1]["target"] == "TaskCompleted"


@pytest.mark.parametrize("sender", ["A", "B"], ids=["sent-on-process-0", "sent-on-process-1"])
def test_chat_both_devices_see_the_same_task_events(chat: dict[str, Any], sender: str) -> None:
    task_id = chat["sent"][sender]["taskId"]
    on_a = of_task(chat["events"]["A"], task_id)
    on_b = of_task(chat["events"]["B"], task_id)
    assert on_a, f"A saw nothing of {sender}'s task"
    assert on_a == on_b


@pytest.mark.parametrize("process", [0, 1])
def test_chat_rest_reads_the_shared_history_on_each_process(
    chat: dict[str, Any], cluster: Cluster, process: int,
) -> None:
    response = httpx.get(
        f"{cluster.nodes[process].url}/sessions/{chat['session']}/messages",
        params={"limit": 200}, headers={"Authorization": f"Bearer {chat['token']}"},
        timeout=5, trust_env=False)
    assert response.status_code == 200, response.text
    messages = response.json()
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    for sender, answer in zip(("A", "B"), messages[3::2], strict=True):
        assert answer["taskId"] == chat["sent"][sender]["taskId"]
        assert answer["content"] == streamed(of_task(chat["events"]["A"],
                                                     answer["taskId"]))
