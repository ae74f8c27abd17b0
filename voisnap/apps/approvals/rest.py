"""The approvals over REST, for a CLI or a webhook (docs/rest.md, "Approvals").

- ``GET /approvals?status=pending``: the caller's approval requests (an
  ``admin``: the tenant's), newest first;
- ``GET /approvals/{approvalId}``;
- ``POST /approvals/{approvalId}/decision`` with
  ``{"outcome": "approved"|"rejected"|"edited", "reason"?, "modifiedParams"?}``;
- ``GET /info-requests?status=pending``, ``POST /info-requests/{infoId}/response``
  with ``{"response": "..."}``.

Another user's or tenant's ids answer 404, like unknown ones. A decision that
cannot be made answers 409 with the reason (decided already, edited parameters
that do not fit the tool); a malformed body 400.
"""

from __future__ import annotations

from typing import Any

from ...agents.decisions import OUTCOMES, Decider, DecisionError, Decisions
from ...hubs.binder import unstructure
from ...server.routes import RestRequest, Route
from ...storage.base import Store
from .views import approval_view, info_request_view

STATUSES = {"pending", "approved", "rejected", "edited", "timeOut", "answered", "cancelled"}


class ApprovalsRest:
    def __init__(self, store: Store, decisions: Decisions) -> None:
        self._store = store
        self._decisions = decisions

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/approvals", self.approvals),
            Route.of("GET", "/approvals/{approval_id}", self.approval),
            Route.of("POST", "/approvals/{approval_id}/decision", self.decide),
            Route.of("GET", "/info-requests", self.info_requests),
            Route.of("POST", "/info-requests/{info_id}/response", self.respond),
        ]

    async def approvals(self, request: RestRequest) -> tuple[int, Any]:
        decider, status = _decider(request), request.query.get("status")
        if status is not None and status not in STATUSES:
            return 400, {"error": f"'status' must be one of {sorted(STATUSES)}."}
        found = await self._store.list_approvals(
            decider.tenant_id, None if decider.is_admin else decider.user_id, status
        )
        return 200, [unstructure(approval_view(approval)) for approval in found]

    async def approval(self, request: RestRequest) -> tuple[int, Any]:
        approval_id = request.params["approval_id"]
        approval = await self._store.get_approval(approval_id)
        if approval is None or not _decider(request).may_see(approval):
            return 404, {"error": f"Approval '{approval_id}' does not exist."}
        return 200, unstructure(approval_view(approval))

    async def decide(self, request: RestRequest) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("outcome"), str):
            return 400, {"error": "The body must be a JSON object with an 'outcome'."}
        if body["outcome"] not in OUTCOMES:
            return 400, {"error": f"The outcome must be one of {', '.join(OUTCOMES)}."}
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            return 400, {"error": "'reason' must be a string."}
        approval_id = request.params["approval_id"]
        try:
            approval = await self._decisions.decide(
                _decider(request),
                approval_id,
                body["outcome"],
                reason=reason,
                modified_params=body.get("modifiedParams"),
            )
        except DecisionError as error:
            return _refusal(str(error))
        return 200, unstructure(approval_view(approval))

    async def info_requests(self, request: RestRequest) -> tuple[int, Any]:
        decider, status = _decider(request), request.query.get("status")
        if status is not None and status not in STATUSES:
            return 400, {"error": f"'status' must be one of {sorted(STATUSES)}."}
        found = await self._store.list_info_requests(
            decider.tenant_id, None if decider.is_admin else decider.user_id, status
        )
        return 200, [unstructure(info_request_view(info)) for info in found]

    async def respond(self, request: RestRequest) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict) or "response" not in body:
            return 400, {"error": "The body must be a JSON object with a 'response'."}
        try:
            info = await self._decisions.answer(
                _decider(request), request.params["info_id"], body["response"]
            )
        except DecisionError as error:
            return _refusal(str(error))
        return 200, unstructure(info_request_view(info))


def _decider(request: RestRequest) -> Decider:
    principal = request.principal
    return Decider(principal.tenant_id, principal.user_id, frozenset(principal.roles))


def _refusal(text: str) -> tuple[int, Any]:
    status = 404 if text.endswith("does not exist.") else 409
    return status, {"error": text}
