"""Approvals and info requests, and the waiting tasks behind them (issue 12).

A task that needs a person stops between two steps: ``wait_for`` stores the
request and the task's transcript, moves the task from ``running`` to
``waiting`` and lets go of its lease, in one transaction, so it holds neither
a worker nor a lease while the person thinks. Whatever ends the wait (a
decision, an answer, the request's expiry) is one conditional update that
moves the request from ``pending`` to its outcome, so exactly one of several
deciders (on several processes) wins; the same transaction sends the task back
to ``queued`` once none of its requests is pending, for any process to claim.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, TypeVar

from .base import PENDING, Approval, InfoRequest, Owner, Request, Resolution, Task, TaskState

T = TypeVar("T")

APPROVAL_COLUMNS = (
    "approval_id, task_id, session_id, tenant_id, user_id, agent_id, call_id, tool_name, "
    "params, reason, status, created_at, expires_at, outcome_detail, resolved_at, resolved_by"
)
INFO_COLUMNS = (
    "info_id, task_id, session_id, tenant_id, user_id, agent_id, call_id, question, options, "
    "status, created_at, expires_at, response, resolved_at, resolved_by"
)
CANCELLED = "cancelled"
TIMED_OUT = "timeOut"


class RequestQueries:
    """The request half of ``SqlStore`` (it supplies ``_run``, ``dialect`` and the task rows)."""

    dialect: Any
    _run: Callable[..., Any]
    _get_task: Callable[..., Task | None]
    _for_update: Callable[[], str]

    async def wait_for(
        self, task_id: str, node: str, transcript: str, request: Request | None
    ) -> Task | None:
        """Store ``request`` (None: it is stored already, still pending) and park
        the task; None if ``node`` lost its lease."""

        def work(db: Any) -> Task | None:
            changed = db.execute(
                "UPDATE tasks SET state = ?, transcript = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE task_id = ? AND state = ? AND lease_owner = ?",
                (TaskState.WAITING.value, transcript, task_id, TaskState.RUNNING.value, node),
            ).rowcount
            if not changed:
                return None
            if request is not None:
                self._insert_request(db, request)
            return self._get_task(db, task_id)

        return await self._run(work)

    async def save_transcript(self, task_id: str, node: str, transcript: str) -> bool:
        def work(db: Any) -> bool:
            return db.execute(
                "UPDATE tasks SET transcript = ? WHERE task_id = ? AND state = ? "
                "AND lease_owner = ?",
                (transcript, task_id, TaskState.RUNNING.value, node),
            ).rowcount == 1

        return await self._run(work)

    async def get_transcript(self, task_id: str) -> str | None:
        def work(db: Any) -> str | None:
            row = db.execute("SELECT transcript FROM tasks WHERE task_id = ?", (task_id,))
            found = row.fetchone()
            return None if found is None else found[0]

        return await self._run(work)

    # -- deciding ---------------------------------------------------------------------------------

    async def resolve(
        self,
        request: Request,
        status: str,
        *,
        detail: Any = None,
        by: str | None,
        now: datetime.datetime,
    ) -> Resolution:
        """Move ``request`` from pending to ``status`` (with the outcome's
        ``detail``: a rejection reason, modified params, an answer), unless
        something decided it first; requeue its task if nothing else is pending."""
        return await self._run(lambda db: self._resolve(db, request, status, detail, by, now))

    def _resolve(
        self,
        db: Any,
        request: Request,
        status: str,
        detail: Any,
        by: str | None,
        now: datetime.datetime,
    ) -> Resolution:
        table, key, identifier, column = _where(request)
        value = detail if isinstance(request, InfoRequest) else _json(detail)
        # Two requests of one task resolved at once, in two processes: each
        # would count the other still pending (it has not committed), and
        # neither would requeue the task. Resolving takes the task's row first.
        db.execute(
            f"SELECT task_id FROM tasks WHERE task_id = ?{self._for_update()}", (request.task_id,)
        )
        won = db.execute(
            f"UPDATE {table} SET status = ?, {column} = ?, resolved_at = ?, resolved_by = ? "
            f"WHERE {key} = ? AND status = ?",
            (status, value, self.dialect.time_in(now), by, identifier, PENDING),
        ).rowcount == 1
        current = self._get_request(db, request)
        requeued = self._requeue(db, request.task_id) if won else None
        return Resolution(current or request, won, requeued)

    def _requeue(self, db: Any, task_id: str) -> Task | None:
        """waiting -> queued, once the task waits for nothing more."""
        for table in ("approvals", "info_requests"):
            pending = db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE task_id = ? AND status = ?",
                (task_id, PENDING),
            ).fetchone()[0]
            if pending:
                return None
        changed = db.execute(
            "UPDATE tasks SET state = ? WHERE task_id = ? AND state = ?",
            (TaskState.QUEUED.value, task_id, TaskState.WAITING.value),
        ).rowcount
        return self._get_task(db, task_id) if changed else None

    async def expire_requests(self, now: datetime.datetime) -> list[Resolution]:
        """Pending requests past their ``expiresAt`` time out (and their tasks go on)."""

        def work(db: Any) -> list[Resolution]:
            moment = self.dialect.time_in(now)
            expired = [
                self._approval(row)
                for row in db.execute(
                    f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = ? AND expires_at < ?",
                    (PENDING, moment),
                ).fetchall()
            ] + [
                self._info(row)
                for row in db.execute(
                    f"SELECT {INFO_COLUMNS} FROM info_requests WHERE status = ? AND expires_at < ?",
                    (PENDING, moment),
                ).fetchall()
            ]
            resolutions = [self._resolve(db, r, TIMED_OUT, None, None, now) for r in expired]
            return [resolution for resolution in resolutions if resolution.won]

        return await self._run(work)

    async def cancel_requests_of(self, task_id: str, now: datetime.datetime) -> list[Request]:
        """The task was cancelled: its pending requests are cancelled with it."""

        def work(db: Any) -> list[Request]:
            pending = self._requests_of(db, task_id, PENDING)
            for table in ("approvals", "info_requests"):
                db.execute(
                    f"UPDATE {table} SET status = ?, resolved_at = ? WHERE task_id = ? "
                    "AND status = ?",
                    (CANCELLED, self.dialect.time_in(now), task_id, PENDING),
                )
            return [self._get_request(db, request) or request for request in pending]

        return await self._run(work)

    # -- reading ----------------------------------------------------------------------------------

    async def get_approval(self, approval_id: str) -> Approval | None:
        def work(db: Any) -> Approval | None:
            row = db.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = ?", (approval_id,)
            ).fetchone()
            return None if row is None else self._approval(row)

        return await self._run(work)

    async def get_info_request(self, info_id: str) -> InfoRequest | None:
        def work(db: Any) -> InfoRequest | None:
            row = db.execute(
                f"SELECT {INFO_COLUMNS} FROM info_requests WHERE info_id = ?", (info_id,)
            ).fetchone()
            return None if row is None else self._info(row)

        return await self._run(work)

    async def request_for_call(self, task_id: str, call_id: str) -> Request | None:
        """The request a tool call of a task made, if it made one."""

        def work(db: Any) -> Request | None:
            found = [r for r in self._requests_of(db, task_id, None) if r.call_id == call_id]
            return found[-1] if found else None

        return await self._run(work)

    async def list_approvals(
        self, tenant_id: str, user_id: str | None, status: str | None, limit: int = 100
    ) -> list[Approval]:
        """A user's approvals, or (``user_id`` None) the tenant's; newest first."""
        return await self._run(
            lambda db: [
                self._approval(row)
                for row in self._listed(db, "approvals", APPROVAL_COLUMNS, tenant_id, user_id,
                                        status, limit)
            ]
        )

    async def list_info_requests(
        self, tenant_id: str, user_id: str | None, status: str | None, limit: int = 100
    ) -> list[InfoRequest]:
        return await self._run(
            lambda db: [
                self._info(row)
                for row in self._listed(db, "info_requests", INFO_COLUMNS, tenant_id, user_id,
                                        status, limit)
            ]
        )

    def _listed(
        self,
        db: Any,
        table: str,
        columns: str,
        tenant_id: str,
        user_id: str | None,
        status: str | None,
        limit: int,
    ) -> list[tuple]:
        conditions, parameters = ["tenant_id = ?"], [tenant_id]
        if user_id is not None:
            conditions.append("user_id = ?")
            parameters.append(user_id)
        if status is not None:
            conditions.append("status = ?")
            parameters.append(status)
        return db.execute(
            f"SELECT {columns} FROM {table} WHERE {' AND '.join(conditions)} "
            "ORDER BY created_at DESC LIMIT ?",
            (*parameters, limit),
        ).fetchall()

    def _requests_of(self, db: Any, task_id: str, status: str | None) -> list[Request]:
        suffix, parameters = ("", (task_id,)) if status is None else (
            " AND status = ?", (task_id, status)
        )
        approvals = db.execute(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task_id = ?{suffix} "
            "ORDER BY created_at",
            parameters,
        ).fetchall()
        infos = db.execute(
            f"SELECT {INFO_COLUMNS} FROM info_requests WHERE task_id = ?{suffix} "
            "ORDER BY created_at",
            parameters,
        ).fetchall()
        return [self._approval(row) for row in approvals] + [self._info(row) for row in infos]

    def _get_request(self, db: Any, request: Request) -> Request | None:
        table, key, identifier, _ = _where(request)
        columns = APPROVAL_COLUMNS if isinstance(request, Approval) else INFO_COLUMNS
        row = db.execute(f"SELECT {columns} FROM {table} WHERE {key} = ?", (identifier,)).fetchone()
        if row is None:
            return None
        return self._approval(row) if isinstance(request, Approval) else self._info(row)

    # -- rows <-> records -------------------------------------------------------------------------

    def _insert_request(self, db: Any, request: Request) -> None:
        time_in = self.dialect.time_in
        owner = request.owner
        if isinstance(request, Approval):
            db.execute(
                f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({_marks(APPROVAL_COLUMNS)})",
                (
                    request.approval_id, request.task_id, request.session_id, owner.tenant_id,
                    owner.user_id, request.agent_id, request.call_id, request.tool_name,
                    _json(request.params), request.reason, request.status,
                    time_in(request.created_at), time_in(request.expires_at),
                    _json(request.outcome_detail), time_in(request.resolved_at),
                    request.resolved_by,
                ),
            )
            return
        options = None if request.options is None else json.dumps(list(request.options))
        db.execute(
            f"INSERT INTO info_requests ({INFO_COLUMNS}) VALUES ({_marks(INFO_COLUMNS)})",
            (
                request.info_id, request.task_id, request.session_id, owner.tenant_id,
                owner.user_id, request.agent_id, request.call_id, request.question, options,
                request.status, time_in(request.created_at), time_in(request.expires_at),
                request.response, time_in(request.resolved_at), request.resolved_by,
            ),
        )

    def _approval(self, row: tuple) -> Approval:
        time_out = self.dialect.time_out
        return Approval(
            approval_id=row[0], task_id=row[1], session_id=row[2], owner=Owner(row[3], row[4]),
            agent_id=row[5], call_id=row[6], tool_name=row[7], params=json.loads(row[8]),
            reason=row[9], status=row[10], created_at=time_out(row[11]),
            expires_at=time_out(row[12]), outcome_detail=_unjson(row[13]),
            resolved_at=time_out(row[14]), resolved_by=row[15],
        )

    def _info(self, row: tuple) -> InfoRequest:
        time_out = self.dialect.time_out
        options = None if row[8] is None else tuple(json.loads(row[8]))
        return InfoRequest(
            info_id=row[0], task_id=row[1], session_id=row[2], owner=Owner(row[3], row[4]),
            agent_id=row[5], call_id=row[6], question=row[7], options=options, status=row[9],
            created_at=time_out(row[10]), expires_at=time_out(row[11]), response=row[12],
            resolved_at=time_out(row[13]), resolved_by=row[14],
        )


def _where(request: Request) -> tuple[str, str, str, str]:
    """Table, key column, key, and the column that holds the outcome's detail."""
    if isinstance(request, Approval):
        return "approvals", "approval_id", request.approval_id, "outcome_detail"
    return "info_requests", "info_id", request.info_id, "response"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _marks(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))
