"""DiscussionJob on the real runtime and a real SQLite store (docs/hubs/discussion.md).

Runs are started as ``POST /discussions`` starts them and claimed by a running
``TaskRuntime``; a ``Recorder`` stands for every face. Checked: the exact order of a
3-panelist, 2-round run with the built-in agents (the task's own events around the
discussion's), hashes that match the stored texts and verdict, the verdict's summary as
the session's assistant reply; a cancel while a panelist speaks; a judge whose verdict is
not valid, and a panelist that asks for tools, each fail the run; an OpenAI-compatible
judge and panelist (the fake endpoint over real HTTP) get the panel's prompts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from tests.support.openai_endpoint import Endpoint, in_turn, reply_answer, serving
from voisnap.agents.base import AgentEvent, AgentRequest, CallTools, Status, ToolCall
from voisnap.agents.openai import OpenAIAgent, OpenAIConfig
from voisnap.agents.verdict import canonical_json, content_hash, verdict_hash
from voisnap.storage.base import TaskState

from .harness import ADA, CEILING, ScriptedAgent, panel

THREE = ["sophon", "sophon", "sophon"]


def expected_sequence(run_id: str, seats: list[str], rounds: int) -> list[tuple[str, ...]]:
    """The runner's calls, as (kind, run id, panelist, round) where they apply."""
    sequence: list[tuple[str, ...]] = [("queued",), ("session_updated",), ("started",),
                                       ("discussion_started",)]
    for round_number in range(1, rounds + 1):
        sequence.append(("round_started", round_number))
        for seat in seats:
            sequence += [("turn_started", seat, round_number), ("turn_completed", seat)]
    ending = ["judge_started", "verdict", "message", "completed", "discussion_completed"]
    return [*sequence, *((kind,) for kind in ending)]


def shape(entry: tuple) -> tuple:
    kind = entry[0]
    match kind:
        case "round_started":
            return (kind, entry[2])
        case "turn_started":
            return (kind, entry[2], entry[3])
        case "turn_completed":
            return (kind, entry[2])
    return (kind,)


async def test_discussion_job_three_panelists_two_rounds_in_order_with_matching_hashes(
    tmp_path: Path,
) -> None:
    with trio.fail_after(CEILING):
        async with panel(tmp_path) as p:
            view = await p.start(THREE, rounds=2)
            run_id = view.run_id
            done = await p.recorder.wait_kind("discussion_completed", run_id)
            run = await p.store.get_discussion(ADA, run_id)
            turns = await p.store.list_turns(run_id)
            task = await p.store.get_task(ADA, run_id)
            messages = await p.store.list_messages(ADA, view.session_id, limit=10, before=None)
    log = p.recorder.log
    assert [shape(e) for e in log] == expected_sequence(run_id, ["p1", "p2", "p3"], 2)
    assert all(e[1] == run_id for e in log if e[0] != "session_updated")
    assert [(t.round_number, t.panelist_id) for t in turns] == [
        (r, s) for r in (1, 2) for s in ("p1", "p2", "p3")]
    completed = [e[3] for e in log if e[0] == "turn_completed"]
    assert completed == turns  # what was announced is what is stored
    for turn in turns:
        assert turn.content_hash == content_hash(turn.content)
        assert turn.content.startswith(f"[rule-based turn] {turn.panelist_id} (sophon), "
                                       f"round {turn.round_number} of 2")
    assert run is not None and run.verdict is not None
    announced = next(e[2] for e in log if e[0] == "verdict")
    assert announced == run.verdict
    assert run.verdict_hash == done[2] == verdict_hash(run.verdict)
    assert run.verdict_hash == content_hash(json.dumps(
        run.verdict, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    assert set(run.verdict["scores"]) == {"p1", "p2", "p3"}
    assert run.verdict["summary"].startswith("[rule-based verdict]")
    assert task is not None and task.state is TaskState.COMPLETED and task.kind == "discussion"
    assert done[3] == task.duration_ms
    spoken_words = sum(len(turn.content.split()) for turn in turns)
    assert task.tokens_used is not None and task.tokens_used > spoken_words  # and the verdict's
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "Should cities ban cars?"
    assert messages[1].content.endswith(run.verdict["summary"])
    assert messages[1].task_id == run_id


async def test_discussion_job_cancel_mid_turn_stops_the_run(tmp_path: Path) -> None:
    """p2 of round 1 speaks one word and then waits forever; the run is cancelled then."""
    stuck = ScriptedAgent("stuck", "a long answer", gate=trio.Event())
    with trio.fail_after(CEILING):
        async with panel(tmp_path, stuck) as p:
            view = await p.start(["sophon", "stuck"], rounds=2)
            await p.recorder.wait_for(lambda: stuck.requests)
            task = await p.store.get_task(ADA, view.run_id)
            assert task is not None and task.state is TaskState.RUNNING
            await p.runtime.cancel(task, "ada")
            cancelled = await p.recorder.wait_kind("cancelled", view.run_id)
            turns = await p.store.list_turns(view.run_id)
            stored = await p.store.get_task(ADA, view.run_id)
            run = await p.store.get_discussion(ADA, view.run_id)
    assert cancelled == ("cancelled", view.run_id, "ada")
    kinds = p.recorder.kinds()
    assert kinds[-3:] == ["turn_completed", "turn_started", "cancelled"], kinds
    assert [t.panelist_id for t in turns] == ["p1"]
    assert stored is not None and stored.state is TaskState.CANCELLED
    assert stored.cancelled_by == "ada"
    assert run is not None and run.verdict is None


async def test_discussion_job_invalid_verdict_fails_the_run(tmp_path: Path) -> None:
    judge = ScriptedAgent("judge", '{"winner": "p9", "summary": "x", "scores": {}}')
    with trio.fail_after(CEILING):
        async with panel(tmp_path, judge) as p:
            view = await p.start(["sophon", "sophon"], judge="judge", rounds=1)
            failed = await p.recorder.wait_kind("failed", view.run_id)
            task = await p.store.get_task(ADA, view.run_id)
            run = await p.store.get_discussion(ADA, view.run_id)
    error = "The judge's verdict is not valid: 'winner' must be one of p1, p2 or null."
    assert failed == ("failed", view.run_id, error)
    assert task is not None and (task.state, task.error) == (TaskState.FAILED, error)
    assert run is not None and run.verdict is None and run.verdict_hash is None
    assert "verdict" not in p.recorder.kinds() and "completed" not in p.recorder.kinds()


class ToolCaller:
    agent_id = "caller"

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        yield CallTools((ToolCall("c1", "current_time", {}),))


async def test_discussion_job_panelist_that_asks_for_tools_fails_the_run(
    tmp_path: Path,
) -> None:
    with trio.fail_after(CEILING):
        async with panel(tmp_path, ToolCaller()) as p:
            view = await p.start(["sophon", "caller"], rounds=1)
            failed = await p.recorder.wait_kind("failed", view.run_id)
    assert failed[2] == "Agent 'caller' asked for tools in a discussion."
    assert [shape(e) for e in p.recorder.log if e[0].startswith("turn")] == [
        ("turn_started", "p1", 1), ("turn_completed", "p1"), ("turn_started", "p2", 1)]


async def test_discussion_job_openai_panelist_and_judge_get_panel_prompts(
    tmp_path: Path,
) -> None:
    """p1 is an OpenAI-compatible agent, p2 sophon, the judge the OpenAI agent too. The
    endpoint answers p1's turn, then the verdict (a whole-number float score, stored as an
    integer; an extra key, dropped)."""
    verdict_text = json.dumps({"winner": "p1", "summary": "p1 was clearer.",
                               "scores": {"p1": 8.0, "p2": 6.5}, "notes": "dropped"})
    endpoint = Endpoint(in_turn(reply_answer("Cars ", "should go."),
                                reply_answer("```json\n", verdict_text, "\n```")))
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            writer = OpenAIAgent("writer", OpenAIConfig(base_url=base_url, model="tiny",
                                                        system_prompt="Be brief."))
            async with panel(tmp_path, writer) as p:
                view = await p.start(["writer", "sophon"], judge="writer", rounds=1)
                await p.recorder.wait_kind("discussion_completed", view.run_id)
                run = await p.store.get_discussion(ADA, view.run_id)
                turns = await p.store.list_turns(view.run_id)
    assert run is not None
    assert run.verdict == {"winner": "p1", "summary": "p1 was clearer.",
                           "scores": {"p1": 8, "p2": 6.5}}
    assert run.verdict_hash == content_hash(canonical_json(run.verdict))
    assert turns[0].content == "Cars should go."
    turn_body, judge_body = endpoint.bodies()
    for body in (turn_body, judge_body):
        assert "tools" not in body and body["stream"] is True and body["model"] == "tiny"
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert [m["role"] for m in body["messages"]] == ["system", "system", "user"]
    assert "You are p1, one of 2 panelists" in turn_body["messages"][1]["content"]
    assert "Topic: Should cities ban cars?" in turn_body["messages"][2]["content"]
    assert "Nobody has spoken yet." in turn_body["messages"][2]["content"]
    judge_prompt = judge_body["messages"][1]["content"]
    assert "You are the judge" in judge_prompt and '"p1": "<0-10>"' in judge_prompt
    transcript = judge_body["messages"][2]["content"]
    assert "[round 1, p1 (writer)]\nCars should go." in transcript
    assert f"[round 1, p2 (sophon)]\n{turns[1].content}" in transcript
