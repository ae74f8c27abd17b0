"""Slots of a cron expression in a zone (``apps.schedules.cron``): synchronous, fixed times."""

from __future__ import annotations

import datetime

import pytest

from voisnap.apps.schedules.cron import CronError, parse

UTC = datetime.UTC
NOW = datetime.datetime(2026, 12, 1, 10, 30, 0, tzinfo=UTC)


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def slots(expression: str, zone: str, after: datetime.datetime, count: int) -> list[str]:
    cron = parse(expression, zone, after)
    found = []
    for _ in range(count):
        after = cron.next_slot(after)
        found.append(after.astimezone(cron.zone).isoformat())
    return found


def test_cron_five_fields_are_minutes_to_weekdays() -> None:
    assert slots("0 9 * * mon-fri", "UTC", at("2026-12-04T10:00:00+00:00"), 2) == [
        "2026-12-07T09:00:00+00:00",  # Friday's 09:00 has passed: Monday
        "2026-12-08T09:00:00+00:00",
    ]


def test_cron_six_fields_put_the_seconds_first() -> None:
    assert slots("*/2 * * * * *", "UTC", NOW, 3) == [
        "2026-12-01T10:30:02+00:00",
        "2026-12-01T10:30:04+00:00",
        "2026-12-01T10:30:06+00:00",
    ]


def test_cron_next_slot_is_strictly_after_and_last_slot_at_or_before() -> None:
    cron = parse("*/10 * * * * *", "UTC", NOW)
    assert cron.next_slot(NOW) == at("2026-12-01T10:30:10+00:00")
    assert cron.last_slot(NOW) == NOW
    assert cron.last_slot(at("2026-12-01T10:30:09.999+00:00")) == NOW


def test_cron_is_read_on_the_wall_clock_of_its_zone() -> None:
    cron = parse("0 9 * * *", "Europe/Berlin", NOW)
    assert cron.next_slot(NOW) == at("2026-12-02T08:00:00+00:00")  # CET, UTC+1
    summer = at("2026-07-01T10:00:00+00:00")
    assert cron.next_slot(summer) == at("2026-07-02T07:00:00+00:00")  # CEST, UTC+2


def test_cron_a_time_repeated_when_clocks_go_back_fires_once() -> None:
    # 25 October 2026: Berlin's clocks go from 03:00 CEST back to 02:00 CET.
    assert slots("30 2 * * *", "Europe/Berlin", at("2026-10-24T12:00:00+00:00"), 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert slots("0 * * * *", "Europe/Berlin", at("2026-10-24T23:30:00+00:00"), 3) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",  # not 02:00 CET again
        "2026-10-25T04:00:00+01:00",
    ]
    cron = parse("0 * * * *", "Europe/Berlin", NOW)
    assert cron.last_slot(at("2026-10-25T01:30:00+00:00")) == at("2026-10-25T00:00:00+00:00")


def test_cron_a_time_skipped_when_clocks_go_forward_fires_at_the_end_of_the_gap() -> None:
    # 29 March 2026: Berlin's clocks go from 02:00 CET to 03:00 CEST.
    assert slots("30 2 * * *", "Europe/Berlin", at("2026-03-28T12:00:00+00:00"), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_cron_aliases_are_accepted() -> None:
    assert slots("@daily", "UTC", NOW, 1) == ["2026-12-02T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("expression", "zone", "error"),
    [
        ("* * *", "UTC", "'cron' must have 5 fields (minute hour day month weekday) or 6"),
        ("* * * * * * *", "UTC", "or 6 (seconds first), not 7"),
        ("61 * * * *", "UTC", "'cron' is not a valid cron expression: '61 * * * *'"),
        ("0 0 31 2 *", "UTC", "'cron' is not a valid cron expression: '0 0 31 2 *'"),
        ("", "UTC", "'cron' must be a cron expression such as '0 9 * * mon-fri'."),
        (5, "UTC", "'cron' must be a cron expression such as '0 9 * * mon-fri'."),
        ("* * * * *", "Mars/Olympus", "'timezone' must be an IANA time zone name"),
        ("* * * * *", "../etc/passwd", "'timezone' must be an IANA time zone name"),
        ("* * * * *", 3, "'timezone' must be an IANA time zone name"),
    ],
)
def test_cron_refuses_what_it_cannot_use(expression: object, zone: object, error: str) -> None:
    with pytest.raises(CronError) as refused:
        parse(expression, zone, NOW)
    assert error in str(refused.value)
