"""``/v1/stream``'s events, exactly as seed 004 names them (docs/v1-stream.md).

Pure functions from the domain's records to the seed's JSON objects; no I/O.
Every event of a task carries ``task_id`` as well as ``session_id`` (beyond the
seed: a client needs it to send ``task.cancel`` mid-stream).

``StreamEvent`` is one event on its way: serialized once, then shared by every
connection that shows it (each kind of socket frames it once, ``frame_for``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...agents.base import TextPart, ToolCall, ToolResult
from ...agents.tools import ASK_USER
from ...storage.base import InfoRequest, Message, Task, TaskState
from ...transports.frames import Frame
from ...transports.plain import SharedFrames
from ..plain import encode

ASK_USER_TOOL = "AskUserQuestion"  # the seed's name for the agent's question
CANCELLED_OUTPUT = "The task was cancelled before this tool's result came."


class StreamEvent:
    """An event, serialized once: ``data`` is its JSON. ``task_id``, ``segment``
    and ``seq`` place it in a turn (a resume uses them to join a replay to the
    live stream, docs/v1-stream.md "Resume"); ``admin_only`` events go only to
    connections with the role ``admin``."""

    __slots__ = ("admin_only", "data", "frames", "segment", "seq", "task_id")

    def __init__(
        self, data: bytes, task_id: str = "", segment: str = "", seq: int = 0,
        admin_only: bool = False,
    ) -> None:
        self.data = data
        self.task_id = task_id
        self.segment = segment
        self.seq = seq
        self.admin_only = admin_only
        self.frames = SharedFrames(data)

    @classmethod
    def of(cls, event: dict[str, Any], **place: Any) -> StreamEvent:
        return cls(encode(event), **place)

    def frame_for(self, sock: Any) -> Frame:
        """The frame ``sock`` writes: built once per kind of socket."""
        return self.frames.for_socket(sock)

    def packed(self) -> bytes:
        """For the backplane: a JSON head line, then the event's JSON."""
        head = [self.task_id, self.segment, self.seq, self.admin_only]
        return json.dumps(head).encode() + b"\n" + self.data

    @classmethod
    def unpacked(cls, payload: bytes) -> StreamEvent | None:
        """The event ``packed`` made; None for anything else."""
        head, _, data = payload.partition(b"\n")
        try:
            task_id, segment, seq, admin_only = json.loads(head)
        except (ValueError, TypeError):
            return None
        if not (isinstance(task_id, str) and isinstance(segment, str)
                and isinstance(seq, int) and isinstance(admin_only, bool) and data):
            return None
        return cls(data, task_id, segment, seq, admin_only)


# -- a task's events ------------------------------------------------------------------------------


def _of(kind: str, task: Task, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "session_id": task.session_id, "task_id": task.task_id, **fields}


def token(task: Task, text: str) -> dict[str, Any]:
    return _of("task:token", task, text=text)


def tool_use(task: Task, call: ToolCall) -> dict[str, Any]:
    if call.name == ASK_USER:
        question = call.arguments.get("question")
        options = call.arguments.get("options")
        return _of("task:tool_use", task, tool=ASK_USER_TOOL,
                   input={"questions": [_question(question, options)]})
    return _of("task:tool_use", task, tool=call.name, input=call.arguments)


def tool_result(task: Task, result: ToolResult) -> dict[str, Any]:
    tool = ASK_USER_TOOL if result.name == ASK_USER else result.name
    content = result.content
    output = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return _of("task:tool_result", task, tool=tool, output=output)


def cancelled_result(task: Task, call: ToolCall) -> dict[str, Any]:
    return tool_result(task, ToolResult(call.call_id, call.name, False, CANCELLED_OUTPUT))


def ask_user(task: Task, info: InfoRequest) -> dict[str, Any]:
    return _of("task:ask_user", task, questions=[_question(info.question, info.options)])


def _question(question: Any, options: Any) -> dict[str, Any]:
    labels = options if isinstance(options, list | tuple) else []
    return {"question": question, "options": [{"label": label} for label in labels]}


def continuing(task: Task, continuation: int, max_continuations: int) -> dict[str, Any]:
    return _of("turn.continuing", task, continuation=continuation,
               max_continuations=max_continuations)


def turn_done(task: Task, reply: Message) -> dict[str, Any]:
    usage = (reply.metadata or {}).get("usage") or {}
    return _of(
        "turn.done", task,
        result_text=reply.content,
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        cost_usd=usage.get("cost_usd", 0),
    )


def task_done(task: Task, status: str) -> dict[str, Any]:
    return _of("task:done", task, status=status)


def task_failed(task: Task, error: str) -> dict[str, Any]:
    return _of("task:failed", task, error=error)


def system_prompt(task: Task, prompt: str) -> dict[str, Any]:
    return _of("debug.system_prompt", task, prompt=prompt)


# -- the session and the connection ---------------------------------------------------------------


def session_ready(
    session_id: str, container_id: str, container_name: str, profile_id: str
) -> dict[str, Any]:
    return {"type": "session.ready", "session_id": session_id, "container_id": container_id,
            "container_name": container_name, "profile_id": profile_id}


def replay_start(session_id: str) -> dict[str, Any]:
    return {"type": "session.replay_start", "session_id": session_id}


def replay_end(session_id: str) -> dict[str, Any]:
    return {"type": "session.replay_end", "session_id": session_id}


def user_message(task: Task, text: str) -> dict[str, Any]:
    """A past turn's prompt, in a replay (an extension of the seed)."""
    return _of("user.message", task, text=text)


# -- a stored turn --------------------------------------------------------------------------------


def stored_turn(
    task: Task,
    transcript: tuple[Any, ...],
    reply: Message | None,
    asked: Mapping[str, InfoRequest],
) -> list[dict[str, Any]]:
    """A turn as the store has it (no runner holds its events): its text as
    one ``task:token`` per stretch, its tool calls (each question the agent
    asked, ``asked`` by call id, as its ``task:ask_user`` too) and results,
    and how it ended. A turn still going shows what is stored so far."""
    events: list[dict[str, Any]] = []
    pending: dict[str, ToolCall] = {}
    written = ""
    for step in transcript:
        match step:
            case TextPart(content=text) if text:
                events.append(token(task, text))
                written += text
            case ToolCall():
                pending[step.call_id] = step
                events.append(tool_use(task, step))
                if step.call_id in asked:
                    events.append(ask_user(task, asked[step.call_id]))
            case ToolResult():
                pending.pop(step.call_id, None)
                events.append(tool_result(task, step))
    if task.state is TaskState.COMPLETED and reply is not None:
        rest = reply.content[len(written):] if reply.content.startswith(written) else ""
        if rest:
            events.append(token(task, rest))
        events += [turn_done(task, reply), task_done(task, "completed")]
    elif task.state is TaskState.FAILED:
        events.append(task_failed(task, task.error or "The task failed."))
    elif task.state is TaskState.CANCELLED:
        events += [cancelled_result(task, call) for call in pending.values()]
        events.append(task_done(task, "cancelled"))
    return events
