"""Who receives a chat event (docs/hubs/chat.md, "Session scoping", "User-wide events").

- Per-task events (TaskQueued ... TaskCompleted) go to the task's **session
  group** (connections that called ``JoinSession``, or created the session with
  their first message) and to the user's **legacy group**: connections that
  have never called ``JoinSession`` still receive their user's per-task events,
  user-wide, "so older integrations keep working unchanged". A connection in
  both receives each event once.
- ``SessionNotification`` and ``SessionUpdated`` go to the **user group**: every
  device of the user, joined or not.

Group names are server-internal and tenant-qualified (``routing.router``); the
names below can never be joined by a client, since the chat hub has no method
that joins a group by name.
"""

from __future__ import annotations

from ...routing.router import GroupKey, group_key, user_key

SESSION_PREFIX = "chat-session/"
LEGACY_PREFIX = "chat-legacy/"


def session_group(session_id: str) -> str:
    """The group name (within the caller's tenant) of one session."""
    return SESSION_PREFIX + session_id


def legacy_group(user_id: str) -> str:
    """The group name of a user's connections that never joined a session."""
    return LEGACY_PREFIX + user_id


def task_audience(tenant_id: str, user_id: str, session_id: str) -> list[GroupKey]:
    return [
        group_key(tenant_id, session_group(session_id)),
        group_key(tenant_id, legacy_group(user_id)),
    ]


def user_audience(tenant_id: str, user_id: str) -> GroupKey:
    return user_key(tenant_id, user_id)
