"""What a decoder refuses before it does deep work: nesting and giant integers.

A hub message is small (``max_message_size``, 32 KiB by default), but 32 KiB is
enough for arrays nested 15,000 deep or an integer of 30,000 digits. Python's
``json`` module recurses once per level and ``int()`` refuses more than 4,300
digits, so either would raise an exception no codec expects. Every decoder in
voisnap therefore checks these limits first and turns a breach into its own
``RemoteProtocolError``, as System.Text.Json does with its ``MaxDepth`` of 64:

- ``max_depth``: arrays and objects (maps) nested deeper than this, counted over
  the whole document (the message object itself is depth 1), are refused;
- integers of more than ``MAX_INTEGER_DIGITS`` digits are refused (MessagePack
  integers are 64-bit at most by construction); so are the non-JSON literals
  ``NaN`` and ``Infinity`` and numbers too large for a float.

The depth is counted without recursion: ``exceeds_json_depth`` scans the raw
bytes, ``exceeds_depth`` walks decoded values with an explicit stack.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import attrs

from .errors import RemoteProtocolError

DEFAULT_MAX_DEPTH = 64
MAX_INTEGER_DIGITS = 20


@attrs.frozen
class DecodeLimits:
    max_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = DecodeLimits()


class InvalidJson(RemoteProtocolError):
    """The bytes are not JSON at all (as opposed to JSON beyond a limit)."""


def too_deep(limits: DecodeLimits) -> RemoteProtocolError:
    return RemoteProtocolError(f"The maximum nesting depth of {limits.max_depth} was exceeded.")


def load_json(document: bytes, limits: DecodeLimits) -> Any:
    """JSON text to plain data within ``limits``. Raises ``InvalidJson`` for
    bytes that are not JSON, ``RemoteProtocolError`` for JSON beyond a limit."""
    if exceeds_json_depth(document, limits.max_depth):
        raise too_deep(limits)
    try:
        return json.loads(
            document,
            parse_int=bounded_int,
            parse_float=finite_float,
            parse_constant=refuse_constant,
        )
    except RemoteProtocolError:
        raise
    except RecursionError:  # cannot happen after the depth check; never let it out
        raise too_deep(limits) from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidJson(str(error)) from None


# The characters that matter to nesting: brackets, and the quotes and
# backslashes that decide whether a bracket is inside a string.
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')


def exceeds_json_depth(document: bytes, max_depth: int) -> bool:
    """True if the JSON text ``document`` nests arrays and objects deeper than
    ``max_depth``. Malformed text may be over-counted; it fails to parse anyway."""
    if document.count(b"[") + document.count(b"{") <= max_depth:
        return False  # the common case, decided by two C-speed counts
    depth = 0
    in_string = False
    escaped_at = -1  # the position a backslash inside a string escapes
    for found in _STRUCTURAL.finditer(document):
        position = found.start()
        if position == escaped_at:
            continue
        char = document[position]
        if in_string:
            if char == 0x5C:  # backslash
                escaped_at = position + 1
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                return True
        elif char in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def exceeds_depth(value: Any, max_depth: int) -> bool:
    """True if decoded ``value`` nests lists and dicts deeper than ``max_depth``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | tuple):
            children = item
        elif isinstance(item, dict):
            children = item.values()
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, list | dict))
    return False


def bounded_int(text: str) -> int:
    """``json.loads``'s ``parse_int``: refuse giant integers before ``int()`` works on them."""
    digits = len(text) - (text[0] in "+-")
    if digits > MAX_INTEGER_DIGITS:
        raise RemoteProtocolError(
            f"An integer of {digits} digits exceeds the limit of {MAX_INTEGER_DIGITS}."
        )
    return int(text)


def finite_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: ``1e999`` would become infinity, which is not JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise RemoteProtocolError(f"The number {text[:32]} is too large.")
    return value


def refuse_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON (RFC 8259)."""
    raise RemoteProtocolError(f"'{name}' is not a JSON value.")
