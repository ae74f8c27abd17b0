"""What a ``/v1/stream`` client may send (seed 004), read without I/O.

``parse`` is total: any message in, one of the client messages below or
``BadFrame`` (the seed's ``BAD_REQUEST`` with a message saying what is wrong)
out. ``task.submit``'s body is checked by ``Submission.of``, as
``POST /v1/tasks``'s is.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ...protocol.unicode import UNSTORABLE, json_is_storable
from .submission import BAD_REQUEST, MAX_ID, MAX_PROMPT

MAX_ANSWER = 4096


class BadFrame(Exception):
    """A frame the server cannot act on; ``str()`` says why."""

    code = BAD_REQUEST


@attrs.frozen
class SubmitTask:
    body: dict[str, Any]


@attrs.frozen
class CancelTask:
    task_id: str


@attrs.frozen
class StartSession:
    profile_id: str | None


@attrs.frozen
class ResumeSession:
    session_id: str


@attrs.frozen
class SessionTurn:
    session_id: str
    prompt: str


@attrs.frozen
class AnswerTask:
    task_id: str
    answer: str


ClientMessage = SubmitTask | CancelTask | StartSession | ResumeSession | SessionTurn | AnswerTask
TYPES = ("task.submit", "task.cancel", "session.start", "session.resume", "session.turn",
         "task.answer")


def parse(message: str | bytes) -> ClientMessage:
    if isinstance(message, bytes):
        raise BadFrame("Frames are JSON text messages, not binary ones.")
    try:
        body = json.loads(message)
    except (ValueError, RecursionError):
        raise BadFrame("A frame must be JSON.") from None
    if not isinstance(body, dict):
        raise BadFrame("A frame must be a JSON object with a 'type'.")
    if not json_is_storable(message.encode(), body):
        raise BadFrame(f"The frame {UNSTORABLE}.")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise BadFrame("A frame must have a 'type' (a string).")
    match kind:
        case "task.submit":
            return SubmitTask({k: v for k, v in body.items() if k != "type"})
        case "task.cancel":
            return CancelTask(_id(body, "task_id"))
        case "session.start":
            profile = body.get("profile_id")
            return StartSession(None if profile is None else _id(body, "profile_id"))
        case "session.resume":
            return ResumeSession(_id(body, "session_id"))
        case "session.turn":
            return SessionTurn(_id(body, "session_id"), _text(body, "prompt", MAX_PROMPT))
        case "task.answer":
            return AnswerTask(_id(body, "task_id"), _text(body, "answer", MAX_ANSWER))
    shown = kind if len(kind) <= 40 else kind[:40] + "…"
    raise BadFrame(f"Unknown type '{shown}': one of {', '.join(TYPES)}.")


def _id(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise BadFrame(f"'{field}' must be a string of 1 to {MAX_ID} characters.")
    return value


def _text(body: dict[str, Any], field: str, most: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadFrame(f"'{field}' must be a non-empty string.")
    if len(value) > most:
        raise BadFrame(f"'{field}' may have {most} characters.")
    return value
