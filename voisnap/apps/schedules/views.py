"""A schedule and its runs as the REST routes return them (docs/schedules.md, "REST")."""

from __future__ import annotations

import datetime

import attrs

from ...storage.base import Schedule, WorkflowRun


@attrs.frozen
class ScheduleView:
    schedule_id: str
    cron: str
    timezone: str
    agent_id: str
    prompt: str
    session_id: str | None
    paused: bool
    source: str
    next_due_at: datetime.datetime | None
    """None while paused: resuming computes the next slot from then."""
    created_at: datetime.datetime
    updated_at: datetime.datetime


@attrs.frozen
class RunView:
    run_id: str
    schedule_id: str
    slot: datetime.datetime
    state: str
    task_id: str | None
    error: str | None
    fired_at: datetime.datetime
    finished_at: datetime.datetime | None


def schedule_view(schedule: Schedule) -> ScheduleView:
    return ScheduleView(
        schedule_id=schedule.schedule_id,
        cron=schedule.cron,
        timezone=schedule.timezone,
        agent_id=schedule.agent_id,
        prompt=schedule.prompt,
        session_id=schedule.session_id,
        paused=schedule.paused,
        source=schedule.source,
        next_due_at=None if schedule.paused else schedule.next_due_at,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def run_view(run: WorkflowRun) -> RunView:
    return RunView(
        run_id=run.run_id,
        schedule_id=run.schedule_id,
        slot=run.slot,
        state=run.state.value,
        task_id=run.task_id,
        error=run.error,
        fired_at=run.fired_at,
        finished_at=run.finished_at,
    )
