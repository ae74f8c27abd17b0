"""``/hubs/approvals``: the pending-approval queue (docs/hubs/approvals.md).

Every connection receives its user's requests and resolutions; a connection
whose token has the role ``admin`` also receives those of its whole tenant
(it joins the tenant's administrators' group on connect). Decisions go to the
runtime's ``Decisions``, which checks who may decide, and lets one decision
win when several arrive at once.
"""

from __future__ import annotations

from typing import Any

import attrs

from ...agents.decisions import ADMIN, Decider, Decisions
from ...hubs.binder import unstructure
from ...hubs.hub import Hub
from ...routing.router import GroupKey, group_key, user_key
from .views import approval_resolved, info_resolved

ADMINS = "approvals-admins/"


def admins_key(tenant_id: str) -> GroupKey:
    """The tenant's administrators (a server-internal group: this hub joins no other)."""
    return group_key(tenant_id, ADMINS)


def audience(tenant_id: str, user_id: str) -> list[GroupKey]:
    """Who hears of one user's requests: every connection of the user, and the
    tenant's administrators."""
    return [user_key(tenant_id, user_id), admins_key(tenant_id)]


@attrs.frozen
class ApproveRequest:
    approval_id: str


@attrs.frozen
class RejectRequest:
    approval_id: str
    reason: str | None = None


@attrs.frozen
class EditRequest:
    approval_id: str
    modified_params: dict[str, Any]


@attrs.frozen
class RespondInfoRequest:
    info_id: str
    response: str


class ApprovalsHub(Hub):
    services: Decisions

    @property
    def decider(self) -> Decider:
        context = self.context
        return Decider(context.tenant_id, context.user_id, frozenset(context.roles))

    async def on_connected(self) -> None:
        if ADMIN in self.context.roles:
            await self.groups.add(self.context.connection_id, ADMINS)

    async def approve(self, request: ApproveRequest) -> Any:
        approval = await self.services.decide(self.decider, request.approval_id, "approved")
        return unstructure(approval_resolved(approval))

    async def reject(self, request: RejectRequest) -> Any:
        approval = await self.services.decide(
            self.decider, request.approval_id, "rejected", reason=request.reason
        )
        return unstructure(approval_resolved(approval))

    async def edit(self, request: EditRequest) -> Any:
        approval = await self.services.decide(
            self.decider, request.approval_id, "edited", modified_params=request.modified_params
        )
        return unstructure(approval_resolved(approval))

    async def respond_info(self, request: RespondInfoRequest) -> Any:
        info = await self.services.answer(self.decider, request.info_id, request.response)
        return unstructure(info_resolved(info))
