"""``/hubs/discussion``: watch a discussion run, or cancel it (docs/hubs/discussion.md).

``Subscribe(runId)`` checks the run is the caller's (an unknown and a foreign
run get the same error, as ``JoinSession`` does), joins the run's group, then
returns the run as ``GET /discussions/{runId}`` does: subscribing before the
snapshot is read means no event falls between the two (a client may receive
an event that its snapshot already shows, and should apply it). A client that
subscribes after the run started so learns what it missed.
``Unsubscribe(runId)`` leaves the group. ``CancelRun({runId})`` cancels a
queued or running run, wherever it runs.
"""

from __future__ import annotations

from typing import Any

from ...errors import HubError
from ...hubs.binder import unstructure
from ...hubs.hub import Hub
from ...storage.base import Owner
from .audience import run_group
from .events import CancelRunRequest
from .runs import MAX_ID, RefusedRun, RunNotFound, Runs, not_found


class DiscussionHub(Hub):
    services: Runs

    @property
    def owner(self) -> Owner:
        return Owner(self.context.tenant_id, self.context.user_id)

    async def subscribe(self, run_id: str) -> Any:
        if not 0 < len(run_id) <= MAX_ID:
            raise HubError(not_found(run_id[:MAX_ID]))
        try:
            await self.services.check(self.owner, run_id)
        except RunNotFound as error:
            raise HubError(str(error)) from None
        await self.groups.add(self.context.connection_id, run_group(run_id))
        return unstructure(await self.services.view(self.owner, run_id))

    async def unsubscribe(self, run_id: str) -> None:
        await self.groups.remove(self.context.connection_id, run_group(run_id))

    async def cancel_run(self, request: CancelRunRequest) -> None:
        try:
            await self.services.cancel(self.owner, request.run_id, self.context.user_id)
        except (RunNotFound, RefusedRun) as error:
            raise HubError(str(error)) from None
