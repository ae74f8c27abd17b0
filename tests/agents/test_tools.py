"""The tools every agent may call, and the ``Toolbox`` that runs them.

The calculator: arithmetic by walking the syntax tree, never ``eval``. Golden
cases for precedence, ``^`` as power and unary minus; refusals for everything
that is not arithmetic (names, calls, attributes, strings — the expressions an
attacker would try) and for work too large to do; and a Hypothesis property: for
small integer expressions built from a grammar, ``calculate`` gives what Python
gives for the same text (with ``^`` read as ``**``), or refuses exactly when
Python divides by zero.

The toolbox (on a real ``SqliteStore``): every tool's arguments are checked
against its JSON schema (``check_arguments``) before it runs; results are plain
JSON data; the notes tools are per owner and survive a restart; ``delete_note``
deletes by id or by exact text, and says so (``ToolError``) when there is none;
``ask_user`` is never run here (the runtime turns it into an info request).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.support.stores import sqlite_store
from voisnap.agents.tools import (
    ASK_USER,
    DEFAULT_APPROVAL,
    MAX_EXPRESSION,
    SPECS,
    TOOL_NAMES,
    Toolbox,
    ToolError,
    ToolSet,
    calculate,
    check_arguments,
    current_time,
)
from voisnap.storage.base import Note, Owner
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
ADA = Owner("acme", "ada")
BOB = Owner("acme", "bob")
ADA_ELSEWHERE = Owner("globex", "ada")
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)

# -- golden cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("12 * 7", 84),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 4 - 3", 3),
        ("100 / 8", 12.5),
        ("17 % 5", 2),
        ("2 ^ 10", 1024),
        ("2 ** 10", 1024),
        ("2 ^ 3 ^ 2", 512),  # right-associative, as in mathematics
        ("-2 ^ 2", -4),  # power binds tighter than unary minus
        ("(-2) ^ 2", 4),
        ("-(3 + 4)", -7),
        ("--5", 5),
        ("+5", 5),
        ("1.5 * 4", 6.0),
        ("2 ^ -1", 0.5),
        ("((1 + 2) * (3 + 4)) % 5", 1),
    ],
)
def test_calculate_golden_cases(expression: str, value: float) -> None:
    result = calculate(expression)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize("expression", ["1 / 0", "5 % 0", "0 ^ -1", "1 / (2 - 2)"])
def test_calculate_division_by_zero_is_a_tool_error(expression: str) -> None:
    with pytest.raises(ToolError, match=r"^Division by zero\.$"):
        calculate(expression)


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('echo pwned')",
        "open('/etc/passwd').read()",
        "x + 1",
        "abs(-1)",
        "(1).__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "'a' * 3",
        "b'a'",
        "[1, 2]",
        "{1: 2}",
        "1 if 1 else 2",
        "lambda: 1",
        "True + 1",
        "None",
        "1j * 2",
        "1 < 2",
        "1 and 2",
        "~1",
        "7 // 2",
        "1 << 2",
        "(x := 1)",
        "f'{1}'",
    ],
)
def test_calculate_refuses_what_is_not_arithmetic(expression: str) -> None:
    with pytest.raises(ToolError):
        calculate(expression)


@pytest.mark.parametrize("expression", ["", "1 +", "(1", "import os", "1; 2", "1 = 1"])
def test_calculate_refuses_what_does_not_parse(expression: str) -> None:
    with pytest.raises(ToolError, match="is not arithmetic I can do"):
        calculate(expression)


def test_calculate_refuses_a_result_too_large_before_computing_it() -> None:
    with pytest.raises(ToolError, match=r"^That number is too large\.$"):
        calculate("10 ^ 5000")
    with pytest.raises(ToolError, match=r"^That number is too large\.$"):
        calculate("2 ^ 3 ^ 9")  # 3^9 = 19683 as the exponent
    assert calculate("2 ^ 3 ^ 5") == 2**243  # large, but printable


def test_calculate_refuses_nested_powers_that_multiply_the_exponent() -> None:
    """Each exponent here is small, but together they raise 9 to the 970299th
    power (~3 million bits, and one more ``**99`` would run for minutes with the
    trio loop blocked: ``calculate`` runs on the event loop's thread)."""
    started = time.perf_counter()
    with pytest.raises(ToolError):
        calculate("((9 ** 99) ** 99) ** 99")
    assert time.perf_counter() - started < 0.05


def test_calculate_refuses_a_too_long_expression() -> None:
    longest = "+".join(["1"] * ((MAX_EXPRESSION + 1) // 2))
    assert len(longest) <= MAX_EXPRESSION
    assert calculate(longest) == (MAX_EXPRESSION + 1) // 2
    with pytest.raises(ToolError, match=r"^That expression is too long\.$"):
        calculate(longest + "+1")


def test_calculate_float_overflow_is_a_tool_error() -> None:
    """``(1e300) ** 2`` raises OverflowError inside the walk; the builtin agent
    only catches ToolError, so an overflow fails the whole task."""
    with pytest.raises(ToolError):
        calculate("(1e300) ** 2")


def test_calculate_gives_real_numbers_only() -> None:
    """A negative base with a fractional exponent is complex in Python."""
    try:
        result = calculate("(-8) ^ 0.5")
    except ToolError:
        return
    assert isinstance(result, int | float), f"got {result!r}"


# -- the grammar property --------------------------------------------------------------------------

numbers = st.integers(min_value=0, max_value=20).map(str)
exponents = st.integers(min_value=0, max_value=3)
# A leaf is a number or a bare power of one, so that ^ meets unary minus and * unparenthesized.
leaves = st.one_of(
    numbers, st.tuples(numbers, exponents).map(lambda t: f"{t[0]} ^ {t[1]}")
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "%"]), children).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}"
    )
    power = st.tuples(children, exponents).map(lambda t: f"({t[0]}) ^ {t[1]}")
    return st.one_of(
        binary,
        power,
        children.map(lambda e: f"({e})"),
        children.map(lambda e: f"-{e}"),
    )


# At most three powers of at most 3 each: the values stay small enough to compute at once.
expressions = st.recursive(leaves, _combine, max_leaves=8).filter(
    lambda e: len(e) <= MAX_EXPRESSION and e.count("^") <= 3
)


def python_value(expression: str) -> float | None:
    """What Python makes of the same text; None when it divides by zero."""
    try:
        return eval(expression.replace("^", "**"), {"__builtins__": {}}, {})
    except ZeroDivisionError:
        return None


@given(expressions)
def test_calculate_agrees_with_python(expression: str) -> None:
    expected = python_value(expression)
    if expected is None:
        with pytest.raises(ToolError, match="Division by zero"):
            calculate(expression)
    else:
        assert calculate(expression) == expected


# -- the clock -------------------------------------------------------------------------------------


def test_current_time_is_in_utc() -> None:
    assert current_time().endswith(" UTC")


# -- the tool set ----------------------------------------------------------------------------------


def test_tools_names_and_defaults() -> None:
    """Issue 12: the built-in tools keep their names and gain delete_note and ask_user
    (issue 13: add_insight; issue 14: search_documents and the reminder tools; issue 15:
    run_on_node); by default an agent has them all, and only delete_note and run_on_node
    need approval."""
    assert TOOL_NAMES == (
        "current_time", "calculator", "add_note", "list_notes", "delete_note", "add_insight",
        "search_documents", "set_reminder", "list_reminders", "cancel_reminder", "run_on_node",
        ASK_USER,
    )
    assert ASK_USER == "ask_user"
    assert frozenset({"delete_note", "run_on_node"}) == DEFAULT_APPROVAL
    default = ToolSet()
    assert default.tools == TOOL_NAMES
    assert [spec.name for spec in default.specs()] == list(TOOL_NAMES)
    assert default.needs_approval("delete_note")
    assert not default.needs_approval("add_note") and not default.needs_approval(ASK_USER)
    for spec in SPECS.values():
        assert spec.description and spec.parameters["type"] == "object"
        json.dumps(spec.parameters)  # what a model is sent


def test_tools_a_tool_set_names_its_tools_and_approvals() -> None:
    chosen = ToolSet(("calculator", ASK_USER), frozenset({"calculator"}))
    assert [spec.name for spec in chosen.specs()] == ["calculator", ASK_USER]
    assert chosen.needs_approval("calculator") and not chosen.needs_approval("delete_note")


# -- argument checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("current_time", {}),
        ("list_notes", {}),
        ("calculator", {"expression": "1 + 1"}),
        ("add_note", {"text": "x"}),
        ("delete_note", {"noteId": "note_1"}),
        ("delete_note", {"text": "call Ana"}),
        (ASK_USER, {"question": "Which?"}),
        (ASK_USER, {"question": "Which?", "options": None}),
        (ASK_USER, {"question": "Which?", "options": ["a", "b"]}),
    ],
)
def test_tools_check_arguments_accepts_what_fits_the_schema(
    name: str, arguments: dict[str, Any]
) -> None:
    check_arguments(name, arguments)


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("current_time", {"zone": "UTC"}),
        ("calculator", {}),
        ("calculator", {"expression": 12}),
        ("calculator", {"expression": "1" * (MAX_EXPRESSION + 1)}),
        ("calculator", {"expression": "1", "extra": True}),
        ("add_note", {"text": ""}),
        ("add_note", {"note": "x"}),
        ("delete_note", {}),
        ("delete_note", {"noteId": "note_1", "text": "x"}),
        ("delete_note", {"noteId": ""}),
        ("delete_note", {"title": "x"}),
        (ASK_USER, {}),
        (ASK_USER, {"question": ""}),
        (ASK_USER, {"question": "Which?", "options": []}),
        (ASK_USER, {"question": "Which?", "options": "a"}),
        (ASK_USER, {"question": "Which?", "options": [1, 2]}),
        ("calculator", None),
        ("calculator", ["1 + 1"]),
    ],
)
def test_tools_check_arguments_refuses_what_does_not(name: str, arguments: Any) -> None:
    with pytest.raises(ToolError, match=rf"^Invalid parameters for '{name}': .+"):
        check_arguments(name, arguments)


def test_tools_check_arguments_of_an_unknown_tool() -> None:
    with pytest.raises(ToolError, match=r"^There is no tool 'send_email'\.$"):
        check_arguments("send_email", {})


# -- the toolbox -----------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with sqlite_store(tmp_path / "voisnap.db") as opened:
        yield opened


def plain(value: Any) -> Any:
    """``value`` is plain JSON data: it survives a round trip unchanged."""
    assert json.loads(json.dumps(value)) == value
    return value


async def test_toolbox_runs_current_time_and_the_calculator(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        now = plain(await toolbox.run(ADA, "current_time", {}))
        value = plain(await toolbox.run(ADA, "calculator", {"expression": "6 * 7"}))
        half = plain(await toolbox.run(ADA, "calculator", {"expression": "7 / 2"}))
    assert re.fullmatch(r"\w+day \d\d \w+ \d{4}, \d\d:\d\d UTC", now)
    assert (value, half) == (42, 3.5)


async def test_toolbox_tool_errors_are_tool_errors(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        with pytest.raises(ToolError, match=r"^Division by zero\.$"):
            await toolbox.run(ADA, "calculator", {"expression": "1 / 0"})
        with pytest.raises(ToolError, match=r"^That number is too large\.$"):
            await toolbox.run(ADA, "calculator", {"expression": "(10**99)**50"})


async def test_toolbox_checks_arguments_before_running(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        with pytest.raises(ToolError, match=r"^Invalid parameters for 'add_note': "):
            await toolbox.run(ADA, "add_note", {"text": "x", "pinned": True})
        with pytest.raises(ToolError, match=r"^Invalid parameters for 'delete_note': "):
            await toolbox.run(ADA, "delete_note", {})
        with pytest.raises(ToolError, match=r"^There is no tool 'rm'\.$"):
            await toolbox.run(ADA, "rm", {"path": "/"})
        assert await store.list_notes(ADA) == []


async def test_toolbox_does_not_run_ask_user(store: SqliteStore) -> None:
    with trio.fail_after(CEILING), pytest.raises(ToolError) as caught:
        await Toolbox(store).run(ADA, ASK_USER, {"question": "Which?"})
    assert str(caught.value) == "'ask_user' is not a tool that runs by itself."


async def test_toolbox_notes_are_plain_data_per_owner_oldest_first(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        first = plain(await toolbox.run(ADA, "add_note", {"text": "  to call Ana "}))
        second = plain(await toolbox.run(ADA, "add_note", {"text": "the milk"}))
        await toolbox.run(BOB, "add_note", {"text": "bob's secret"})
        await toolbox.run(ADA_ELSEWHERE, "add_note", {"text": "another tenant"})
        listed = plain(await toolbox.run(ADA, "list_notes", {}))
        stored = await store.list_notes(ADA)
    assert set(first) == {"noteId", "text", "createdAt"}
    assert first["text"] == "to call Ana"  # trimmed
    assert listed == [first, second]
    assert [(n.note_id, n.text) for n in stored] == [
        (first["noteId"], "to call Ana"), (second["noteId"], "the milk")
    ]
    assert datetime.datetime.fromisoformat(first["createdAt"]) == stored[0].created_at


async def test_toolbox_notes_survive_a_restart(store: SqliteStore, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        added = await Toolbox(store).run(ADA, "add_note", {"text": "to call Ana"})
        reopened = SqliteStore(tmp_path / "voisnap.db")
        await reopened.open()
        try:
            listed = await Toolbox(reopened).run(ADA, "list_notes", {})
        finally:
            await reopened.aclose()
    assert listed == [added]


async def test_toolbox_delete_note_by_id(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        kept = await toolbox.run(ADA, "add_note", {"text": "keep"})
        gone = await toolbox.run(ADA, "add_note", {"text": "gone"})
        deleted = plain(await toolbox.run(ADA, "delete_note", {"noteId": gone["noteId"]}))
        left = await toolbox.run(ADA, "list_notes", {})
        with pytest.raises(ToolError) as again:
            await toolbox.run(ADA, "delete_note", {"noteId": gone["noteId"]})
    assert deleted == gone
    assert left == [kept]
    assert str(again.value) == "No note of yours has that id."


async def test_toolbox_delete_note_by_exact_text_takes_the_oldest(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        await store.add_note(Note("n2", ADA, "call Ana", T0 + datetime.timedelta(seconds=2)))
        await store.add_note(Note("n1", ADA, "call Ana", T0 + datetime.timedelta(seconds=1)))
        await store.add_note(Note("n3", ADA, "Call Ana!", T0))
        deleted = await toolbox.run(ADA, "delete_note", {"text": "call Ana"})
        with pytest.raises(ToolError) as not_exact:
            await toolbox.run(ADA, "delete_note", {"text": "call ana"})
        left = [n.note_id for n in await store.list_notes(ADA)]
    assert deleted["noteId"] == "n1"
    assert str(not_exact.value) == "No note has that text."
    assert left == ["n3", "n2"]


async def test_toolbox_delete_note_of_someone_else_deletes_nothing(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        bobs = await toolbox.run(BOB, "add_note", {"text": "bob's"})
        elsewhere = await toolbox.run(ADA_ELSEWHERE, "add_note", {"text": "bob's"})
        with pytest.raises(ToolError, match=r"^No note of yours has that id\.$"):
            await toolbox.run(ADA, "delete_note", {"noteId": bobs["noteId"]})
        with pytest.raises(ToolError, match=r"^No note has that text\.$"):
            await toolbox.run(ADA, "delete_note", {"text": "bob's"})
        assert await toolbox.run(BOB, "list_notes", {}) == [bobs]
        assert await toolbox.run(ADA_ELSEWHERE, "list_notes", {}) == [elsewhere]


async def test_toolbox_add_insight_stores_a_card_of_its_owner(store: SqliteStore) -> None:
    """Without a sink of its own the toolbox only stores the card (the product's sink also
    announces it: tests/notifications)."""
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        added = plain(await toolbox.run(ADA, "add_insight", {"title": " Q3 ", "body": "up"}))
        with pytest.raises(ToolError, match=r"^Invalid parameters for 'add_insight': "):
            await toolbox.run(ADA, "add_insight", {"title": "x" * 201, "body": "b"})
        with pytest.raises(ToolError, match=r"not blank"):
            await toolbox.run(ADA, "add_insight", {"title": "  ", "body": "b"})
        cards = await store.list_insights(ADA)
        assert await store.list_insights(BOB) == []
    assert added == {"id": cards[0].insight_id, "title": "Q3", "body": "up"}
    assert [(c.title, c.body) for c in cards] == [("Q3", "up")]
