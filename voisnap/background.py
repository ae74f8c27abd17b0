"""Work that runs beside the server, for as long as it.

A service whose nursery others start tasks in: a call's reply relay, a
browser call's media, a finished turn's log to forget later. ``run`` is added
to the server's services (``HubServer.add_service``); ``start_soon`` is valid
once it has started. The work must keep its own errors: one that escapes
stops the server, as any service's failure does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio


class Background:
    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def start_soon(self, work: Callable[..., Awaitable[None]], *arguments: Any) -> None:
        assert self._nursery is not None, "run() the service first"
        self._nursery.start_soon(work, *arguments)
