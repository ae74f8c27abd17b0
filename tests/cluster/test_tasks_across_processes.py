"""Tasks across processes (issue 11, docs/hubs/chat.md "Tasks across processes").

Two processes share one store and a Redis backplane; device A of a user lives on one, device
B of the same user on the other (official JS client, WebSockets). Which process runs a task is
read from the store (the task's ``lease_owner``) and matched with the processes' presence in
Redis (the process whose presence holds A's or B's connection): no API shows it.

The chat flow (``flow``), on two deployments, each with ``--agent-workers 1``:

- ``postgres``: two ``voisnap serve`` processes on one PostgreSQL (``--database``), behind the
  round-robin proxy; A on process 0, B on process 1 (``/stats``);
- ``sqlite-workers``: one ``voisnap serve --workers 2`` on the SQLite file of its data dir;
  A and B on different workers (``/proc``: the kernel chooses, clients are opened until it
  chose both).

1. A's T1 runs on A's process (it is idle and holds the reservation). A's T2, sent while that
   process's only worker is busy, is taken by B's process once the reservation ends. On both
   devices, each task's streamed deltas equal its ``ReceiveMessage`` and the stored reply
   (REST, on each process), in the seed's order.
2. T3 (from A, run by A's process) is cancelled by B, T4 (from B, run by B's process) by A:
   ``CancelTask`` reaches the process that is not running the task. Both devices receive
   ``TaskCancelled``; REST reads ``cancelled``; no reply is sent or stored.
3. A ``SendMessage`` with a client ``messageId`` from A, retried by B (the other process) with
   the same ``messageId``: the same result, one task in the store, one user message.

Then, on two PostgreSQL processes, each test its own cluster:

- a process SIGKILLed while its task streams: once the lease lapses the task reads failed
  ("interrupted") on the survivor, whose device receives ``TaskFailed`` with that error; the
  task that waited in the killed process's queue (reserved for it) runs on the survivor;
- a process restarted (SIGTERM, started again on its port) while the other runs a task: that
  task completes normally; the restarted process's own task fails as interrupted.

Every wait is bounded; the store is polled (bounded) only for states no event announces.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import QUIET_SETTINGS, StartCluster
from tests.support.cluster import (
    Clients,
    Cluster,
    SupervisedServer,
    cluster_clients,
    established_connections,
    mint_token,
    node_holds,
    store_rows,
    wait_until,
)
from tests.support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.conformance

CHAT_EVENTS = [
    "TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ToolCallStarted",
    "ToolCallCompleted", "ReceiveMessage", "TaskCompleted", "TaskFailed", "TaskCancelled",
]
LETTERS = {"TaskQueued": "Q", "TaskStarted": "S", "AgentStatus": "A", "StreamChunk": "C",
           "ToolCallStarted": "T", "ToolCallCompleted": "D", "ReceiveMessage": "R",
           "TaskCompleted": "F", "TaskFailed": "X", "TaskCancelled": "K"}
SEED_ORDER = re.compile(r"QSA[ACTD]*CRF")
INTERRUPTED = "The task was interrupted: the process running it stopped."
# One worker per process, so that a process can be made busy; words 50 ms apart, so that a
# task of ``long_message()`` streams for about 3 s.
TASK_SETTINGS = {"agent_workers": "1", "agent_token_delay": "0.05"}
WAIT = 20.0
SECRET = "a-secret-for-the-tasks-across-processes-tests-0123"


def message(content: str, session_id: str | None, message_id: str | None = None) -> dict[str, Any]:
    return {"sessionId": session_id, "agentId": "sophon", "content": content,
            "channelId": "webchat", "attachments": [], "isStreaming": True,
            "messageId": message_id}


def long_message(words: int = 20) -> str:
    """The built-in agent's introduction quotes the message: a reply of many chunks."""
    return "hello there, " + " ".join(f"word{i}" for i in range(words))


# -- two processes as the chat flow sees them ------------------------------------------------------


@dataclass
class Deployment:
    """Devices A and B (one user) on two processes that share ``database`` and ``redis``."""

    clients: Clients
    token: str
    user: str
    rest_urls: list[str]  # one per process; a --workers server has one URL for both
    database: str | Path
    redis: RedisServer
    session: str = field(default_factory=lambda: f"sess-{uuid.uuid4().hex[:12]}")

    def runner(self, task_id: str) -> str | None:
        """"A" or "B": the device whose process holds the task's lease (None if none has
        claimed it yet)."""
        rows = store_rows(self.database,
                          "SELECT lease_owner, started_at FROM tasks WHERE task_id = ?", task_id)
        assert rows, f"no task {task_id} in the store"
        owner, started_at = rows[0]
        if started_at is None:
            return None
        held = [device for device in ("A", "B")
                if node_holds(self.redis, owner, self.clients.ids[device])]
        assert len(held) == 1, f"task {task_id}: lease owner {owner} holds {held}"
        return held[0]

    def wait_runner(self, task_id: str) -> str:
        return wait_until(lambda: self.runner(task_id), WAIT, f"a process to claim {task_id}")

    def get(self, path: str, process: int = 0) -> tuple[int, Any]:
        response = httpx.get(f"{self.rest_urls[process]}{path}", params={"limit": 200},
                             headers={"Authorization": f"Bearer {self.token}"},
                             timeout=10, trust_env=False)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def task(self, task_id: str, process: int = 0) -> dict[str, Any]:
        status, document = self.get(f"/tasks/{task_id}", process)
        assert status == 200, (task_id, status, document)
        return document

    def wait_state(self, task_id: str, state: str, process: int = 0,
                   timeout: float = WAIT) -> dict[str, Any]:
        return wait_until(lambda: (task := self.task(task_id, process))["state"] == state
                          and task, timeout, f"task {task_id} to read {state!r} over REST")

    def messages(self, process: int = 0) -> list[dict[str, Any]]:
        status, document = self.get(f"/sessions/{self.session}/messages", process)
        assert status == 200, (status, document)
        return document

    def send(self, device: str, content: str, message_id: str | None = None) -> str:
        """SendMessage from ``device`` in the deployment's session; the task id."""
        return self.clients.call(device, "SendMessage",
                                 message(content, self.session, message_id))["taskId"]

    def wait(self, device: str, target: str, task_id: str, count: int = 1) -> dict[str, Any]:
        return self.clients.wait(device, target=target, match={"taskId": task_id}, count=count,
                                 timeout=WAIT)

    def start_session(self, creator: str, joiner: str) -> None:
        """``creator`` makes the session (and so watches it), ``joiner`` joins it. The
        message is a sum: its reply is four words, whatever the agent's pace."""
        self.wait(creator, "TaskCompleted", self.send(creator, "what is 1 + 1"))
        self.clients.call(joiner, "JoinSession", self.session)


def events_of(events: list[dict[str, Any]], task_id: str,
              reply_id: str | None = None) -> list[dict[str, Any]]:
    """The task's events, and its reply (the ReceiveMessage of message ``reply_id``)."""
    return [e for e in events if e["payload"].get("taskId") == task_id
            or (e["target"] == "ReceiveMessage" and reply_id is not None
                and e["payload"].get("messageId") == reply_id)]


def streamed(task_events: list[dict[str, Any]]) -> str:
    return "".join(e["payload"]["delta"] for e in task_events if e["target"] == "StreamChunk")


def order(task_events: list[dict[str, Any]]) -> str:
    return "".join(LETTERS.get(e["target"], "?") for e in task_events)


def reply_of(deployment: Deployment, task: dict[str, Any], process: int) -> dict[str, Any]:
    replies = [m for m in deployment.messages(process)
               if m["role"] == "assistant" and m["taskId"] == task["taskId"]]
    assert len(replies) == 1, replies
    assert replies[0]["messageId"] == task["resultMessageId"], (replies, task)
    return replies[0]


# -- the two deployments ---------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_pair(root: Path, redis: RedisServer,
                  postgres: PostgresServer) -> Iterator[Deployment]:
    redis.start()
    redis.flush()
    postgres.start()
    cluster = Cluster(root, redis.url, 2, {**QUIET_SETTINGS, **TASK_SETTINGS,
                                           "database_url": postgres.new_database("across")})
    with cluster, cluster_clients(cluster.hub_url("chat"), timeout=120, transport="WebSockets",
                                  protocol="json") as clients:
        user = f"ana-{uuid.uuid4().hex[:8]}"
        bearer = cluster.token(user)
        clients.place(cluster, 0, "A", bearer, targets=CHAT_EVENTS)
        clients.place(cluster, 1, "B", bearer, targets=CHAT_EVENTS)
        yield Deployment(clients, bearer, user, [node.url for node in cluster.nodes],
                         cluster.settings["database_url"], redis)


def per_worker(server: SupervisedServer) -> dict[int, int]:
    return {index: established_connections(pid, server.port)
            for index, pid in server.worker_pids().items()}


def place_on_both_workers(clients: Clients, server: SupervisedServer, token: str) -> None:
    """A on one worker, B on the other: B is opened again until the kernel gives it the
    worker A is not on."""
    server.wait_for_workers(2)
    clients.open("A", token, targets=CHAT_EVENTS)
    spread = wait_until(lambda: sum((now := per_worker(server)).values()) == 1 and now,
                        WAIT, "A's connection on a worker")
    home = max(spread, key=lambda index: spread[index])
    for _ in range(16):
        clients.open("B", token, targets=CHAT_EVENTS)
        spread = wait_until(lambda: sum((now := per_worker(server)).values()) == 2 and now,
                            WAIT, "B's connection on a worker")
        if spread[home] == 1:
            return
        clients.stop("B")
        wait_until(lambda: sum(per_worker(server).values()) == 1, WAIT, "B to go")
    raise AssertionError("B never landed on the worker A is not on")


@contextlib.contextmanager
def sqlite_workers(root: Path, redis: RedisServer) -> Iterator[Deployment]:
    redis.start()
    redis.flush()
    server = SupervisedServer(root / "data", {**QUIET_SETTINGS, **TASK_SETTINGS,
                                              "jwt_secret": SECRET},
                              ["--workers", "2", "--redis-url", redis.url])
    try:
        server.start()
        with cluster_clients(server.hub_url("chat"), timeout=120, transport="WebSockets",
                             protocol="json") as clients:
            user = f"ana-{uuid.uuid4().hex[:8]}"
            bearer = mint_token(SECRET, user, "acme")
            place_on_both_workers(clients, server, bearer)
            yield Deployment(clients, bearer, user, [server.url],
                             server.data_dir / "voisnap.db", redis)
    finally:
        server.stop()


# -- the chat flow ---------------------------------------------------------------------------------


def flow(d: Deployment) -> dict[str, Any]:
    """Run steps 1 to 3 of the module's docstring; what happened, for the tests to judge."""
    c = d.clients
    d.start_session("A", "B")

    # 1. T1 runs on A's process; T2 waits for its only worker, and B's process takes it.
    t1 = d.send("A", long_message())
    d.wait("A", "TaskStarted", t1)
    t2 = d.send("A", long_message(12))
    for task_id in (t1, t2):
        for device in ("A", "B"):
            d.wait(device, "TaskCompleted", task_id)

    # 2. Each task is cancelled from the process that does not run it.
    cancels: dict[str, Any] = {}
    for task_key, sender, canceller in (("t3", "A", "B"), ("t4", "B", "A")):
        task_id = d.send(sender, long_message())
        d.wait(canceller, "StreamChunk", task_id, count=2)
        runner = d.runner(task_id)
        answer = c.invoke(canceller, "CancelTask", {"taskId": task_id})
        cancelled = {device: d.wait(device, "TaskCancelled", task_id) for device in ("A", "B")}
        cancels[task_key] = {"id": task_id, "sender": sender, "canceller": canceller,
                             "runner": runner, "answer": answer, "cancelled": cancelled}

    # 3. A retry with the same messageId lands on the other process.
    key = f"retry-{uuid.uuid4().hex}"
    first = c.call("A", "SendMessage", message("what is 6 * 7", d.session, key))
    retried = c.invoke("B", "SendMessage",
                       message("a retry stores nothing of this", d.session, key))
    for device in ("A", "B"):
        d.wait(device, "TaskCompleted", first["taskId"])

    tasks = {name: d.task(task_id) for name, task_id in
             (("t1", t1), ("t2", t2), ("t3", cancels["t3"]["id"]), ("t4", cancels["t4"]["id"]),
              ("retry", first["taskId"]))}
    return {
        "runners": {name: d.runner(task["taskId"]) for name, task in tasks.items()},
        "tasks": tasks,
        "cancels": cancels,
        "retry": {"key": key, "first": first, "retried": retried,
                  "count": store_rows(d.database,
                                      "SELECT count(*) FROM tasks WHERE client_message_id = ?",
                                      key)[0][0]},
        "events": {device: c.log(device)["events"] for device in ("A", "B")},
        "messages": [d.messages(process) for process in range(len(d.rest_urls))],
        "deployment": d,
    }


@pytest.fixture(scope="module", params=["postgres", "sqlite-workers"])
def chat(request: pytest.FixtureRequest, redis_server: RedisServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_server")
        deployment = postgres_pair(root, redis_server, postgres)
    else:
        deployment = sqlite_workers(root, redis_server)
    with deployment as d:
        yield flow(d)


def test_tasks_run_on_the_accepting_process_or_the_other_one_when_it_is_busy(
    chat: dict[str, Any],
) -> None:
    assert chat["runners"]["t1"] == "A", chat["runners"]
    assert chat["runners"]["t2"] == "B", chat["runners"]


@pytest.mark.parametrize("device", ["A", "B"])
@pytest.mark.parametrize("name", ["t1", "t2", "retry"])
def test_tasks_streamed_deltas_equal_received_and_stored_reply(
    chat: dict[str, Any], name: str, device: str,
) -> None:
    task = chat["tasks"][name]
    assert task["state"] == "completed", task
    task_events = events_of(chat["events"][device], task["taskId"], task["resultMessageId"])
    assert SEED_ORDER.fullmatch(order(task_events)), (
        f"{device} saw {[e['target'] for e in task_events]} for {name}")
    received = [e["payload"] for e in task_events if e["target"] == "ReceiveMessage"]
    assert len(received) == 1, received
    for process in range(len(chat["deployment"].rest_urls)):
        stored = reply_of(chat["deployment"], task, process)
        assert streamed(task_events) == received[0]["content"] == stored["content"]


@pytest.mark.parametrize("name", ["t3", "t4"])
def test_tasks_cancel_from_the_process_not_running_the_task(
    chat: dict[str, Any], name: str,
) -> None:
    cancel = chat["cancels"][name]
    task = chat["tasks"][name]
    user = chat["deployment"].user
    assert cancel["runner"] == cancel["sender"] != cancel["canceller"], cancel
    assert cancel["answer"]["ok"] and cancel["answer"]["value"] is None, cancel["answer"]
    for device in ("A", "B"):
        assert cancel["cancelled"][device]["payload"] == {"taskId": cancel["id"],
                                                          "cancelledBy": user}
        targets = [e["target"] for e in events_of(chat["events"][device], cancel["id"])]
        assert targets[-1] == "TaskCancelled", (device, targets)
        assert targets.count("TaskCancelled") == 1, (device, targets)
        assert "TaskCompleted" not in targets and "TaskFailed" not in targets, (device, targets)
        finals = [e for e in events_of(chat["events"][device], cancel["id"])
                  if e["target"] == "StreamChunk" and e["payload"]["isFinal"]]
        assert finals == [], (device, finals)
    assert task["state"] == "cancelled" and task["cancelledBy"] == user, task
    assert task["resultMessageId"] is None, task
    for messages in chat["messages"]:
        assert not [m for m in messages if m["taskId"] == cancel["id"]], messages


def test_tasks_retry_with_the_same_message_id_on_the_other_process_returns_the_same_task(
    chat: dict[str, Any],
) -> None:
    retry = chat["retry"]
    assert retry["retried"]["ok"], retry["retried"]
    assert retry["retried"]["value"] == retry["first"], retry
    assert retry["count"] == 1, retry
    task_id = retry["first"]["taskId"]
    for device in ("A", "B"):
        queued = [e for e in chat["events"][device]
                  if e["target"] == "TaskQueued" and e["payload"]["taskId"] == task_id]
        assert len(queued) == 1, (device, queued)
    for messages in chat["messages"]:
        users = [m for m in messages if m["role"] == "user"]
        assert [m["content"] for m in users].count("what is 6 * 7") == 1, users
        assert "a retry stores nothing of this" not in [m["content"] for m in users], users


def test_tasks_rest_reads_the_same_history_on_each_process(chat: dict[str, Any]) -> None:
    first, *others = chat["messages"]
    assert all(other == first for other in others)
    # 1 + 1, T1..T4 and the retry: six user messages; replies to 1 + 1, T1, T2, the retry.
    assert [m["role"] for m in first].count("user") == 6, first
    assert [m["role"] for m in first].count("assistant") == 4, first


# -- a process dies or restarts --------------------------------------------------------------------


@contextlib.contextmanager
def pair_with_devices(start_cluster: StartCluster, postgres: PostgresServer,
                      redis: RedisServer, **settings: str) -> Iterator[tuple[Cluster, Deployment]]:
    postgres.start()
    database = postgres.new_database("dies")
    cluster = start_cluster(settings={**TASK_SETTINGS, "database_url": database, **settings})
    user = f"ana-{uuid.uuid4().hex[:8]}"
    bearer = cluster.token(user)
    with cluster_clients(cluster.hub_url("chat"), timeout=90, transport="WebSockets",
                         protocol="json") as clients:
        clients.place(cluster, 0, "A", bearer, targets=CHAT_EVENTS)
        clients.place(cluster, 1, "B", bearer, targets=CHAT_EVENTS)
        yield cluster, Deployment(clients, bearer, user, [node.url for node in cluster.nodes],
                                  database, redis)


def test_tasks_killed_process_task_fails_interrupted_and_its_queued_task_runs_elsewhere(
    start_cluster: StartCluster, postgres_server: PostgresServer, redis_server: RedisServer,
) -> None:
    with pair_with_devices(start_cluster, postgres_server, redis_server,
                           agent_token_delay="0.06") as (cluster, d):
        d.start_session("B", "A")
        t0 = d.send("B", long_message(40))  # keeps process 1's only worker busy, for ~4 s
        d.wait("B", "TaskStarted", t0)
        t1 = d.send("A", long_message())  # runs on process 0: the one to kill
        d.wait("B", "StreamChunk", t1, count=2)
        t2 = d.send("A", long_message(8))  # waits in the queue, reserved for process 0
        runners = {"t0": d.runner(t0), "t1": d.runner(t1)}
        queued = d.task(t2, 1)
        owner_of_t2 = store_rows(d.database, "SELECT lease_owner FROM tasks WHERE task_id = ?",
                                 t2)[0][0]
        reserved_for_a = node_holds(d.redis, owner_of_t2, d.clients.ids["A"])

        cluster.nodes[0].kill()
        killed = time.monotonic()
        failed = d.wait("B", "TaskFailed", t1)
        failed_after = time.monotonic() - killed
        t1_rest = d.wait_state(t1, "failed", process=1)
        d.wait("B", "TaskCompleted", t0)
        d.wait("B", "TaskCompleted", t2)
        runners["t2"] = d.runner(t2)
        tasks = {name: d.task(task_id, 1) for name, task_id in
                 (("t0", t0), ("t1", t1), ("t2", t2))}
        events = d.clients.log("B")["events"]
        survivor_exit = cluster.exited()[1]

    assert runners == {"t0": "B", "t1": "A", "t2": "B"}, runners
    assert queued["state"] == "queued" and reserved_for_a, (queued, owner_of_t2)
    assert failed["payload"] == {"taskId": t1, "error": INTERRUPTED}, failed
    assert failed_after < 2 + 0.5 * 3 + 2, f"TaskFailed {failed_after:.1f} s after the kill"
    assert t1_rest["error"] == INTERRUPTED and t1_rest["resultMessageId"] is None, t1_rest
    t1_targets = [e["target"] for e in events_of(events, t1)]
    assert t1_targets.count("TaskFailed") == 1 and "TaskCompleted" not in t1_targets, t1_targets
    for name in ("t0", "t2"):
        task = tasks[name]
        assert task["state"] == "completed", task
        task_events = events_of(events, task["taskId"], task["resultMessageId"])
        assert SEED_ORDER.fullmatch(order(task_events)), (name, order(task_events))
        assert streamed(task_events) == reply_of(d, task, 1)["content"]
    assert survivor_exit is None


def test_tasks_restarting_one_process_leaves_the_others_running_task_alone(
    start_cluster: StartCluster, postgres_server: PostgresServer, redis_server: RedisServer,
) -> None:
    with pair_with_devices(start_cluster, postgres_server, redis_server,
                           agent_token_delay="0.1") as (cluster, d):
        d.start_session("B", "A")
        there = d.send("B", long_message(40))  # runs on process 1, for about 6 s
        d.wait("B", "TaskStarted", there)
        here = d.send("A", long_message())  # runs on process 0, which is restarted
        d.wait("B", "StreamChunk", here, count=2)
        runners = {"there": d.runner(there), "here": d.runner(here)}

        code = cluster.restart(0, signal.SIGTERM)
        after_restart = d.task(there, 0)["state"]  # asked of the restarted process
        here_rest = d.wait_state(here, "failed", process=0)
        after_expiry = d.task(there, 0)["state"]
        completed = d.wait("B", "TaskCompleted", there)
        task = d.task(there, 0)
        events = d.clients.log("B")["events"]
        exited = cluster.exited()

    assert runners == {"there": "B", "here": "A"}, runners
    assert code == 0, cluster.log(0)[-3000:]
    assert (after_restart, after_expiry) == ("running", "running")
    assert here_rest["error"] == INTERRUPTED, here_rest
    assert completed["payload"]["taskId"] == there
    assert task["state"] == "completed" and task["error"] is None, task
    task_events = events_of(events, there, task["resultMessageId"])
    assert SEED_ORDER.fullmatch(order(task_events)), order(task_events)
    assert streamed(task_events) == reply_of(d, task, 0)["content"] == reply_of(d, task, 1)[
        "content"]
    assert exited == [None, None]
