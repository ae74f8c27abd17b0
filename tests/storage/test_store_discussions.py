"""Discussion runs and their turns: the store's half of issue 13 (``storage.sql_discussions``).

Every test runs on SQLite and on a real PostgreSQL (``conftest``). Checked: a run is
started in one transaction with its session, its topic (the user's message) and its task of
kind ``discussion``, in a session that must be the owner's; it is found only by its owner
and listed newest first; a turn and the verdict are written only by the node that holds the
run's lease, and the verdict completes the run's task with its reply in the same
transaction; turns come back in the order they were spoken. Times are fixed; no test
sleeps.
"""

from __future__ import annotations

import pytest
import trio

from voisnap.storage.base import (
    Discussion,
    Message,
    Owner,
    Panelist,
    Session,
    StoreError,
    Task,
    TaskState,
    Turn,
)
from voisnap.storage.sql import SqlStore

from .records import ADA, ADA_ELSEWHERE, BOB, CEILING, T0, at

LEASE = at(3600)
PANEL = (Panelist("p1", "sophon"), Panelist("p2", "writer"), Panelist("p3", "sophon"))
VERDICT = {"winner": "p2", "summary": "p2 — “best”", "scores": {"p1": 3, "p2": 9.5, "p3": 0}}


async def start(store: SqlStore, n: int, owner: Owner = ADA, *, session_id: str | None = None,
                when_s: float = 0) -> Discussion:
    when = at(when_s)
    session_id = session_id or f"sess_run_{n}"
    run = Discussion(f"run_{n}", owner, session_id, f"topic {n}", PANEL, "sophon", 2, when)
    message = Message(f"msg_run_{n}", session_id, owner, "user", run.topic, when)
    task = Task(run.run_id, session_id, owner, "sophon", message.message_id, TaskState.QUEUED,
                when, is_streaming=False, kind="discussion")
    session = Session(session_id, owner, f"Discussion: topic {n}", when, when)
    accepted = await store.start_discussion(session=session, message=message, task=task,
                                            discussion=run)
    assert accepted.created
    return run


def turn(run_id: str, round_number: int, panelist_id: str, content: str = "words") -> Turn:
    return Turn(run_id, round_number, panelist_id, "sophon", content, f"hash-{content}", 12,
                at(round_number))


def reply(run: Discussion) -> Message:
    return Message(f"msg_reply_{run.run_id}", run.session_id, run.owner, "assistant",
                   "Winner: p2.", at(10), task_id=run.run_id)


async def test_store_start_discussion_stores_run_task_message_and_session(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        run = await start(store, 1)
        assert await store.get_discussion(ADA, "run_1") == run
        assert await store.get_discussion_by_id("run_1") == run
        task = await store.get_task(ADA, "run_1")
        messages = await store.list_messages(ADA, run.session_id, limit=10, before=None)
        session = await store.get_session(ADA, run.session_id)
    assert task is not None and task.kind == "discussion" and task.state is TaskState.QUEUED
    assert [(m.role, m.content) for m in messages] == [("user", "topic 1")]
    assert session is not None and session.title == "Discussion: topic 1"


async def test_store_discussion_is_found_only_by_its_owner(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await start(store, 1)
        for stranger in (BOB, ADA_ELSEWHERE):
            assert await store.get_discussion(stranger, "run_1") is None
            assert await store.list_discussions(stranger, limit=10) == []
        assert await store.get_discussion(ADA, "run_unknown") is None


async def test_store_discussion_in_another_users_session_is_refused(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await start(store, 1, BOB, session_id="sess_bob")
        with pytest.raises(StoreError):
            await start(store, 2, ADA, session_id="sess_bob")
        assert await store.get_discussion_by_id("run_2") is None
        assert await store.get_task_by_id("run_2") is None


async def test_store_discussions_listed_newest_first(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        for n in (1, 2, 3):
            await start(store, n, when_s=n)
        await start(store, 4, BOB, when_s=4)
        listed = await store.list_discussions(ADA, limit=10)
        limited = await store.list_discussions(ADA, limit=2)
    assert [run.run_id for run in listed] == ["run_3", "run_2", "run_1"]
    assert [run.run_id for run in limited] == ["run_3", "run_2"]


async def test_store_turns_only_from_the_lease_holder_in_spoken_order(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await start(store, 1)
        assert not await store.add_turn(turn("run_1", 1, "p1"), "node-a")  # queued: nobody's
        claimed = await store.claim_task("node-a", T0, LEASE)
        assert claimed is not None and claimed.task_id == "run_1"
        assert not await store.add_turn(turn("run_1", 1, "p1"), "node-b")
        for round_number in (1, 2):
            for seat in ("p1", "p2", "p3"):
                assert await store.add_turn(turn("run_1", round_number, seat, f"{seat}-r"),
                                            "node-a")
        turns = await store.list_turns("run_1")
    assert [(t.round_number, t.panelist_id) for t in turns] == [
        (1, "p1"), (1, "p2"), (1, "p3"), (2, "p1"), (2, "p2"), (2, "p3")]
    assert turns[0] == turn("run_1", 1, "p1", "p1-r")


async def test_store_complete_discussion_stores_verdict_and_completes_task(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        run = await start(store, 1)
        await store.claim_task("node-a", T0, LEASE)
        lost = await store.complete_discussion("run_1", "node-b", verdict=VERDICT,
                                               verdict_hash="h", reply=reply(run))
        assert lost is None
        assert (await store.get_discussion(ADA, "run_1")).verdict is None  # type: ignore[union-attr]
        done = await store.complete_discussion("run_1", "node-a", verdict=VERDICT,
                                               verdict_hash="h", reply=reply(run),
                                               tokens_used=40)
        stored = await store.get_discussion(ADA, "run_1")
        messages = await store.list_messages(ADA, run.session_id, limit=10, before=None)
        late = await store.add_turn(turn("run_1", 1, "p1"), "node-a")
    assert done is not None and done.state is TaskState.COMPLETED and done.tokens_used == 40
    assert done.result_message_id == reply(run).message_id
    assert stored is not None and (stored.verdict, stored.verdict_hash) == (VERDICT, "h")
    assert [m.role for m in messages] == ["user", "assistant"]
    assert not late  # a finished run takes no more turns
