"""``--schedules-file`` (``apps.schedules.schedules_file``): what it accepts, what stops the
start, and what the scheduler makes of it at start-up, with a stepped clock."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import trio

from tests.notifications.conftest import SteppedClock
from voisnap.agents.registry import load_agents
from voisnap.apps.schedules.schedules_file import load_schedules_file
from voisnap.storage.base import FROM_FILE
from voisnap.storage.sqlite import SqliteStore

from .conftest import CEILING, START, build_app

UTC = datetime.UTC
AGENTS = load_agents(None, 0.0)
ENTRY = """
[[schedules]]
id = "brief"
tenant = "acme"
user = "ana"
cron = "0  8 * * mon-fri"
timezone = "Europe/Berlin"
agent = "sophon"
prompt = "what is 2 + 2"
"""


def load(tmp_path: Path, text: str) -> list:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return load_schedules_file(path, AGENTS, START)


def test_schedules_file_entries_become_file_schedules(tmp_path: Path) -> None:
    [entry] = load(tmp_path, ENTRY)
    assert (entry.schedule_id, entry.owner.user_id, entry.cron, entry.timezone) == (
        "file-brief",
        "ana",
        "0 8 * * mon-fri",
        "Europe/Berlin",
    )
    schedule = entry.schedule(START)
    assert schedule.source == FROM_FILE and not schedule.paused
    assert schedule.next_due_at == datetime.datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def test_schedules_file_an_entry_without_id_keeps_one_id_across_starts(tmp_path: Path) -> None:
    text = ENTRY.replace('id = "brief"\n', "")
    first, second = load(tmp_path, text), load(tmp_path, text)
    assert first[0].schedule_id == second[0].schedule_id
    assert first[0].schedule_id.startswith("file-")
    reworded = load(tmp_path, text.replace("2 + 2", "3 + 3"))
    assert reworded[0].schedule_id != first[0].schedule_id


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[schedules]\n", "Expected ']]'"),
        ("[other]\n", "it must hold only [[schedules]] tables"),
        (ENTRY.replace('user = "ana"', 'colour = "red"'), "schedule 1 ('brief'): unknown keys"),
        (ENTRY.replace('user = "ana"\n', ""), "schedule 1 ('brief'): 'user' must be a non-empty"),
        (ENTRY.replace("0  8", "0 25"), "schedule 1 ('brief'): 'cron' is not a valid cron"),
        (ENTRY.replace("Europe/Berlin", "Mars/Olympus"), "'timezone' must be an IANA time zone"),
        (ENTRY.replace('"sophon"', '"nobody"'), "Agent 'nobody' does not exist or is not active."),
        (ENTRY.replace('"brief"', '"a b"'), "'id' must be 1 to 64 letters"),
        (ENTRY + "paused = 1\n", "'paused' must be true or false"),
        (ENTRY + ENTRY, "schedule 2 ('brief'): the same id as an earlier one"),
    ],
)
def test_schedules_file_that_cannot_be_used_is_refused_naming_the_entry(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ValueError) as refused:
        load(tmp_path, text)
    message = str(refused.value)
    assert message.startswith(f"schedules file {tmp_path / 'schedules.toml'}: "), message
    assert problem in message, message


async def test_schedules_file_a_slot_missed_while_down_fires_once_at_start_up(
    tmp_path: Path, store: SqliteStore, nursery: trio.Nursery
) -> None:
    entries = load(tmp_path, ENTRY.replace("0  8 * * mon-fri", "* * * * *"))
    clock = SteppedClock(START)
    first = build_app(store, clock, file_schedules=entries)
    async with trio.open_nursery() as first_life:  # the first server's life
        first_life.start_soon(first.scheduler.run)
        with trio.fail_after(CEILING):
            await clock.wait_asleep(1)
        first_life.cancel_scope.cancel()  # it stops with the schedule due at 10:31
    [stored] = await store.list_schedules(entries[0].owner)
    assert stored.next_due_at == datetime.datetime(2026, 12, 1, 10, 31, tzinfo=UTC)

    clock.advance_to(START + datetime.timedelta(minutes=10))  # 10:40: nine slots missed
    again = build_app(store, clock, file_schedules=entries)
    await nursery.start(again.runtime.run)
    await nursery.start(again.scheduler.run)
    completed = await again.notifications.wait_count("WorkflowRunCompleted", 1)
    assert [p["at"] for _, p in again.notifications.events("CronFired")] == [
        "2026-12-01T10:40:00.000Z"
    ]
    runs = await store.list_workflow_runs(entries[0].owner, "file-brief", limit=20)
    assert [run.run_id for run in runs] == [completed[0]["runId"]]
