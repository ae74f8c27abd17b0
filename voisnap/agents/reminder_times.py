"""When a reminder is due, and how that time reads in the user's zone (docs/reminders.md).

A reminder is set for a moment given one of three ways (``set_reminder``):

- ``at``: ``HH:MM`` (24-hour), the next such time on the user's wall clock:
  today if it is still ahead, else tomorrow; or an ISO 8601 date and time,
  read in the user's zone unless it carries its own offset (``Z``, ``+01:00``);
- ``inSeconds`` / ``inMinutes``: that long from now.

The user's zone is an IANA name (``Europe/Lisbon``): the access token's OIDC
``zoneinfo`` claim (``voisnap.principal``), UTC without one. Tools run in the
task runtime, which knows the task's owner but not their token, so the chat
hub tells ``UserZones`` each user's zone when they connect, and the
tools look it up there (``UTC`` for a user this process has not seen).
Moments are stored in UTC; only what the user reads is in their zone.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from collections import OrderedDict

from ..principal import DEFAULT_ZONE
from ..storage.base import Owner

CLOCK_TIME = re.compile(r"^(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)$")
DAY = datetime.timedelta(days=1)
REMEMBERED_USERS = 100_000  # zones kept; the least recently seen user is forgotten first


class ReminderError(ValueError):
    """A reminder tool could not do it; the text says why (the tool's failure)."""


class TimeError(ReminderError):
    """The time cannot be used; the text says why."""


def zone_named(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise TimeError(
            f"'{name}' is not a time zone (an IANA name, such as Europe/Lisbon)."
        ) from None


def due_at(
    now: datetime.datetime,
    zone: zoneinfo.ZoneInfo,
    *,
    at: str | None = None,
    in_seconds: int | None = None,
    in_minutes: int | None = None,
) -> datetime.datetime:
    """The moment (UTC) a reminder set at ``now`` is due."""
    if in_seconds is not None:
        return now + datetime.timedelta(seconds=in_seconds)
    if in_minutes is not None:
        return now + datetime.timedelta(minutes=in_minutes)
    if at is None:
        raise TimeError("Say when: 'at' (HH:MM or a date and time), 'inSeconds' or 'inMinutes'.")
    clock_time = CLOCK_TIME.match(at.strip())
    if clock_time:
        return next_clock_time(now, zone, int(clock_time["hour"]), int(clock_time["minute"]))
    return _moment(now, zone, at.strip())


def next_clock_time(
    now: datetime.datetime, zone: zoneinfo.ZoneInfo, hour: int, minute: int
) -> datetime.datetime:
    """The next ``hour:minute`` on the wall clock of ``zone`` after ``now``: today
    if still ahead, else tomorrow."""
    local_now = now.astimezone(zone)
    wanted = datetime.time(hour, minute)
    today = datetime.datetime.combine(local_now.date(), wanted, zone)
    moment = (
        today
        if today > local_now
        else datetime.datetime.combine(local_now.date() + DAY, wanted, zone)
    )
    return moment.astimezone(datetime.UTC)


def _moment(now: datetime.datetime, zone: zoneinfo.ZoneInfo, text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise TimeError(
            f"'{text}' is not a time: use HH:MM or an ISO date and time (2026-12-07T15:30)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)  # a wall-clock time of the user's
    moment = moment.astimezone(datetime.UTC)
    if moment <= now:
        raise TimeError(f"{local_text(moment, zone)} has passed already.")
    return moment


def local_text(moment: datetime.datetime, zone: zoneinfo.ZoneInfo) -> str:
    """``15:30 on Monday 07 December (Europe/Lisbon)``; seconds only when there are some."""
    local = moment.astimezone(zone)
    clock = "%H:%M:%S" if local.second else "%H:%M"
    return local.strftime(f"{clock} on %A %d %B") + f" ({zone.key})"


class UserZones:
    """Each user's zone, as their token last said (the chat hub tells it)."""

    def __init__(self, capacity: int = REMEMBERED_USERS) -> None:
        self._capacity = capacity
        self._zones: OrderedDict[Owner, str] = OrderedDict()

    def remember(self, owner: Owner, zone: str) -> None:
        self._zones[owner] = zone
        self._zones.move_to_end(owner)
        while len(self._zones) > self._capacity:
            self._zones.popitem(last=False)

    def zone_of(self, owner: Owner) -> zoneinfo.ZoneInfo:
        name = self._zones.get(owner, DEFAULT_ZONE)
        try:
            return zone_named(name)
        except TimeError:  # checked when the token was read; this is only a safety net
            return zone_named(DEFAULT_ZONE)
