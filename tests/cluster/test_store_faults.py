"""PostgreSQL goes away and comes back (issue 11, docs/scale-out.md "When the database goes away").

Two ``voisnap serve`` processes on one PostgreSQL (``--database``) and Redis; device A of a user
on process 0, device B on process 1 (official JS client, WebSockets), both watching a session
in which a message was answered. The sequence, every change awaited with a bound:

1. PostgreSQL stops (fast shutdown: its sessions end, as in an outage): both ``/readyz``
   answer 503 ``{"status": "unavailable", "unavailable": {"store": "<reason>"}}``;
2. a ``SendMessage`` on each process fails with an error Completion that says
   ``The database is unavailable``, in bounded time (``FAILS_WITHIN``); the connections stay
   open;
3. REST routes that need the store answer 503 on both processes, in bounded time;
4. no process exited; both answer ``/healthz``;
5. PostgreSQL starts again (same port, same data): both ``/readyz`` answer 200 within a bounded
   wait (``RECOVERY``), a ``SendMessage`` on each process is answered (its task completes on both
   devices, its reply is stored), and nothing was restarted: the same process ids throughout.

How long each answer took is judged last, so that a slow server still has everything else
checked first.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster, cluster_clients, get_json, wait_until
from tests.support.services import PostgresServer

pytestmark = pytest.mark.conformance

CHAT_EVENTS = ["TaskQueued", "TaskStarted", "StreamChunk", "ReceiveMessage", "TaskCompleted",
               "TaskFailed", "TaskCancelled"]
UNAVAILABLE = "The database is unavailable"
DOWN = 15.0  # the readiness probe answers within 2 s; a pooled connection notices at its next use
RECOVERY = 20.0  # seconds from PostgreSQL back to both processes ready
OBSERVE_RECOVERY = 60.0  # how long a slower recovery is awaited, so that the test can say how slow
# Seconds a request that needs the store may take to fail while the database is down: the
# store gives up on getting a connection after 5 s (CONNECT_TIMEOUT in storage/postgres.py).
FAILS_WITHIN = 8.0
OBSERVE = 25.0  # how long a slower failure is awaited, so that the test can say how slow
WAIT = 15.0
# docs/scale-out.md "Health": a dependency that does not answer within 2 s is unavailable; the
# checks (backplane, store) run one after the other, the backplane's quickly here.
READYZ_WITHIN = 3.0
READYZ_TIMEOUT = 20.0  # the HTTP client's: a slower answer is measured, not an exception


def message(content: str, session_id: str) -> dict[str, Any]:
    return {"sessionId": session_id, "agentId": "sophon", "content": content,
            "isStreaming": True}


def readiness(cluster: Cluster, took: list[float] | None = None) -> list[tuple[int, Any]]:
    """Each process's ``/readyz``; how long each took is appended to ``took``."""
    answers = []
    for node in cluster.nodes:
        began = time.monotonic()
        answers.append(get_json(f"{node.url}/readyz", timeout=READYZ_TIMEOUT))
        if took is not None:
            took.append(time.monotonic() - began)
    return answers


def all_unavailable(answers: list[tuple[int, Any]]) -> list[tuple[int, Any]] | None:
    return answers if all(status == 503 for status, _ in answers) else None


def rest(url: str, token: str, path: str) -> tuple[int, str, float]:
    """(status, body, seconds it took)."""
    began = time.monotonic()
    response = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=OBSERVE, trust_env=False)
    return response.status_code, response.text, time.monotonic() - began


def test_store_postgres_restart_fails_requests_clearly_then_recovers(
    start_cluster: StartCluster, postgres_server: PostgresServer,
) -> None:
    postgres_server.start()
    cluster = start_cluster(settings={"database_url": postgres_server.new_database("faults"),
                                      "agent_token_delay": "0.01"})
    pids = [node.process.pid for node in cluster.nodes]
    user = f"ana-{uuid.uuid4().hex[:8]}"
    bearer = cluster.token(user)
    session = f"sess-{uuid.uuid4().hex[:12]}"
    urls = [node.url for node in cluster.nodes]
    with cluster_clients(cluster.hub_url("chat"), timeout=150, transport="WebSockets",
                         protocol="json") as clients:
        clients.place(cluster, 0, "A", bearer, targets=CHAT_EVENTS)
        clients.place(cluster, 1, "B", bearer, targets=CHAT_EVENTS)
        first = clients.call("A", "SendMessage", message("hello, I am Ana", session))
        clients.wait("A", target="TaskCompleted", match={"taskId": first["taskId"]},
                     timeout=WAIT)
        clients.call("B", "JoinSession", session)
        ready_before = readiness(cluster)

        try:
            # 1. PostgreSQL stops.
            postgres_server.stop()
            took: list[float] = []
            down = wait_until(lambda: all_unavailable(readiness(cluster, took)), DOWN,
                              "both /readyz to answer 503")
            # 2. A SendMessage on each process fails with a clear error, in bounded time.
            refused = {device: clients.invoke(device, "SendMessage",
                                              message(f"while it is down, from {device}",
                                                      session),
                                              timeout=OBSERVE)
                       for device in ("A", "B")}
            # 3. REST needs the store: 503.
            with ThreadPoolExecutor() as pool:
                rest_down = list(pool.map(
                    lambda call: rest(call[0], bearer, call[1]),
                    [(url, path) for url in urls
                     for path in (f"/sessions/{session}/messages", f"/tasks/{first['taskId']}")]))
            # 4. Nobody died; the connections are open.
            during = clients.summary()
            exited_during = cluster.exited()
            alive = [get_json(f"{url}/healthz")[0] for url in urls]
        finally:
            postgres_server.start()

        # 5. PostgreSQL is back.
        back = time.monotonic()
        wait_until(lambda: readiness(cluster) == [(200, {"status": "ready"})] * 2,
                   OBSERVE_RECOVERY, "both /readyz to answer 200 again")
        recovered_in = time.monotonic() - back
        answered = {}
        for device in ("A", "B"):
            answer = clients.invoke(device, "SendMessage",
                                    message(f"and now, from {device}", session))
            if answer["ok"]:
                for watcher in ("A", "B"):
                    clients.wait(watcher, target="TaskCompleted",
                                 match={"taskId": answer["value"]["taskId"]}, timeout=WAIT)
            answered[device] = answer
        history = [rest(url, bearer, f"/sessions/{session}/messages") for url in urls]
        after = clients.summary()
    exited_after = cluster.exited()
    pids_after = [node.process.pid for node in cluster.nodes]

    assert ready_before == [(200, {"status": "ready"})] * 2
    for status, document in down:
        assert status == 503
        assert document["status"] == "unavailable", document
        assert set(document["unavailable"]) == {"store"}, document
        assert isinstance(document["unavailable"]["store"], str), document
        assert document["unavailable"]["store"], document
    for device, answer in refused.items():
        assert not answer["ok"], (device, answer)
        assert UNAVAILABLE in answer["error"], (device, answer)
    for status, body, _ in rest_down:
        assert status == 503, (status, body)
        assert UNAVAILABLE in body, body
    for name in ("A", "B"):
        assert during[name]["state"] == "Connected" and during[name]["closed"] == 0, during
        assert after[name]["state"] == "Connected" and after[name]["closed"] == 0, after
    assert exited_during == [None, None] and exited_after == [None, None]
    assert alive == [200, 200]
    assert pids_after == pids
    for device, answer in answered.items():
        assert answer["ok"], (device, answer, cluster.logs())
    for status, body, _ in history:
        assert status == 200, body
        contents = [m["content"] for m in json.loads(body)]
        assert "and now, from A" in contents and "and now, from B" in contents, contents
        assert not [c for c in contents if c.startswith("while it is down")], contents
    # Last, so that everything above is judged first: how long the answers took while the
    # database was down.
    slow = [f"/readyz in {t:.1f} s" for t in took if t > READYZ_WITHIN]
    slow += [f"SendMessage from {device} failed after {answer['ms'] / 1000:.1f} s"
             for device, answer in refused.items() if answer["ms"] > FAILS_WITHIN * 1000]
    slow += [f"REST answered {status} after {t:.1f} s" for status, _, t in rest_down
             if t > FAILS_WITHIN]
    if recovered_in > RECOVERY:
        slow.append(f"both ready again {recovered_in:.1f} s after PostgreSQL was back")
    assert not slow, (f"slower than {READYZ_WITHIN:g} s (/readyz), {FAILS_WITHIN:g} s "
                      f"(requests) while the database was down, or {RECOVERY:g} s to be "
                      f"ready after: {slow}")
