"""``/v1/stream`` (issue 19, seed 004; docs/v1-stream.md) against a real ``voisnap
serve``, from a plain WebSocket client (trio-websocket): each message type, both
ways to authenticate, 4001, the seed's invariants on every event log, and
resume in the middle of a reply, many times, yielding it exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio_websocket

from tests.conftest import FAST_SETTINGS
from tests.nodes.support import register
from tests.support.server import ServerProcess
from tests.support.stream_client import StreamClient, check_invariants, open_stream

LONG_PROMPT = "tell me about yourself " * 3  # sophon's introduction: some 40 tokens


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("v1-stream")
    agents = data / "agents.toml"
    agents.write_text(
        '[agents.priced]\nbackend = "builtin"\nprice_input_per_mtok = 3.0\n'
        'price_output_per_mtok = 15.0\nsystem_prompt = "You are priced."\n'
        '[agents.slow]\nbackend = "builtin"\ntoken_delay = 0.02\n'
        '[agents.off]\nbackend = "builtin"\nactive = false\n'
    )
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.003", "agents_file": str(agents),
                "plain_ws_max_frame": "4096"}
    with ServerProcess(data / "data", settings) as started:
        yield started


async def submit(client: StreamClient, prompt: str, **fields: Any) -> dict[str, Any]:
    """Submit in a new session; ``session.ready``."""
    await client.send({"type": "task.submit", "mode": "session", "prompt": prompt, **fields})
    return await client.until_type("session.ready")


async def finish(client: StreamClient, session_id: str) -> dict[str, Any]:
    """Read to the turn's end; its ``task:done`` or ``task:failed``."""
    return await client.until(
        lambda e: e["type"] in ("task:done", "task:failed") and e["session_id"] == session_id
    )


# -- a turn, both ways in ----------------------------------------------------------------------


@pytest.mark.parametrize("via", ["subprotocol", "query"])
async def test_a_turn_streams_tokens_then_turn_done_then_task_done(
    server: ServerProcess, via: str
) -> None:
    async with open_stream(server, server.token(), via=via) as client:
        if via == "subprotocol":  # selected in the answer, as browsers require
            assert client.ws.subprotocol.startswith("Bearer.")
        ready = await submit(client, "hello")
        assert client.log[0] is ready  # the session is announced before its events
        assert ready["profile_id"] == "sophon"
        assert ready["container_id"].startswith("ctr_") and ready["container_name"]
        done = await finish(client, ready["session_id"])
    assert done["status"] == "completed"
    kinds = [e["type"] for e in client.log]
    assert kinds[0] == "session.ready" and kinds[-2:] == ["turn.done", "task:done"]
    assert kinds.count("task:token") > 3
    task_ids = {e["task_id"] for e in client.log if "task_id" in e}
    assert len(task_ids) == 1
    turn = client.of_type("turn.done")[0]
    assert turn["result_text"].startswith("Hello, I am sophon")
    assert turn["input_tokens"] == 1 and turn["output_tokens"] > 10
    assert turn["cost_usd"] == 0  # sophon has no price
    check_invariants(client.log)


async def test_a_task_mode_submission_runs_in_a_session_of_its_own(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        first = await submit(client, "hello", mode="task")
        await finish(client, first["session_id"])
        second = await submit(client, "hello", mode="task")
        await finish(client, second["session_id"])
        await client.send({"type": "task.submit", "mode": "task", "prompt": "hi",
                           "session_id": first["session_id"]})
        refused = await client.until_type("error")
    assert first["session_id"] != second["session_id"]
    assert refused["code"] == "BAD_REQUEST" and "session_id" in refused["message"]
    check_invariants(client.log)


async def test_tools_stream_as_tool_use_then_tool_result(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        ready = await submit(client, "what is 12 * 7")
        await finish(client, ready["session_id"])
    (use,) = client.of_type("task:tool_use")
    (result,) = client.of_type("task:tool_result")
    assert use["tool"] == result["tool"] == "calculator"
    assert use["input"] == {"expression": "12 * 7"}
    assert result["output"] == "84"
    assert client.log.index(use) < client.log.index(result)
    assert client.of_type("turn.done")[0]["result_text"] == "12 * 7 = 84."
    check_invariants(client.log)


async def test_prices_come_from_the_agents_file(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        ready = await submit(client, "hello", profile_id="priced")
        await finish(client, ready["session_id"])
    turn = client.of_type("turn.done")[0]
    expected = (turn["input_tokens"] * 3.0 + turn["output_tokens"] * 15.0) / 1_000_000
    assert turn["output_tokens"] > 0
    assert turn["cost_usd"] == pytest.approx(expected)
    # Not an administrator: no debug-tier event.
    assert client.of_type("debug.system_prompt") == []


async def test_administrators_see_the_system_prompt(server: ServerProcess) -> None:
    async with open_stream(server, server.token(roles=["admin"])) as client:
        ready = await submit(client, "hello", profile_id="priced")
        await finish(client, ready["session_id"])
    (debug,) = client.of_type("debug.system_prompt")
    assert debug["prompt"] == "You are priced."
    assert debug["session_id"] == ready["session_id"] and debug["task_id"]
    check_invariants(client.log)


# -- sessions ------------------------------------------------------------------------------------


async def test_session_start_then_turns_talk_to_the_sessions_agent(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        await client.send({"type": "session.start", "profile_id": "priced"})
        ready = await client.until_type("session.ready")
        assert ready["profile_id"] == "priced"
        session_id = ready["session_id"]
        for prompt in ("hello", "what is 2 + 3"):
            await client.send({"type": "session.turn", "session_id": session_id,
                               "prompt": prompt})
            await finish(client, session_id)
    turns = client.of_type("turn.done")
    assert len(turns) == 2 and turns[1]["result_text"] == "2 + 3 = 5."
    assert all(t["cost_usd"] > 0 for t in turns)  # the priced agent answered both
    assert len(client.of_type("session.ready")) == 1  # session.turn makes no new session
    check_invariants(client.log)
    # The same conversation on the REST side.
    async with httpx.AsyncClient() as http:
        messages = (await http.get(
            f"{server.url}/sessions/{session_id}/messages",
            headers={"authorization": f"Bearer {server.token()}"},
        )).json()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


async def test_unknown_and_inactive_agents_are_not_found(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        for profile in ("nobody", "off"):
            await client.send({"type": "session.start", "profile_id": profile})
            assert (await client.next())["code"] == "NOT_FOUND"
            await client.send({"type": "task.submit", "prompt": "hi", "profile_id": profile})
            assert (await client.next())["code"] == "NOT_FOUND"
        assert client.of_type("session.ready") == []


async def test_resume_replays_past_turns_between_the_markers(server: ServerProcess) -> None:
    token = server.token()
    async with open_stream(server, token) as client:
        ready = await submit(client, "what is 6 * 7")
        session_id = ready["session_id"]
        await finish(client, session_id)
        await client.send({"type": "session.turn", "session_id": session_id, "prompt": "hello"})
        await finish(client, session_id)
    live = [e for e in client.log if e.get("task_id")]
    async with open_stream(server, token, via="query") as again:
        await again.send({"type": "session.resume", "session_id": session_id})
        await again.until_type("session.replay_end")
    kinds = [e["type"] for e in again.log]
    assert kinds[0] == "session.replay_start" and kinds[-1] == "session.replay_end"
    prompts = [e["text"] for e in again.of_type("user.message")]
    assert prompts == ["what is 6 * 7", "hello"]
    # The turns as they were: the same tools, results, replies and endings.
    replayed = [e for e in again.log if e.get("task_id") and e["type"] != "user.message"]
    assert _summary(replayed) == _summary(live)
    check_invariants(again.log)


def _summary(events: list[dict[str, Any]]) -> list[Any]:
    """What a turn shows, tokens joined (a replay may cut them differently)."""
    shown: list[Any] = []
    for event in events:
        if event["type"] == "task:token" and shown and isinstance(shown[-1], tuple):
            shown[-1] = ("text", shown[-1][1] + event["text"])
        elif event["type"] == "task:token":
            shown.append(("text", event["text"]))
        else:
            shown.append({k: v for k, v in event.items() if k != "session_id"})
    return shown


async def test_a_stored_turn_replays_from_the_store(tmp_path: Any) -> None:
    """After the runner's memory is gone (a restart), the turn comes from the store."""
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.001"}
    with ServerProcess(tmp_path / "data", settings) as first:
        token = first.token()
        async with open_stream(first, token) as client:
            ready = await submit(client, "what is 6 * 7")
            await finish(client, ready["session_id"])
    with ServerProcess(tmp_path / "data", settings) as second:
        async with open_stream(second, token) as again:
            await again.send({"type": "session.resume", "session_id": ready["session_id"]})
            await again.until_type("session.replay_end")
    kinds = [e["type"] for e in again.log]
    assert kinds == [
        "session.replay_start", "user.message", "task:tool_use", "task:tool_result",
        "task:token", "turn.done", "task:done", "session.replay_end",
    ]
    assert again.of_type("task:token")[0]["text"] == "6 * 7 = 42."
    assert again.of_type("turn.done") == client.of_type("turn.done")  # the figures were kept
    check_invariants(again.log)


# -- resume in the middle of a reply -------------------------------------------------------------


async def test_resume_mid_reply_yields_it_exactly_once_wherever_the_drop(
    server: ServerProcess,
) -> None:
    """Drop the connection after a random number of tokens, resume on a new
    one: the reply, replay and live joined, is the reply, each token once."""
    token = server.token()
    chance = random.Random(19)
    for round_number in range(12):
        async with open_stream(server, token) as client:
            ready = await submit(client, LONG_PROMPT, profile_id="slow")
            for _ in range(chance.randrange(0, 30)):
                await client.until_type("task:token")
        # The first connection is gone; the task goes on.
        async with open_stream(server, token) as again:
            await again.send({"type": "session.resume", "session_id": ready["session_id"]})
            done = await finish(again, ready["session_id"])
        assert done["status"] == "completed", round_number
        check_invariants(again.log)
        (turn,) = again.of_type("turn.done")
        assert again.text_of(done["task_id"]) == turn["result_text"], round_number


async def test_two_resumes_on_one_connection_each_replay_whole(server: ServerProcess) -> None:
    token = server.token()
    async with open_stream(server, token) as client:
        ready = await submit(client, LONG_PROMPT, profile_id="slow")
        await client.until_type("task:token")
        await client.send({"type": "session.resume", "session_id": ready["session_id"]})
        await client.until_type("session.replay_end")
        await client.send({"type": "session.resume", "session_id": ready["session_id"]})
        done = await finish(client, ready["session_id"])
    check_invariants(client.log)
    (turn,) = client.of_type("turn.done")
    assert client.text_of(done["task_id"]) == turn["result_text"]


# -- cancel and ask ------------------------------------------------------------------------------


async def test_task_cancel_mid_stream_ends_the_task_cancelled(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        ready = await submit(client, LONG_PROMPT, profile_id="slow")
        first = await client.until_type("task:token")
        await client.send({"type": "task.cancel", "task_id": first["task_id"]})
        done = await finish(client, ready["session_id"])
    assert done["status"] == "cancelled"
    assert client.of_type("turn.done") == []
    check_invariants(client.log)


async def test_task_answer_resumes_an_agent_that_asked(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        ready = await submit(client, "remember something")
        asked = await client.until_type("task:ask_user")
        use = client.of_type("task:tool_use")[-1]
        assert use["tool"] == "AskUserQuestion"
        assert use["input"]["questions"] == asked["questions"]
        assert asked["questions"][0]["question"] == "What should I remember?"
        await client.send({"type": "task.answer", "task_id": asked["task_id"],
                           "answer": "buy oat milk"})
        done = await finish(client, ready["session_id"])
    assert done["status"] == "completed"
    results = client.of_type("task:tool_result")
    assert results[0] == {**results[0], "tool": "AskUserQuestion", "output": "buy oat milk"}
    assert "buy oat milk" in client.of_type("turn.done")[0]["result_text"]
    check_invariants(client.log)


async def test_an_answer_to_a_task_that_asks_nothing_is_refused(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        ready = await submit(client, "hello")
        done = await finish(client, ready["session_id"])
        await client.send({"type": "task.answer", "task_id": done["task_id"], "answer": "x"})
        refused = await client.until_type("error")
    assert refused["code"] == "BAD_REQUEST"


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "rc_not_a_real_api_token"])
async def test_a_bad_token_gets_unauthorized_then_4001(
    server: ServerProcess, token: str | None
) -> None:
    via = "query" if token == "" else "subprotocol"
    async with open_stream(server, token, via=via) as client:
        code = await client.closed_with()
    assert code == 4001
    assert client.log == [{"type": "error", "code": "UNAUTHORIZED", "message": client.log[0][
        "message"]}]


async def test_another_servers_token_gets_4001(server: ServerProcess, tmp_path: Any) -> None:
    with ServerProcess(tmp_path / "other", FAST_SETTINGS) as other:
        foreign = other.token()
    async with open_stream(server, foreign) as client:
        assert await client.closed_with() == 4001


async def test_a_token_expiring_mid_connection_closes_it_with_4001(server: ServerProcess) -> None:
    async with open_stream(server, server.token(ttl=2)) as client:
        await client.send({"type": "session.start"})
        await client.until_type("session.ready")
        code = await client.closed_with(timeout=15)
    assert code == 4001
    assert client.log[-1]["code"] == "UNAUTHORIZED"


async def test_api_tokens_are_taken_and_revoked_ones_refused(server: ServerProcess) -> None:
    jwt = server.token(user="api-user")
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = (await http.post("/api/tokens", json={"name": "cli"},
                                headers={"authorization": f"Bearer {jwt}"})).json()
        async with open_stream(server, made["token"]) as client:
            ready = await submit(client, "hello")
            await finish(client, ready["session_id"])
        async with open_stream(server, made["token"], via="query") as client:
            await client.send({"type": "session.resume", "session_id": ready["session_id"]})
            await client.until_type("session.replay_end")
        revoked = await http.delete(f"/api/tokens/{made['id']}",
                                    headers={"authorization": f"Bearer {jwt}"})
        assert revoked.status_code == 204
    async with open_stream(server, made["token"]) as client:
        assert await client.closed_with() == 4001
    assert "revoked" in client.log[0]["message"]


# -- bad frames ----------------------------------------------------------------------------------


BAD_FRAMES = [
    ("not json", "JSON"),
    ("[1, 2]", "object"),
    ('{"prompt": "no type"}', "type"),
    ('{"type": 7}', "type"),
    ('{"type": "task.fly"}', "Unknown type"),
    ('{"type": "task.submit"}', "prompt"),
    ('{"type": "task.submit", "prompt": "  "}', "prompt"),
    ('{"type": "task.submit", "prompt": "x", "mode": "batch"}', "mode"),
    ('{"type": "task.cancel"}', "task_id"),
    ('{"type": "session.resume", "session_id": 5}', "session_id"),
    ('{"type": "session.turn", "session_id": "s"}', "prompt"),
    ('{"type": "task.answer", "task_id": "t"}', "answer"),
]


async def test_bad_frames_get_an_error_and_the_connection_stays(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        for frame, says in BAD_FRAMES:
            await client.ws.send_message(frame)
            error = await client.next()
            assert error["type"] == "error" and error["code"] == "BAD_REQUEST", frame
            assert says in error["message"], (frame, error)
        await client.ws.send_message(b'{"type": "session.start"}')  # binary: not a JSON text
        assert (await client.next())["code"] == "BAD_REQUEST"
        ready = await submit(client, "hello")  # still served
        await finish(client, ready["session_id"])


async def test_another_users_session_and_task_are_not_found(server: ServerProcess) -> None:
    async with open_stream(server, server.token(user="owner")) as owner:
        ready = await submit(owner, "hello")
        done = await finish(owner, ready["session_id"])
    session_id, task_id = ready["session_id"], done["task_id"]
    for user, tenant in (("intruder", "acme"), ("owner", "other-tenant")):
        async with open_stream(server, server.token(user=user, tenant=tenant)) as intruder:
            for frame in (
                {"type": "session.resume", "session_id": session_id},
                {"type": "session.turn", "session_id": session_id, "prompt": "hi"},
                {"type": "task.submit", "prompt": "hi", "session_id": session_id},
                {"type": "task.cancel", "task_id": task_id},
                {"type": "task.answer", "task_id": task_id, "answer": "x"},
            ):
                await intruder.send(frame)
                assert (await intruder.next())["code"] == "NOT_FOUND", (user, frame)
        assert [e["type"] for e in intruder.log] == ["error"] * 5


async def test_a_frame_over_the_limit_closes_with_1009(server: ServerProcess) -> None:
    async with open_stream(server, server.token()) as client:
        await client.send({"type": "task.submit", "prompt": "x" * 5000})
        assert await client.closed_with() == 1009


async def test_a_path_beside_the_stream_is_not_found(server: ServerProcess) -> None:
    with pytest.raises(trio_websocket.HandshakeError):
        async with open_stream(server, server.token(), path="/v1/streams"):
            pass


async def test_a_nodes_token_is_forbidden(server: ServerProcess) -> None:
    """A node's token is for the node hub only: FORBIDDEN, then 1008."""
    _, node_token = await register(server, server.token(user="machine-owner"), "laptop", ["echo"])
    async with open_stream(server, node_token) as client:
        assert await client.closed_with() == 1008
    assert client.log[0]["code"] == "FORBIDDEN"


async def test_a_connection_watches_at_most_a_hundred_sessions(server: ServerProcess) -> None:
    async with open_stream(server, server.token(user="collector")) as client:
        for _ in range(100):
            await client.send({"type": "session.start"})
            await client.until_type("session.ready")
        await client.send({"type": "session.start"})
        refused = await client.next()
        assert refused["code"] == "RATE_LIMITED"
        await client.send({"type": "task.cancel", "task_id": "nope"})  # still served
        assert (await client.next())["code"] == "NOT_FOUND"


async def test_a_task_posted_over_rest_streams_to_the_sessions_watchers(
    server: ServerProcess,
) -> None:
    """``POST /v1/tasks`` is ``task.submit``'s twin: its events reach the stream."""
    token = server.token(user="twin")
    async with open_stream(server, token) as client:
        await client.send({"type": "session.start"})
        ready = await client.until_type("session.ready")
        async with httpx.AsyncClient(base_url=server.url) as http:
            posted = await http.post(
                "/v1/tasks", json={"prompt": "what is 3 * 3", "session_id": ready["session_id"]},
                headers={"authorization": f"Bearer {token}"},
            )
        assert posted.status_code == 201
        done = await finish(client, ready["session_id"])
    assert done["task_id"] == posted.json()["task_id"]
    assert client.of_type("turn.done")[0]["result_text"] == "3 * 3 = 9."
    check_invariants(client.log)
