"""A discussion's verdict: reading it from the judge's text, checking it, hashing it.

docs/hubs/discussion.md, "Verdict" and "Hashes". The judge answers with a JSON
object ``{"winner", "summary", "scores"}``:

- ``winner``: one of the panelist ids (``p1``, ``p2``, ...), or null (a tie, or
  no winner);
- ``summary``: a string;
- ``scores``: an object with a number from 0 to 10 for every panelist id, and
  no other key.

Anything else fails the run with ``The judge's verdict is not valid: <why>``.
Other keys of the object are left out of the stored verdict; a whole-number
score (``7.0``) is stored as an integer (``7``), so that any JSON library writes
the verdict's canonical JSON, and so its hash, the same way.

Hashes let a client check what it was told against what is stored: a turn's
``contentHash`` is the SHA-256 (hex) of its text as UTF-8; ``verdictHash`` the
SHA-256 of the verdict's canonical JSON (keys sorted, no spaces, UTF-8 text
rather than ``\\u`` escapes).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from .base import AgentError

INVALID = "The judge's verdict is not valid: "
# Models often wrap JSON in a Markdown code fence; the fence is not part of the verdict.
FENCE = re.compile(r"^\s*```(?:json)?\s*(?P<body>.*?)\s*```\s*$", re.S | re.I)


class InvalidVerdict(AgentError):
    """The judge's answer is not a verdict; ``str()`` says why (``DiscussionFailed.error``)."""

    def __init__(self, why: str) -> None:
        super().__init__(INVALID + why)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def verdict_hash(verdict: dict[str, Any]) -> str:
    return content_hash(canonical_json(verdict))


def parse_verdict(text: str, panelist_ids: Iterable[str]) -> dict[str, Any]:
    """The verdict in the judge's ``text``, checked against the panel's ids."""
    fenced = FENCE.match(text)
    body = fenced.group("body") if fenced else text
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        raise InvalidVerdict("it is not JSON.") from None
    if not isinstance(document, dict):
        raise InvalidVerdict("it is not a JSON object.")
    return check_verdict(document, list(panelist_ids))


def check_verdict(document: dict[str, Any], panelist_ids: list[str]) -> dict[str, Any]:
    for key in ("winner", "summary", "scores"):
        if key not in document:
            raise InvalidVerdict(f"it has no '{key}'.")
    winner, summary, scores = document["winner"], document["summary"], document["scores"]
    if winner is not None and winner not in panelist_ids:
        raise InvalidVerdict(f"'winner' must be one of {', '.join(panelist_ids)} or null.")
    if not isinstance(summary, str):
        raise InvalidVerdict("'summary' must be a string.")
    return {"winner": winner, "summary": summary, "scores": _scores(scores, panelist_ids)}


def _scores(scores: Any, panelist_ids: list[str]) -> dict[str, int | float]:
    if not isinstance(scores, dict):
        raise InvalidVerdict("'scores' must be an object from panelist id to a number.")
    if set(scores) != set(panelist_ids):
        raise InvalidVerdict(f"'scores' must have exactly the keys {', '.join(panelist_ids)}.")
    checked: dict[str, int | float] = {}
    for panelist_id in panelist_ids:
        score = scores[panelist_id]
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise InvalidVerdict(f"the score of {panelist_id} is not a number.")
        if not 0 <= score <= 10:
            raise InvalidVerdict(f"the score of {panelist_id} is not from 0 to 10.")
        checked[panelist_id] = int(score) if float(score).is_integer() else score
    return checked
