"""The built-in agent's calculator: arithmetic by walking the syntax tree, never ``eval``.

Golden cases for precedence, ``^`` as power and unary minus; refusals for
everything that is not arithmetic (names, calls, attributes, strings — the
expressions an attacker would try) and for work too large to do; and a
Hypothesis property: for small integer expressions built from a grammar,
``calculate`` gives what Python gives for the same text (with ``^`` read as
``**``), or refuses exactly when Python divides by zero.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.agents.tools import MAX_EXPRESSION, ToolError, calculate, current_time

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
