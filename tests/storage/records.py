"""Records for the store tests: owners, fixed times, and a message with its queued task."""

from __future__ import annotations

import datetime

from voisnap.storage.base import Accepted, Message, Owner, Session, Store, Task, TaskState

CEILING = 15
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
ADA = Owner("acme", "ada")
BOB = Owner("acme", "bob")
ADA_ELSEWHERE = Owner("globex", "ada")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def records(
    owner: Owner,
    n: int | str,
    *,
    session_id: str = "sess_1",
    client_message_id: str | None = None,
    when: datetime.datetime = T0,
    content: str | None = None,
) -> tuple[Session, Message, Task]:
    """A session, a user message and its queued task, numbered ``n``."""
    session = Session(session_id, owner, f"title {n}", when, when)
    message = Message(
        message_id=f"msg_{n}",
        session_id=session_id,
        owner=owner,
        role="user",
        content=content if content is not None else f"message {n}",
        created_at=when,
    )
    task = Task(
        task_id=f"task_{n}",
        session_id=session_id,
        owner=owner,
        agent_id="sophon",
        message_id=message.message_id,
        state=TaskState.QUEUED,
        created_at=when,
        channel_id="webchat",
        client_message_id=client_message_id,
    )
    return session, message, task


async def accept(
    store: Store,
    owner: Owner,
    n: int | str,
    *,
    session_id: str = "sess_1",
    client_message_id: str | None = None,
    when: datetime.datetime = T0,
    content: str | None = None,
) -> Accepted:
    session, message, task = records(
        owner, n, session_id=session_id, client_message_id=client_message_id, when=when,
        content=content,
    )
    return await store.accept_message(session=session, message=message, task=task)


def reply_to(task_id: str, when: datetime.datetime, content: str = "ok", *,
             session_id: str = "sess_1", owner: Owner = ADA) -> Message:
    """The agent's final message for ``task_id``."""
    return Message(f"msg_r_{task_id}", session_id, owner, "assistant", content, when, None, task_id)
