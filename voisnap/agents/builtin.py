"""``sophon``, the built-in agent: no network, no model, real tools, a streamed reply.

It reads the user's message for one of a few intents, asks the runtime to run
the matching tools (one per step, as a model calling functions does), and then
streams its answer a word at a time, ``token_delay`` apart, the pace of a model
writing. Everything it decides comes from the message and the transcript (the
calls so far and their results), so it resumes after any pause, in any process.

The intents, in the order they are tried (docs/agents.md):

- "search my documents for X", "find X in my documents": ``search_documents``,
  then the best chunks with their documents' ids (``agents.documents``);
- "add an insight card: TITLE", "insight: TITLE" (a body may follow on the
  next lines): ``add_insight``, a card on the user's Home feed;
- reminders: "remind me at 15:30 to call Ana", "remind me in 10 minutes to
  stretch", "what are my reminders", "cancel my reminder to stretch":
  ``set_reminder``, ``list_reminders``, ``cancel_reminder``
  (``agents.reminder_intents``; docs/reminders.md);
- "run COMMAND on node NODE" (then, optionally, "with {JSON params}"):
  ``run_on_node``, a command on one of the user's machines (docs/hubs/node.md); it
  needs a person's approval (by default), then replies with the node's result;
- "forget X", "delete (the) note X", "remove (my) note X": ``delete_note``
  with text X. It needs a person's approval (by default): approved, it deletes
  the note; rejected or timed out, it says it did not;
- "delete a note", "forget one of my notes": ``list_notes``; with notes, it
  asks which (``ask_user`` with the notes as options), then ``delete_note``
  for the answer (approval as above);
- "remember something": ``ask_user`` "What should I remember?" (no options),
  then ``add_note`` with the answer;
- "remember X", "note X": ``add_note`` X;
- arithmetic ("what is 12 * 7"): ``calculator``;
- "my notes", "calendar", "agenda": ``list_notes``;
- "time", "date", "today": ``current_time``;
- anything else: a short introduction.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from .base import (
    AgentEvent,
    AgentRequest,
    CallTools,
    Final,
    Status,
    Token,
    ToolCall,
    ToolResult,
)
from .documents import describe_found, search_request
from .reminder_intents import reminder_intent
from .rule_based import discussion_step

TOKENS = re.compile(r"\S+\s*|\s+")
ARITHMETIC = re.compile(r"[-+(]*\d[\d.\s]*(?:[-+*/%^]+\s*[-+(]*\s*[\d.]+[\d.\s)]*)+")
REMEMBER = re.compile(
    r"^\s*(?:please\s+)?(?:remember|note)\b(?:\s+that)?\s*:?\s*(?P<text>.+)$", re.I | re.S
)
REMEMBER_WHAT = re.compile(r"^\s*(?:please\s+)?remember\s+something\s*[.!?]?\s*$", re.I)
DELETE_WHICH = re.compile(
    r"^\s*(?:please\s+)?(?:forget|delete|remove)\s+(?:a|one\s+of\s+my)\s+notes?\s*[.!?]?\s*$",
    re.I,
)
DELETE = re.compile(
    r"^\s*(?:please\s+)?(?:forget|delete|remove)\s+(?:that\s+)?(?:(?:the|my)\s+)?(?:note\s+)?"
    r"(?:about\s+)?[“\"']?(?P<text>.+?)[”\"']?\s*[.!]?\s*$",
    re.I | re.S,
)
INSIGHT = re.compile(
    r"^\s*(?:please\s+)?(?:add\s+(?:an?\s+)?insight(?:\s+card)?|insight)\s*:\s*"
    r"(?P<title>[^\n]*?)\s*(?:\n\s*(?P<body>.*?))?\s*$",
    re.I | re.S,
)
RUN_ON_NODE = re.compile(
    r"^\s*(?:please\s+)?run\s+(?P<command>[A-Za-z0-9_.:-]{1,64})\s+on\s+(?:(?:the|my)\s+)?"
    r"node\s+(?P<node>[^\s{]+?)(?:\s+with\s+(?P<params>\{.*\}))?\s*[.!]?\s*$",
    re.I | re.S,
)
ASKS_NOTES = re.compile(r"\b(?:notes?|calendar|remind\w*|agenda)\b|\bremember\s*\?", re.I)
ASKS_TIME = re.compile(r"\b(time|date|today|what day)\b", re.I)
EXCERPT = 200
WHICH_NOTE = "Which note should I delete?"
WHAT_TO_REMEMBER = "What should I remember?"

Results = list[ToolResult]
Next = ToolCall | str  # a call to make, or the reply


def tokens_of(text: str) -> list[str]:
    """Words with their trailing spaces: joined, they give ``text`` back exactly."""
    return TOKENS.findall(text)


class BuiltinAgent:
    def __init__(self, agent_id: str, token_delay: float) -> None:
        self.agent_id = agent_id
        self._delay = token_delay

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        if request.discussion is not None:  # a panel's turn or verdict, by rule
            async for event in discussion_step(self.agent_id, request, self._delay):
                yield event
            return
        yield Status("thinking")
        await trio.sleep(self._delay)
        results = [step for step in request.transcript if isinstance(step, ToolResult)]
        next_step = self._plan(request.content)(results)
        if isinstance(next_step, str):
            for token in tokens_of(next_step):
                yield Token(token)
                await trio.sleep(self._delay)
            read = len(tokens_of(request.content))
            yield Final(next_step, read + len(tokens_of(next_step)), input_tokens=read)
        else:
            read = len(tokens_of(request.content))
            yield CallTools((next_step,), tokens_used=read, input_tokens=read)

    # -- intents ------------------------------------------------------------------------------

    def _plan(self, content: str) -> Callable[[Results], Next]:
        """The intent of ``content``: from the results so far, the next step."""
        search = search_request(content)
        if search is not None:
            return one_tool("search_documents", search, describe_found(search["query"]))
        insight = INSIGHT.match(content)
        if insight and insight.group("title"):
            body = insight.group("body") or f"Added by {self.agent_id} from your chat."
            arguments = {"title": insight.group("title"), "body": body}
            return one_tool(
                "add_insight", arguments, lambda card: f"Added the insight card “{card['title']}”."
            )
        on_node = RUN_ON_NODE.match(content)
        if on_node:
            return run_on_node(on_node)
        reminder = reminder_intent(content)
        if isinstance(reminder, str):  # "remind me" without a time: say how to give one
            return lambda results: reminder
        if reminder is not None:
            return one_tool(*reminder)
        if DELETE_WHICH.match(content):
            return delete_which
        delete = DELETE.match(content)
        if delete:
            return lambda results: delete_note(delete.group("text").strip(), results)
        if REMEMBER_WHAT.match(content):
            return remember_what
        remember = REMEMBER.match(content)
        if remember:
            text = remember.group("text").strip()
            return one_tool("add_note", {"text": text}, lambda note: f"Noted: “{note['text']}”.")
        arithmetic = ARITHMETIC.search(content)
        if arithmetic:
            expression = arithmetic.group().strip()
            return one_tool(
                "calculator", {"expression": expression}, lambda value: f"{expression} = {value}."
            )
        if ASKS_NOTES.search(content):
            return one_tool("list_notes", {}, describe_notes)
        if ASKS_TIME.search(content):
            return one_tool("current_time", {}, lambda now: f"It is {now}.")
        return lambda results: self._introduction(content)

    def _introduction(self, content: str) -> str:
        said = content.strip()[:EXCERPT]
        return (
            f"Hello, I am {self.agent_id}, the built-in agent. I can tell you the time, "
            "do arithmetic (try “what is 12 * 7”), and keep notes for you "
            f"(“remember to call Ana”, “forget to call Ana”). You said: “{said}”."
        )


def call(number: int, name: str, arguments: dict[str, Any]) -> ToolCall:
    """The call at position ``number`` of a task (ids are stable across resumes)."""
    return ToolCall(f"call_{number}", name, arguments)


def one_tool(
    name: str, arguments: dict[str, Any], reply: Callable[[Any], str]
) -> Callable[[Results], Next]:
    """An intent of one tool call, then a reply from its result (or its failure)."""

    def next_step(results: Results) -> Next:
        if not results:
            return call(1, name, arguments)
        result = results[0]
        if result.ok:
            return reply(result.content)
        # A tool that failed says why; the reply must not read like a result.
        return f"Sorry, I could not do that: {result.content}"

    return next_step


def run_on_node(found: re.Match[str]) -> Callable[[Results], Next]:
    """``run_on_node`` for "run echo on node laptop with {...}"; its result, said back."""
    node, command = found.group("node"), found.group("command")
    try:
        params = json.loads(found.group("params") or "{}")
    except json.JSONDecodeError as error:
        said = f"Those parameters are not JSON: {error}."
        return lambda results: said
    if not isinstance(params, dict):
        return lambda results: "The parameters must be a JSON object, such as {\"text\": \"hi\"}."
    arguments = {"node": node, "command": command, "params": params}

    def reply(ran: dict[str, Any]) -> str:
        return f"Node “{ran['node']}” ran {command}: {json.dumps(ran['result'])}"

    return one_tool("run_on_node", arguments, reply)


def delete_note(text: str, results: Results, number: int = 1) -> Next:
    done = [r for r in results if r.name == "delete_note"]
    if not done:
        return call(number, "delete_note", {"text": text})
    if done[0].ok:
        return f"Deleted the note “{done[0].content['text']}”."
    return f"I did not delete it: {done[0].content}"


def delete_which(results: Results) -> Next:
    if not results:
        return call(1, "list_notes", {})
    notes = results[0].content if results[0].ok else []
    if not notes:
        return "You have no notes to delete."
    if len(results) == 1:
        options = [note["text"] for note in notes]
        return call(2, "ask_user", {"question": WHICH_NOTE, "options": options})
    if not results[1].ok:
        return f"I did not delete anything: {results[1].content}"
    return delete_note(results[1].content, results[2:], number=3)


def remember_what(results: Results) -> Next:
    if not results:
        return call(1, "ask_user", {"question": WHAT_TO_REMEMBER, "options": None})
    if not results[0].ok:
        return f"I did not note anything: {results[0].content}"
    if len(results) == 1:
        return call(2, "add_note", {"text": results[0].content})
    added = results[1]
    return f"Noted: “{added.content['text']}”." if added.ok else f"Sorry: {added.content}"


def describe_notes(notes: list[dict[str, Any]]) -> str:
    if not notes:
        return "You have no notes yet. Say “remember …” and I will keep it."
    lines = "\n".join(f"- {note['text']}" for note in notes)
    return f"Here is what you asked me to remember:\n{lines}"
