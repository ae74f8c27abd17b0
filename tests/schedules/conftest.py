"""The schedules app in one process: a real SQLite store, a real task runtime, a stepped clock.

``App`` is what ``create_product`` assembles for schedules: the publisher of the
notifications hub (recording what it publishes, so that a test waits for an event
instead of sleeping), the ``WorkflowFace`` among the runtime's faces, the runtime with
the built-in agent (no pauses), the ``Firing``, the ``Scheduler`` and the REST routes'
``Schedules``. Time is a ``SteppedClock`` (``tests/notifications/conftest.py``): nothing
comes due until the test moves it.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.notifications.conftest import SteppedClock
from tests.support.fakes import make_endpoint
from tests.support.stores import sqlite_store
from voisnap.agents.registry import load_agents
from voisnap.agents.runtime import Leases, TaskRuntime
from voisnap.apps.faces import Faces
from voisnap.apps.notifications import Notifications, NotificationsHub
from voisnap.apps.schedules import Firing, Scheduler, Schedules, WorkflowFace
from voisnap.apps.schedules.schedules_file import FileSchedule
from voisnap.storage.base import Audience, Notification, Owner
from voisnap.storage.sqlite import SqliteStore

CEILING = 15
START = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC)
ANA = Owner("acme", "ana")
BOB = Owner("acme", "bob")


class RecordingNotifications(Notifications):
    """The real publisher (stored, then sent), which also keeps what it published, in
    order, and wakes whoever waits for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self._changed = trio.Event()

    async def publish(
        self, tenant_id: str, audience: Audience, event: str, payload: Any
    ) -> Notification:
        notification = await super().publish(tenant_id, audience, event, payload)
        self.published.append((audience.name, event, notification.payload))
        self._changed.set()
        self._changed = trio.Event()
        return notification

    def events(self, *names: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (event, payload) for _, event, payload in self.published if not names or event in names
        ]

    async def wait_for(self, condition: Callable[[], Any]) -> Any:
        with trio.fail_after(CEILING):
            while not (found := condition()):
                await self._changed.wait()
        return found

    async def wait_count(self, event: str, count: int) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            found = [payload for name, payload in self.events(event)]
            return found if len(found) >= count else None

        return await self.wait_for(enough)


@attrs.define
class App:
    store: SqliteStore
    clock: SteppedClock
    notifications: RecordingNotifications
    runtime: TaskRuntime
    scheduler: Scheduler
    schedules: Schedules

    async def create(self, owner: Owner = ANA, **body: Any) -> dict[str, Any]:
        """A schedule made as ``POST /schedules`` makes it; its view as plain data."""
        from voisnap.hubs.binder import unstructure

        fields = {"agentId": "sophon", "prompt": "what is 12 * 7", **body}
        return unstructure(await self.schedules.create(owner, fields))

    async def step_to(self, moment: datetime.datetime) -> None:
        """Move the clock to ``moment`` and let the scheduler do what is due: until it
        sleeps again until a later moment."""
        self.clock.advance_to(moment)
        with trio.fail_after(CEILING):
            await self.clock.wait_asleep(1)


def build_app(
    store: SqliteStore,
    clock: SteppedClock,
    queue_limit: int = 100,
    file_schedules: list[FileSchedule] | None = None,
    scheduler_store: Any = None,
) -> App:
    """``scheduler_store``: what the scheduler reads the schedules from (default ``store``)."""
    notifications = RecordingNotifications(
        store, make_endpoint(NotificationsHub).router, now=clock.now
    )
    faces = Faces(WorkflowFace(store, notifications))
    agents = load_agents(None, 0.0)
    runtime = TaskRuntime(
        store,
        agents,
        faces,
        workers=2,
        queue_limit=queue_limit,
        leases=Leases(length=2.0, renewal=0.2),
    )
    firing = Firing(store, agents, runtime, faces, notifications, clock)
    scheduler = Scheduler(scheduler_store or store, firing, clock, file_schedules=file_schedules)
    schedules = Schedules(store, agents, clock, scheduler.changed)
    return App(store, clock, notifications, runtime, scheduler, schedules)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with sqlite_store(tmp_path / "voisnap.db") as opened:
        yield opened


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(START)


@pytest.fixture
async def app(store: SqliteStore, clock: SteppedClock, nursery: trio.Nursery) -> App:
    """The app with its runtime and scheduler running (the scheduler asleep at START)."""
    built = build_app(store, clock)
    await nursery.start(built.runtime.run)
    await nursery.start(built.scheduler.run)
    with trio.fail_after(CEILING):
        await clock.wait_asleep(1)
    return built
