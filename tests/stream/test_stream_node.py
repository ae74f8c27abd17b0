"""``/v1/stream`` (seed 004) from Node's plain ``ws`` client, against a real
``voisnap serve``: a browser-like client that knows nothing of SignalR.

The scenario (``tests/conformance/js/v1_stream.mjs``) checks the seed's
invariants itself; the event logs it returns are checked again here with the
Python checker (``tests.support.stream_client.check_invariants``), so that the
two readings of the seed agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.node import run_scenario
from tests.support.server import ServerProcess
from tests.support.stream_client import check_invariants

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.002"}
    with ServerProcess(tmp_path_factory.mktemp("v1-stream-node") / "data", settings) as started:
        yield started


def api_token(server: ServerProcess, jwt: str) -> str:
    made = httpx.post(server.url + "/api/tokens", json={"name": "node-stream"},
                      headers={"authorization": f"Bearer {jwt}"}, timeout=10)
    assert made.status_code in (200, 201), made.text
    return made.json()["token"]


CLOSE_WAIT_MS = 3000


@pytest.fixture(scope="module", params=["what is 12 * 7", "hello there"])
def scenario(request: pytest.FixtureRequest, server: ServerProcess) -> dict[str, Any]:
    """One run of ``v1_stream.mjs`` per prompt; the tests below judge its parts."""
    jwt = server.token("nora", "acme")
    result = run_scenario(
        "v1_stream.mjs", timeout=TIMEOUT, wsUrl=server.ws_url, token=jwt,
        resumeToken=api_token(server, jwt), badToken="not.a.token", prompt=request.param,
        followUp="what is 6 * 7", closeWaitMs=CLOSE_WAIT_MS,
    )
    return {**result, "jwt": jwt, "prompt": request.param}


def test_node_ws_client_streams_a_task_to_its_end(scenario: dict[str, Any]) -> None:
    assert scenario["protocol"] == f"Bearer.{scenario['jwt']}"
    live = scenario["live"]
    check_invariants(live)
    assert live[0]["type"] == "session.ready"
    assert [e["type"] for e in live][-2:] == ["turn.done", "task:done"]
    if scenario["prompt"].startswith("what is"):
        uses = [e for e in live if e["type"] == "task:tool_use"]
        assert [(e["tool"], e["input"]) for e in uses] == [("calculator", {"expression": "12 * 7"})]
        assert "84" in live[-2]["result_text"]


def test_node_ws_client_resumes_with_a_query_token_and_goes_live(
        scenario: dict[str, Any]) -> None:
    replay, follow_up = scenario["replay"], scenario["followUp"]
    check_invariants(replay + follow_up)
    assert replay[0] == {"type": "session.replay_start", "session_id": scenario["sessionId"]}
    assert replay[-1] == {"type": "session.replay_end", "session_id": scenario["sessionId"]}
    assert replay[1]["type"] == "user.message" and replay[1]["text"] == scenario["prompt"]
    assert any(e["type"] == "turn.done" and "42" in e["result_text"] for e in follow_up)


def test_node_ws_client_with_a_bad_or_no_token_gets_4001(scenario: dict[str, Any]) -> None:
    for case in scenario["unauthorized"].values():
        assert case["code"] == 4001
        assert [e["code"] for e in case["events"]] == ["UNAUTHORIZED"]
    assert scenario["unauthorized"]["bad"]["protocol"] == "Bearer.not.a.token"


def test_node_ws_client_close_handshake_ends_the_connection(scenario: dict[str, Any]) -> None:
    """RFC 6455 7.1.1: once the server has sent and received a Close, it
    "MUST close the underlying TCP connection immediately"; ``ws`` reports the
    close only then (or after its own 30 s timer)."""
    for outcome in scenario["closes"]:
        assert not outcome.get("timedOut"), (
            f"the server answered the client's Close but did not end the TCP connection "
            f"within {CLOSE_WAIT_MS} ms: {outcome}"
        )
        assert outcome["code"] == 1000, outcome
