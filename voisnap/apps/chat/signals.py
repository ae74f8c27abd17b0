"""The task runtimes of several processes, telling each other about tasks.

``TaskRuntime`` asks for two signals (``agents.runtime.TaskSignals``): "a task
was queued" (idle workers everywhere try to claim it) and "cancel this task"
(the process running it stops it). Both travel on one backplane channel that
every process listens to, as two MessagePack arrays:

    [1]                     a task was queued
    [2, TaskId, By]         cancel the task, on behalf of user By

Both are hints: at most once, like everything published. A lost "queued" costs
a poll period; a lost "cancel" is found by the runner's next lease renewal,
which also reads the cancel request from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgpack

from ...backplane import BackplaneError, RequestRefused
from ...failures import report_client_error
from ...routing import names
from ...routing.cluster import Cluster

log = logging.getLogger(__name__)

QUEUED = 1
CANCEL = 2


class BackplaneTaskSignals:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._queued: Callable[[], None] = lambda: None
        self._cancel: Callable[[str, str], bool] = lambda task_id, by: False

    async def listen(self, queued: Callable[[], None], cancel: Callable[[str, str], bool]) -> None:
        self._queued, self._cancel = queued, cancel
        await self._cluster.subscriptions.hold(names.tasks_channel(), self)

    async def task_queued(self) -> None:
        await self._publish([QUEUED])

    async def cancel(self, task_id: str, by: str) -> None:
        await self._publish([CANCEL, task_id, by])

    async def _publish(self, items: list) -> None:
        try:
            await self._cluster.backplane.publish(names.tasks_channel(), msgpack.packb(items))
        except BackplaneError as error:
            report_client_error(log, "other processes were not told about a task", str(error))

    # -- the channel's listener ------------------------------------------------------------------

    def message(self, payload: bytes) -> None:
        try:
            items = msgpack.unpackb(payload)
        except Exception:  # msgpack raises several kinds; all mean "not a signal"
            items = None
        match items:
            case [1, *_]:
                self._queued()
            case [2, str() as task_id, str() as by, *_]:
                self._cancel(task_id, by)
            case _:
                log.info("a malformed task signal was dropped")

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("The tasks channel takes no requests.")
