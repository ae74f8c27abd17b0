"""When a reminder is due, and what ``sophon`` reads in a message (docs/reminders.md).

Pure functions of a given moment: no clock, no store. ``at`` HH:MM is the next such time on
the user's wall clock (today if still ahead, else tomorrow), also in a zone far from UTC and
across the date line; ISO times are read in the user's zone unless they carry an offset.
"""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from voisnap.agents.reminder_intents import HOW, describe_reminders, reminder_intent
from voisnap.agents.reminder_times import (
    TimeError,
    UserZones,
    due_at,
    local_text,
    next_clock_time,
    zone_named,
)
from voisnap.storage.base import Owner

UTC = datetime.UTC
LISBON = zoneinfo.ZoneInfo("Europe/Lisbon")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
# Monday 7 December 2026, 10:00 UTC: 10:00 in Lisbon, 19:00 in Tokyo, 05:00 in New York.
NOW = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime.datetime:
    return datetime.datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "at", "expected"),
    [
        (zoneinfo.ZoneInfo("UTC"), "15:30", utc(7, 15, 30)),  # later today
        (zoneinfo.ZoneInfo("UTC"), "09:59", utc(8, 9, 59)),  # passed: tomorrow
        (zoneinfo.ZoneInfo("UTC"), "10:00", utc(8, 10, 0)),  # now is not ahead: tomorrow
        (LISBON, "15:30", utc(7, 15, 30)),  # UTC+0 in winter
        (TOKYO, "20:00", utc(7, 11, 0)),  # 19:00 there: an hour ahead, today
        (TOKYO, "18:00", utc(8, 9, 0)),  # passed there: tomorrow, Tokyo's tomorrow
        (TOKYO, "08:30", utc(7, 23, 30)),  # tomorrow in Tokyo is still today in UTC
        (NEW_YORK, "04:00", utc(8, 9, 0)),  # 05:00 there: passed, tomorrow
        (NEW_YORK, "23:15", utc(8, 4, 15)),  # today in New York, tomorrow in UTC
    ],
)
def test_times_at_a_clock_time_is_the_next_one_in_the_users_zone(
    zone: zoneinfo.ZoneInfo, at: str, expected: datetime.datetime
) -> None:
    assert due_at(NOW, zone, at=at) == expected


def test_times_next_clock_time_rolls_over_the_end_of_a_month_and_a_year() -> None:
    late = datetime.datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert next_clock_time(late, zoneinfo.ZoneInfo("UTC"), 7, 0) == datetime.datetime(
        2027, 1, 1, 7, 0, tzinfo=UTC
    )


def test_times_in_seconds_and_minutes_count_from_now() -> None:
    assert due_at(NOW, TOKYO, in_seconds=30) == utc(7, 10, 0, 30)
    assert due_at(NOW, TOKYO, in_minutes=10) == utc(7, 10, 10)


def test_times_an_iso_time_is_the_users_unless_it_has_an_offset() -> None:
    assert due_at(NOW, TOKYO, at="2026-12-08T09:00") == utc(8, 0, 0)
    assert due_at(NOW, TOKYO, at="2026-12-08T09:00Z") == utc(8, 9, 0)
    assert due_at(NOW, TOKYO, at="2026-12-08T09:00+01:00") == utc(8, 8, 0)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"at": "25:00"}, "'25:00' is not a time"),
        ({"at": "tomorrow-ish"}, "'tomorrow-ish' is not a time"),
        ({}, "Say when"),
    ],
)
def test_times_refuses_what_it_cannot_use(arguments: dict[str, str], error: str) -> None:
    with pytest.raises(TimeError, match=error):
        due_at(NOW, TOKYO, **arguments)  # type: ignore[arg-type]


def test_times_a_past_iso_time_says_so_in_the_users_zone() -> None:
    with pytest.raises(TimeError) as raised:
        due_at(NOW, TOKYO, at="2026-12-07T09:00Z")
    assert str(raised.value) == "18:00 on Monday 07 December (Asia/Tokyo) has passed already."


def test_times_local_text_shows_seconds_only_when_there_are_some() -> None:
    assert local_text(utc(7, 15, 30), LISBON) == "15:30 on Monday 07 December (Europe/Lisbon)"
    assert local_text(utc(7, 15, 30, 5), TOKYO) == "00:30:05 on Tuesday 08 December (Asia/Tokyo)"


def test_times_unknown_zone_is_refused_by_name() -> None:
    with pytest.raises(TimeError, match="'Mars/Olympus' is not a time zone"):
        zone_named("Mars/Olympus")


def test_times_user_zones_remember_each_user_default_utc_and_forget_the_oldest() -> None:
    zones = UserZones(capacity=2)
    ada, bob, cy = Owner("acme", "ada"), Owner("acme", "bob"), Owner("acme", "cy")
    assert zones.zone_of(ada).key == "UTC"
    zones.remember(ada, "Asia/Tokyo")
    zones.remember(bob, "Europe/Lisbon")
    assert zones.zone_of(ada).key == "Asia/Tokyo"
    zones.remember(ada, "Asia/Tokyo")  # seen again: now the most recent
    zones.remember(cy, "America/New_York")
    assert [zones.zone_of(o).key for o in (ada, bob, cy)] == [
        "Asia/Tokyo",
        "UTC",
        "America/New_York",
    ]


# -- what sophon reads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "arguments"),
    [
        ("remind me at 15:30 to call Ana", {"text": "call Ana", "at": "15:30"}),
        ("Remind me at 3pm to call Ana.", {"text": "call Ana", "at": "15:00"}),
        ("please remind me at 12am about the backup", {"text": "the backup", "at": "00:00"}),
        ("remind me at 9.05 to water the plants", {"text": "water the plants", "at": "09:05"}),
        ("remind me to call Ana at 15:30", {"text": "call Ana", "at": "15:30"}),
        ("remind me in 10 minutes to stretch", {"text": "stretch", "inMinutes": 10}),
        ("remind me in 30 seconds to stretch", {"text": "stretch", "inSeconds": 30}),
        ("remind me in 1 second to stretch", {"text": "stretch", "inSeconds": 1}),
        ("remind me in 2 hours to stretch", {"text": "stretch", "inMinutes": 120}),
        ("remind me in 5 min to check the oven", {"text": "check the oven", "inMinutes": 5}),
        ("remind me to stretch in 10 minutes!", {"text": "stretch", "inMinutes": 10}),
        (
            "remind me to meet Ana at the station in 1 hour",
            {"text": "meet Ana at the station", "inMinutes": 60},
        ),
    ],
)
def test_intents_set_a_reminder(message: str, arguments: dict[str, object]) -> None:
    intent = reminder_intent(message)
    assert isinstance(intent, tuple)
    name, called_with, reply = intent
    assert (name, called_with) == ("set_reminder", arguments)
    due = {"text": arguments["text"], "dueLocal": "15:30 on Monday 07 December (UTC)"}
    assert reply(due) == f"Reminder set for 15:30 on Monday 07 December (UTC): “{due['text']}”."


@pytest.mark.parametrize(
    "message",
    ["remind me to call Ana", "remind me at noon to eat", "remind me in 0 minutes to go"],
)
def test_intents_a_reminder_without_a_usable_time_asks_for_one(message: str) -> None:
    intent = reminder_intent(message)
    assert isinstance(intent, str) and intent.endswith(HOW)


def test_intents_a_time_of_day_that_does_not_exist_is_refused() -> None:
    for message in ("remind me at 24:00 to sleep", "remind me at 13pm to eat"):
        intent = reminder_intent(message)
        assert isinstance(intent, str) and "not a time of day" in intent


@pytest.mark.parametrize(
    ("message", "arguments"),
    [
        ("cancel reminder rem_0123abcd", {"reminderId": "rem_0123abcd"}),
        ("cancel my reminder to stretch", {"text": "stretch"}),
        ("please delete the reminder “call Ana”.", {"text": "call Ana"}),
        ("remove reminder about the backup", {"text": "the backup"}),
    ],
)
def test_intents_cancel_a_reminder(message: str, arguments: dict[str, str]) -> None:
    intent = reminder_intent(message)
    assert isinstance(intent, tuple) and intent[:2] == ("cancel_reminder", arguments)
    assert intent[2]({"text": "stretch", "dueLocal": "10:10 on Monday 07 December (UTC)"}) == (
        "Cancelled the reminder “stretch” (10:10 on Monday 07 December (UTC))."
    )


@pytest.mark.parametrize(
    "message", ["what are my reminders?", "list my reminders", "Do I have any reminders"]
)
def test_intents_list_reminders(message: str) -> None:
    intent = reminder_intent(message)
    assert isinstance(intent, tuple) and intent[:2] == ("list_reminders", {})


def test_intents_describe_reminders() -> None:
    assert describe_reminders([]).startswith("You have no reminders.")
    listed = describe_reminders(
        [
            {
                "reminderId": "rem_1",
                "text": "stretch",
                "dueLocal": "10:10 on Monday 07 December (UTC)",
            }
        ]
    )
    assert listed == (
        "Your reminders, soonest first:\n- 10:10 on Monday 07 December (UTC): “stretch” (rem_1)"
    )


@pytest.mark.parametrize("message", ["remember to call Ana", "what is 12 * 7", "my notes"])
def test_intents_other_messages_are_not_about_reminders(message: str) -> None:
    assert reminder_intent(message) is None
