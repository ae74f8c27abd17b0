"""The approvals hub's rendering of the runtime's domain events: a request made,
a request resolved, to its user and the tenant's administrators."""

from __future__ import annotations

from ...hubs.hub import invocation_of
from ...routing.router import Router
from ...storage.base import Approval, Request, Task
from .hub import audience
from .views import approval_requested, approval_resolved, info_requested, info_resolved


class ApprovalsEvents:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def waiting(self, task: Task, request: Request) -> None:
        if isinstance(request, Approval):
            await self._send(request, "ApprovalRequested", approval_requested(request))
        else:
            await self._send(request, "InfoRequested", info_requested(request))

    async def request_resolved(self, request: Request) -> None:
        if isinstance(request, Approval):
            await self._send(request, "ApprovalResolved", approval_resolved(request))
        else:
            await self._send(request, "InfoResolved", info_resolved(request))

    async def _send(self, request: Request, target: str, payload: object) -> None:
        owner = request.owner
        await self._router.send_groups(
            audience(owner.tenant_id, owner.user_id), invocation_of(target, (payload,))
        )
