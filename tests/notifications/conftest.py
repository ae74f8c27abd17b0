"""The notifications app in one process, on a real SQLite store and a real hub endpoint.

``App`` is what ``create_product`` assembles for ``/hubs/notifications``: the store, the
hub's endpoint and router, the publisher, the insight cards, the license watch and the
REST routes, with a ``SteppedClock`` for time: it stands still until the test moves it,
so a test reaches a midnight, or a date 14 days before the license expires, at once.
Connections are the framework's in-memory ``TestClient``s (``tests/support/fakes.py``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.support.fakes import make_endpoint
from tests.support.stores import sqlite_store
from voisnap.apps.notifications import (
    Insights,
    LicenseWatch,
    Notifications,
    NotificationsHub,
    NotificationsRest,
)
from voisnap.hubs.endpoint import HubEndpoint
from voisnap.principal import Principal
from voisnap.server.routes import RestRequest
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
START = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC)
EXPIRES = datetime.date(2026, 12, 10)


class SteppedClock:
    """A ``license.Clock`` the test moves with ``advance_to``; a sleeper wakes once the clock
    has reached its moment. ``wait_asleep(n)`` returns once ``n`` tasks sleep until a moment
    still to come (the watch has done what was due and waits for its next midnight)."""

    def __init__(self, start: datetime.datetime) -> None:
        self._now = start
        self._sleeping: list[datetime.datetime] = []
        self._changed = trio.Event()

    def now(self) -> datetime.datetime:
        return self._now

    async def sleep_until(self, moment: datetime.datetime) -> None:
        self._sleeping.append(moment)
        self._change()
        try:
            while self._now < moment:
                await self._changed.wait()
        finally:
            self._sleeping.remove(moment)
            self._change()

    def advance_to(self, moment: datetime.datetime) -> None:
        self._now = moment
        self._change()

    async def wait_asleep(self, count: int) -> None:
        while sum(moment > self._now for moment in self._sleeping) < count:
            await self._changed.wait()

    def _change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@attrs.define
class App:
    store: SqliteStore
    endpoint: HubEndpoint
    notifications: Notifications
    insights: Insights
    watch: LicenseWatch
    rest: NotificationsRest
    clock: SteppedClock

    async def call(
        self, principal: Principal, method: str, path: str, body: Any = None, **query: str
    ) -> tuple[int, Any]:
        """A REST request to the app's routes, as the ASGI app makes it."""
        for route in self.rest.routes():
            found = route.pattern.match(path)
            if found and route.method == method:
                raw = b"" if body is None else json.dumps(body).encode()
                request = RestRequest(principal, found.groupdict(), query, raw)
                return await route.handler(request)
        raise AssertionError(f"no route {method} {path}")


def build_app(
    store: SqliteStore,
    clock: SteppedClock,
    node: str = "node-a",
    expires: datetime.date | None = EXPIRES,
) -> App:
    endpoint = make_endpoint(NotificationsHub)
    notifications = Notifications(store, endpoint.router, now=clock.now)
    insights = Insights(store, notifications, now=clock.now)
    watch = LicenseWatch(expires, notifications, store, node, clock)
    endpoint.services = watch
    rest = NotificationsRest(store, notifications, insights)
    return App(store, endpoint, notifications, insights, watch, rest, clock)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with sqlite_store(tmp_path / "voisnap.db") as opened:
        yield opened


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(START)


@pytest.fixture
def app(store: SqliteStore, clock: SteppedClock) -> App:
    return build_app(store, clock)
