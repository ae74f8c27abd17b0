"""``LicenseWarning`` (issue 13): the day arithmetic, the warning on connect, the warning at
every midnight UTC, and the claim that makes several processes send a day's warning once.

Time is a ``SteppedClock`` (``conftest``): the test moves it to a midnight and the watch,
asleep until then, wakes and warns; nothing waits on the wall clock. Two "processes" are
two apps (each its own hub endpoint, publisher and watch) on one SQLite database.
"""

from __future__ import annotations

import datetime

import pytest
import trio

from tests.support.fakes import connect
from voisnap.apps.notifications.license import (
    claim_key,
    days_left,
    next_midnight,
    warning_on,
)
from voisnap.principal import Principal
from voisnap.storage.base import Reader

from .conftest import CEILING, EXPIRES, START, App, SteppedClock, build_app
from .test_delivery import ADA, BOB, ELSEWHERE, fenced

D = datetime.date


@pytest.mark.parametrize(
    ("today", "left"),
    [
        (D(2026, 11, 1), 39),
        (D(2026, 11, 26), 14),
        (D(2026, 12, 10), 0),
        (D(2026, 12, 13), -3),
        (D(2027, 12, 10), -365),
    ],
)
def test_license_days_left(today: datetime.date, left: int) -> None:
    assert days_left(EXPIRES, today) == left


def test_license_warning_from_fourteen_days_before_and_for_ever_after() -> None:
    assert warning_on(EXPIRES, D(2026, 11, 25)) is None  # 15 days left
    assert warning_on(None, D(2026, 12, 10)) is None  # no --license-expires
    for today, left in ((D(2026, 11, 26), 14), (D(2026, 12, 10), 0), (D(2027, 1, 1), -22)):
        warning = warning_on(EXPIRES, today)
        assert warning is not None
        assert (warning.expires_at, warning.days_left) == ("2026-12-10", left)


def test_license_next_midnight_is_utc_and_strictly_later() -> None:
    assert next_midnight(START) == datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
    midnight = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
    assert next_midnight(midnight) == datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)
    late_in_new_york = datetime.datetime(
        2026, 12, 31, 20, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
    )  # already 1 January in UTC
    assert next_midnight(late_in_new_york) == datetime.datetime(2027, 1, 2, tzinfo=datetime.UTC)
    assert claim_key("acme", D(2026, 12, 2)) == "license-warning/acme/2026-12-02"


async def test_license_warning_on_connect_to_admins_only(app: App) -> None:
    with trio.fail_after(CEILING):
        async with (
            connect(app.endpoint, principal=ADA) as admin,
            connect(app.endpoint, principal=BOB) as member,
        ):
            on_connect = [await fenced(admin), await fenced(member)]
        feed = await app.store.list_notifications(
            Reader("acme", "ada", frozenset({"admin"})), limit=10
        )
    warning = ("LicenseWarning", {"expiresAt": "2026-12-10", "daysLeft": 9})
    assert on_connect == [[warning], []]
    assert feed == []  # sent to the connection alone, not stored


async def test_license_no_warning_on_connect_while_far_off(store, clock: SteppedClock) -> None:
    far = build_app(store, clock, expires=D(2027, 6, 1))
    unset = build_app(store, clock, expires=None)
    with trio.fail_after(CEILING):
        for app in (far, unset):
            async with connect(app.endpoint, principal=ADA) as admin:
                assert await fenced(admin) == []


async def test_license_warning_at_midnight_to_each_tenant_with_admins(app: App) -> None:
    """At midnight every tenant with an admin connection here is warned, through the role
    group (every admin connection of the tenant; no other connection), and it is stored."""
    midnight = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
    with trio.fail_after(CEILING):
        async with (
            trio.open_nursery() as nursery,
            connect(app.endpoint, principal=ADA) as admin,
            connect(app.endpoint, principal=BOB) as member,
            connect(app.endpoint, principal=ELSEWHERE) as other_admin,
            connect(app.endpoint, principal=Principal("cy", "initech")) as no_admins,
        ):
            for client in (admin, member, other_admin, no_admins):
                await fenced(client)
            await nursery.start(app.watch.run)
            await app.clock.wait_asleep(1)
            app.clock.advance_to(midnight)
            await app.clock.wait_asleep(1)  # it warned, and sleeps until the next midnight
            seen = [await fenced(c) for c in (admin, member, other_admin, no_admins)]
            nursery.cancel_scope.cancel()
        feeds = [
            await app.store.list_notifications(
                Reader(tenant, "ada", frozenset({"admin"})), limit=10
            )
            for tenant in ("acme", "globex", "initech")
        ]
    warning = ("LicenseWarning", {"expiresAt": "2026-12-10", "daysLeft": 8})
    assert seen == [[warning], [], [warning], []]
    assert [[(n.event, n.audience.kind, n.audience.name) for n in feed] for feed in feeds] == [
        [("LicenseWarning", "role", "admin")],
        [("LicenseWarning", "role", "admin")],
        [],
    ]


async def test_license_each_midnight_once_per_tenant_across_processes(
    store, clock: SteppedClock
) -> None:
    """Two processes (two apps on one database), each with an admin connection of acme:
    at each midnight exactly one of them sends acme's warning, and both admins get it."""
    apps = [build_app(store, clock, node="node-a"), build_app(store, clock, node="node-b")]
    days = [datetime.datetime(2026, 12, day, tzinfo=datetime.UTC) for day in (2, 3, 4)]
    with trio.fail_after(CEILING):
        async with (
            trio.open_nursery() as nursery,
            connect(apps[0].endpoint, principal=ADA) as on_a,
            connect(apps[1].endpoint, principal=ADA) as on_b,
        ):
            await fenced(on_a), await fenced(on_b)
            for app in apps:
                await nursery.start(app.watch.run)
            for midnight in days:
                await clock.wait_asleep(2)
                clock.advance_to(midnight)
            await clock.wait_asleep(2)
            seen = [await fenced(on_a), await fenced(on_b)]
            nursery.cancel_scope.cancel()
        feed = await store.list_notifications(Reader("acme", "x", frozenset({"admin"})), limit=10)
    # Each process's router reaches its own connections only (one process each, here):
    # together they received each day's warning once.
    received = sorted(payload["daysLeft"] for events in seen for _, payload in events)
    assert received == [6, 7, 8]
    assert [n.payload["daysLeft"] for n in feed] == [6, 7, 8]
