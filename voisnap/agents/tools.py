"""The built-in agent's tools: real ones, small enough to need no network.

- ``current_time``: the time now, in UTC;
- ``calculator``: arithmetic on numbers with + - * / % ** and parentheses,
  evaluated by walking the expression's syntax tree (never ``eval``);
- ``add_note`` / ``list_notes``: a per-user notes store, kept in the server's
  store so that notes survive restarts.
"""

from __future__ import annotations

import ast
import datetime
import operator
import uuid
from collections.abc import Callable
from typing import Any

from ..storage.base import Note, Owner, Store, utc_now

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
