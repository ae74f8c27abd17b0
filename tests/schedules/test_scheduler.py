"""Firing schedules in one process (``apps.schedules``), with a stepped clock.

The scheduler runs in the test's nursery on a real SQLite store, with a real task runtime
and the built-in agent; the clock moves only when the test moves it (``App.step_to``
returns once the scheduler has done what was due and sleeps again). Events are read from
the publisher, which also stored them in the feed; the workflow's task events come from the
runtime's workers, and are waited for, never slept for.
"""

from __future__ import annotations

import datetime
from typing import Any

import trio

from tests.notifications.conftest import SteppedClock
from voisnap.agents.runtime import WORKFLOW
from voisnap.storage.base import FROM_API, Reader, RunState, Schedule, StoreUnavailable
from voisnap.storage.sqlite import SqliteStore

from .conftest import ANA, BOB, CEILING, START, App, build_app

UTC = datetime.UTC
AT = "2026-12-01T10:30:10.000Z"


def seconds(n: float) -> datetime.datetime:
    return START + datetime.timedelta(seconds=n)


async def test_scheduler_fires_a_slot_as_a_workflow_run_in_the_schedules_session(
    app: App,
) -> None:
    made = await app.create(cron="*/10 * * * * *")
    assert made["nextDueAt"] == AT
    await app.step_to(seconds(10))
    completed = await app.notifications.wait_count("WorkflowRunCompleted", 1)
    fired, started = app.notifications.events("CronFired", "WorkflowRunStarted")
    schedule_id = made["scheduleId"]
    assert fired == ("CronFired", {"scheduleId": schedule_id, "at": AT})
    run_id, task_id = started[1]["runId"], started[1]["taskId"]
    assert started[1]["scheduleId"] == schedule_id
    assert completed[0]["runId"] == run_id and completed[0]["durationMs"] >= 0
    [run] = await app.store.list_workflow_runs(ANA, schedule_id, limit=10)
    assert (run.run_id, run.task_id, run.state, run.slot) == (
        run_id,
        task_id,
        RunState.COMPLETED,
        seconds(10),
    )
    # The prompt and the reply are in the session made for the schedule, and kept.
    schedule = await app.store.get_schedule(ANA, schedule_id)
    assert schedule is not None and schedule.session_id is not None
    task = await app.store.get_task(ANA, task_id)
    assert task is not None and task.kind == WORKFLOW
    assert task.session_id == schedule.session_id
    messages = await app.store.list_messages(ANA, schedule.session_id, limit=10, before=None)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "what is 12 * 7"),
        ("assistant", "12 * 7 = 84."),
    ]
    # Everything went to Ana, and into her feed.
    assert {user for user, _, _ in app.notifications.published} == {"ana"}
    feed = await app.store.list_notifications(Reader("acme", "ana"), limit=10)
    assert [n.event for n in reversed(feed or [])] == [
        "CronFired",
        "WorkflowRunStarted",
        "WorkflowRunCompleted",
    ]

    await app.step_to(seconds(20))
    await app.notifications.wait_count("WorkflowRunCompleted", 2)
    second = app.notifications.events("WorkflowRunStarted")[1][1]
    task = await app.store.get_task(ANA, second["taskId"])
    assert task is not None and task.session_id == schedule.session_id


async def test_scheduler_fires_missed_slots_once_at_the_latest(app: App) -> None:
    made = await app.create(cron="* * * * *")
    assert made["nextDueAt"] == "2026-12-01T10:31:00.000Z"
    await app.step_to(seconds(5 * 60 + 30))  # 10:35:30: five slots passed unseen
    await app.notifications.wait_count("WorkflowRunCompleted", 1)
    assert app.notifications.events("CronFired") == [
        ("CronFired", {"scheduleId": made["scheduleId"], "at": "2026-12-01T10:35:00.000Z"})
    ]
    after = await app.schedules.get(ANA, made["scheduleId"])
    assert after.next_due_at == datetime.datetime(2026, 12, 1, 10, 36, tzinfo=UTC)
    runs = await app.store.list_workflow_runs(ANA, made["scheduleId"], limit=10)
    assert len(runs) == 1


async def test_scheduler_paused_schedule_does_not_fire_and_resuming_starts_from_now(
    app: App,
) -> None:
    made = await app.create(cron="* * * * *")
    schedule_id = made["scheduleId"]
    paused = await app.schedules.change(ANA, schedule_id, {"paused": True})
    assert paused.paused and paused.next_due_at is None
    await app.step_to(seconds(10 * 60 + 30))  # 10:40:30: ten slots while paused
    assert app.notifications.events() == []
    resumed = await app.schedules.change(ANA, schedule_id, {"paused": False})
    assert resumed.next_due_at == datetime.datetime(2026, 12, 1, 10, 41, tzinfo=UTC)
    await app.step_to(seconds(11 * 60))
    await app.notifications.wait_count("WorkflowRunCompleted", 1)
    assert [p["at"] for _, p in app.notifications.events("CronFired")] == [
        "2026-12-01T10:41:00.000Z"
    ]


async def test_scheduler_changing_the_cron_recomputes_the_next_slot(app: App) -> None:
    made = await app.create(cron="0 9 * * *")
    assert made["nextDueAt"] == "2026-12-02T09:00:00.000Z"
    changed = await app.schedules.change(
        ANA, made["scheduleId"], {"cron": "0 9 * * *", "timezone": "Europe/Berlin"}
    )
    assert changed.next_due_at == datetime.datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    prompt_only = await app.schedules.change(ANA, made["scheduleId"], {"prompt": "hi"})
    assert prompt_only.next_due_at == changed.next_due_at


async def test_scheduler_says_cron_failed_for_an_agent_that_is_gone(app: App) -> None:
    # A schedule whose agent was removed from the agents file since it was made.
    await app.store.add_schedule(
        Schedule(
            "sch_ghost",
            ANA,
            "*/10 * * * * *",
            "UTC",
            "ghost",
            "hello",
            None,
            False,
            FROM_API,
            seconds(10),
            START,
            START,
        )
    )
    app.scheduler.changed()
    await app.step_to(seconds(10))
    failed = await app.notifications.wait_count("CronFailed", 1)
    assert failed == [
        {
            "scheduleId": "sch_ghost",
            "error": "Agent 'ghost' does not exist or is not active.",
            "at": AT,
        }
    ]
    assert [e for e, _ in app.notifications.events()] == ["CronFired", "CronFailed"]
    [run] = await app.store.list_workflow_runs(ANA, "sch_ghost", limit=10)
    assert (run.state, run.task_id, run.error) == (RunState.FAILED, None, failed[0]["error"])


async def test_scheduler_says_cron_failed_when_the_queue_is_full(
    store: SqliteStore, clock: SteppedClock, nursery: trio.Nursery
) -> None:
    app = build_app(store, clock, queue_limit=0)
    await nursery.start(app.scheduler.run)
    made = await app.create(cron="*/10 * * * * *")
    await app.step_to(seconds(10))
    failed = await app.notifications.wait_count("CronFailed", 1)
    assert failed == [
        {
            "scheduleId": made["scheduleId"],
            "error": "Too many tasks are waiting; try again shortly.",
            "at": AT,
        }
    ]
    assert await store.count_queued() == 0


async def test_scheduler_two_schedulers_on_one_store_fire_a_slot_once(
    app: App, store: SqliteStore, clock: SteppedClock, nursery: trio.Nursery
) -> None:
    other = build_app(store, clock)  # another process's, on the same database
    await nursery.start(other.runtime.run)
    await nursery.start(other.scheduler.run)
    made = await app.create(cron="*/10 * * * * *")
    other.scheduler.changed()
    for slot in (10, 20, 30):
        clock.advance_to(seconds(slot))
        with trio.fail_after(CEILING):
            await clock.wait_asleep(2)  # both have done what was due
    fired = [p for a in (app, other) for _, p in a.notifications.events("CronFired")]
    assert sorted(p["at"] for p in fired) == [f"2026-12-01T10:30:{s}.000Z" for s in (10, 20, 30)]
    runs = await store.list_workflow_runs(ANA, made["scheduleId"], limit=10)
    assert sorted(run.slot for run in runs) == [seconds(s) for s in (10, 20, 30)]


async def test_scheduler_a_cancelled_run_says_workflow_run_failed(
    store: SqliteStore, clock: SteppedClock, nursery: trio.Nursery
) -> None:
    app = build_app(store, clock)  # no workers: the run's task stays queued
    await nursery.start(app.scheduler.run)
    made = await app.create(cron="*/10 * * * * *")
    await app.step_to(seconds(10))
    [run] = await store.list_workflow_runs(ANA, made["scheduleId"], limit=10)
    assert run.state == RunState.QUEUED and run.task_id is not None
    task = await store.get_task(ANA, run.task_id)
    assert task is not None
    await app.runtime.cancel(task, "ana")
    failed = await app.notifications.wait_count("WorkflowRunFailed", 1)
    assert failed == [{"runId": run.run_id, "error": "The run was cancelled by ana."}]
    [ended] = await store.list_workflow_runs(ANA, made["scheduleId"], limit=10)
    assert (ended.state, ended.error) == (RunState.FAILED, failed[0]["error"])


class FlakyStore:
    """The store, but reading the schedules fails while ``down`` (the database is away)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.down = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def due_schedules(self, now: datetime.datetime) -> list[Schedule]:
        if self.down:
            raise StoreUnavailable("The database is unavailable: gone fishing")
        return await self._store.due_schedules(now)

    async def next_due_at(self) -> datetime.datetime | None:
        if self.down:
            raise StoreUnavailable("The database is unavailable: gone fishing")
        return await self._store.next_due_at()


async def test_scheduler_a_store_that_cannot_be_reached_is_logged_and_tried_again(
    store: SqliteStore,
    clock: SteppedClock,
    nursery: trio.Nursery,
) -> None:
    flaky = FlakyStore(store)
    app = build_app(store, clock, scheduler_store=flaky)
    await nursery.start(app.runtime.run)
    await nursery.start(app.scheduler.run)
    made = await app.create(cron="*/10 * * * * *")
    await app.step_to(seconds(10))  # due, but the schedules cannot be read
    assert app.notifications.events() == []
    # (logged, rate-limited: failures.report_client_error)
    flaky.down = False
    await app.step_to(seconds(11))  # the next turn reads them: the missed slot fires
    await app.notifications.wait_count("WorkflowRunCompleted", 1)
    assert app.notifications.events("CronFired") == [
        ("CronFired", {"scheduleId": made["scheduleId"], "at": AT})
    ]


async def test_scheduler_says_cron_failed_for_a_session_of_someone_else(app: App) -> None:
    # A schedules-file entry may name any session id; Bob's is not Ana's to write in.
    bobs = await app.create(BOB, cron="*/10 * * * * *")
    await app.step_to(seconds(10))
    await app.notifications.wait_count("WorkflowRunCompleted", 1)
    bob_session = (await app.store.get_schedule(BOB, bobs["scheduleId"])).session_id
    await app.schedules.change(BOB, bobs["scheduleId"], {"paused": True})
    await app.store.add_schedule(
        Schedule(
            "sch_nosy",
            ANA,
            "*/10 * * * * *",
            "UTC",
            "sophon",
            "hello",
            bob_session,
            False,
            FROM_API,
            seconds(20),
            START,
            START,
        )
    )
    app.scheduler.changed()
    await app.step_to(seconds(20))
    failed = await app.notifications.wait_count("CronFailed", 1)
    assert failed == [
        {
            "scheduleId": "sch_nosy",
            "at": "2026-12-01T10:30:20.000Z",
            "error": f"Session '{bob_session}' belongs to someone else.",
        }
    ]
    messages = await app.store.list_messages(BOB, bob_session, limit=10, before=None)
    assert [m.content for m in messages] == ["what is 12 * 7", "12 * 7 = 84."]
