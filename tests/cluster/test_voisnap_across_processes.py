"""The Voisnap hubs across processes (issue 17): two ``voisnap serve`` processes on one
Redis and one store (the shared SQLite file, or one PostgreSQL database).

Process 0 runs no tasks (``--agent-workers 0``), so every reply to a client of process 0
is produced by process 1: ChatHub's chunks and VoiceHub's speech cross the backplane (the
session group, the session's speech channel). A conversation started on one process is
resumed on the other, and the per-tenant session limit counts both processes' sessions.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster
from tests.support.node import run_scenario
from tests.voisnap.test_voice_hub_js import converse, heard, speech  # noqa: F401  (a fixture)
from tests.voisnap.test_webrtc_browser import (  # noqa: F401  (fixtures)
    assert_whole_call,
    call,
    microphone,
    page_port,
)


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, start_cluster: StartCluster,
            page_port: int) -> Cluster:  # noqa: F811
    settings = {"agent_token_delay": "0.005", "max_sessions_per_tenant": "2",
                "keep_alive_interval": "1", "client_timeout": "20",
                "webrtc_host": "127.0.0.1", "cors_origins": f"http://127.0.0.1:{page_port}"}
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_server")
        postgres.start()
        settings["database_url"] = postgres.new_database("voisnap")
    return start_cluster(settings=settings, node_settings=[{"agent_workers": "0"}])


def url(base: str, hub: str = "chat", **query: str) -> str:
    return str(httpx.URL(f"{base}/voisnap/hubs/{hub}", params={"agentId": "sophon", **query}))


def test_chat_replies_cross_processes_and_a_session_resumes_on_the_other(
    cluster: Cluster,
) -> None:
    near, far = cluster.nodes
    token = cluster.token("roamer")
    first = run_scenario("voisnap_chat.mjs", timeout=60, url=url(near.url), token=token,
                         steps=["send:what is 2 + 3?"])
    session_id = first["sessionId"]
    [final] = [p for n, p in first["events"] if n == "MessageReceived" and p["isFinal"]]
    assert first["rendered"] == [{"id": final["messageId"], "content": final["content"]}]
    again = run_scenario("voisnap_chat.mjs", timeout=60,
                         url=url(far.url, sessionId=session_id), token=token,
                         steps=["send:and 4 + 5?", "end"])
    assert again["started"] == {"sessionId": session_id, "agentId": "sophon", "resumed": True}
    messages = httpx.get(f"{far.url}/sessions/{session_id}/messages",
                         headers={"authorization": f"Bearer {token}"}, timeout=5).json()
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    # Ended on process 1: process 0 refuses to resume it too.
    gone = run_scenario("voisnap_chat.mjs", timeout=30, expectRefusal=True,
                        url=url(near.url, sessionId=session_id), token=token)
    assert [p["code"] for n, p in gone["events"] if n == "Error"] == ["RECONNECT_FAILED"]


def test_the_session_limit_counts_both_processes(cluster: Cluster) -> None:
    near, far = cluster.nodes
    token = cluster.token("limited")
    recorded = run_scenario("voisnap_errors.mjs", timeout=60, connections=[
        {"url": url(near.url), "token": token, "keep": True},
        {"url": url(far.url, "voice"), "token": token, "keep": True},
        {"url": url(near.url), "token": token,
         "until": {"code": "SESSION_LIMIT_REACHED", "close": True}},
        {"url": url(far.url), "token": cluster.token("other", tenant="globex"), "keep": True},
    ])["steps"]
    firsts = [step["events"][0][:2] for step in recorded]
    assert [name for name, _ in firsts] == [
        "SessionStarted", "SessionStarted", "Error", "SessionStarted"]
    assert firsts[2][1]["code"] == "SESSION_LIMIT_REACHED"


@pytest.mark.parametrize("cluster", ["sqlite"], indirect=True)
def test_a_call_hears_a_reply_produced_by_the_other_process(
    cluster: Cluster, tmp_path: Path, speech: dict[str, bytes],  # noqa: F811
) -> None:
    """SQLite only: the speech crosses on Redis whatever the store (the store's
    part, the limit and resume, runs on both above)."""
    near = cluster.nodes[0]

    class Near:  # converse() takes a server: the near process, with the cluster's tokens
        url = near.url

        @staticmethod
        def token(user: str) -> str:
            return cluster.token(user)

    seen = converse(Near, tmp_path, speech)  # type: ignore[arg-type]
    heard(seen)
    agent = [e for e in seen["events"] if e["name"] == "Transcript"
             and e["payload"]["role"] == "agent" and e["payload"]["isFinal"]]
    assert len(agent) == 2
    assert max(c["loudness"] for c in seen["chunks"]) > 3000
    assert [e for e in seen["events"] if e["name"] in ("Error", "AudioInterrupted")] == []


@pytest.mark.parametrize("cluster", ["sqlite"], indirect=True)
def test_a_browser_call_hears_a_reply_produced_by_the_other_process(
    cluster: Cluster, page_port: int, microphone: Path,  # noqa: F811
) -> None:
    """A WebRtcHub call in Chromium on process 0, whose agent runs on process 1:
    the reply's speech crosses on Redis to the process that holds the peer
    connection, and the browser hears it."""
    near = cluster.nodes[0]

    class Near:  # call() takes a server: the near process, with the cluster's tokens
        url = near.url

        @staticmethod
        def token(user: str, tenant: str) -> str:
            return cluster.token(user, tenant=tenant)

    (summary,) = call(Near, page_port, microphone, user="browser")  # type: ignore[arg-type]
    assert_whole_call(summary)
