"""What a ``/v1/events`` client may send (seed 003; docs/v1-events.md), read without I/O.

    {"type": "subscribe", "id": "s1", "topic": "events.acme.tasks.task.completed.*"}
    {"type": "unsubscribe", "id": "s1"}

``parse`` is total: a message in, ``Subscribe`` or ``Unsubscribe`` out, or
``Refusal`` (a code, a message, and the frame's ``id`` when it had one).
"""

from __future__ import annotations

import json

import attrs

from ...protocol.unicode import UNSTORABLE, is_storable, json_is_storable

MAX_ID = 128
BAD_REQUEST, NOT_FOUND, FORBIDDEN, RATE_LIMITED = (
    "BAD_REQUEST", "NOT_FOUND", "FORBIDDEN", "RATE_LIMITED"
)


class Refusal(Exception):
    """A frame refused with an ``error`` frame; the connection stays."""

    def __init__(self, code: str, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.frame_id = frame_id


@attrs.frozen
class Subscribe:
    id: str
    topic: str


@attrs.frozen
class Unsubscribe:
    id: str


def parse(message: str | bytes) -> Subscribe | Unsubscribe:
    if isinstance(message, bytes):
        raise Refusal(BAD_REQUEST, "Frames are JSON text messages, not binary ones.")
    try:
        body = json.loads(message)
    except (ValueError, RecursionError):
        raise Refusal(BAD_REQUEST, "A frame must be JSON.") from None
    if not isinstance(body, dict):
        raise Refusal(BAD_REQUEST, "A frame must be a JSON object with a 'type'.")
    frame_id = body.get("id")
    if not isinstance(frame_id, str) or not 0 < len(frame_id) <= MAX_ID \
            or not is_storable(frame_id):
        raise Refusal(BAD_REQUEST, f"'id' must be a string of 1 to {MAX_ID} characters.")
    if not json_is_storable(message.encode(), body):  # answered with its id, as any refusal
        raise Refusal(BAD_REQUEST, f"The frame {UNSTORABLE}.", frame_id)
    match body.get("type"):
        case "subscribe":
            topic = body.get("topic")
            if not isinstance(topic, str):
                raise Refusal(BAD_REQUEST, "'topic' must be a string.", frame_id)
            return Subscribe(frame_id, topic)
        case "unsubscribe":
            return Unsubscribe(frame_id)
    raise Refusal(BAD_REQUEST, "'type' must be \"subscribe\" or \"unsubscribe\".", frame_id)
