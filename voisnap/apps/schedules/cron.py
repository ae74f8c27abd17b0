"""When a schedule comes due: a cron expression read in a time zone (docs/schedules.md).

An expression has 5 fields (minute, hour, day of month, month, day of week), as
crontab(5) has, or 6 with the **seconds first** (croniter's
``second_at_beginning``: ``*/2 * * * * *`` is every two seconds), or is one of
``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@hourly``. croniter
parses it and finds the slots; the zone is an IANA name (``zoneinfo``), and the
fields are matched against the wall clock of that zone.

Two wall-clock rules decide what daylight saving time does to a slot:

- a wall-clock time that happens twice (the clocks go back) is a slot once,
  the first time: a job "at 02:30" runs once that night, not twice;
- a time the clocks skip (they go forward) is not lost: croniter gives the
  first moment after the gap (03:00 for "at 02:30" when 02:00 jumps to 03:00).

Every slot is handed out in UTC, which is how the store keeps and compares them.
"""

from __future__ import annotations

import datetime
import zoneinfo

import attrs
from croniter import CroniterError, croniter

UTC = datetime.UTC
TICK = datetime.timedelta(microseconds=1)
FIELDS = (5, 6)
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class CronError(ValueError):
    """An expression or a zone that cannot be used; the text says why."""


@attrs.frozen
class Cron:
    """A checked expression and its zone (``parse``)."""

    expression: str
    zone: zoneinfo.ZoneInfo

    def next_slot(self, after: datetime.datetime) -> datetime.datetime:
        """The first slot strictly after ``after``, in UTC."""
        slots = croniter(self.expression, after.astimezone(self.zone), second_at_beginning=True)
        while True:
            slot = slots.get_next(datetime.datetime)
            if not self._repeated(slot):
                return slot.astimezone(UTC)

    def last_slot(self, at: datetime.datetime) -> datetime.datetime:
        """The latest slot at or before ``at``, in UTC."""
        start = (at + TICK).astimezone(self.zone)  # croniter's previous is strictly before
        slots = croniter(self.expression, start, second_at_beginning=True)
        while True:
            slot = slots.get_prev(datetime.datetime)
            if not self._repeated(slot):
                return slot.astimezone(UTC)

    def _repeated(self, slot: datetime.datetime) -> bool:
        """Whether ``slot`` is the second time its wall-clock time happens (the hour
        after the clocks went back): the first time was the slot."""
        wall = slot.astimezone(self.zone)
        return wall.replace(fold=0).astimezone(UTC) != wall.astimezone(UTC)


def zone_of(name: object) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name`` (``Europe/Berlin``, ``UTC``); CronError otherwise."""
    if not isinstance(name, str):
        raise CronError("'timezone' must be an IANA time zone name such as 'Europe/Berlin'.")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"'timezone' must be an IANA time zone name such as 'Europe/Berlin', not {name!r}."
        ) from None


def parse(expression: object, timezone: object, now: datetime.datetime) -> Cron:
    """``expression`` in ``timezone``, checked; CronError naming what is wrong.
    ``now``: an expression that never comes due after it (``0 0 31 2 *``) is refused."""
    zone = zone_of(timezone)
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("'cron' must be a cron expression such as '0 9 * * mon-fri'.")
    expression = " ".join(expression.split())
    fields = len(expression.split(" "))
    if expression.lower() not in ALIASES and fields not in FIELDS:
        raise CronError(
            f"'cron' must have 5 fields (minute hour day month weekday) or 6 (seconds "
            f"first), not {fields}: {expression!r}."
        )
    cron = Cron(expression, zone)
    try:
        cron.next_slot(now)
    except (CroniterError, ValueError, TypeError, KeyError) as error:
        raise CronError(
            f"'cron' is not a valid cron expression: {expression!r} ({error})."
        ) from None
    return cron
