"""What an agent is: one step at a time, over a transcript the runtime keeps.

docs/hubs/chat.md, "Task events": an accepted message becomes a task; while
it runs, the clients see ``AgentStatus`` checkpoints, ``StreamChunk`` token deltas,
``ToolCallStarted``/``ToolCallCompleted`` around tool calls, then the final
``ReceiveMessage``. An agent knows nothing of hubs, groups or storage.

An agent works in **steps**, as a chat model with function calling does. One
step (``Agent.step``) sees the user's message, the session's history and the
task's **transcript** so far (the text it wrote, the tools it called and their
results), streams ``Token``\\ s, and ends with either a ``Final`` (the reply) or
``CallTools`` (tools it wants run before its next step). The runtime runs the
tools, appends the calls and their results to the transcript, stores it, and
asks for the next step. Because everything an agent needs is in the stored
transcript, a task can stop between steps (a tool that needs a person's
approval, a question to the user) for hours, hold no worker meanwhile, and go
on in another process after a restart: the agent resumes from the transcript,
not from memory (docs/hubs/approvals.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, NamedTuple, Protocol

import attrs

from ..storage.base import Message, Owner

# -- what a step streams --------------------------------------------------------------------------


@attrs.frozen
class Status:
    """A checkpoint: ``thinking``, ``calling_tool``, ``waiting_approval``..."""

    status: str
    detail: str | None = None


@attrs.frozen
class Token:
    """A piece of the reply, as it is produced."""

    delta: str


@attrs.frozen
class ToolStarted:
    tool_name: str
    arguments: dict[str, Any]


@attrs.frozen
class ToolCompleted:
    tool_name: str
    ok: bool
    duration_ms: int
    result: Any = None


@attrs.frozen
class Final:
    """The step's reply, whole: its content must be what its Tokens added up to."""

    content: str
    tokens_used: int
    tool_calls: tuple[dict[str, Any], ...] = ()
    input_tokens: int = 0
    """Of ``tokens_used``, those the model read (the prompt); the rest it wrote."""


@attrs.frozen
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]


@attrs.frozen
class CallTools:
    """The step ends: run these tools (in order), then ask for the next step."""

    calls: tuple[ToolCall, ...]
    tokens_used: int = 0
    input_tokens: int = 0
    """Of ``tokens_used``, those the model read (the prompt)."""


AgentEvent = Status | Token | ToolStarted | ToolCompleted | Final | CallTools


class AgentError(Exception):
    """The agent failed; ``str()`` is safe to show the user (``TaskFailed.error``)."""


# -- the transcript -------------------------------------------------------------------------------


@attrs.frozen
class TextPart:
    """What the agent wrote in a step that ended with tool calls."""

    content: str


@attrs.frozen
class ToolResult:
    call_id: str
    name: str
    ok: bool
    content: Any
    """The tool's value (plain JSON data), or why it did not run (a text)."""


Step = TextPart | ToolCall | ToolResult
Transcript = tuple[Step, ...]


def transcript_to_json(transcript: Transcript) -> str:
    entries: list[dict[str, Any]] = []
    for step in transcript:
        match step:
            case TextPart(content=content):
                entries.append({"type": "text", "content": content})
            case ToolCall(call_id=call_id, name=name, arguments=arguments):
                entry = {"type": "call", "id": call_id, "name": name}
                entries.append({**entry, "arguments": arguments})
            case ToolResult(call_id=call_id, name=name, ok=ok, content=content):
                entry = {"type": "result", "id": call_id, "name": name, "ok": ok}
                entries.append({**entry, "content": content})
    return json.dumps(entries)


def transcript_from_json(text: str | None) -> Transcript:
    if not text:
        return ()
    steps: list[Step] = []
    for entry in json.loads(text):
        match entry["type"]:
            case "text":
                steps.append(TextPart(entry["content"]))
            case "call":
                steps.append(ToolCall(entry["id"], entry["name"], entry["arguments"]))
            case "result":
                steps.append(ToolResult(entry["id"], entry["name"], entry["ok"], entry["content"]))
    return tuple(steps)


def unanswered(transcript: Transcript) -> list[ToolCall]:
    """The calls that have no result yet, in order."""
    answered = {step.call_id for step in transcript if isinstance(step, ToolResult)}
    return [s for s in transcript if isinstance(s, ToolCall) and s.call_id not in answered]


# -- the request ----------------------------------------------------------------------------------


@attrs.frozen
class ToolSpec:
    """A tool as a model sees it: its name, what it does, its JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]


class SpokenTurn(NamedTuple):
    """A turn of a discussion, as the next speaker (or the judge) reads it."""

    panelist_id: str
    agent_id: str
    round_number: int
    content: str


@attrs.frozen
class DiscussionBrief:
    """What an agent is asked in a discussion (docs/hubs/discussion.md): one
    panelist's turn (``panelist_id`` speaks in ``round_number``), or, with
    ``judging``, the verdict on the whole discussion. ``turns`` are those spoken
    so far, in order; ``panelists`` are (panelist id, agent id), in seat order."""

    topic: str
    panelists: tuple[tuple[str, str], ...]
    rounds: int
    turns: tuple[SpokenTurn, ...] = ()
    panelist_id: str | None = None
    round_number: int = 0
    judging: bool = False


@attrs.frozen
class AgentRequest:
    task_id: str
    session_id: str
    owner: Owner
    content: str
    """The user's message."""
    history: tuple[Message, ...] = ()
    """The session's earlier messages, oldest first."""
    channel_id: str | None = None
    attachments: tuple[Any, ...] = ()
    transcript: Transcript = ()
    """This task's steps so far."""
    tools: tuple[ToolSpec, ...] = ()
    """The tools this agent may call."""
    discussion: DiscussionBrief | None = None
    """Set when the agent speaks in a discussion (or judges one): it answers
    with one step of text and calls no tools (``agents.discussion``)."""
    language: str | None = None
    """The language the user asked for (a BCP 47 tag), when a client gave one
    (the Voisnap hubs' ``?language=``)."""
    client_metadata: dict[str, Any] | None = None
    """What the user's client said about the conversation (the Voisnap hubs'
    ``?metadata=``): plain JSON, for the agent to take into account."""
    message_metadata: dict[str, Any] | None = None
    """What the client attached to this message (``SendMessageAsync``'s ``metadata``)."""


class Agent(Protocol):
    agent_id: str

    def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        """One step over ``request.transcript``: Status and Token events, then
        exactly one ``Final`` or ``CallTools``. Raising ``AgentError`` (or
        anything else) fails the task."""
