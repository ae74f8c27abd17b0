"""Schedules and workflow runs: the store's half of issue 14 (``storage.sql_schedules``).

Every test runs on SQLite and on a real PostgreSQL (``conftest``). What is checked is
what the scheduler and the REST routes rely on: a schedule is its owner's only; due
schedules are the unpaused ones whose slot has come; a slot is claimed by exactly one of
several stores (processes) on one database, also when they claim at once, and a claim made
on a stale view of the schedule wins nothing; the schedules file's rows follow the file
(an unchanged entry keeps its slot); a run records its task and the schedule keeps the
first session it was given.

Times are fixed (``records.at``). No test sleeps.
"""

from __future__ import annotations

import attrs
import trio

from voisnap.storage.base import (
    FROM_API,
    FROM_FILE,
    Message,
    Owner,
    RunState,
    Schedule,
    Session,
    Task,
    TaskState,
    WorkflowRun,
)
from voisnap.storage.sql import SqlStore

from .backends import Backend
from .records import ADA, ADA_ELSEWHERE, BOB, at


def schedule(
    n: int | str,
    owner: Owner = ADA,
    *,
    due: float = 60,
    paused: bool = False,
    source: str = FROM_API,
    cron: str = "* * * * *",
) -> Schedule:
    return Schedule(
        f"sch_{n}",
        owner,
        cron,
        "UTC",
        "sophon",
        f"prompt {n}",
        None,
        paused,
        source,
        at(due),
        at(0),
        at(0),
    )


def run(n: int | str, sch: Schedule, slot: float) -> WorkflowRun:
    return WorkflowRun(f"wfr_{n}", sch.schedule_id, sch.owner, at(slot), RunState.FIRED, at(slot))


async def test_store_schedules_are_their_owners_only(store: SqlStore) -> None:
    mine, bobs = schedule(1), schedule(2, BOB)
    for each in (mine, bobs, schedule(3, ADA_ELSEWHERE)):
        await store.add_schedule(each)
    assert await store.get_schedule(ADA, "sch_1") == mine
    assert await store.get_schedule(ADA, "sch_2") is None
    assert await store.list_schedules(ADA) == [mine]
    assert await store.delete_schedule(ADA, "sch_2") is False
    assert await store.update_schedule(attrs.evolve(bobs, owner=ADA), reschedule=True) is None
    assert await store.get_schedule(BOB, "sch_2") == bobs
    assert await store.delete_schedule(ADA, "sch_1") is True
    assert await store.list_schedules(ADA) == []


async def test_store_schedules_update_moves_the_slot_only_when_asked(store: SqlStore) -> None:
    original = schedule(1, due=60)
    await store.add_schedule(original)
    changed = attrs.evolve(
        original,
        prompt="new",
        paused=True,
        next_due_at=at(120),
        session_id="sess_9",
        updated_at=at(5),
    )
    kept = await store.update_schedule(changed, reschedule=False)
    assert kept == attrs.evolve(changed, next_due_at=at(60))
    moved = await store.update_schedule(changed, reschedule=True)
    assert moved == changed


async def test_store_schedules_due_are_the_unpaused_whose_slot_came(store: SqlStore) -> None:
    for each in (
        schedule(1, due=60),
        schedule(2, due=30),
        schedule(3, due=90),
        schedule(4, due=10, paused=True),
        schedule(5, BOB, due=60),
    ):
        await store.add_schedule(each)
    due = await store.due_schedules(at(60))
    assert [s.schedule_id for s in due] == ["sch_2", "sch_1", "sch_5"]
    assert await store.next_due_at() == at(30)


async def test_store_schedules_a_slot_is_claimed_once(store: SqlStore) -> None:
    sch = schedule(1, due=60)
    await store.add_schedule(sch)
    assert await store.claim_slot(run("a", sch, 60), due_at=at(60), next_due_at=at(120))
    # another process, with what it read before: the schedule has moved on
    assert not await store.claim_slot(run("b", sch, 60), due_at=at(60), next_due_at=at(120))
    assert (await store.get_schedule(ADA, "sch_1")).next_due_at == at(120)  # type: ignore[union-attr]
    [stored] = await store.list_workflow_runs(ADA, "sch_1", limit=10)
    assert stored == run("a", sch, 60)
    # a slot claimed already is not claimed again, even if the schedule is due there again
    await store.update_schedule(attrs.evolve(sch, next_due_at=at(60)), reschedule=True)
    assert not await store.claim_slot(run("c", sch, 60), due_at=at(60), next_due_at=at(120))
    assert len(await store.list_workflow_runs(ADA, "sch_1", limit=10)) == 1


async def test_store_schedules_a_paused_schedule_is_not_claimed(store: SqlStore) -> None:
    sch = schedule(1, due=60, paused=True)
    await store.add_schedule(sch)
    assert not await store.claim_slot(run("a", sch, 60), due_at=at(60), next_due_at=at(120))


async def test_store_schedules_several_stores_claiming_at_once_have_one_winner(
    backend: Backend,
) -> None:
    """Several processes (a store each, on one database) claim the same slot at once."""
    stores = [await backend.open() for _ in range(4)]
    sch = schedule(1, due=60)
    await stores[0].add_schedule(sch)
    won: list[str] = []

    async def claim(store: SqlStore, name: str) -> None:
        if await store.claim_slot(run(name, sch, 60), due_at=at(60), next_due_at=at(120)):
            won.append(name)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for index, store in enumerate(stores):
                for attempt in range(3):
                    nursery.start_soon(claim, store, f"{index}-{attempt}")
    assert len(won) == 1, won
    runs = await stores[1].list_workflow_runs(ADA, "sch_1", limit=10)
    assert [r.run_id for r in runs] == [f"wfr_{won[0]}"]


async def test_store_schedules_the_file_rows_follow_the_file(store: SqlStore) -> None:
    api = schedule("api", due=60)
    await store.add_schedule(api)
    kept, changed, gone = (schedule(n, due=60, source=FROM_FILE) for n in ("k", "c", "g"))
    await store.sync_file_schedules([kept, changed, gone])
    # the next start: "k" the same (its slot was claimed meanwhile), "c" with another
    # cron, "g" no longer in the file; a new one
    await store.claim_slot(run("k", kept, 60), due_at=at(60), next_due_at=at(120))
    new = schedule("n", due=300, source=FROM_FILE)
    again = [
        attrs.evolve(kept, next_due_at=at(300), prompt="reworded", updated_at=at(200)),
        attrs.evolve(changed, cron="*/5 * * * *", next_due_at=at(300)),
        new,
    ]
    await store.sync_file_schedules(again)
    found = {s.schedule_id: s for s in await store.list_schedules(ADA)}
    assert set(found) == {"sch_api", "sch_k", "sch_c", "sch_n"}
    assert found["sch_k"].next_due_at == at(120) and found["sch_k"].prompt == "reworded"
    assert found["sch_c"].next_due_at == at(300) and found["sch_c"].cron == "*/5 * * * *"
    assert found["sch_api"] == api
    # a file entry never overwrites a schedule made over REST
    await store.sync_file_schedules([attrs.evolve(api, source=FROM_FILE, prompt="hijack")])
    assert await store.get_schedule(ADA, "sch_api") == api


async def test_store_schedules_a_run_keeps_the_first_session(store: SqlStore) -> None:
    sch = schedule(1, due=60)
    await store.add_schedule(sch)
    for n, slot in (("a", 60), ("b", 120)):
        await store.claim_slot(run(n, sch, slot), due_at=at(slot), next_due_at=at(slot + 60))
        session_id = f"sess_{n}"  # each fire proposes a new session
        session = Session(session_id, ADA, "Scheduled", at(slot), at(slot))
        message = Message(f"msg_{n}", session_id, ADA, "user", "prompt", at(slot))
        task = Task(
            f"task_{n}",
            session_id,
            ADA,
            "sophon",
            message.message_id,
            TaskState.QUEUED,
            at(slot),
            kind="workflow",
        )
        accepted = await store.start_workflow_run(
            f"wfr_{n}", session=session, message=message, task=task
        )
        assert accepted.task.session_id == "sess_a"
    assert (await store.get_schedule(ADA, "sch_1")).session_id == "sess_a"  # type: ignore[union-attr]
    found = await store.workflow_run_of_task("task_b")
    assert found is not None and (found.run_id, found.state) == ("wfr_b", RunState.QUEUED)
    await store.update_workflow_run("wfr_b", RunState.FAILED, error="boom", finished_at=at(130))
    runs = await store.list_workflow_runs(ADA, "sch_1", limit=10)
    assert [(r.run_id, r.state, r.error, r.finished_at) for r in runs] == [
        ("wfr_b", RunState.FAILED, "boom", at(130)),
        ("wfr_a", RunState.QUEUED, None, None),
    ]
    assert await store.list_workflow_runs(BOB, "sch_1", limit=10) == []
