"""Schedules and their workflow runs (issue 14, docs/schedules.md).

A schedule row says when it is due next (``next_due_at``, UTC). Firing a slot
is *claimed*, so that it happens once however many processes look:
``claim_slot`` moves the schedule on to its next slot only if it is still due
at the slot that process saw (a conditional update: of two processes, one
changes the row, the other changes nothing), and stores the run; the run's
key is unique per schedule and slot, a second guard for the same promise.

The schedules of ``--schedules-file`` are rows of source ``file``, made the
file's by ``sync_file_schedules`` at start-up.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import attrs

from .base import (
    FROM_FILE,
    Accepted,
    Message,
    Owner,
    RunState,
    Schedule,
    Session,
    Task,
    WorkflowRun,
)

SCHEDULE_COLUMNS = (
    "schedule_id, tenant_id, user_id, cron, timezone, agent_id, prompt, session_id, paused, "
    "source, next_due_at, created_at, updated_at"
)
RUN_COLUMNS = (
    "run_id, schedule_id, tenant_id, user_id, slot, task_id, state, error, fired_at, finished_at"
)
PLACEHOLDERS = ", ".join("?" for _ in SCHEDULE_COLUMNS.split(","))


class ScheduleQueries:
    """The schedules half of ``SqlStore`` (it supplies ``_run``, ``dialect`` and ``_accept``)."""

    dialect: Any
    _run: Callable[..., Any]
    _accept: Callable[..., Accepted]

    # -- schedules --------------------------------------------------------------------------------

    async def add_schedule(self, schedule: Schedule) -> None:
        row = self._schedule_row(schedule)
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({PLACEHOLDERS})", row
            )
        )

    async def get_schedule(self, owner: Owner, schedule_id: str) -> Schedule | None:
        return await self._run(lambda db: self._get_schedule(db, owner, schedule_id))

    async def list_schedules(self, owner: Owner) -> list[Schedule]:
        def work(db: Any) -> list[Schedule]:
            rows = db.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE tenant_id = ? AND user_id = ? "
                "ORDER BY created_at, schedule_id",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [self._schedule(row) for row in rows]

        return await self._run(work)

    async def update_schedule(self, schedule: Schedule, *, reschedule: bool) -> Schedule | None:
        time_in = self.dialect.time_in
        owner = schedule.owner

        def work(db: Any) -> Schedule | None:
            # The slot is written only when it was computed anew: a slot claimed
            # by the scheduler meanwhile must not be put back.
            changed = db.execute(
                "UPDATE schedules SET cron = ?, timezone = ?, agent_id = ?, prompt = ?, "
                "session_id = ?, paused = ?, updated_at = ?, "
                "next_due_at = CASE WHEN ? THEN ? ELSE next_due_at END "
                "WHERE schedule_id = ? AND tenant_id = ? AND user_id = ?",
                (
                    schedule.cron,
                    schedule.timezone,
                    schedule.agent_id,
                    schedule.prompt,
                    schedule.session_id,
                    self.dialect.flag_in(schedule.paused),
                    time_in(schedule.updated_at),
                    self.dialect.flag_in(reschedule),
                    time_in(schedule.next_due_at),
                    schedule.schedule_id,
                    owner.tenant_id,
                    owner.user_id,
                ),
            ).rowcount
            return self._get_schedule(db, owner, schedule.schedule_id) if changed else None

        return await self._run(work)

    async def delete_schedule(self, owner: Owner, schedule_id: str) -> bool:
        def work(db: Any) -> bool:
            return (
                db.execute(
                    "DELETE FROM schedules WHERE schedule_id = ? AND tenant_id = ? AND user_id = ?",
                    (schedule_id, owner.tenant_id, owner.user_id),
                ).rowcount
                == 1
            )

        return await self._run(work)

    async def sync_file_schedules(self, schedules: list[Schedule]) -> None:
        def work(db: Any) -> None:
            for schedule in schedules:
                self._upsert_file_schedule(db, schedule)
            kept = [schedule.schedule_id for schedule in schedules]
            others = f"AND schedule_id NOT IN ({', '.join('?' for _ in kept)})" if kept else ""
            db.execute(f"DELETE FROM schedules WHERE source = ? {others}", (FROM_FILE, *kept))

        await self._run(work)

    def _upsert_file_schedule(self, db: Any, schedule: Schedule) -> None:
        # An unchanged schedule keeps its slot, so that a slot missed while the
        # server was down still fires (once) after the restart. Only rows of
        # the file are ever overwritten.
        db.execute(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({PLACEHOLDERS}) "
            "ON CONFLICT (schedule_id) DO UPDATE SET "
            "tenant_id = excluded.tenant_id, user_id = excluded.user_id, "
            "agent_id = excluded.agent_id, prompt = excluded.prompt, "
            "session_id = COALESCE(excluded.session_id, schedules.session_id), "
            "next_due_at = CASE WHEN schedules.cron = excluded.cron "
            "AND schedules.timezone = excluded.timezone AND schedules.paused = excluded.paused "
            "THEN schedules.next_due_at ELSE excluded.next_due_at END, "
            "cron = excluded.cron, timezone = excluded.timezone, paused = excluded.paused, "
            "updated_at = excluded.updated_at "
            "WHERE schedules.source = excluded.source",
            self._schedule_row(schedule),
        )

    # -- firing -----------------------------------------------------------------------------------

    async def due_schedules(self, now: datetime.datetime) -> list[Schedule]:
        def work(db: Any) -> list[Schedule]:
            rows = db.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE paused = ? AND next_due_at <= ? "
                "ORDER BY next_due_at, schedule_id",
                (self.dialect.flag_in(False), self.dialect.time_in(now)),
            ).fetchall()
            return [self._schedule(row) for row in rows]

        return await self._run(work)

    async def next_due_at(self) -> datetime.datetime | None:
        def work(db: Any) -> datetime.datetime | None:
            row = db.execute(
                "SELECT MIN(next_due_at) FROM schedules WHERE paused = ?",
                (self.dialect.flag_in(False),),
            ).fetchone()
            return self.dialect.time_out(row[0])

        return await self._run(work)

    async def claim_slot(
        self, run: WorkflowRun, *, due_at: datetime.datetime, next_due_at: datetime.datetime
    ) -> bool:
        time_in = self.dialect.time_in

        def work(db: Any) -> bool:
            moved = db.execute(
                "UPDATE schedules SET next_due_at = ? "
                "WHERE schedule_id = ? AND next_due_at = ? AND paused = ?",
                (
                    time_in(next_due_at),
                    run.schedule_id,
                    time_in(due_at),
                    self.dialect.flag_in(False),
                ),
            ).rowcount
            if not moved:
                return False  # another process claimed it first (or it changed meanwhile)
            return (
                db.execute(
                    f"INSERT INTO workflow_runs ({RUN_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (schedule_id, slot) DO NOTHING",
                    self._run_row(run),
                ).rowcount
                == 1
            )

        return await self._run(work)

    async def start_workflow_run(
        self, run_id: str, *, session: Session, message: Message, task: Task
    ) -> Accepted:
        def work(db: Any) -> Accepted:
            row = db.execute(
                "SELECT schedule_id FROM workflow_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            schedule_id = row[0]
            db.execute(
                "UPDATE schedules SET session_id = ? WHERE schedule_id = ? AND session_id IS NULL",
                (session.session_id, schedule_id),
            )
            kept = db.execute(
                "SELECT session_id FROM schedules WHERE schedule_id = ?", (schedule_id,)
            ).fetchone()
            session_id = session.session_id if kept is None or kept[0] is None else kept[0]
            accepted = self._accept(
                db,
                attrs.evolve(session, session_id=session_id),
                attrs.evolve(message, session_id=session_id),
                attrs.evolve(task, session_id=session_id),
            )
            db.execute(
                "UPDATE workflow_runs SET task_id = ?, state = ? WHERE run_id = ?",
                (task.task_id, RunState.QUEUED.value, run_id),
            )
            return accepted

        return await self._run(work)

    async def update_workflow_run(
        self,
        run_id: str,
        state: RunState,
        *,
        error: str | None = None,
        finished_at: datetime.datetime | None = None,
    ) -> None:
        parameters = (state.value, error, self.dialect.time_in(finished_at), run_id)
        await self._run(
            lambda db: db.execute(
                "UPDATE workflow_runs SET state = ?, error = ?, finished_at = ? WHERE run_id = ?",
                parameters,
            )
        )

    async def workflow_run_of_task(self, task_id: str) -> WorkflowRun | None:
        def work(db: Any) -> WorkflowRun | None:
            row = db.execute(
                f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE task_id = ?", (task_id,)
            ).fetchone()
            return None if row is None else self._workflow_run(row)

        return await self._run(work)

    async def list_workflow_runs(
        self, owner: Owner, schedule_id: str, *, limit: int
    ) -> list[WorkflowRun]:
        def work(db: Any) -> list[WorkflowRun]:
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE schedule_id = ? "
                "AND tenant_id = ? AND user_id = ? ORDER BY slot DESC LIMIT ?",
                (schedule_id, owner.tenant_id, owner.user_id, limit),
            ).fetchall()
            return [self._workflow_run(row) for row in rows]

        return await self._run(work)

    # -- rows -------------------------------------------------------------------------------------

    def _get_schedule(self, db: Any, owner: Owner, schedule_id: str) -> Schedule | None:
        row = db.execute(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE schedule_id = ? AND tenant_id = ? "
            "AND user_id = ?",
            (schedule_id, owner.tenant_id, owner.user_id),
        ).fetchone()
        return None if row is None else self._schedule(row)

    def _schedule_row(self, schedule: Schedule) -> tuple[Any, ...]:
        time_in = self.dialect.time_in
        return (
            schedule.schedule_id,
            schedule.owner.tenant_id,
            schedule.owner.user_id,
            schedule.cron,
            schedule.timezone,
            schedule.agent_id,
            schedule.prompt,
            schedule.session_id,
            self.dialect.flag_in(schedule.paused),
            schedule.source,
            time_in(schedule.next_due_at),
            time_in(schedule.created_at),
            time_in(schedule.updated_at),
        )

    def _schedule(self, row: tuple) -> Schedule:
        time_out = self.dialect.time_out
        return Schedule(
            schedule_id=row[0],
            owner=Owner(row[1], row[2]),
            cron=row[3],
            timezone=row[4],
            agent_id=row[5],
            prompt=row[6],
            session_id=row[7],
            paused=bool(row[8]),
            source=row[9],
            next_due_at=time_out(row[10]),
            created_at=time_out(row[11]),
            updated_at=time_out(row[12]),
        )

    def _run_row(self, run: WorkflowRun) -> tuple[Any, ...]:
        time_in = self.dialect.time_in
        return (
            run.run_id,
            run.schedule_id,
            run.owner.tenant_id,
            run.owner.user_id,
            time_in(run.slot),
            run.task_id,
            run.state.value,
            run.error,
            time_in(run.fired_at),
            time_in(run.finished_at),
        )

    def _workflow_run(self, row: tuple) -> WorkflowRun:
        time_out = self.dialect.time_out
        return WorkflowRun(
            run_id=row[0],
            schedule_id=row[1],
            owner=Owner(row[2], row[3]),
            slot=time_out(row[4]),
            task_id=row[5],
            state=RunState(row[6]),
            error=row[7],
            fired_at=time_out(row[8]),
            finished_at=time_out(row[9]),
        )
