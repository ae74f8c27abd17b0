"""Discussion runs across processes (issue 13, docs/hubs/discussion.md "Across processes").

Two ``voisnap serve`` processes share one store (the SQLite file of their data dir) and a
Redis backplane. Process 0 has one agent worker; process 1 has none, so every run runs on
process 0, and the subscriber S (official JS client, ``discussion.mjs``) is connected
straight to process 1: whatever S receives crossed the backplane. Runs are started over
REST on process 0.

- A run of three ``sophon`` panelists and two rounds, waiting behind a slow run B until S
  has subscribed; S cancels B from process 1 while B's slow panelist speaks
  (``DiscussionCancelled`` with ``cancelledBy``); then S receives R's whole sequence, and
  the hashes match what process 1's REST answers.
- A slow run on process 0, which is killed (SIGKILL) mid-run: once its lease lapses,
  process 1 fails it as interrupted, and S receives ``DiscussionFailed`` with that error.

Every wait is bounded; REST is polled (bounded) only for the state no event announces.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import QUIET_SETTINGS
from tests.support.cluster import Cluster, store_rows, wait_until
from tests.support.discussion import (
    AGENTS,
    Subscribers,
    canonical,
    expected_targets,
    get,
    of_run,
    sha256,
    shape,
    start_run,
    subscribers,
)
from tests.support.services import RedisServer

pytestmark = pytest.mark.conformance

INTERRUPTED = "The task was interrupted: the process running it stopped."
SETTINGS = {**QUIET_SETTINGS, "agent_token_delay": "0.03", "agent_workers": "1"}
WAIT = 30.0


@contextlib.contextmanager
def pair(root: Path, redis: RedisServer) -> Iterator[Cluster]:
    """Process 0 runs the runs (one worker), process 1 none."""
    redis.start()
    redis.flush()
    agents_file = root / "agents.toml"
    agents_file.write_text(AGENTS)
    cluster = Cluster(root, redis.url, 2, {**SETTINGS, "agents_file": str(agents_file)})
    cluster.nodes[1].settings["agent_workers"] = "0"
    with cluster:
        yield cluster


@contextlib.contextmanager
def subscriber(cluster: Cluster, bearer: str) -> Iterator[Subscribers]:
    """S, connected straight to process 1 (not through the proxy)."""
    with subscribers(cluster.nodes[1].hub_url("discussion")) as devices:
        devices.open("S", bearer)
        yield devices


def post(cluster: Cluster, bearer: str, panelists: list[str], rounds: int) -> str:
    """Start a run over REST on process 0 (so it is reserved for process 0); its id."""
    return start_run(cluster.nodes[0], bearer, panelists, rounds)["runId"]


def run_on(cluster: Cluster, process: int, bearer: str, run_id: str) -> dict[str, Any]:
    return get(cluster.nodes[process], bearer, f"/discussions/{run_id}")


def running(cluster: Cluster, bearer: str, run_id: str) -> dict[str, Any]:
    return wait_until(lambda: (run := run_on(cluster, 1, bearer, run_id))["state"] == "running"
                      and run, WAIT, f"run {run_id} to run")


def test_discussion_subscriber_on_one_process_run_on_the_other(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    with pair(tmp_path, redis_server) as cluster:
        user = f"ana-{uuid.uuid4().hex[:8]}"
        bearer = cluster.token(user)
        with subscriber(cluster, bearer) as devices:
            blocker = post(cluster, bearer, ["sophon", "slow"], 3)
            devices.call("S", "Subscribe", blocker)
            devices.wait("S", "TurnStarted", runId=blocker, panelistId="p2")
            run_id = post(cluster, bearer, ["sophon", "sophon", "sophon"], 2)
            snapshot = devices.call("S", "Subscribe", run_id)
            cancel = devices.invoke("S", "CancelRun", {"runId": blocker})
            cancelled = devices.wait("S", "DiscussionCancelled", runId=blocker)
            devices.wait("S", "DiscussionCompleted", runId=run_id)
            events = devices.events("S")["S"]
        run = run_on(cluster, 1, bearer, run_id)
        stopped = run_on(cluster, 1, bearer, blocker)
        owners = store_rows(cluster.data_dir / "voisnap.db",
                            "SELECT lease_owner FROM tasks WHERE task_id IN (?, ?)",
                            run_id, blocker)
        process_0 = cluster.stats(0)["cluster"]["node"]

    assert sorted(owners) == [(process_0,), (process_0,)], owners  # both ran on process 0
    assert snapshot["state"] == "queued", snapshot
    assert cancel["ok"], cancel
    assert cancelled == {"runId": blocker, "cancelledBy": user}
    assert shape(of_run(events, blocker)[-2]) == ("TurnStarted", "p2", 1)
    assert (stopped["state"], stopped["cancelledBy"]) == ("cancelled", user), stopped
    received = of_run(events, run_id)
    assert [shape(e) for e in received] == expected_targets(3, 2)
    hashes = [e["payload"]["contentHash"] for e in received if e["target"] == "TurnCompleted"]
    assert hashes == [turn["contentHash"] for turn in run["turns"]]
    assert hashes == [sha256(turn["content"]) for turn in run["turns"]]
    verdict = next(e["payload"]["verdict"] for e in received if e["target"] == "Verdict")
    assert verdict == run["verdict"]
    assert received[-1]["payload"]["verdictHash"] == run["verdictHash"] == sha256(
        canonical(run["verdict"]))


def test_discussion_killed_process_run_fails_interrupted_on_the_other(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    with pair(tmp_path, redis_server) as cluster:
        bearer = cluster.token(f"ana-{uuid.uuid4().hex[:8]}")
        with subscriber(cluster, bearer) as devices:
            run_id = post(cluster, bearer, ["slow", "slow"], 3)
            devices.call("S", "Subscribe", run_id)
            running(cluster, bearer, run_id)
            cluster.nodes[0].kill()
            killed = time.monotonic()
            failed = devices.wait("S", "DiscussionFailed", runId=run_id)
            failed_after = time.monotonic() - killed
            events = devices.events("S")["S"]
        run = run_on(cluster, 1, bearer, run_id)
        survivor = cluster.exited()[1]

    assert failed == {"runId": run_id, "error": INTERRUPTED}
    assert failed_after < 2 + 0.5 * 3 + 2, f"DiscussionFailed {failed_after:.1f} s after the kill"
    targets = [e["target"] for e in of_run(events, run_id)]
    assert targets[-1] == "DiscussionFailed" and targets.count("DiscussionFailed") == 1, targets
    assert "DiscussionCompleted" not in targets and "Verdict" not in targets
    assert (run["state"], run["error"], run["verdict"]) == ("failed", INTERRUPTED, None), run
    assert survivor is None
