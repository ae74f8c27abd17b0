"""What a node says about a command, read strictly (docs/hubs/node.md).

A node answers ``ExecuteCommand`` with ``{ok: true, result}``, ``{ok: false,
error}`` or ``{accepted: true}`` (a result follows by ``CommandResult``), and
sends results by ``CommandResult`` or the polling route as ``{commandId, ok,
result?, error?}``. Anything else is named, not guessed at: a node that answers
with garbage gets its command failed with a clear error, and keeps its
connection. A result must be JSON (a MessagePack node could send bytes), since
it is stored and shown as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from ..protocol.unicode import is_storable, json_is_storable

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

EXPECTED = "expected {ok, result, error?} or {accepted: true}"
NO_REASON = "The node failed the command without saying why."
MAX_ERROR = 2000


@attrs.frozen
class Outcome:
    ok: bool
    result: Any = None
    error: str | None = None


@attrs.frozen
class Accepted:
    """The node will send the result later."""


@attrs.frozen
class Invalid:
    text: str


def read_answer(answer: Any) -> Outcome | Accepted | Invalid:
    """The meaning of a node's answer to ``ExecuteCommand``."""
    if isinstance(answer, dict) and answer.get("accepted") is True and "ok" not in answer:
        return Accepted()
    outcome = read_outcome(answer)
    if isinstance(outcome, Invalid):
        return Invalid(f"The node's answer to ExecuteCommand is not valid: {outcome.text}")
    return outcome


def read_outcome(value: Any, *, mend: bool = True) -> Outcome | Invalid:
    """``{ok, result?, error?}`` as an ``Outcome``. An error text that cannot be
    stored is mended (``mend``: an answer to ``ExecuteCommand``, where the
    command fails anyway) or refused (a ``CommandResult``, as REST refuses it)."""
    if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
        return Invalid(f"{EXPECTED}, got {_excerpt(value)}.")
    if value["ok"]:
        result = value.get("result")
        if not _is_json(result):
            return Invalid("its 'result' is not JSON data that can be stored.")
        return Outcome(True, result)
    error = value.get("error")
    if error is not None and not isinstance(error, str):
        return Invalid("its 'error' must be a string.")
    if error is not None and not mend and not is_storable(error):
        return Invalid("its 'error' holds a NUL character or a lone UTF-16 surrogate.")
    return Outcome(False, error=storable_text(error or NO_REASON)[:MAX_ERROR])


def _is_json(value: Any) -> bool:
    """JSON data that can be stored: no NaN, no bytes, no unstorable strings."""
    try:
        document = json.dumps(value, allow_nan=False)  # ASCII: a lone surrogate is escaped
    except (TypeError, ValueError):
        return False
    return json_is_storable(document.encode(), value)


def storable_text(text: str) -> str:
    """``text`` with each NUL and lone surrogate replaced by U+FFFD: an error
    text is told, not computed on, so it is mended rather than refused."""
    return text if is_storable(text) else _UNSTORABLE.sub("\ufffd", text)


def _excerpt(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."
