"""How a user's message enters the agent pipeline, typed or spoken.

``SendMessage`` and a final transcript of ``StreamAudio`` (docs/voice.md) take
the same path: the message and its task are stored (``accept``), then
``TaskQueued`` goes to the session's devices, the task is queued for the
runtime and the session's time moves on (``announce``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import attrs

from ...errors import HubError
from ...storage.base import Accepted, Message, Owner, Session, StoreError, Task, TaskState, utc_now

if TYPE_CHECKING:
    from .hub import ChatServices

TITLE_LENGTH = 60


@attrs.frozen
class Said:
    """A user's message, before it is stored."""

    owner: Owner
    session_id: str | None
    agent_id: str
    content: str
    is_streaming: bool = True
    channel_id: str | None = None
    client_message_id: str | None = None
    spoken: bool = False
    metadata: dict[str, Any] | None = None


VOISNAP_CHAT, VOISNAP_CALL = "vchat_", "vcall_"
"""How the ids of the Voisnap hubs' sessions start (``apps.voisnap``): the faces
tell the products' sessions apart by them, without a lookup per event."""


def is_voisnap_session(session_id: str) -> bool:
    return session_id.startswith((VOISNAP_CHAT, VOISNAP_CALL))


def is_voice_session(session_id: str) -> bool:
    return session_id.startswith(VOISNAP_CALL)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def title_of(content: str) -> str:
    words = " ".join(content.split())
    return words if len(words) <= TITLE_LENGTH else words[: TITLE_LENGTH - 1] + "…"


async def accept(services: ChatServices, said: Said) -> Accepted:
    """Store the message and its queued task (HubError if the session is someone else's)."""
    now = utc_now()
    owner = said.owner
    session_id = said.session_id or new_id("sess")
    message = Message(
        message_id=new_id("msg"),
        session_id=session_id,
        owner=owner,
        role="user",
        content=said.content,
        created_at=now,
        spoken=said.spoken,
        metadata=said.metadata,
    )
    task = services.runtime.reserve(
        Task(
            task_id=new_id("task"),
            session_id=session_id,
            owner=owner,
            agent_id=said.agent_id,
            message_id=message.message_id,
            state=TaskState.QUEUED,
            created_at=now,
            is_streaming=said.is_streaming,
            channel_id=said.channel_id,
            client_message_id=said.client_message_id,
        )
    )
    session = Session(session_id, owner, title_of(said.content), now, now, said.agent_id)
    try:
        return await services.store.accept_message(session=session, message=message, task=task)
    except StoreError as error:
        raise HubError(str(error)) from None


async def announce(services: ChatServices, owner: Owner, task: Task) -> None:
    """``TaskQueued``, the task to the runtime, the session's new time."""
    await services.events.queued(task)
    await services.runtime.submit(task)
    session = await services.store.update_session(
        owner, task.session_id, updated_at=task.created_at, title=None
    )
    if session is not None:
        await services.events.session_updated(session)
