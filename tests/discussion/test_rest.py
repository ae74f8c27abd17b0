"""``POST /discussions`` and ``GET /discussions[/{runId}]`` over real HTTP against a real
``voisnap serve`` process (docs/hubs/discussion.md, "REST"): a 400 with its reason for each
request that cannot start a run, and nothing stored for it; a session must be the caller's;
503 with ``Retry-After`` when the queue is full (on a server of its own with a queue of one).
The hub and a run's events are in ``tests/conformance/test_discussion.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.discussion import get, rest, start_run, start_server, token, wait_state
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("discussion-rest"))
    try:
        yield started
    finally:
        started.stop()


GOOD = {"topic": "Tea or coffee?", "panelists": ["sophon", "sophon"], "judge": "sophon",
        "rounds": 1}


@pytest.mark.parametrize(("change", "error"), [
    ({"topic": ""}, "'topic' must be a non-empty string."),
    ({"topic": "   "}, "'topic' must be a non-empty string."),
    ({"topic": 7}, "'topic' must be a non-empty string."),
    ({"topic": "x" * 4001}, "'topic' may be at most 4000 characters long."),
    ({"panelists": ["sophon"]}, "A panel has 2 to 8 panelists, not 1."),
    ({"panelists": ["sophon"] * 9}, "A panel has 2 to 8 panelists, not 9."),
    ({"panelists": "sophon"}, "'panelists' must be a list of agent ids."),
    ({"panelists": ["sophon", 3]}, "'panelists' must be a list of agent ids."),
    ({"rounds": 0}, "'rounds' must be an integer from 1 to 10."),
    ({"rounds": 11}, "'rounds' must be an integer from 1 to 10."),
    ({"rounds": 1.5}, "'rounds' must be an integer from 1 to 10."),
    ({"rounds": True}, "'rounds' must be an integer from 1 to 10."),
    ({"judge": None}, "'judge' must be an agent id."),
    ({"panelists": ["sophon", "nobody"]}, "Agent 'nobody' does not exist or is not active."),
    ({"panelists": ["sophon", "retired"]}, "Agent 'retired' does not exist or is not active."),
    ({"judge": "nobody"}, "Agent 'nobody' does not exist or is not active."),
    ({"sessionId": "sess_nobody_has"}, "Session 'sess_nobody_has' does not exist or is not yours."),
    ({"sessionId": ""}, "'sessionId' must be a string of 1 to 128 characters."),
])
def test_discussion_rest_refuses_a_bad_request_with_its_reason(
    server: ServerProcess, change: dict[str, Any], error: str,
) -> None:
    bearer = token(server, f"rest-{uuid.uuid4().hex[:8]}")
    response = rest(server, bearer, "POST", "/discussions", {**GOOD, **change})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": error}
    assert get(server, bearer, "/discussions") == []


def test_discussion_rest_refuses_a_body_that_is_not_an_object(server: ServerProcess) -> None:
    bearer = token(server, "rest-body")
    for body in ([GOOD], "text"):
        response = rest(server, bearer, "POST", "/discussions", body)
        assert response.status_code == 400 and "JSON object" in response.json()["error"]


def test_discussion_rest_in_anothers_session_is_refused_in_ones_own_accepted(
    server: ServerProcess,
) -> None:
    owner, other = token(server, "sess-owner"), token(server, "sess-other")
    first = start_run(server, owner, ["sophon", "sophon"], 1)
    session = first["sessionId"]
    refused = rest(server, other, "POST", "/discussions", {**GOOD, "sessionId": session})
    again = rest(server, owner, "POST", "/discussions", {**GOOD, "sessionId": session})
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": f"Session '{session}' does not exist or is not yours."}
    assert again.status_code == 201 and again.json()["sessionId"] == session


def test_discussion_rest_full_queue_answers_503_with_retry_after(
    tmp_path: Path,
) -> None:
    """One worker, one queued task at most: a running slow run and a queued one fill it."""
    busy = start_server(tmp_path, agent_queue_limit="1")
    try:
        bearer = token(busy, "busy")
        running = start_run(busy, bearer, ["slow", "slow"], 10)["runId"]
        wait_state(busy, bearer, running, "running")
        start_run(busy, bearer, ["slow", "slow"], 10)
        refused = rest(busy, bearer, "POST", "/discussions", GOOD)
    finally:
        busy.stop()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {"error": "Too many tasks are waiting; try again shortly."}
