"""``POST /v1/tasks`` and ``GET /v1/tasks/{id}`` (issue 19; docs/v1.md), the REST
twin of ``task.submit``, against a real ``voisnap serve``: the same intake,
runtime and store as the hubs; JWTs and API tokens alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import FAST_SETTINGS
from tests.support.server import ServerProcess

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.001"}
    with ServerProcess(tmp_path_factory.mktemp("v1-tasks") / "data", settings) as started:
        yield started


def call(server: ServerProcess, method: str, path: str, token: str, body: Any = None,
         raw: bytes | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    if raw is not None:
        return httpx.request(method, server.url + path, content=raw, headers=headers,
                             timeout=TIMEOUT)
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=TIMEOUT)


def finished(server: ServerProcess, token: str, task_id: str) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        with trio.fail_after(30):
            while True:
                task = call(server, "GET", f"/v1/tasks/{task_id}", token).json()
                if task["status"] in ("completed", "failed", "cancelled"):
                    return task
                await trio.sleep(0.05)

    return trio.run(wait)


def test_a_session_turn_then_a_follow_up_in_the_same_session(server: ServerProcess) -> None:
    token = server.token("ann", "acme")
    first = call(server, "POST", "/v1/tasks", token,
                 {"mode": "session", "prompt": "what is 2 + 3?"})
    assert first.status_code == 201, first.text
    created = first.json()
    assert set(created) == {"task_id", "session_id"}
    task = finished(server, token, created["task_id"])
    assert task["status"] == "completed" and task["profile_id"] == "sophon"
    assert task["session_id"] == created["session_id"]
    follow = call(server, "POST", "/v1/tasks", token,
                  {"prompt": "and 4 + 5?", "session_id": created["session_id"]}).json()
    assert follow["session_id"] == created["session_id"]
    finished(server, token, follow["task_id"])
    messages = call(server, "GET", f"/sessions/{created['session_id']}/messages", token).json()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert "5" in messages[1]["content"] and "9" in messages[3]["content"]


def test_a_one_off_task_gets_a_session_of_its_own(server: ServerProcess) -> None:
    token = server.token("ben", "acme")
    one = call(server, "POST", "/v1/tasks", token, {"mode": "task", "prompt": "hello"}).json()
    two = call(server, "POST", "/v1/tasks", token, {"mode": "task", "prompt": "hello"}).json()
    assert one["session_id"] != two["session_id"]
    assert finished(server, token, one["task_id"])["status"] == "completed"


def test_an_api_token_submits_and_reads_as_its_user(server: ServerProcess) -> None:
    jwt = server.token("cleo", "acme")
    secret = call(server, "POST", "/api/tokens", jwt, {"name": "bot"}).json()["token"]
    created = call(server, "POST", "/v1/tasks", secret, {"prompt": "hi"}).json()
    assert finished(server, jwt, created["task_id"])["status"] == "completed"
    sessions = call(server, "GET", "/sessions", jwt).json()
    assert created["session_id"] in [s["sessionId"] for s in sessions]


@pytest.mark.parametrize(("body", "code"), [
    (None, "BAD_REQUEST"), ([], "BAD_REQUEST"), ({}, "BAD_REQUEST"),
    ({"prompt": ""}, "BAD_REQUEST"), ({"prompt": "  "}, "BAD_REQUEST"),
    ({"prompt": 5}, "BAD_REQUEST"), ({"prompt": "x" * 40000}, "BAD_REQUEST"),
    ({"prompt": "hi", "mode": "chat"}, "BAD_REQUEST"),
    ({"prompt": "hi", "mode": "task", "session_id": "sess_1"}, "BAD_REQUEST"),
    ({"prompt": "hi", "profile_id": ""}, "BAD_REQUEST"),
    ({"prompt": "hi", "profile_id": 7}, "BAD_REQUEST"),
    ({"prompt": "hi", "session_id": "x" * 200}, "BAD_REQUEST"),
    ({"prompt": "hi", "profile_id": "nobody"}, "NOT_FOUND"),
    ({"prompt": "hi", "session_id": "sess_unknown"}, "NOT_FOUND"),
])
def test_bad_submissions_get_the_seeds_codes(
    server: ServerProcess, body: Any, code: str
) -> None:
    response = call(server, "POST", "/v1/tasks", server.token("dan", "acme"), body)
    assert response.status_code == {"BAD_REQUEST": 400, "NOT_FOUND": 404}[code], response.text
    document = response.json()
    assert document["type"] == "error" and document["code"] == code and document["message"]


def test_not_json_is_400(server: ServerProcess) -> None:
    response = call(server, "POST", "/v1/tasks", server.token("dan", "acme"), raw=b"{nope")
    assert response.status_code == 400


def test_another_users_session_and_task_do_not_exist(server: ServerProcess) -> None:
    owner = server.token("eve", "acme")
    created = call(server, "POST", "/v1/tasks", owner, {"prompt": "mine"}).json()
    finished(server, owner, created["task_id"])
    for other in (server.token("fay", "acme"), server.token("eve", "globex")):
        into = call(server, "POST", "/v1/tasks", other,
                    {"prompt": "yours?", "session_id": created["session_id"]})
        assert into.status_code == 404 and into.json()["code"] == "NOT_FOUND"
        read = call(server, "GET", f"/v1/tasks/{created['task_id']}", other)
        assert read.status_code == 404 and read.json()["code"] == "NOT_FOUND"
    messages = call(server, "GET", f"/sessions/{created['session_id']}/messages", owner).json()
    assert len(messages) == 2  # nothing was written into it
