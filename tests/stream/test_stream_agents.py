"""``/v1/stream`` with an agent of an OpenAI-compatible endpoint (a fake one, over real
HTTP in the test): ``turn.continuing`` when a chain's step budget is used, up to the
agent's ``max_continuations`` and then ``task:failed``; ``turn.done``'s tokens from the
endpoint's usage report and its cost from the agent's prices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from tests.support.openai_endpoint import (
    Endpoint,
    call_spec,
    content_chunk,
    event,
    finish_chunk,
    in_turn,
    serving,
    streaming,
    tool_calls_answer,
)
from tests.support.server import ServerProcess
from tests.support.stream_client import StreamClient, check_invariants, open_stream

USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}


def calculator(n: int):
    return tool_calls_answer(call_spec(f"call_{n}", "calculator", {"expression": f"{n}+1"}))


REPLY = streaming(content_chunk("All "), content_chunk("done."), finish_chunk("stop"),
                  event({"choices": [], "usage": USAGE}), event("[DONE]"))


def agents_file(path: Path, base_url: str, continuations: int) -> Path:
    path.write_text(
        f'[agents.chain]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "m"\n'
        f"max_steps = 1\nmax_continuations = {continuations}\n"
        "price_input_per_mtok = 2.0\nprice_output_per_mtok = 10.0\n"
    )
    return path


async def run_chain(
    start_server: Callable[..., ServerProcess], tmp_path: Path, continuations: int, until: str
) -> tuple[StreamClient, dict[str, Any]]:
    """Three steps of tool calls, then a reply, from an agent of one step per chain."""
    endpoint = Endpoint(in_turn(calculator(1), calculator(2), calculator(3), REPLY))
    with trio.fail_after(60):
        async with serving(endpoint) as base_url:
            agents = agents_file(tmp_path / "agents.toml", base_url, continuations)
            server = start_server(settings={"agents_file": str(agents)})
            async with open_stream(server, server.token()) as client:
                await client.send({"type": "task.submit", "prompt": "go", "profile_id": "chain"})
                return client, await client.until_type(until)


async def test_an_agent_continues_in_new_chains_then_replies(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    client, done = await run_chain(start_server, tmp_path, 2, "task:done")
    assert done["status"] == "completed"
    kinds = [e["type"] for e in client.log if e["type"] != "task:token"]
    assert kinds == [
        "session.ready",
        "task:tool_use", "task:tool_result",
        "turn.continuing", "task:tool_use", "task:tool_result",
        "turn.continuing", "task:tool_use", "task:tool_result",
        "turn.done", "task:done",
    ]
    continuing = client.of_type("turn.continuing")
    assert [(c["continuation"], c["max_continuations"]) for c in continuing] == [(1, 2), (2, 2)]
    assert all(c["task_id"] == done["task_id"] for c in continuing)
    turn = client.of_type("turn.done")[0]
    # Three tool steps (11 tokens each, no prompt figure) and the reply's usage.
    assert turn["input_tokens"] == 1200
    assert turn["output_tokens"] == 3 * 11 + 300
    assert turn["cost_usd"] == round((1200 * 2.0 + 333 * 10.0) / 1_000_000, 9)
    assert turn["result_text"] == "All done."
    check_invariants(client.log)


async def test_an_agent_past_its_last_continuation_fails(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    client, failed = await run_chain(start_server, tmp_path, 1, "task:failed")
    assert failed["error"] == "The agent called tools in more than 2 steps."
    assert [c["continuation"] for c in client.of_type("turn.continuing")] == [1]
    assert len(client.of_type("task:tool_result")) == 2
    check_invariants(client.log)
