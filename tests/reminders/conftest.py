"""Reminders in one process: a real SQLite store, a stepped clock, the toolbox, the heartbeat.

The clock is the notifications tests' ``SteppedClock``: it stands still until the test moves
it, so a reminder comes due when the test says, and a heartbeat that waits for its next beat
is seen waiting (``wait_asleep``) instead of being waited for on the wall clock.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.notifications.conftest import SteppedClock
from tests.storage.records import records
from tests.support.stores import sqlite_store
from voisnap.agents.reminder_times import UserZones
from voisnap.agents.reminder_tools import ReminderTools
from voisnap.agents.tools import Toolbox
from voisnap.storage.base import Owner
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
START = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.UTC)  # a Monday
ADA = Owner("acme", "ada")
BOB = Owner("acme", "bob")
SESSION = "sess_1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with sqlite_store(tmp_path / "voisnap.db") as opened:
        for owner, session_id in ((ADA, SESSION), (ADA, "sess_2"), (BOB, "sess_bob")):
            session, message, task = records(owner, session_id, session_id=session_id)
            await opened.accept_message(session=session, message=message, task=task)
        yield opened


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(START)


@pytest.fixture
def zones() -> UserZones:
    return UserZones()


@pytest.fixture
def toolbox(store: SqliteStore, zones: UserZones, clock: SteppedClock) -> Toolbox:
    return Toolbox(store, reminders=ReminderTools(store, zones, clock))
