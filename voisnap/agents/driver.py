"""Driving one task: the agent's steps, the tools it calls, and the waits for a person.

``TaskDriver.drive`` takes a claimed task from where its stored transcript left
it (nothing, for a new task) and loops: run the tool calls that have no result
yet, then ask the agent for its next step, until the agent gives its reply
(``Final``) or a call needs a person (``Waiting``):

- a tool that needs approval (``ToolSet.require_approval``) is run only after a
  person approved it (with the original parameters) or edited it (with the
  modified ones); a rejection or a time-out is the tool's result instead, and
  the agent goes on and finishes its reply;
- ``ask_user`` becomes an info request; the answer (or the time-out) is its result.

A call without its decision or answer yet stores the request, parks the task
(``Store.wait_for``: waiting, no lease, no worker) and returns ``Waiting``; the
decision sends the task back to the queue, and whichever process claims it
calls ``drive`` again, which finds the decision in the store, runs (or skips)
the tool, and asks the agent for the next step. Every result is stored with
the transcript as soon as it is known.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import attrs
import trio

from ..storage.base import (
    PENDING,
    Approval,
    InfoRequest,
    Request,
    Store,
    Task,
    utc_now,
)
from .base import (
    AgentError,
    AgentRequest,
    CallTools,
    Final,
    Status,
    TextPart,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
    transcript_from_json,
    transcript_to_json,
    unanswered,
)
from .openai import client_context
from .registry import AgentRegistry, Budget
from .tools import ASK_USER, Toolbox, ToolError, check_arguments

REJECTED = "The user rejected this action"
APPROVAL_TIMED_OUT = "Nobody approved this action in time."
NOT_ANSWERED = "The user did not answer in time."


@attrs.frozen
class Waiting:
    """The task is parked until a person decides or answers ``request``."""

    request: Request


@attrs.frozen
class RequestTimeouts:
    approval: float = 600.0
    info: float = 600.0


class LeaseLost(Exception):
    """The task is no longer this process's: stop without a word."""


class TaskDriver:
    def __init__(
        self,
        store: Store,
        agents: AgentRegistry,
        toolbox: Toolbox,
        events: Any,
        *,
        node: str,
        timeouts: RequestTimeouts,
        max_steps: int,
    ) -> None:
        self._store = store
        self._agents = agents
        self._toolbox = toolbox
        self._events = events
        self._node = node
        self._timeouts = timeouts
        self._max_steps = max_steps

    async def drive(self, task: Task, request: AgentRequest) -> Final | Waiting:
        entry = self._agents.entry(task.agent_id)
        transcript = list(transcript_from_json(await self._store.get_transcript(task.task_id)))
        prompt = system_prompt_of(entry.system_prompt, request)
        if prompt:
            await self._events.system_prompt(task, prompt)
        tokens_used = input_tokens = 0  # every step's model call counts (since the task resumed)
        while True:
            for call in unanswered(tuple(transcript)):
                result = await self._resolve(task, entry.tools, call, transcript)
                if isinstance(result, Waiting):
                    return result
                transcript.append(result)
                await self._events.tool_result(task, result)
                await self._save(task, transcript)
            asked = attrs.evolve(request, transcript=tuple(transcript), tools=entry.tools.specs())
            outcome, text = await self._step(task, entry.agent, asked)
            tokens_used += outcome.tokens_used
            input_tokens += outcome.input_tokens
            if isinstance(outcome, Final):
                final = attrs.evolve(outcome, tokens_used=tokens_used, input_tokens=input_tokens)
                return self._final(final, transcript)
            await self._check_budget(task, entry.budget, rounds(transcript))
            if text:
                transcript.append(TextPart(text))
            transcript.extend(outcome.calls)
            for call in outcome.calls:
                await self._events.tool_called(task, call)
            await self._save(task, transcript)

    async def _check_budget(self, task: Task, budget: Budget, done: int) -> None:
        """Before another step of tool calls, ``done`` of them made: a chain
        has ``max_steps`` of them; at its end the task continues in a new
        chain (``continuing``), up to ``max_continuations`` times, and then
        fails. The step after the last one allowed may still reply."""
        max_steps = budget.max_steps or self._max_steps
        chain, used = divmod(done, max_steps)
        if chain > budget.max_continuations:
            raise AgentError(
                f"The agent called tools in more than {max_steps * (budget.max_continuations + 1)}"
                " steps."
            )
        if chain and not used:  # this step begins a new chain
            await self._events.continuing(task, chain, budget.max_continuations)

    async def _step(self, task: Task, agent: Any, request: AgentRequest) -> tuple[Any, str]:
        """One agent step, its events reported; its outcome and the text it streamed."""
        streamed: list[str] = []
        outcome: Final | CallTools | None = None
        async for event in agent.step(request):
            match event:
                case Status():
                    await self._events.status(task, event.status, event.detail)
                case Token():
                    streamed.append(event.delta)
                    if task.is_streaming:
                        await self._events.chunk(task, event.delta, False)
                case Final() | CallTools():
                    outcome = event
        if outcome is None:
            raise AgentError("The agent ended without a reply.")
        return outcome, "".join(streamed)

    def _final(self, final: Final, transcript: list[Any]) -> Final:
        """The reply: what the agent wrote in earlier steps, then this one; and
        every tool call of the task, for the stored message."""
        earlier = "".join(step.content for step in transcript if isinstance(step, TextPart))
        calls = {s.call_id: s for s in transcript if isinstance(s, ToolCall)}
        summary = tuple(
            {"toolName": s.name, "arguments": calls[s.call_id].arguments, "ok": s.ok}
            for s in transcript
            if isinstance(s, ToolResult) and s.call_id in calls
        )
        return Final(
            earlier + final.content, final.tokens_used, summary or final.tool_calls,
            final.input_tokens,
        )

    # -- one tool call --------------------------------------------------------------------------

    async def _resolve(
        self, task: Task, tools: Any, call: ToolCall, transcript: list[Any]
    ) -> ToolResult | Waiting:
        if call.name not in tools.tools:
            return _refused(call, f"The tool '{call.name}' is not available to this agent.")
        if call.name != ASK_USER and not tools.needs_approval(call.name):
            return await self._run(task, call, call.arguments)
        try:
            check_arguments(call.name, call.arguments)
        except ToolError as error:
            return _refused(call, str(error))
        earlier = await self._store.request_for_call(task.task_id, call.call_id)
        if earlier is None or earlier.status == PENDING:
            return await self._wait(task, call, transcript, earlier)
        if isinstance(earlier, InfoRequest):
            return _answered(call, earlier)
        return await self._decided(task, call, earlier)

    async def _decided(self, task: Task, call: ToolCall, approval: Approval) -> ToolResult:
        match approval.status:
            case "approved":
                return await self._run(task, call, call.arguments)
            case "edited":
                return await self._run(task, call, approval.outcome_detail)
            case "rejected":
                reason = approval.outcome_detail or "no reason given"
                return _refused(call, f"{REJECTED}: {reason}")
        return _refused(call, APPROVAL_TIMED_OUT)

    async def _run(self, task: Task, call: ToolCall, arguments: dict[str, Any]) -> ToolResult:
        await self._events.status(task, "calling_tool", call.name)
        await self._events.tool_started(task, call.name, arguments)
        started = trio.current_time()
        try:
            # The session too: a reminder is posted in the session it was set in.
            content = await self._toolbox.run(
                task.owner, call.name, arguments, session_id=task.session_id
            )
            ok = True
        except ToolError as error:
            content, ok = str(error), False
        duration_ms = int((trio.current_time() - started) * 1000)
        await self._events.tool_completed(task, call.name, duration_ms, ok)
        return ToolResult(call.call_id, call.name, ok, content)

    async def _wait(
        self, task: Task, call: ToolCall, transcript: list[Any], earlier: Request | None
    ) -> Waiting:
        request = earlier or self._new_request(task, call)
        parked = await self._store.wait_for(
            task.task_id,
            self._node,
            transcript_to_json(tuple(transcript)),
            request if earlier is None else None,
        )
        if parked is None:
            raise LeaseLost(task.task_id)
        return Waiting(request)

    def _new_request(self, task: Task, call: ToolCall) -> Request:
        now = utc_now()
        if call.name == ASK_USER:
            options = call.arguments.get("options")
            return InfoRequest(
                info_id=f"info_{uuid.uuid4().hex}",
                task_id=task.task_id,
                session_id=task.session_id,
                owner=task.owner,
                agent_id=task.agent_id,
                call_id=call.call_id,
                question=call.arguments["question"],
                options=None if options is None else tuple(options),
                status=PENDING,
                created_at=now,
                expires_at=now + datetime.timedelta(seconds=self._timeouts.info),
            )
        return Approval(
            approval_id=f"appr_{uuid.uuid4().hex}",
            task_id=task.task_id,
            session_id=task.session_id,
            owner=task.owner,
            agent_id=task.agent_id,
            call_id=call.call_id,
            tool_name=call.name,
            params=call.arguments,
            reason=f"The agent wants to run {call.name}.",
            status=PENDING,
            created_at=now,
            expires_at=now + datetime.timedelta(seconds=self._timeouts.approval),
        )

    async def _save(self, task: Task, transcript: list[Any]) -> None:
        saved = await self._store.save_transcript(
            task.task_id, self._node, transcript_to_json(tuple(transcript))
        )
        if not saved:
            raise LeaseLost(task.task_id)


def system_prompt_of(configured: str | None, request: AgentRequest) -> str | None:
    """What the agent is told before the conversation: its configured prompt and
    what the user's client said (the openai backend sends exactly these)."""
    parts = [part for part in (configured, client_context(request)) if part]
    return "\n\n".join(parts) or None


def rounds(transcript: list[Any] | Transcript) -> int:
    """How many steps called tools: runs of consecutive calls in the transcript."""
    count, previous_was_call = 0, False
    for step in transcript:
        is_call = isinstance(step, ToolCall)
        if is_call and not previous_was_call:
            count += 1
        previous_was_call = is_call
    return count


def _refused(call: ToolCall, why: str) -> ToolResult:
    return ToolResult(call.call_id, call.name, False, why)


def _answered(call: ToolCall, info: InfoRequest) -> ToolResult:
    if info.status == "answered":
        return ToolResult(call.call_id, call.name, True, info.response)
    return _refused(call, NOT_ANSWERED)
