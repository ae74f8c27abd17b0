"""The tools every agent may call: real ones, small enough to need no network.

- ``current_time``: the time now, in UTC;
- ``calculator``: arithmetic on numbers with + - * / % ** and parentheses,
  evaluated by walking the expression's syntax tree (never ``eval``);
- ``add_note`` / ``list_notes`` / ``delete_note``: a per-user notes store,
  kept in the server's store so that notes survive restarts. ``delete_note``
  really changes state, so it needs a person's approval by default;
- ``add_insight``: an insight card on the user's Home feed (docs/hubs/notifications.md),
  through the toolbox's ``InsightSink``: the product's announces it to the user's
  connections; the default only stores it;
- ``search_documents``: the user's documents' best chunks for a query
  (``agents.documents``; docs/documents.md);
- ``set_reminder`` / ``list_reminders`` / ``cancel_reminder``: reminders that
  a heartbeat posts into the session where they were asked, once due
  (``agents.reminder_tools``; docs/reminders.md);
- ``run_on_node``: a command on one of the user's own machines (docs/hubs/node.md),
  through the toolbox's ``NodeRunner``; it needs a person's approval by default;
- ``ask_user``: a question to the user, with optional choices. It is not run
  here: the runtime turns it into an info request and waits for the answer.

``Toolbox`` holds them with their JSON-schema parameters (what a model is told,
and what an edited approval's parameters are checked against, with the
``jsonschema`` library) and runs them. Results are plain JSON data.
"""

from __future__ import annotations

import ast
import datetime
import operator
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import jsonschema

from ..storage.base import (
    MAX_INSIGHT_BODY,
    MAX_INSIGHT_TITLE,
    DocumentStore,
    Insight,
    Note,
    NotificationStore,
    Owner,
    Store,
    utc_now,
)
from . import documents
from .base import ToolSpec
from .reminder_times import ReminderError
from .reminder_tools import REMINDER_SPECS, ReminderTools

OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
MAX_EXPRESSION = 200
# Results are kept under about 1200 digits: big enough for any sum a person
# asks, small enough that no expression (say ((9**99)**99)**99) can make the
# server compute, or print, a number millions of digits long.
MAX_BITS = 4000


class ToolError(Exception):
    """The tool could not do it; the text says why."""


def current_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%A %d %B %Y, %H:%M UTC")


def calculate(expression: str) -> int | float:
    if len(expression) > MAX_EXPRESSION:
        raise ToolError("That expression is too long.")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"'{expression}' is not arithmetic I can do.") from None
    return _evaluate(tree.body)


def _evaluate(node: ast.AST) -> int | float:
    match node:
        case ast.Constant(value=int() | float() as value) if not isinstance(value, bool):
            return value
        case ast.BinOp(left=left, op=op, right=right) if type(op) in OPERATORS:
            a, b = _evaluate(left), _evaluate(right)
            if isinstance(op, ast.Pow):
                _check_power(a, b)
            return _checked(_apply(OPERATORS[type(op)], a, b))
        case ast.UnaryOp(op=op, operand=operand) if type(op) in OPERATORS:
            return _checked(OPERATORS[type(op)](_evaluate(operand)))
    raise ToolError("Only numbers and + - * / % ** ( ) please.")


def _apply(function: Callable[..., Any], a: int | float, b: int | float) -> Any:
    try:
        return function(a, b)
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except OverflowError:
        raise ToolError("That number is too large.") from None


def _check_power(base: int | float, exponent: int | float) -> None:
    """Refuse a power whose result would be too large before computing it."""
    if abs(base) <= 1 or exponent <= 0:
        return
    bits = (abs(int(base)).bit_length() or 1) * exponent
    if bits > MAX_BITS:
        raise ToolError("That number is too large.")


def _checked(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("That has no real answer.")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ToolError("That number is too large.")
    return value


async def add_note(store: Store, owner: Owner, text: str) -> Note:
    note = Note(note_id=uuid.uuid4().hex, owner=owner, text=text.strip(), created_at=utc_now())
    await store.add_note(note)
    return note


async def list_notes(store: Store, owner: Owner) -> list[Note]:
    return await store.list_notes(owner)


async def delete_note(
    store: Store, owner: Owner, note_id: str | None = None, text: str | None = None
) -> Note:
    deleted = await store.delete_note(owner, note_id=note_id, text=text)
    if deleted is None:
        raise ToolError("No note of yours has that id." if note_id else "No note has that text.")
    return deleted


def note_data(note: Note) -> dict[str, Any]:
    return {"noteId": note.note_id, "text": note.text, "createdAt": note.created_at.isoformat()}


class NodeRunner(Protocol):
    """Runs a command on one of the owner's nodes (``apps.nodes.tool``): its
    result, or ToolError saying why not."""

    async def run_on_node(self, owner: Owner, node: str, command: str, params: Any) -> Any: ...


class InsightSink(Protocol):
    """Where ``add_insight`` puts a card (``apps.notifications.insights.Insights``
    stores it and announces it to the user's connections)."""

    async def add(self, owner: Owner, title: str, body: str) -> Insight: ...


class StoredInsights:
    """The default sink: the card is stored, and nobody is told."""

    def __init__(self, store: NotificationStore) -> None:
        self._store = store

    async def add(self, owner: Owner, title: str, body: str) -> Insight:
        insight = Insight("ins_" + uuid.uuid4().hex, owner, title.strip(), body.strip(), utc_now())
        await self._store.add_insight(insight)
        return insight


def insight_data(insight: Insight) -> dict[str, Any]:
    return {"id": insight.insight_id, "title": insight.title, "body": insight.body}


# -- the toolbox ----------------------------------------------------------------------------------

ASK_USER = "ask_user"
DEFAULT_APPROVAL = frozenset({"delete_note", "run_on_node"})
RUN_ON_NODE = "run_on_node"

SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "current_time",
            "The current date and time, in UTC.",
            {"type": "object", "properties": {}, "additionalProperties": False},
        ),
        ToolSpec(
            "calculator",
            "Evaluate arithmetic: numbers with + - * / % ** and parentheses.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string", "maxLength": MAX_EXPRESSION}},
                "required": ["expression"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            "add_note",
            "Remember a note for the user.",
            {
                "type": "object",
                "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 2000}},
                "required": ["text"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            "list_notes",
            "The user's notes, oldest first.",
            {"type": "object", "properties": {}, "additionalProperties": False},
        ),
        ToolSpec(
            "delete_note",
            "Delete one of the user's notes, by its id or its exact text.",
            {
                "type": "object",
                "properties": {
                    "noteId": {"type": "string", "minLength": 1},
                    "text": {"type": "string", "minLength": 1},
                },
                "oneOf": [{"required": ["noteId"]}, {"required": ["text"]}],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            "add_insight",
            "Add an insight card to the user's Home feed: a short title and a body.",
            {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": MAX_INSIGHT_TITLE},
                    "body": {"type": "string", "minLength": 1, "maxLength": MAX_INSIGHT_BODY},
                },
                "required": ["title", "body"],
                "additionalProperties": False,
            },
        ),
        documents.SPEC,
        *REMINDER_SPECS,
        ToolSpec(
            RUN_ON_NODE,
            "Run a command on one of the user's nodes (their own machines), named by the "
            "node's name or id; the command must be one of the node's scopes.",
            {
                "type": "object",
                "properties": {
                    "node": {"type": "string", "minLength": 1, "maxLength": 100},
                    "command": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                    "params": {"type": "object"},
                },
                "required": ["node", "command"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            ASK_USER,
            "Ask the user a question and wait for the answer; with options, the answer is "
            "one of them.",
            {
                "type": "object",
                "properties": {
                    "question": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "options": {
                        "type": ["array", "null"],
                        "items": {"type": "string", "minLength": 1},
                        "minItems": 1,
                    },
                },
                "required": ["question"],
                "additionalProperties": False,
            },
        ),
    )
}
TOOL_NAMES = tuple(SPECS)


@attrs.frozen
class ToolSet:
    """What one agent may call, and which of those need a person's approval
    (the agents file's ``tools`` and ``require_approval``)."""

    tools: tuple[str, ...] = TOOL_NAMES
    require_approval: frozenset[str] = DEFAULT_APPROVAL

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(SPECS[name] for name in self.tools)

    def needs_approval(self, name: str) -> bool:
        return name in self.require_approval


def check_tool_names(names: Any, what: str) -> tuple[str, ...]:
    """``names`` as tool names, or ValueError naming what is wrong."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"'{what}' must be a list of tool names")
    unknown = [name for name in names if name not in SPECS]
    if unknown:
        raise ValueError(f"'{what}' names unknown tools {unknown} (known: {list(SPECS)})")
    return tuple(names)


def check_arguments(name: str, arguments: Any) -> None:
    """ToolError naming the problem unless ``arguments`` fit the tool's schema."""
    spec = SPECS.get(name)
    if spec is None:
        raise ToolError(f"There is no tool '{name}'.")
    try:
        jsonschema.validate(arguments, spec.parameters)
    except jsonschema.ValidationError as error:
        raise ToolError(f"Invalid parameters for '{name}': {error.message}") from None


class Toolbox:
    """Runs the tools for a user (all but ``ask_user``, which is the runtime's)."""

    def __init__(
        self,
        store: Store,
        insights: InsightSink | None = None,
        reminders: ReminderTools | None = None,
        nodes: NodeRunner | None = None,
    ) -> None:
        self._store = store
        self._nodes = nodes
        self._insights = insights or StoredInsights(store)  # type: ignore[arg-type]
        self._tools: dict[str, Callable[..., Awaitable[Any]]] = {
            "current_time": self._current_time,
            "calculator": self._calculator,
            "add_note": self._add_note,
            "list_notes": self._list_notes,
            "delete_note": self._delete_note,
            "add_insight": self._add_insight,
            documents.NAME: self._search_documents,
            RUN_ON_NODE: self._run_on_node,
        }
        reminders = reminders or ReminderTools(store)  # type: ignore[arg-type]  # SqlStore is both
        self._tools |= {
            "list_reminders": reminders.list_reminders,
            "cancel_reminder": reminders.cancel_reminder,
        }
        # Tools that also need the session the task runs in: a reminder is posted there.
        self._session_tools: dict[str, Callable[..., Awaitable[Any]]] = {
            "set_reminder": reminders.set_reminder
        }

    async def run(
        self, owner: Owner, name: str, arguments: dict[str, Any], *, session_id: str | None = None
    ) -> Any:
        """The tool's result as plain data; ToolError if it cannot do it.
        ``session_id``: the session of the task that calls it."""
        check_arguments(name, arguments)
        try:
            if name in self._session_tools:
                return await self._session_tools[name](owner, session_id, **arguments)
            tool = self._tools.get(name)
            if tool is None:
                raise ToolError(f"'{name}' is not a tool that runs by itself.")
            return await tool(owner, **arguments)
        except ReminderError as error:
            raise ToolError(str(error)) from None

    async def _current_time(self, owner: Owner) -> str:
        return current_time()

    async def _calculator(self, owner: Owner, expression: str) -> int | float:
        return calculate(expression)

    async def _add_note(self, owner: Owner, text: str) -> dict[str, Any]:
        return note_data(await add_note(self._store, owner, text))

    async def _list_notes(self, owner: Owner) -> list[dict[str, Any]]:
        return [note_data(note) for note in await list_notes(self._store, owner)]

    async def _delete_note(
        self, owner: Owner, noteId: str | None = None, text: str | None = None
    ) -> dict[str, Any]:
        return note_data(await delete_note(self._store, owner, note_id=noteId, text=text))

    async def _add_insight(self, owner: Owner, title: str, body: str) -> dict[str, Any]:
        if not title.strip() or not body.strip():
            raise ToolError("An insight card needs a title and a body that are not blank.")
        return insight_data(await self._insights.add(owner, title, body))

    async def _run_on_node(
        self, owner: Owner, node: str, command: str, params: dict[str, Any] | None = None
    ) -> Any:
        if self._nodes is None:
            raise ToolError("This server runs no commands on nodes.")
        return await self._nodes.run_on_node(owner, node, command, params or {})

    async def _search_documents(
        self, owner: Owner, query: str, limit: int = documents.DEFAULT_LIMIT
    ) -> list[dict[str, Any]]:
        store: DocumentStore = self._store  # type: ignore[assignment]  # SqlStore is both
        return await documents.search_documents(store, owner, query, limit)
