"""``/hubs/tasks``: a user's task ledger, all sessions at once (docs/hubs/tasks.md).

``Watch()`` subscribes the connection, then returns a snapshot of the user's
tasks that have not finished: subscribing first means no event falls between
the snapshot and the events (a client may see an event for a task that is
already in its snapshot). From then on ``TaskQueued``, ``TaskStarted``,
``TaskCompleted``, ``TaskFailed`` (the chat hub's shapes) and ``TaskCancelled``
arrive for every task of the user. ``Unwatch()`` stops them.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...hubs.hub import Hub
from ...routing.router import GroupKey, group_key
from ...storage.base import Owner, Store, TaskState
from ..chat.rest import task_view

WATCHERS = "tasks-watchers/"
SNAPSHOT_LIMIT = 1000
UNFINISHED = (TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING)


def watchers_group(user_id: str) -> str:
    return WATCHERS + user_id


def watchers_key(tenant_id: str, user_id: str) -> GroupKey:
    """The connections of one user that called ``Watch`` (server-internal)."""
    return group_key(tenant_id, watchers_group(user_id))


class TasksHub(Hub):
    services: Store

    async def watch(self) -> list[Any]:
        context = self.context
        await self.groups.add(context.connection_id, watchers_group(context.user_id))
        owner = Owner(context.tenant_id, context.user_id)
        tasks = await self.services.list_tasks(owner, states=UNFINISHED, limit=SNAPSHOT_LIMIT)
        return [unstructure(task_view(task)) for task in reversed(tasks)]

    async def unwatch(self) -> None:
        await self.groups.remove(self.context.connection_id, watchers_group(self.context.user_id))
