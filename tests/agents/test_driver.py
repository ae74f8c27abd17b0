"""TaskDriver and the runtime with a person in the loop (issue 12, docs/hubs/approvals.md).

The driver runs a claimed task from its stored transcript: the tool calls without a
result, then the agent's next step, until the reply or a call that needs a person. The
first half drives ``TaskDriver.drive`` directly on a claimed task (no workers): what is
run, refused, stored and parked, the step budget, a lease lost at the moment of parking.
The second half runs real ``TaskRuntime``\\ s (the harness of ``test_runtime``: real
SQLite, or PostgreSQL where marked, a recording ``TaskEvents``, short leases and the real
clock) with the real built-in agent ``sophon`` and notes in the store, through every
outcome: a tool that needs approval parks the task (``waiting``, no lease, its worker
free for other tasks) and reports ``waiting``; approved, the tool runs with the original
parameters (the note is really gone); edited, with the modified ones; rejected or timed
out, it does not run and the reply says why; an info request takes only one of its
options; a resumed task continues from the stored transcript, also in a second runtime
on the same database (another process: not from memory), and is started only once; the
step budget fails a task; a cancel ends a waiting task and its pending requests. The
OpenAI-compatible agent goes through the same with its fake endpoint.

Nothing sleeps to wait for an event: the recorder wakes waiters on every event, and
``settle`` waits until no store call is in flight.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.agents.test_runtime import (
    ADA,
    BOTH,
    CEILING,
    T0,
    Harness,
    RecordingEvents,
    running,
    settle,
)
from tests.storage.backends import Backend, Database, postgres_database, sqlite_database
from tests.support.openai_endpoint import (
    Endpoint,
    call_spec,
    in_turn,
    reply_answer,
    serving,
    tool_calls_answer,
)
from voisnap.agents.base import (
    AgentError,
    AgentEvent,
    AgentRequest,
    CallTools,
    Final,
    Status,
    TextPart,
    Token,
    ToolCall,
    ToolResult,
    transcript_from_json,
    transcript_to_json,
    unanswered,
)
from voisnap.agents.builtin import WHICH_NOTE, BuiltinAgent
from voisnap.agents.decisions import Decider, DecisionError
from voisnap.agents.driver import (
    APPROVAL_TIMED_OUT,
    NOT_ANSWERED,
    REJECTED,
    LeaseLost,
    RequestTimeouts,
    TaskDriver,
    Waiting,
    rounds,
)
from voisnap.agents.openai import OpenAIAgent, OpenAIConfig
from voisnap.agents.registry import AgentEntry, AgentRegistry, Budget
from voisnap.agents.tools import Toolbox, ToolSet
from voisnap.storage.base import (
    PENDING,
    Approval,
    InfoRequest,
    Note,
    Store,
    Task,
    TaskState,
    utc_now,
)

HOUR = datetime.timedelta(hours=1)
OWNER = Decider("acme", "ada")
TINY = 0.05  # seconds: a request that times out at once (noticed at the next expiry pass)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """SQLite unless a test asks for both (``BOTH``)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return sqlite_database(tmp_path)
    return postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
async def harness(database: Database) -> AsyncIterator[Harness]:
    """``test_runtime``'s harness: node A's store, the recorder, the fake agents, sophon."""
    backend = Backend(database)
    try:
        yield Harness(backend, await backend.open())
    finally:
        await backend.aclose()


# -- agents ----------------------------------------------------------------------------------------


class ScriptedAgent:
    """Step n (n = the steps that called tools so far, from the transcript) plays
    ``steps[n]``: a tuple of calls (CallTools) or a text (Final). Like a real agent,
    it decides from the transcript alone."""

    def __init__(self, agent_id: str, *steps: tuple[ToolCall, ...] | str) -> None:
        self.agent_id = agent_id
        self.steps = steps
        self.requests: list[AgentRequest] = []

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        self.requests.append(request)
        yield Status("thinking")
        planned = self.steps[rounds(request.transcript)]
        if isinstance(planned, str):
            yield Token(planned)
            yield Final(planned, tokens_used=1)
        else:
            yield CallTools(planned)


class LoopingAgent:
    """Calls the calculator at every step, forever."""

    agent_id = "looping"

    def __init__(self) -> None:
        self.steps = 0

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        self.steps += 1
        yield Status("thinking")
        number = len(request.transcript)
        yield CallTools((ToolCall(f"call_{number}", "calculator", {"expression": "1+1"}),))


# -- the driver on its own -------------------------------------------------------------------------


class Direct:
    """A TaskDriver of node-a, and tasks claimed for it by hand."""

    def __init__(self, harness: Harness, *, registry: AgentRegistry | None = None,
                 store: Any = None, max_steps: int = 8,
                 timeouts: RequestTimeouts | None = None) -> None:
        self.harness = harness
        timeouts = timeouts or RequestTimeouts()
        self.driver = TaskDriver(
            store or harness.db, registry or harness.registry, Toolbox(harness.db),
            harness.events, node="node-a", timeouts=timeouts, max_steps=max_steps,
        )

    async def claim(self, agent_id: str, content: str) -> Task:
        task = await self.harness.accept(agent_id, content)
        return await self.reclaim(task)

    async def reclaim(self, task: Task) -> Task:
        claimed = await self.harness.db.claim_task("node-a", utc_now(), utc_now() + HOUR)
        assert claimed is not None and claimed.task_id == task.task_id
        return claimed

    async def drive(self, task: Task, content: str) -> Final | Waiting:
        request = AgentRequest(task.task_id, task.session_id, task.owner, content)
        return await self.driver.drive(task, request)


def registry_of(*agents: Any, tools: ToolSet | None = None) -> AgentRegistry:
    return AgentRegistry({a.agent_id: AgentEntry(a, tools=tools or ToolSet()) for a in agents})


async def transcript_of(harness: Harness, task: Task) -> tuple[Any, ...]:
    return transcript_from_json(await harness.db.get_transcript(task.task_id))


def tool_events(events: RecordingEvents, task: Task) -> list[tuple[Any, ...]]:
    return [e[2:] for e in events.of(task.task_id) if e[0] in ("tool_started", "tool_completed")]


async def test_driver_runs_a_tool_then_the_next_step(harness: Harness) -> None:
    direct = Direct(harness)
    with trio.fail_after(CEILING):
        task = await direct.claim("sophon", "what is 6 * 7")
        final = await direct.drive(task, "what is 6 * 7")
        transcript = await transcript_of(harness, task)
    assert isinstance(final, Final)
    assert final.content == "6 * 7 = 42."
    assert final.tool_calls == (
        {"toolName": "calculator", "arguments": {"expression": "6 * 7"}, "ok": True},
    )
    call = ToolCall("call_1", "calculator", {"expression": "6 * 7"})
    assert transcript == (call, ToolResult("call_1", "calculator", True, 42))
    statuses = [e[2:] for e in harness.events.of(task.task_id) if e[0] == "status"]
    assert statuses == [("thinking", None), ("calling_tool", "calculator"), ("thinking", None)]


async def test_driver_parks_a_call_that_needs_approval(harness: Harness) -> None:
    direct = Direct(harness, timeouts=RequestTimeouts(approval=90, info=30))
    with trio.fail_after(CEILING):
        await harness.db.add_note(Note("n1", ADA, "to call Ana", T0))
        task = await direct.claim("sophon", "forget to call Ana")
        outcome = await direct.drive(task, "forget to call Ana")
        stored = await harness.stored(task)
        assert isinstance(outcome, Waiting)
        approval = outcome.request
        assert isinstance(approval, Approval)
        assert await harness.db.get_approval(approval.approval_id) == approval
        transcript = await transcript_of(harness, task)
        notes = await harness.db.list_notes(ADA)
    assert approval.approval_id.startswith("appr_")
    assert (approval.task_id, approval.session_id, approval.owner) == (task.task_id, "sess_1", ADA)
    assert (approval.agent_id, approval.call_id, approval.tool_name) == (
        "sophon", "call_1", "delete_note"
    )
    assert approval.params == {"text": "to call Ana"}
    assert approval.status == PENDING and approval.reason
    assert approval.expires_at - approval.created_at == datetime.timedelta(seconds=90)
    assert (stored.state, stored.lease_owner, stored.lease_until) == (
        TaskState.WAITING, None, None
    )
    assert transcript == (ToolCall("call_1", "delete_note", {"text": "to call Ana"}),)
    assert [n.text for n in notes] == ["to call Ana"]  # not yet
    assert tool_events(harness.events, task) == []


async def test_driver_resumes_from_the_stored_transcript_with_another_driver(
    harness: Harness,
) -> None:
    """Approved: the next ``drive`` (a new driver, a new agent object: nothing kept in
    memory) finds the decision in the store, runs the tool with the original parameters,
    and asks the agent for its next step."""
    with trio.fail_after(CEILING):
        await harness.db.add_note(Note("n1", ADA, "to call Ana", T0))
        first = Direct(harness)
        task = await first.claim("sophon", "forget to call Ana")
        parked = await first.drive(task, "forget to call Ana")
        assert isinstance(parked, Waiting)
        resolution = await harness.db.resolve(parked.request, "approved", by="ada",
                                              now=utc_now())
        assert resolution.won and resolution.requeued is not None
        assert resolution.requeued.state is TaskState.QUEUED

        second = Direct(harness, registry=registry_of(BuiltinAgent("sophon", 0)))
        final = await second.drive(await second.reclaim(task), "forget to call Ana")
        notes = await harness.db.list_notes(ADA)
        transcript = await transcript_of(harness, task)
    assert isinstance(final, Final)
    assert final.content == "Deleted the note “to call Ana”."
    assert notes == []
    assert transcript[1] == ToolResult(
        "call_1", "delete_note", True,
        {"noteId": "n1", "text": "to call Ana", "createdAt": T0.isoformat()},
    )
    assert tool_events(harness.events, task)[0] == ("delete_note", {"text": "to call Ana"})


async def test_driver_runs_the_calls_of_a_step_in_order_around_a_wait(harness: Harness) -> None:
    """One step calls three tools; the second needs approval. The first runs and its
    result is stored before the task parks; after the approval the second and third
    run, then the agent's next step."""
    calls = (
        ToolCall("c1", "add_note", {"text": "first"}),
        ToolCall("c2", "delete_note", {"text": "first"}),
        ToolCall("c3", "list_notes", {}),
    )
    agent = ScriptedAgent("scripted", calls, "done")
    direct = Direct(harness, registry=registry_of(agent))
    with trio.fail_after(CEILING):
        task = await direct.claim("scripted", "go")
        parked = await direct.drive(task, "go")
        assert isinstance(parked, Waiting) and parked.request.call_id == "c2"
        stored = await transcript_of(harness, task)
        assert [type(s).__name__ for s in stored] == ["ToolCall"] * 3 + ["ToolResult"]
        assert [n.text for n in await harness.db.list_notes(ADA)] == ["first"]
        await harness.db.resolve(parked.request, "approved", by="ada", now=utc_now())
        final = await direct.drive(await direct.reclaim(task), "go")
    assert isinstance(final, Final) and final.content == "done"
    assert [e[0] for e in tool_events(harness.events, task)] == [
        "add_note", "add_note", "delete_note", "delete_note", "list_notes", "list_notes"
    ]
    last = agent.requests[-1].transcript
    assert [s.call_id for s in last if isinstance(s, ToolResult)] == ["c1", "c2", "c3"]
    assert last[-1] == ToolResult("c3", "list_notes", True, [])
    assert [c["toolName"] for c in final.tool_calls] == ["add_note", "delete_note", "list_notes"]


@pytest.mark.parametrize(
    ("call", "why"),
    [
        (ToolCall("c1", "send_email", {"to": "ana"}),
         "The tool 'send_email' is not available to this agent."),
        (ToolCall("c1", "add_note", {"text": "x"}),
         "The tool 'add_note' is not available to this agent."),
        (ToolCall("c1", "delete_note", {}), "Invalid parameters for 'delete_note': "),
        (ToolCall("c1", "ask_user", {"options": ["a"]}), "Invalid parameters for 'ask_user': "),
    ],
    ids=["unknown-tool", "tool-not-given", "approval-tool-bad-params", "ask-user-bad-params"],
)
async def test_driver_refuses_a_call_it_cannot_make_and_goes_on(
    harness: Harness, call: ToolCall, why: str
) -> None:
    """The refusal is the call's result: nothing runs, nothing is asked of a person,
    and the agent's next step sees why."""
    agent = ScriptedAgent("scripted", (call,), "understood")
    tools = ToolSet(("calculator", "delete_note", "ask_user"))
    direct = Direct(harness, registry=registry_of(agent, tools=tools))
    with trio.fail_after(CEILING):
        task = await direct.claim("scripted", "go")
        final = await direct.drive(task, "go")
        approvals = await harness.db.list_approvals("acme", None, None)
        infos = await harness.db.list_info_requests("acme", None, None)
        notes = await harness.db.list_notes(ADA)
    assert isinstance(final, Final) and final.content == "understood"
    [result] = [s for s in agent.requests[-1].transcript if isinstance(s, ToolResult)]
    assert (result.call_id, result.ok) == ("c1", False)
    assert result.content.startswith(why)
    assert approvals == [] and infos == [] and notes == []
    assert tool_events(harness.events, task) == []
    assert final.tool_calls == ({"toolName": call.name, "arguments": call.arguments, "ok": False},)


async def test_driver_a_tool_that_fails_is_a_result_not_a_failure(harness: Harness) -> None:
    agent = ScriptedAgent("scripted", (ToolCall("c1", "calculator", {"expr": "1"}),
                                       ToolCall("c2", "calculator", {"expression": "1/0"})), "ok")
    direct = Direct(harness, registry=registry_of(agent))
    with trio.fail_after(CEILING):
        final = await direct.drive(await direct.claim("scripted", "go"), "go")
    assert isinstance(final, Final)
    results = [s for s in agent.requests[-1].transcript if isinstance(s, ToolResult)]
    assert [(r.ok, r.content.split(":")[0]) for r in results] == [
        (False, "Invalid parameters for 'calculator'"), (False, "Division by zero.")
    ]


async def test_driver_require_approval_comes_from_the_agents_tool_set(harness: Harness) -> None:
    agent = ScriptedAgent("scripted", (ToolCall("c1", "calculator", {"expression": "2*3"}),),
                          "six")
    tools = ToolSet(require_approval=frozenset({"calculator"}))
    direct = Direct(harness, registry=registry_of(agent, tools=tools))
    with trio.fail_after(CEILING):
        task = await direct.claim("scripted", "go")
        parked = await direct.drive(task, "go")
        assert isinstance(parked, Waiting)
        assert isinstance(parked.request, Approval)
        assert parked.request.tool_name == "calculator"
        await harness.db.resolve(parked.request, "approved", by="ada", now=utc_now())
        final = await direct.drive(await direct.reclaim(task), "go")
    assert isinstance(final, Final) and final.content == "six"
    assert agent.requests[-1].transcript[-1] == ToolResult("c1", "calculator", True, 6)


async def test_driver_ask_user_parks_with_an_info_request(harness: Harness) -> None:
    direct = Direct(harness, timeouts=RequestTimeouts(approval=90, info=30))
    with trio.fail_after(CEILING):
        task = await direct.claim("sophon", "remember something")
        parked = await direct.drive(task, "remember something")
        assert isinstance(parked, Waiting)
        info = parked.request
        assert isinstance(info, InfoRequest)
        assert await harness.db.get_info_request(info.info_id) == info
        stored = await harness.stored(task)
    assert info.info_id.startswith("info_")
    assert (info.question, info.options, info.status, info.call_id) == (
        "What should I remember?", None, PENDING, "call_1"
    )
    assert info.expires_at - info.created_at == datetime.timedelta(seconds=30)
    assert stored.state is TaskState.WAITING and stored.lease_owner is None


async def test_driver_a_pending_request_parks_the_task_again(harness: Harness) -> None:
    """A task claimed while its request is still pending (say, requeued by mistake)
    parks again on the same request; no second request is made."""
    direct = Direct(harness)
    with trio.fail_after(CEILING):
        task = await direct.claim("sophon", "remember something")
        first = await direct.drive(task, "remember something")
        assert isinstance(first, Waiting)
        await harness.db._run(lambda db: db.execute(  # a requeue by mistake
            "UPDATE tasks SET state = 'queued' WHERE task_id = ?", (task.task_id,)))
        again = await direct.drive(await direct.reclaim(task), "remember something")
        infos = await harness.db.list_info_requests("acme", "ada", None)
        stored = await harness.stored(task)
    assert isinstance(again, Waiting) and again.request == first.request
    assert infos == [first.request]
    assert stored.state is TaskState.WAITING


# -- the step budget -------------------------------------------------------------------------------


async def test_driver_step_budget_fails_an_agent_that_keeps_calling_tools(
    harness: Harness,
) -> None:
    looping = LoopingAgent()
    direct = Direct(harness, registry=registry_of(looping), max_steps=2)
    with trio.fail_after(CEILING):
        task = await direct.claim("looping", "go")
        with pytest.raises(AgentError) as caught:
            await direct.drive(task, "go")
    assert str(caught.value) == "The agent called tools in more than 2 steps."
    ran = [e for e in tool_events(harness.events, task) if len(e) == 2]
    assert len(ran) == 2  # the tools of two steps ran; the third step's did not


async def test_driver_step_budget_lets_an_agent_use_every_step_then_reply(
    harness: Harness,
) -> None:
    """``--agent-max-steps`` is the number of steps in which an agent may call tools
    (docs/settings.md, config.py): with 1, an agent that calls a tool once and then
    replies must finish, as must one that calls tools in exactly 3 steps with 3."""
    direct = Direct(harness, max_steps=1)
    three = ScriptedAgent("three", *[(ToolCall(f"c{n}", "current_time", {}),) for n in range(3)],
                          "done")
    direct_three = Direct(harness, registry=registry_of(three), max_steps=3)
    with trio.fail_after(CEILING):
        once = await direct.drive(await direct.claim("sophon", "what is 6 * 7"), "what is 6 * 7")
        thrice = await direct_three.drive(await direct_three.claim("three", "go"), "go")
    assert isinstance(once, Final) and once.content == "6 * 7 = 42."
    assert isinstance(thrice, Final) and thrice.content == "done"


async def test_driver_continues_in_new_chains_up_to_the_agents_maximum(
    harness: Harness,
) -> None:
    """An agent's own ``max_steps`` makes a chain; at a chain's end it continues
    (``continuing``, numbered from 1) up to ``max_continuations`` times, then fails."""
    looping = LoopingAgent()
    budget = Budget(max_steps=2, max_continuations=2)
    registry = AgentRegistry({"looping": AgentEntry(looping, budget=budget)})
    direct = Direct(harness, registry=registry, max_steps=50)  # the agent's own budget wins
    with trio.fail_after(CEILING):
        task = await direct.claim("looping", "go")
        with pytest.raises(AgentError) as caught:
            await direct.drive(task, "go")
    assert str(caught.value) == "The agent called tools in more than 6 steps."
    continuing = [e[2:] for e in harness.events.all_of(task.task_id) if e[0] == "continuing"]
    assert continuing == [(1, 2), (2, 2)]
    # Each continuation comes between a chain's last step and the next one's first.
    kinds = [e[0] for e in harness.events.all_of(task.task_id)
             if e[0] in ("tool_called", "continuing")]
    assert kinds == ["tool_called"] * 2 + ["continuing"] + ["tool_called"] * 2 + [
        "continuing"] + ["tool_called"] * 2


async def test_driver_reports_each_call_and_its_result_in_transcript_order(
    harness: Harness,
) -> None:
    agent = ScriptedAgent("two", (ToolCall("c1", "calculator", {"expression": "2*3"}),
                                  ToolCall("c2", "missing_tool", {})), "done")
    direct = Direct(harness, registry=registry_of(agent))
    with trio.fail_after(CEILING):
        task = await direct.claim("two", "go")
        await direct.drive(task, "go")
    reported = [(e[0], e[2]) for e in harness.events.all_of(task.task_id)
                if e[0] in ("tool_called", "tool_result")]
    assert [(kind, step.call_id) for kind, step in reported] == [
        ("tool_called", "c1"), ("tool_called", "c2"), ("tool_result", "c1"), ("tool_result", "c2")
    ]
    assert reported[2][1].content == 6 and reported[3][1].ok is False
    assert list(await transcript_of(harness, task))[-2:] == [reported[2][1], reported[3][1]]


async def test_driver_reports_the_system_prompt_only_when_there_is_one(
    harness: Harness,
) -> None:
    agent = ScriptedAgent("told", "hi")
    registry = AgentRegistry({"told": AgentEntry(agent, system_prompt="Be brief."),
                              "untold": AgentEntry(ScriptedAgent("untold", "hi"))})
    direct = Direct(harness, registry=registry)
    with trio.fail_after(CEILING):
        told = await direct.claim("told", "go")
        await direct.drive(told, "go")
        untold = await direct.claim("untold", "go")
        await direct.drive(untold, "go")
    prompts = [e for e in harness.events.log if e[0] == "system_prompt"]
    assert prompts == [("system_prompt", told.task_id, "Be brief.")]


def test_a_budget_prices_tokens_per_million() -> None:
    budget = Budget(price_input_per_mtok=3.0, price_output_per_mtok=15.0)
    assert budget.cost_usd(1_000_000, 0) == 3.0
    assert budget.cost_usd(1000, 500) == pytest.approx(0.0105)
    assert Budget().cost_usd(10**9, 10**9) == 0


def test_driver_rounds_counts_the_steps_that_called_tools() -> None:
    a, b, c = (ToolCall(n, "current_time", {}) for n in ("a", "b", "c"))
    result = lambda call: ToolResult(call.call_id, call.name, True, "now")  # noqa: E731
    assert rounds(()) == 0
    assert rounds((a,)) == 1
    assert rounds((a, b, result(a), result(b))) == 1
    assert rounds((a, result(a), b, result(b), c)) == 3


def test_driver_transcript_round_trips_through_json() -> None:
    transcript = (
        TextPart("Let me see. "),
        ToolCall("a", "calculator", {"expression": "1/0"}),
        ToolCall("b", "list_notes", {}),
        ToolResult("a", "calculator", False, "Division by zero."),
        ToolResult("b", "list_notes", True, [{"noteId": "n1", "text": "“x”"}]),
        ToolCall("c", "ask_user", {"question": "Which?", "options": None}),
    )
    assert transcript_from_json(transcript_to_json(transcript)) == transcript
    assert transcript_from_json(None) == () and transcript_from_json("") == ()
    assert unanswered(transcript) == [transcript[-1]]


# -- a lease lost at the moment of parking ---------------------------------------------------------


class LosingStore:
    """The real store, except that the task's lease is taken away (another node expired
    it) just before the driver parks it."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def wait_for(self, *args: Any) -> Any:
        await self._inner.expire_leases(utc_now() + 2 * HOUR, "taken away")
        return await self._inner.wait_for(*args)


async def test_driver_a_lease_lost_before_parking_stores_no_request(harness: Harness) -> None:
    direct = Direct(harness, store=LosingStore(harness.db))
    with trio.fail_after(CEILING):
        await harness.db.add_note(Note("n1", ADA, "to call Ana", T0))
        task = await direct.claim("sophon", "forget to call Ana")
        with pytest.raises(LeaseLost):
            await direct.drive(task, "forget to call Ana")
        stored = await harness.stored(task)
        approvals = await harness.db.list_approvals("acme", None, None)
        notes = await harness.db.list_notes(ADA)
    assert approvals == []
    assert (stored.state, stored.error) == (TaskState.FAILED, "taken away")
    assert [n.text for n in notes] == ["to call Ana"]


# -- the runtime: approvals ------------------------------------------------------------------------


async def nth(events: RecordingEvents, kind: str, task: Task, n: int = 1) -> tuple[Any, ...]:
    """The n-th ``kind`` event of ``task``, once it came."""
    await events.wait_until(lambda: events.kinds(task.task_id).count(kind) >= n)
    return [e for e in events.of(task.task_id) if e[0] == kind][n - 1]


async def parked(events: RecordingEvents, task: Task, n: int = 1) -> Any:
    return (await nth(events, "waiting", task, n))[2]


async def finished(events: RecordingEvents, task: Task) -> Any:
    """The task's reply (stored), once it completed."""
    await events.wait_for("completed", task.task_id)
    return (await events.wait_for("message", task.task_id))[3]


async def seed_notes(harness: Harness, *texts: str) -> None:
    for n, text in enumerate(texts):
        await harness.db.add_note(Note(f"n{n}", ADA, text, T0 + datetime.timedelta(seconds=n)))


async def note_texts(harness: Harness) -> list[str]:
    return [note.text for note in await harness.db.list_notes(ADA)]


def tools_run(events: RecordingEvents, task: Task) -> list[tuple[str, Any]]:
    return [(e[2], e[3]) for e in events.of(task.task_id) if e[0] == "tool_started"]


def assert_started_once(events: RecordingEvents, task: Task) -> None:
    kinds = events.kinds(task.task_id)
    assert kinds.count("started") == 1 and kinds[0] == "started", kinds


async def test_runtime_approved_runs_the_tool_with_its_parameters(harness: Harness) -> None:
    """The task waits without its worker (one worker: another task runs meanwhile);
    approved, the note is really deleted and the agent finishes its reply."""
    events = harness.events
    with trio.fail_after(CEILING):
        await seed_notes(harness, "to call Ana", "buy milk")
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "sophon", "forget to call Ana")
            approval = await parked(events, task)
            waiting = await harness.stored(task)
            assert (waiting.state, waiting.lease_owner, waiting.lease_until) == (
                TaskState.WAITING, None, None
            )
            assert events.kinds(task.task_id) == ["started", "status", "waiting"]
            assert events.of(task.task_id)[-1][3].task_id == task.task_id
            assert await harness.db.get_approval(approval.approval_id) == approval

            other = await harness.submit(runtime, "sophon", "what is 6 * 7")
            assert (await finished(events, other)).content == "6 * 7 = 42."
            assert await note_texts(harness) == ["to call Ana", "buy milk"]

            decided = await runtime.decisions.decide(OWNER, approval.approval_id, "approved")
            reply = await finished(events, task)
        stored = await harness.stored(task)
        notes = await note_texts(harness)
    assert (decided.status, decided.resolved_by) == ("approved", "ada")
    assert [e[2] for e in events.of(task.task_id) if e[0] == "request_resolved"] == [decided]
    assert reply.content == "Deleted the note “to call Ana”."
    assert reply.tool_calls == (
        {"toolName": "delete_note", "arguments": {"text": "to call Ana"}, "ok": True},
    )
    assert notes == ["buy milk"]
    assert tools_run(events, task) == [("delete_note", {"text": "to call Ana"})]
    assert ("status", task.task_id, "resuming", None) in events.log
    assert_started_once(events, task)
    assert stored.state is TaskState.COMPLETED


async def test_runtime_edited_runs_the_tool_with_the_modified_parameters(
    harness: Harness,
) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        await seed_notes(harness, "to call Ana", "buy milk")
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "sophon", "forget to call Ana")
            approval = await parked(events, task)
            with pytest.raises(DecisionError) as invalid:
                await runtime.decisions.decide(OWNER, approval.approval_id, "edited",
                                               modified_params={"txt": "buy milk"})
            await settle(harness.store)
            still = await harness.db.get_approval(approval.approval_id)
            assert still is not None and still.status == PENDING
            assert (await harness.stored(task)).state is TaskState.WAITING

            edit = {"text": "buy milk"}
            decided = await runtime.decisions.decide(OWNER, approval.approval_id, "edited",
                                                     modified_params=edit)
            reply = await finished(events, task)
        notes = await note_texts(harness)
    assert str(invalid.value).startswith("Invalid parameters for 'delete_note': ")
    assert (decided.status, decided.outcome_detail) == ("edited", edit)
    assert tools_run(events, task) == [("delete_note", edit)]
    assert notes == ["to call Ana"]
    assert reply.content == "Deleted the note “buy milk”."
    assert_started_once(events, task)


@pytest.mark.parametrize(
    ("reason", "told"), [("not now", "not now"), (None, "no reason given")]
)
async def test_runtime_rejected_does_not_run_the_tool_and_says_why(
    harness: Harness, reason: str | None, told: str
) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        await seed_notes(harness, "to call Ana")
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "sophon", "forget to call Ana")
            approval = await parked(events, task)
            decided = await runtime.decisions.decide(OWNER, approval.approval_id, "rejected",
                                                     reason=reason)
            reply = await finished(events, task)
        stored = await harness.stored(task)
    assert (decided.status, decided.outcome_detail) == ("rejected", reason)
    assert REJECTED == "The user rejected this action"
    assert reply.content == f"I did not delete it: {REJECTED}: {told}"
    assert reply.tool_calls == (
        {"toolName": "delete_note", "arguments": {"text": "to call Ana"}, "ok": False},
    )
    assert tools_run(events, task) == []
    assert await note_texts(harness) == ["to call Ana"]
    assert stored.state is TaskState.COMPLETED
    assert_started_once(events, task)


async def test_runtime_an_approval_nobody_decides_times_out(harness: Harness) -> None:
    events = harness.events
    timeouts = RequestTimeouts(approval=TINY, info=600)
    with trio.fail_after(CEILING):
        await seed_notes(harness, "to call Ana")
        async with running(harness.runtime(workers=1, timeouts=timeouts)) as runtime:
            task = await harness.submit(runtime, "sophon", "forget to call Ana")
            approval = await parked(events, task)
            resolved = (await nth(events, "request_resolved", task))[2]
            reply = await finished(events, task)
            with pytest.raises(DecisionError) as late:
                await runtime.decisions.decide(OWNER, approval.approval_id, "approved")
        stored = await harness.stored(task)
    assert approval.expires_at - approval.created_at == datetime.timedelta(seconds=TINY)
    assert (resolved.approval_id, resolved.status, resolved.resolved_by) == (
        approval.approval_id, "timeOut", None
    )
    assert reply.content == f"I did not delete it: {APPROVAL_TIMED_OUT}"
    assert str(late.value) == f"Approval '{approval.approval_id}' was already resolved: timeOut."
    assert tools_run(events, task) == []
    assert await note_texts(harness) == ["to call Ana"]
    assert stored.state is TaskState.COMPLETED
    assert_started_once(events, task)


# -- the runtime: info requests --------------------------------------------------------------------


async def test_runtime_info_request_with_options_then_an_approval(harness: Harness) -> None:
    """"delete a note": list_notes runs, the agent asks which (the notes as options): an
    answer outside them is refused and changes nothing; a valid one resumes the task,
    which then waits for the approval of the deletion; approved, that note is gone."""
    events = harness.events
    with trio.fail_after(CEILING):
        await seed_notes(harness, "call Ana", "buy milk")
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "sophon", "delete a note")
            info = await parked(events, task)
            assert isinstance(info, InfoRequest)
            assert (info.question, info.options) == (WHICH_NOTE, ("call Ana", "buy milk"))
            with pytest.raises(DecisionError) as outside:
                await runtime.decisions.answer(OWNER, info.info_id, "call Bob")
            await settle(harness.store)
            assert (await harness.db.get_info_request(info.info_id)).status == PENDING
            assert (await harness.stored(task)).state is TaskState.WAITING

            answered = await runtime.decisions.answer(OWNER, info.info_id, "buy milk")
            approval = await parked(events, task, 2)
            assert isinstance(approval, Approval)
            assert (approval.call_id, approval.params) == ("call_3", {"text": "buy milk"})
            await runtime.decisions.decide(OWNER, approval.approval_id, "approved")
            reply = await finished(events, task)
    assert str(outside.value) == "The response must be one of 'call Ana', 'buy milk'."
    assert (answered.status, answered.response, answered.resolved_by) == (
        "answered", "buy milk", "ada"
    )
    assert reply.content == "Deleted the note “buy milk”."
    assert await note_texts(harness) == ["call Ana"]
    assert tools_run(events, task) == [("list_notes", {}), ("delete_note", {"text": "buy milk"})]
    assert [c["toolName"] for c in reply.tool_calls] == ["list_notes", "ask_user", "delete_note"]
    assert_started_once(events, task)
    statuses = [e[2] for e in events.of(task.task_id) if e[0] == "status"]
    assert statuses.count("resuming") == 2


async def test_runtime_info_request_without_options_takes_any_answer(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "sophon", "remember something")
            info = await parked(events, task)
            assert (info.question, info.options) == ("What should I remember?", None)
            await runtime.decisions.answer(OWNER, info.info_id, "buy bread")
            reply = await finished(events, task)
    assert reply.content == "Noted: “buy bread”."
    assert await note_texts(harness) == ["buy bread"]
    assert tools_run(events, task) == [("add_note", {"text": "buy bread"})]


async def test_runtime_info_request_nobody_answers_times_out(harness: Harness) -> None:
    events = harness.events
    timeouts = RequestTimeouts(approval=600, info=TINY)
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1, timeouts=timeouts)) as runtime:
            task = await harness.submit(runtime, "sophon", "remember something")
            info = await parked(events, task)
            resolved = (await nth(events, "request_resolved", task))[2]
            reply = await finished(events, task)
    assert (resolved.info_id, resolved.status, resolved.response) == (
        info.info_id, "timeOut", None
    )
    assert NOT_ANSWERED == "The user did not answer in time."
    assert reply.content == f"I did not note anything: {NOT_ANSWERED}"
    assert await note_texts(harness) == []
    assert tools_run(events, task) == []


# -- the runtime: another process, cancel, budget --------------------------------------------------


@BOTH
async def test_runtime_a_waiting_task_resumes_in_another_runtime(harness: Harness) -> None:
    """Node A parks the task and stops (a restart, a crash: nothing is kept). Node B, its
    own store on the same database and its own agent objects, takes the decision and
    resumes the task from the stored transcript; the task is started only once."""
    a, b = harness.node_a, await harness.node("node-b")
    with trio.fail_after(CEILING):
        await seed_notes(harness, "call Ana", "buy milk")
        async with running(harness.runtime(workers=1)) as runtime_a:
            task = await harness.submit(runtime_a, "sophon", "delete a note")
            info = await parked(a.events, task)
            await settle(a.store)
        fresh = registry_of(BuiltinAgent("sophon", token_delay=0))
        async with running(harness.runtime(workers=1, node=b, registry=fresh)) as runtime_b:
            await runtime_b.decisions.answer(OWNER, info.info_id, "call Ana")
            approval = await parked(b.events, task)
            await runtime_b.decisions.decide(OWNER, approval.approval_id, "approved")
            reply = await finished(b.events, task)
        stored = await harness.stored(task)
    assert a.events.kinds(task.task_id) == [
        "started", "status", "status", "tool_started", "tool_completed", "status", "waiting"
    ]
    b_kinds = b.events.kinds(task.task_id)
    assert "started" not in b_kinds
    assert b_kinds[:2] == ["request_resolved", "status"]
    assert b.events.of(task.task_id)[1][2] == "resuming"
    assert reply.content == "Deleted the note “call Ana”."
    assert await note_texts(harness) == ["buy milk"]
    assert (stored.state, stored.lease_owner) == (TaskState.COMPLETED, "node-b")
    assert tools_run(b.events, task) == [("delete_note", {"text": "call Ana"})]


async def test_runtime_cancel_of_a_waiting_task_cancels_its_requests(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        await seed_notes(harness, "to call Ana")
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "sophon", "forget to call Ana")
            approval = await parked(events, task)
            await runtime.cancel(await harness.stored(task), "ada")
            await events.wait_for("cancelled", task.task_id)
            resolved = (await nth(events, "request_resolved", task))[2]
            with pytest.raises(DecisionError) as late:
                await runtime.decisions.decide(OWNER, approval.approval_id, "approved")
            await settle(harness.store)
        stored = await harness.stored(task)
        stored_approval = await harness.db.get_approval(approval.approval_id)
    assert events.kinds(task.task_id) == [
        "started", "status", "waiting", "cancelled", "request_resolved"
    ]
    assert events.of(task.task_id)[3][2] == "ada"
    assert (resolved.approval_id, resolved.status) == (approval.approval_id, "cancelled")
    assert stored_approval == resolved
    assert (stored.state, stored.cancelled_by) == (TaskState.CANCELLED, "ada")
    assert str(late.value) == f"Approval '{approval.approval_id}' was already resolved: cancelled."
    assert await note_texts(harness) == ["to call Ana"]


async def test_runtime_step_budget_fails_the_task(harness: Harness) -> None:
    harness.add_agent(LoopingAgent())
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime(max_steps=3)) as runtime:
            task = await harness.submit(runtime, "looping", "go")
            failed = await events.wait_for("failed", task.task_id)
        stored = await harness.stored(task)
    assert failed[2] == "The agent called tools in more than 3 steps."
    assert (stored.state, stored.error) == (TaskState.FAILED, failed[2])
    assert "message" not in events.kinds(task.task_id)


# -- the OpenAI-compatible agent, through the same runtime -----------------------------------------


def writer(base_url: str) -> OpenAIAgent:
    return OpenAIAgent("writer", OpenAIConfig(base_url=base_url, model="tiny-model"))


@BOTH
async def test_runtime_openai_agent_approval_and_resume_in_another_runtime(
    harness: Harness,
) -> None:
    """The model asks for delete_note; the task parks on node A. Node B (a new agent
    object) resumes it after the approval: the model's second request carries the
    transcript — the assistant's tool call and the tool's result — and its reply ends
    the task. The tool events are those of the built-in agent."""
    endpoint = Endpoint(in_turn(
        tool_calls_answer(call_spec("call_x", "delete_note", {"text": "buy milk"}, piece=4),
                          text=("Deleting. ",), total_tokens=11),
        reply_answer("Done", "!", total_tokens=7),
    ))
    a, b = harness.node_a, await harness.node("node-b")
    with trio.fail_after(CEILING):
        await seed_notes(harness, "buy milk")
        async with serving(endpoint) as base_url:
            harness.add_agent(writer(base_url))
            async with running(harness.runtime(workers=1)) as runtime_a:
                task = await harness.submit(runtime_a, "writer", "forget the milk")
                approval = await parked(a.events, task)
                await settle(a.store)
            fresh = registry_of(writer(base_url))
            async with running(harness.runtime(node=b, registry=fresh)) as runtime_b:
                await runtime_b.decisions.decide(OWNER, approval.approval_id, "approved")
                reply = await finished(b.events, task)
    assert (approval.tool_name, approval.params, approval.call_id) == (
        "delete_note", {"text": "buy milk"}, "call_x"
    )
    assert await note_texts(harness) == []
    assert reply.content == "Deleting. Done!"
    assert reply.tool_calls == (
        {"toolName": "delete_note", "arguments": {"text": "buy milk"}, "ok": True},
    )
    first, second = endpoint.bodies()
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert [t["function"]["name"] for t in first["tools"]] == list(ToolSet().tools)
    assistant, tool = second["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["content"] == "Deleting. "
    [call] = assistant["tool_calls"]
    assert call["id"] == "call_x" and call["function"]["name"] == "delete_note"
    assert json.loads(call["function"]["arguments"]) == {"text": "buy milk"}
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_x"
    assert json.loads(tool["content"])["text"] == "buy milk"
    assert [e[0] for e in b.events.of(task.task_id) if e[0].startswith("tool")] == [
        "tool_started", "tool_completed"
    ]
    assert_started_once(a.events, task)


async def test_runtime_openai_agent_asks_the_user(harness: Harness) -> None:
    endpoint = Endpoint(in_turn(
        tool_calls_answer(call_spec("call_q", "ask_user",
                                    {"question": "Which colour?", "options": ["red", "blue"]})),
        reply_answer("Blue it is."),
    ))
    events = harness.events
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            harness.add_agent(writer(base_url))
            async with running(harness.runtime(workers=1)) as runtime:
                task = await harness.submit(runtime, "writer", "paint it")
                info = await parked(events, task)
                with pytest.raises(DecisionError):
                    await runtime.decisions.answer(OWNER, info.info_id, "green")
                await runtime.decisions.answer(OWNER, info.info_id, "blue")
                reply = await finished(events, task)
    assert (info.question, info.options, info.call_id) == ("Which colour?", ("red", "blue"),
                                                           "call_q")
    assert reply.content == "Blue it is."
    tool = endpoint.bodies()[1]["messages"][-1]
    assert tool == {"role": "tool", "tool_call_id": "call_q", "content": json.dumps("blue")}


async def test_runtime_openai_agent_tokens_used_counts_every_step(harness: Harness) -> None:
    """A task whose agent made two model calls used the tokens of both: the endpoint
    reported 11, then 7 (``CallTools.tokens_used`` exists for this)."""
    endpoint = Endpoint(in_turn(
        tool_calls_answer(call_spec("c1", "calculator", {"expression": "6*7"}), total_tokens=11),
        reply_answer("42", total_tokens=7),
    ))
    events = harness.events
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            harness.add_agent(writer(base_url))
            async with running(harness.runtime()) as runtime:
                task = await harness.submit(runtime, "writer", "six times seven")
                await finished(events, task)
        stored = await harness.stored(task)
    assert stored.tokens_used == 18
