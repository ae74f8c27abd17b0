"""``task.submit`` (seed 004), shared by ``POST /v1/tasks`` and the stream.

A submission is checked here, then enters the agent pipeline exactly as a
chat message does (``apps.chat.intake``): one runtime, another face.

- ``mode: "session"``: a turn of a conversation; ``session_id`` names it, or,
  absent, a new one is made;
- ``mode: "task"``: a one-off task, in a new session of its own (its events
  name it); a ``session_id`` is refused.

``profile_id`` is an agent id (``sophon`` by default). Refusals carry the
seed's error codes.
"""

from __future__ import annotations

from typing import Any

import attrs

from ...agents.registry import UnknownAgent
from ...agents.runtime import RuntimeBusy
from ...errors import HubError
from ...storage.base import Owner, Task
from ..chat.hub import ChatServices
from ..chat.intake import Said, accept, announce, is_voisnap_session

MODES = ("session", "task")
DEFAULT_PROFILE = "sophon"
MAX_PROMPT = 32 * 1024
MAX_ID = 128

BAD_REQUEST, NOT_FOUND, RATE_LIMITED = "BAD_REQUEST", "NOT_FOUND", "RATE_LIMITED"


class Refused(Exception):
    """A submission that is not taken: the seed's ``code`` and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class Submission:
    mode: str
    prompt: str
    profile_id: str = DEFAULT_PROFILE
    session_id: str | None = None

    @classmethod
    def of(cls, body: Any) -> Submission:
        """The submission ``body`` asks for (Refused ``BAD_REQUEST`` if malformed)."""
        if not isinstance(body, dict):
            raise Refused(BAD_REQUEST, "A task is a JSON object: {mode, prompt, ...}.")
        mode, prompt = body.get("mode", "session"), body.get("prompt")
        profile_id = body.get("profile_id", DEFAULT_PROFILE)
        session_id = body.get("session_id")
        if mode not in MODES:
            raise Refused(BAD_REQUEST, "'mode' must be \"session\" or \"task\".")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Refused(BAD_REQUEST, "'prompt' must be a non-empty string.")
        if len(prompt) > MAX_PROMPT:
            raise Refused(BAD_REQUEST, f"'prompt' may have {MAX_PROMPT} characters.")
        if not _is_id(profile_id):
            raise Refused(BAD_REQUEST, f"'profile_id' must be a string of 1 to {MAX_ID}.")
        if session_id is not None and not _is_id(session_id):
            raise Refused(BAD_REQUEST, f"'session_id' must be a string of 1 to {MAX_ID}.")
        if mode == "task" and session_id is not None:
            raise Refused(BAD_REQUEST, "A one-off task (mode \"task\") runs in a session of its "
                          "own: leave 'session_id' out.")
        return cls(mode, prompt, profile_id, session_id)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID


async def submit(
    services: ChatServices,
    owner: Owner,
    submission: Submission,
    *,
    new_session_id: str | None = None,
) -> Task:
    """Store the prompt and its task, announce it, queue it; the task. A
    submission without a session makes one: ``new_session_id`` names it when
    the caller must know the id first (a stream watches it before the task runs)."""
    session_id = submission.session_id
    if session_id is None:
        session_id = new_session_id
    else:
        session = await services.store.get_session(owner, session_id)
        if session is None or is_voisnap_session(session_id):
            raise Refused(NOT_FOUND, f"Session '{session_id}' does not exist.")
    try:
        services.agents.get(submission.profile_id)
        await services.runtime.check_capacity()
    except UnknownAgent as error:
        raise Refused(NOT_FOUND, str(error)) from None
    except RuntimeBusy as error:
        raise Refused(RATE_LIMITED, str(error)) from None
    said = Said(owner, session_id, submission.profile_id, submission.prompt)
    try:
        accepted = await accept(services, said)
    except HubError as error:  # the session is someone else's after all
        raise Refused(NOT_FOUND, str(error)) from None
    await announce(services, owner, accepted.task)
    return accepted.task
