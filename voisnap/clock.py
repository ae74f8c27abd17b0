"""Wall-clock time, behind a seam that tests can turn.

Features that act at moments of the calendar (a midnight, a cron slot, a
reminder's time) take a ``Clock``: ``SystemClock`` in the server, a clock the
test moves in tests, so that no test waits for real minutes or days.
"""

from __future__ import annotations

import datetime
from typing import Protocol

import trio


class Clock(Protocol):
    def now(self) -> datetime.datetime:
        """The time now, timezone-aware UTC."""

    async def sleep_until(self, moment: datetime.datetime) -> None:
        """Return at ``moment`` (or just after it)."""


class SystemClock:
    """The wall clock. Sleeping is measured by trio's clock; as the two may
    drift apart, it sleeps again until the wall clock has reached ``moment``."""

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    async def sleep_until(self, moment: datetime.datetime) -> None:
        while (left := (moment - self.now()).total_seconds()) > 0:
            await trio.sleep(left)
