"""What the approvals hub and its REST routes show of a request (docs/hubs/approvals.md).

The hub events carry exactly the fields the contract names; the REST objects
(``ApprovalView``, ``InfoRequestView``) add what a list needs later: the
status, how it was resolved, when and by whom.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from ...storage.base import Approval, InfoRequest


@attrs.frozen
class ApprovalRequested:
    id: str
    task_id: str
    session_id: str
    agent_id: str
    tool_name: str
    params: dict[str, Any]
    reason: str | None
    status: str
    created_at: datetime.datetime
    expires_at: datetime.datetime


@attrs.frozen
class ApprovalResolved:
    id: str
    outcome: str
    outcome_detail: Any


@attrs.frozen
class InfoRequested:
    id: str
    task_id: str
    session_id: str
    question: str
    options: list[str] | None
    created_at: datetime.datetime
    expires_at: datetime.datetime


@attrs.frozen
class InfoResolved:
    id: str
    response: str | None


@attrs.frozen
class ApprovalView:
    id: str
    task_id: str
    session_id: str
    agent_id: str
    tool_name: str
    params: dict[str, Any]
    reason: str | None
    status: str
    created_at: datetime.datetime
    expires_at: datetime.datetime
    outcome_detail: Any
    resolved_at: datetime.datetime | None
    resolved_by: str | None
    user_id: str


@attrs.frozen
class InfoRequestView:
    id: str
    task_id: str
    session_id: str
    question: str
    options: list[str] | None
    status: str
    created_at: datetime.datetime
    expires_at: datetime.datetime
    response: str | None
    resolved_at: datetime.datetime | None
    resolved_by: str | None
    user_id: str


def approval_requested(approval: Approval) -> ApprovalRequested:
    return ApprovalRequested(
        approval.approval_id,
        approval.task_id,
        approval.session_id,
        approval.agent_id,
        approval.tool_name,
        approval.params,
        approval.reason,
        approval.status,
        approval.created_at,
        approval.expires_at,
    )


def approval_resolved(approval: Approval) -> ApprovalResolved:
    return ApprovalResolved(approval.approval_id, approval.status, approval.outcome_detail)


def info_requested(info: InfoRequest) -> InfoRequested:
    options = None if info.options is None else list(info.options)
    return InfoRequested(
        info.info_id,
        info.task_id,
        info.session_id,
        info.question,
        options,
        info.created_at,
        info.expires_at,
    )


def info_resolved(info: InfoRequest) -> InfoResolved:
    return InfoResolved(info.info_id, info.response)


def approval_view(approval: Approval) -> ApprovalView:
    return ApprovalView(
        *attrs.astuple(approval_requested(approval), recurse=False),
        outcome_detail=approval.outcome_detail,
        resolved_at=approval.resolved_at,
        resolved_by=approval.resolved_by,
        user_id=approval.owner.user_id,
    )


def info_request_view(info: InfoRequest) -> InfoRequestView:
    options = None if info.options is None else list(info.options)
    return InfoRequestView(
        info.info_id,
        info.task_id,
        info.session_id,
        info.question,
        options,
        info.status,
        info.created_at,
        info.expires_at,
        info.response,
        info.resolved_at,
        info.resolved_by,
        info.owner.user_id,
    )
