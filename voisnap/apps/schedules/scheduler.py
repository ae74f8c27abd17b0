"""The scheduler: finds the schedules that came due and fires each slot once (docs/schedules.md).

Theory of operation. Every process runs one ``Scheduler`` in the server's
nursery; they share nothing but the store. Each turn of its loop:

1. (at start-up, before the server listens, and then until the store has
   taken them) the schedules of ``--schedules-file`` are made the store's
   (``sync_file_schedules``);
2. every schedule not paused whose ``next_due_at`` has come is *claimed* for
   one slot: the latest slot at or before now, so a schedule that missed
   several slots while no process ran fires once, not once per missed slot;
   the store moves it on to its next slot after now and records the run, for
   exactly one of the processes that try (``ScheduleStore.claim_slot``);
3. the winner fires it (``firing``): ``CronFired``, then the task or
   ``CronFailed``;
4. it sleeps until the earliest ``next_due_at``, but no longer than ``poll``
   seconds (a schedule added on another process is seen within that), or until
   a schedule is added or changed here (``changed``).

Time is the ``Clock``'s: tests step it. Each turn, and each schedule within a
turn, runs inside an error boundary; a store that cannot be reached is logged
(rate-limited: it may be away for a while) and tried again on the next turn.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Sequence

import trio

from ...clock import Clock
from ...failures import error_boundary, report_client_error
from ...storage.base import RunState, Schedule, ScheduleStore, StoreError, WorkflowRun
from .cron import parse
from .firing import Firing
from .schedules_file import FileSchedule

log = logging.getLogger(__name__)

POLL = 1.0


class Scheduler:
    def __init__(
        self,
        store: ScheduleStore,
        firing: Firing,
        clock: Clock,
        *,
        poll: float = POLL,
        file_schedules: Sequence[FileSchedule] | None = None,
    ) -> None:
        """``file_schedules``: the schedules file's
        (None: no file was given, and the file's rows are left as they are)."""
        self._store = store
        self._firing = firing
        self._clock = clock
        self._poll = datetime.timedelta(seconds=poll)
        self._file_schedules = file_schedules
        self._changed = False
        self._sleep: trio.CancelScope | None = None

    def changed(self) -> None:
        """A schedule was added or changed in this process: look again now."""
        self._changed = True
        if self._sleep is not None:
            self._sleep.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire due schedules for as long as the server runs (in its nursery). The
        file's schedules are in the store before the server listens, unless the
        store fails then: the next turns bring them in."""
        if self._file_schedules is not None:
            with error_boundary(log, "the schedules file"):
                await self.sync_file()
        task_status.started()
        while True:
            self._changed = False
            now = self._clock.now()
            with error_boundary(log, "the scheduler"):
                if self._file_schedules is not None:
                    await self.sync_file()
                await self.fire_due(now)
            await self._wait(now)

    async def sync_file(self) -> None:
        """Make the file's schedules the store's (once it has worked)."""
        assert self._file_schedules is not None
        now = self._clock.now()
        rows = [entry.schedule(now) for entry in self._file_schedules]
        try:
            await self._store.sync_file_schedules(rows)
        except StoreError as error:
            report_client_error(log, "the schedules file is not in the store yet", str(error))
            return
        self._file_schedules = None

    async def fire_due(self, now: datetime.datetime) -> list[WorkflowRun]:
        """Claim and fire every schedule due at ``now``; the runs this process fired."""
        try:
            due = await self._store.due_schedules(now)
        except StoreError as error:
            report_client_error(log, "due schedules cannot be read now", str(error))
            return []
        fired = []
        for schedule in due:
            with error_boundary(log, f"firing schedule {schedule.schedule_id}"):
                try:
                    run = await self._claim(schedule, now)
                    if run is not None:
                        await self._firing.fire(schedule, run)
                        fired.append(run)
                except StoreError as error:
                    what = f"schedule {schedule.schedule_id} did not fire"
                    report_client_error(log, what, str(error))
        return fired

    async def _claim(self, schedule: Schedule, now: datetime.datetime) -> WorkflowRun | None:
        cron = parse(schedule.cron, schedule.timezone, now)
        slot = max(schedule.next_due_at, cron.last_slot(now))
        run = WorkflowRun(
            run_id=f"wfr_{uuid.uuid4().hex}",
            schedule_id=schedule.schedule_id,
            owner=schedule.owner,
            slot=slot,
            state=RunState.FIRED,
            fired_at=now,
        )
        won = await self._store.claim_slot(
            run, due_at=schedule.next_due_at, next_due_at=cron.next_slot(now)
        )
        return run if won else None

    async def _wait(self, looked_at: datetime.datetime) -> None:
        """Until the earliest slot, at most ``poll``, or a change here. A slot
        that was due when the turn looked (``looked_at``) and is still there did
        not fire (its schedule failed): it waits for the next poll, not a busy loop."""
        until = self._clock.now() + self._poll
        earliest = None
        with error_boundary(log, "reading the next slot"):
            try:
                earliest = await self._store.next_due_at()
            except StoreError as error:
                report_client_error(log, "the next slot cannot be read now", str(error))
        if earliest is not None and looked_at < earliest < until:
            until = earliest
        if self._changed:
            return
        with trio.CancelScope() as self._sleep:
            await self._clock.sleep_until(until)
        self._sleep = None
