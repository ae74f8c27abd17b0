"""Adding, reading, changing and deleting schedules: what the REST routes do (docs/schedules.md).

A schedule is its user's: another user's or tenant's id answers exactly as an
unknown one does (``ScheduleNotFound``), so ids cannot be probed. A schedule of
the schedules file is the file's: it can be read, not changed or deleted over
REST (``OwnedByFile``, 409). Every change that moves the schedule's slots (a
new cron or zone, a resume) computes the next slot from now; a paused schedule
does not fire, and resuming it does not make up for the slots it skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import attrs

from ...agents.registry import AgentRegistry, UnknownAgent
from ...clock import Clock
from ...storage.base import FROM_API, FROM_FILE, Owner, Schedule
from .cron import Cron, CronError, parse
from .firing import ScheduledStore
from .orders import RefusedSchedule, fields_of
from .views import RunView, ScheduleView, run_view, schedule_view

MAX_SCHEDULES = 100  # per user
DEFAULT_ZONE = "UTC"


class ScheduleNotFound(Exception):
    """No schedule of the caller's has that id (404)."""


class OwnedByFile(Exception):
    """The schedule belongs to the schedules file (409)."""


def not_found(schedule_id: str) -> str:
    return f"Schedule '{schedule_id}' does not exist."


class Schedules:
    def __init__(
        self,
        store: ScheduledStore,
        agents: AgentRegistry,
        clock: Clock,
        changed: Callable[[], None],
    ) -> None:
        """``changed``: tells the scheduler to look again (``Scheduler.changed``)."""
        self._store = store
        self._agents = agents
        self._clock = clock
        self._changed = changed

    async def create(self, owner: Owner, body: Any) -> ScheduleView:
        fields = fields_of(body, creating=True)
        now = self._clock.now()
        timezone = fields.get("timezone", DEFAULT_ZONE)
        cron = _cron(fields["cron"], timezone, now)
        self._check_agent(fields["agent_id"])
        await self._check_session(owner, fields.get("session_id"))
        if len(await self._store.list_schedules(owner)) >= MAX_SCHEDULES:
            raise RefusedSchedule(f"A user may have at most {MAX_SCHEDULES} schedules.")
        schedule = Schedule(
            schedule_id=f"sch_{uuid.uuid4().hex}",
            owner=owner,
            cron=cron.expression,
            timezone=timezone,
            agent_id=fields["agent_id"],
            prompt=fields["prompt"],
            session_id=fields.get("session_id"),
            paused=False,
            source=FROM_API,
            next_due_at=cron.next_slot(now),
            created_at=now,
            updated_at=now,
        )
        await self._store.add_schedule(schedule)
        self._changed()
        return schedule_view(schedule)

    async def list(self, owner: Owner) -> list[ScheduleView]:
        return [schedule_view(schedule) for schedule in await self._store.list_schedules(owner)]

    async def get(self, owner: Owner, schedule_id: str) -> ScheduleView:
        return schedule_view(await self._own(owner, schedule_id))

    async def change(self, owner: Owner, schedule_id: str, body: Any) -> ScheduleView:
        fields = fields_of(body, creating=False)
        schedule = await self._changeable(owner, schedule_id)
        now = self._clock.now()
        changed = attrs.evolve(schedule, updated_at=now, **fields)
        cron = _cron(changed.cron, changed.timezone, now)
        if "agent_id" in fields:
            self._check_agent(changed.agent_id)
        if "session_id" in fields:
            await self._check_session(owner, changed.session_id)
        resumed = schedule.paused and not changed.paused
        reschedule = "cron" in fields or "timezone" in fields or resumed
        if reschedule:
            changed = attrs.evolve(changed, cron=cron.expression, next_due_at=cron.next_slot(now))
        updated = await self._store.update_schedule(changed, reschedule=reschedule)
        if updated is None:
            raise ScheduleNotFound(not_found(schedule_id))  # deleted meanwhile
        self._changed()
        return schedule_view(updated)

    async def delete(self, owner: Owner, schedule_id: str) -> None:
        await self._changeable(owner, schedule_id)
        if not await self._store.delete_schedule(owner, schedule_id):
            raise ScheduleNotFound(not_found(schedule_id))

    async def runs(self, owner: Owner, schedule_id: str, limit: int) -> list[RunView]:
        await self._own(owner, schedule_id)
        runs = await self._store.list_workflow_runs(owner, schedule_id, limit=limit)
        return [run_view(run) for run in runs]

    # -- checks -----------------------------------------------------------------------------------

    async def _own(self, owner: Owner, schedule_id: str) -> Schedule:
        schedule = await self._store.get_schedule(owner, schedule_id)
        if schedule is None:
            raise ScheduleNotFound(not_found(schedule_id))
        return schedule

    async def _changeable(self, owner: Owner, schedule_id: str) -> Schedule:
        schedule = await self._own(owner, schedule_id)
        if schedule.source == FROM_FILE:
            raise OwnedByFile(
                f"Schedule '{schedule_id}' comes from the schedules file: change it there."
            )
        return schedule

    def _check_agent(self, agent_id: str) -> None:
        try:
            self._agents.entry(agent_id)
        except UnknownAgent as error:
            raise RefusedSchedule(str(error)) from None

    async def _check_session(self, owner: Owner, session_id: str | None) -> None:
        if session_id is not None and await self._store.get_session(owner, session_id) is None:
            raise RefusedSchedule(f"Session '{session_id}' does not exist or is not yours.")


def _cron(expression: str, timezone: str, now: Any) -> Cron:
    try:
        return parse(expression, timezone, now)
    except CronError as error:
        raise RefusedSchedule(str(error)) from None
