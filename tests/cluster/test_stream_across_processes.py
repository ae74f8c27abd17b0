"""``/v1/stream`` across processes (issue 19): two ``voisnap serve`` processes on one
Redis and one store (the shared SQLite file, or one PostgreSQL database).

Process 0 runs no tasks (``--agent-workers 0``): every event a client of process 0
sees was published by process 1, on the session's backplane channel. A resume on
process 0 fetches the running turn's log from process 1 over the backplane; a resume
on process 1 finds it in memory. Either way, dropped at any point of a reply, the
reply comes whole and once.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.cluster.conftest import StartCluster
from tests.support.cluster import Cluster
from tests.support.stream_client import check_invariants, open_stream

PROMPT = "tell me about yourself " * 3


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, start_cluster: StartCluster,
            tmp_path: Path) -> Cluster:
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.slow]\nbackend = "builtin"\ntoken_delay = 0.02\n')
    settings = {"agent_token_delay": "0.002", "agents_file": str(agents)}
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_server")
        postgres.start()
        settings["database_url"] = postgres.new_database("voisnap")
    return start_cluster(settings=settings, node_settings=[{"agent_workers": "0"}])


async def test_a_turn_run_by_the_other_process_streams_to_this_one(cluster: Cluster) -> None:
    near, _ = cluster.nodes
    async with open_stream(near, cluster.token("ada")) as client:
        await client.send({"type": "task.submit", "prompt": "what is 12 * 7"})
        ready = await client.until_type("session.ready")
        done = await client.until_type("task:done")
    assert ready["container_id"] != ""
    assert done["status"] == "completed"
    assert client.of_type("task:tool_result")[0]["output"] == "84"
    check_invariants(client.log)


async def test_resume_on_either_process_mid_reply_yields_it_exactly_once(
    cluster: Cluster,
) -> None:
    token = cluster.token("roamer")
    chance = random.Random(1919)
    for round_number in range(8):
        submitted_on, resumed_on = chance.choice(cluster.nodes), chance.choice(cluster.nodes)
        async with open_stream(submitted_on, token) as client:
            await client.send({"type": "task.submit", "prompt": PROMPT, "profile_id": "slow"})
            ready = await client.until_type("session.ready")
            for _ in range(chance.randrange(0, 30)):
                await client.until_type("task:token")
        async with open_stream(resumed_on, token) as again:
            await again.send({"type": "session.resume", "session_id": ready["session_id"]})
            done = await again.until_type("task:done")
        check_invariants(again.log)
        (turn,) = again.of_type("turn.done")
        assert again.text_of(done["task_id"]) == turn["result_text"], round_number
