"""The bodies of ``POST /schedules`` and ``PATCH /schedules/{id}``, checked (docs/schedules.md).

``fields_of`` checks each field it finds for its type and size and returns
them under their Python names; what needs more than the body (the cron
expression read in its zone, the agent, the session) is checked by
``service.Schedules``. Every refusal is a ``RefusedSchedule`` whose text says
what is wrong (answered with 400).
"""

from __future__ import annotations

from typing import Any

MAX_PROMPT = 16_000  # as a chat message (apps.chat.hub)
MAX_ID = 128
# wire name -> Python name, in the order the docs list them
FIELDS = {
    "cron": "cron",
    "timezone": "timezone",
    "agentId": "agent_id",
    "prompt": "prompt",
    "sessionId": "session_id",
}
CHANGES = {"paused": "paused", **FIELDS}
REQUIRED = ("cron", "agentId", "prompt")


class RefusedSchedule(Exception):
    """The request cannot be done; the text says why (answered with 400)."""


def fields_of(body: Any, *, creating: bool) -> dict[str, Any]:
    """The fields of a ``POST`` (``creating``) or ``PATCH`` body, checked."""
    known = FIELDS if creating else CHANGES
    if not isinstance(body, dict):
        raise RefusedSchedule(
            "The body must be a JSON object with a 'cron', an 'agentId' and a 'prompt'."
            if creating
            else f"The body must be a JSON object with some of {', '.join(known)}."
        )
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RefusedSchedule(
            f"{unknown[0]!r} is not a field of a schedule (its fields: {', '.join(known)})."
        )
    if creating:
        missing = [name for name in REQUIRED if name not in body]
        if missing:
            raise RefusedSchedule(f"{missing[0]!r} is required.")
    elif not body:
        raise RefusedSchedule(f"Nothing to change: give some of {', '.join(known)}.")
    for name, value in body.items():
        _check(name, value)
    return {known[name]: value for name, value in body.items()}


def _check(name: str, value: Any) -> None:
    match name:
        case "cron" | "timezone":
            if not isinstance(value, str):
                raise RefusedSchedule(f"{name!r} must be a string.")
        case "agentId":
            if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
                raise RefusedSchedule(f"'agentId' must be a string of 1 to {MAX_ID} characters.")
        case "prompt":
            if not isinstance(value, str) or not value.strip():
                raise RefusedSchedule("'prompt' must be a non-empty string.")
            if len(value) > MAX_PROMPT:
                raise RefusedSchedule(f"'prompt' may be at most {MAX_PROMPT} characters long.")
        case "sessionId":
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_ID):
                raise RefusedSchedule(
                    f"'sessionId' must be null or a string of 1 to {MAX_ID} characters."
                )
        case "paused":
            if not isinstance(value, bool):
                raise RefusedSchedule("'paused' must be true or false.")
