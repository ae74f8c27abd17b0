"""A person's decisions and answers, for tasks that wait for them (docs/hubs/approvals.md).

An approval is decided by the owner of its session, or by a user of the same
tenant with the role ``admin``; anyone else is told it does not exist, in the
same words as for an unknown id, so that ids cannot be probed. An info request
is answered the same way. A decision is a conditional update in the store
(``Store.resolve``): when two devices, on two processes, decide at once, one
wins, and the other gets an error that names the outcome it lost to.

- ``approved``: the tool runs with its original parameters;
- ``edited``: it runs with ``modifiedParams``, which must fit the tool's
  parameter schema (otherwise the edit is refused and the request stays pending);
- ``rejected``: it does not run; the agent is told the reason;
- an answer to a request with options must be one of them.

Whatever resolves a request (these, or its expiry) tells the hubs
(``TaskEvents.request_resolved``) and, once the task waits for nothing more,
sends it back to the queue and wakes the workers of every process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..errors import HubError
from ..storage.base import PENDING, Approval, InfoRequest, Request, Resolution, Store, utc_now
from .tools import ToolError, check_arguments

ADMIN = "admin"
OUTCOMES = ("approved", "rejected", "edited")
MAX_ANSWER = 4000


class DecisionError(HubError):
    """The decision cannot be made; the text says why, and is safe to show."""


@attrs.frozen
class Decider:
    """Who decides: a user of a tenant, an administrator of it or not."""

    tenant_id: str
    user_id: str
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def may_see(self, request: Request) -> bool:
        owner = request.owner
        if owner.tenant_id != self.tenant_id:
            return False
        return owner.user_id == self.user_id or self.is_admin


class Decisions:
    def __init__(
        self,
        store: Store,
        events: Any,
        requeued: Callable[[Any], Awaitable[None]],
    ) -> None:
        self._store = store
        self._events = events
        self._requeued = requeued

    async def decide(
        self,
        decider: Decider,
        approval_id: str,
        outcome: str,
        *,
        reason: str | None = None,
        modified_params: Any = None,
    ) -> Approval:
        approval = await self._store.get_approval(approval_id)
        if approval is None or not decider.may_see(approval):
            raise DecisionError(f"Approval '{approval_id}' does not exist.")
        if outcome not in OUTCOMES:
            raise DecisionError(f"The outcome must be one of {', '.join(OUTCOMES)}.")
        detail = reason
        if outcome == "edited":
            try:
                check_arguments(approval.tool_name, modified_params)
            except ToolError as error:
                raise DecisionError(str(error)) from None
            detail = modified_params
        resolution = await self._store.resolve(
            approval, outcome, detail=detail, by=decider.user_id, now=utc_now()
        )
        return await self._settled(resolution, f"Approval '{approval_id}'")  # type: ignore[return-value]

    async def answer(self, decider: Decider, info_id: str, response: Any) -> InfoRequest:
        info = await self._store.get_info_request(info_id)
        if info is None or not decider.may_see(info):
            raise DecisionError(f"Info request '{info_id}' does not exist.")
        if not isinstance(response, str) or not 0 < len(response) <= MAX_ANSWER:
            raise DecisionError(f"The response must be a text of 1 to {MAX_ANSWER} characters.")
        if info.options is not None and response not in info.options:
            choices = ", ".join(f"'{option}'" for option in info.options)
            raise DecisionError(f"The response must be one of {choices}.")
        resolution = await self._store.resolve(
            info, "answered", detail=response, by=decider.user_id, now=utc_now()
        )
        return await self._settled(resolution, f"Info request '{info_id}'")  # type: ignore[return-value]

    async def _settled(self, resolution: Resolution, what: str) -> Request:
        """Tell the hubs, and the workers if the task goes on; or say who won."""
        if not resolution.won:
            status = resolution.request.status
            if status == PENDING:  # cannot happen: a loser finds it decided
                raise DecisionError(f"{what} could not be decided; try again.")
            raise DecisionError(f"{what} was already resolved: {status}.")
        await self.announce(resolution)
        return resolution.request

    async def announce(self, resolution: Resolution) -> None:
        await self._events.request_resolved(resolution.request)
        if resolution.requeued is not None:
            await self._requeued(resolution.requeued)

    async def expire(self) -> None:
        """Requests past their ``expiresAt`` time out (any process may find them)."""
        for resolution in await self._store.expire_requests(utc_now()):
            await self.announce(resolution)
