"""SqliteStore: real SQLite files in ``tmp_path``, driven through the ``Store`` methods.

What is checked is what the chat hub and the task runtime rely on (``storage.base``):
``accept_message`` is one transaction that creates the session once, refuses a
session of someone else and is idempotent by the client's message id; every read
is scoped by owner (another owner simply finds nothing); task states only move
forward (queued -> running -> finished); ``recover_tasks`` after a "restart" (a
fresh ``SqliteStore`` on the same file); schema versions by ``PRAGMA
user_version``; and the trio loop keeps running while a call waits in its worker
thread. No test sleeps: the blocked-call test holds a real SQLite lock from a
second connection and releases it from a trio task.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from voisnap.storage.base import (
    Message,
    Note,
    Owner,
    Session,
    StoreError,
    Task,
    TaskState,
)
from voisnap.storage.sqlite import MIGRATIONS, SqliteStore, migrate

CEILING = 10
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
ADA = Owner("acme", "ada")
BOB = Owner("acme", "bob")
ADA_ELSEWHERE = Owner("globex", "ada")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def records(
    owner: Owner,
    n: int | str,
    *,
    session_id: str = "sess_1",
    client_message_id: str | None = None,
    when: datetime.datetime = T0,
    content: str | None = None,
) -> tuple[Session, Message, Task]:
    """A session, a user message and its queued task, numbered ``n``."""
    session = Session(session_id, owner, f"title {n}", when, when)
    message = Message(
        message_id=f"msg_{n}",
        session_id=session_id,
        owner=owner,
        role="user",
        content=content if content is not None else f"message {n}",
        created_at=when,
    )
    task = Task(
        task_id=f"task_{n}",
        session_id=session_id,
        owner=owner,
        agent_id="sophon",
        message_id=message.message_id,
        state=TaskState.QUEUED,
        created_at=when,
        channel_id="webchat",
        client_message_id=client_message_id,
    )
    return session, message, task


async def accept(store: SqliteStore, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
    session, message, task = records(*args, **kwargs)  # type: ignore[arg-type]
    return await store.accept_message(session=session, message=message, task=task)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "voisnap.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(db_path)
    with trio.fail_after(CEILING):
        await opened.open()
    try:
        yield opened
    finally:
        with trio.fail_after(CEILING):
            await opened.aclose()


# -- accept_message --------------------------------------------------------------------------------


async def test_store_accept_message_stores_the_message_and_its_task(store: SqliteStore) -> None:
    session, message, task = records(ADA, 1, client_message_id="c1")
    with trio.fail_after(CEILING):
        accepted = await store.accept_message(session=session, message=message, task=task)
        assert (accepted.created, accepted.session_created) == (True, True)
        assert (accepted.session, accepted.message, accepted.task) == (session, message, task)
        assert await store.get_session(ADA, "sess_1") == session
        assert await store.get_message(ADA, "msg_1") == message
        assert await store.get_task(ADA, "task_1") == task
        assert await store.get_task_by_id("task_1") == task


async def test_store_accept_message_creates_the_session_once(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        first = await accept(store, ADA, 1)
        second = await accept(store, ADA, 2, when=at(5))
        sessions = await store.list_sessions(ADA)
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
    assert first.session_created and not second.session_created
    assert second.created
    # The stored session is returned, not the one the second call proposed.
    assert second.session == first.session
    assert second.session.title == "title 1"
    assert [s.session_id for s in sessions] == ["sess_1"]
    assert [m.message_id for m in messages] == ["msg_1", "msg_2"]


@pytest.mark.parametrize("intruder", [BOB, ADA_ELSEWHERE], ids=["other-user", "other-tenant"])
async def test_store_accept_message_refuses_a_session_of_someone_else(
    store: SqliteStore, intruder: Owner
) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        with pytest.raises(StoreError) as caught:
            await accept(store, intruder, 2)
        assert str(caught.value) == "Session 'sess_1' belongs to someone else."
        # The refused call stored nothing, for anybody.
        assert await store.get_task_by_id("task_2") is None
        assert await store.get_message(intruder, "msg_2") is None
        assert await store.list_sessions(intruder) == []
        assert [m.message_id for m in await store.list_messages(ADA, "sess_1", limit=10,
                                                                 before=None)] == ["msg_1"]


async def test_store_accept_message_retry_returns_the_same_task(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        first = await accept(store, ADA, 1, client_message_id="client-7")
        retry = await accept(store, ADA, 2, client_message_id="client-7", when=at(3))
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
        assert await store.get_task_by_id("task_2") is None
        assert await store.get_message(ADA, "msg_2") is None
    assert (retry.created, retry.session_created) == (False, False)
    assert retry.task == first.task
    assert retry.message == first.message
    assert retry.session == first.session
    assert [m.message_id for m in messages] == ["msg_1"]


async def test_store_accept_message_retry_in_another_session_still_returns_the_first(
    store: SqliteStore,
) -> None:
    with trio.fail_after(CEILING):
        first = await accept(store, ADA, 1, client_message_id="client-7")
        retry = await accept(store, ADA, 2, client_message_id="client-7", session_id="sess_2")
        assert await store.get_session(ADA, "sess_2") is None
    assert not retry.created
    assert retry.task.session_id == "sess_1"
    assert retry.task == first.task


async def test_store_accept_message_client_ids_are_per_owner(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        ada = await accept(store, ADA, 1, client_message_id="same", session_id="s_ada")
        bob = await accept(store, BOB, 2, client_message_id="same", session_id="s_bob")
        far = await accept(store, ADA_ELSEWHERE, 3, client_message_id="same", session_id="s_far")
        tasks = [await store.get_task_by_id(f"task_{n}") for n in (1, 2, 3)]
    assert ada.created and bob.created and far.created
    assert [t.owner for t in tasks if t is not None] == [ADA, BOB, ADA_ELSEWHERE]


async def test_store_accept_message_without_client_id_is_never_deduplicated(
    store: SqliteStore,
) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        again = await accept(store, ADA, 2)
    assert again.created
    assert again.task.task_id == "task_2"


async def test_store_accept_message_is_safe_from_concurrent_callers(store: SqliteStore) -> None:
    """Many calls at once share one connection, one at a time: all land."""
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(accept, store, ADA, n)
        messages = await store.list_messages(ADA, "sess_1", limit=100, before=None)
    assert sorted(m.message_id for m in messages) == sorted(f"msg_{n}" for n in range(20))


# -- sessions and messages -------------------------------------------------------------------------


async def test_store_list_sessions_most_recently_active_first(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, session_id="old", when=at(0))
        await accept(store, ADA, 2, session_id="new", when=at(20))
        await accept(store, ADA, 3, session_id="middle", when=at(10.5))
        await accept(store, BOB, 4, session_id="bobs", when=at(30))
        before = [s.session_id for s in await store.list_sessions(ADA)]
        updated = await store.update_session(ADA, "old", updated_at=at(40), title=None)
        after = [s.session_id for s in await store.list_sessions(ADA)]
    assert before == ["new", "middle", "old"]
    assert updated is not None and updated.updated_at == at(40)
    assert updated.title == "title 1"  # title=None keeps the title
    assert after == ["old", "new", "middle"]


async def test_store_update_session_sets_the_title(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        updated = await store.update_session(ADA, "sess_1", updated_at=at(1), title="Renamed")
        assert await store.get_session(ADA, "sess_1") == updated
    assert updated is not None and updated.title == "Renamed"


async def test_store_list_messages_oldest_first_with_limit_and_before(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        for n in range(5):
            await accept(store, ADA, n, when=at(n))

        async def page(limit: int, before: str | None) -> list[str]:
            found = await store.list_messages(ADA, "sess_1", limit=limit, before=before)
            return [m.message_id for m in found]

        assert await page(10, None) == ["msg_0", "msg_1", "msg_2", "msg_3", "msg_4"]
        # The newest `limit`, still oldest first: a chat shows its latest page first.
        assert await page(2, None) == ["msg_3", "msg_4"]
        assert await page(2, "msg_3") == ["msg_1", "msg_2"]
        assert await page(2, "msg_1") == ["msg_0"]
        assert await page(2, "msg_0") == []


async def test_store_list_messages_includes_replies_with_their_tool_calls(
    store: SqliteStore,
) -> None:
    tool_calls = ({"toolName": "calculator", "arguments": {"expression": "1+1"}, "ok": True},)
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.start_task("task_1", at(1))
        reply = Message("msg_r", "sess_1", ADA, "assistant", "2", at(2), tool_calls, "task_1")
        await store.complete_task("task_1", reply=reply, tokens_used=3)
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1] == reply


async def test_store_reads_are_scoped_by_owner(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        for other in (BOB, ADA_ELSEWHERE):
            assert await store.get_session(other, "sess_1") is None
            assert await store.get_message(other, "msg_1") is None
            assert await store.get_task(other, "task_1") is None
            assert await store.list_sessions(other) == []
            assert await store.list_messages(other, "sess_1", limit=10, before=None) == []
            assert (
                await store.update_session(other, "sess_1", updated_at=at(9), title="hijacked")
                is None
            )
        session = await store.get_session(ADA, "sess_1")
    assert session is not None and session.title == "title 1" and session.updated_at == T0


async def test_store_get_unknown_ids_find_nothing(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        assert await store.get_session(ADA, "nope") is None
        assert await store.get_message(ADA, "nope") is None
        assert await store.get_task(ADA, "nope") is None
        assert await store.get_task_by_id("nope") is None


# -- task states -----------------------------------------------------------------------------------


async def test_store_start_task_only_from_queued(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await accept(store, ADA, 2)
        started = await store.start_task("task_1", at(1))
        again = await store.start_task("task_1", at(2))
        await store.finish_task("task_2", TaskState.CANCELLED, cancelled_by="ada")
        cancelled = await store.start_task("task_2", at(3))
        unknown = await store.start_task("task_none", at(3))
        stored = await store.get_task(ADA, "task_1")
    assert started is not None
    assert (started.state, started.started_at) == (TaskState.RUNNING, at(1))
    assert again is None and cancelled is None and unknown is None
    assert stored == started  # the second start changed nothing


async def test_store_complete_task_stores_the_reply_and_the_outcome(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.start_task("task_1", at(1))
        reply = Message("msg_r", "sess_1", ADA, "assistant", "Hello", at(3.25), None, "task_1")
        done = await store.complete_task("task_1", reply=reply, tokens_used=17)
        assert await store.get_message(ADA, "msg_r") == reply
        assert await store.get_task(ADA, "task_1") == done
    assert done.state is TaskState.COMPLETED
    assert done.finished_at == at(3.25)
    assert done.duration_ms == 2250
    assert done.tokens_used == 17
    assert done.result_message_id == "msg_r"
    assert done.error is None


async def test_store_finish_task_fails_or_cancels_once(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await accept(store, ADA, 2)
        await store.start_task("task_1", at(1))
        failed = await store.finish_task(
            "task_1", TaskState.FAILED, error="boom", finished_at=at(1.5)
        )
        cancelled = await store.finish_task("task_2", TaskState.CANCELLED, cancelled_by="bob")
        assert await store.finish_task("task_1", TaskState.CANCELLED, cancelled_by="x") is None
        assert await store.finish_task("task_2", TaskState.FAILED, error="late") is None
        assert await store.finish_task("task_none", TaskState.FAILED, error="?") is None
        assert await store.get_task(ADA, "task_1") == failed
        assert await store.get_task(ADA, "task_2") == cancelled
    assert failed is not None and cancelled is not None
    assert (failed.state, failed.error, failed.duration_ms) == (TaskState.FAILED, "boom", 500)
    assert failed.finished_at == at(1.5)
    assert (cancelled.state, cancelled.cancelled_by) == (TaskState.CANCELLED, "bob")
    assert cancelled.finished_at is not None and cancelled.error is None


async def test_store_finish_task_on_a_completed_task_returns_none(store: SqliteStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.start_task("task_1", at(1))
        reply = Message("msg_r", "sess_1", ADA, "assistant", "ok", at(2), None, "task_1")
        done = await store.complete_task("task_1", reply=reply, tokens_used=1)
        assert await store.finish_task("task_1", TaskState.CANCELLED, cancelled_by="ada") is None
        assert await store.get_task(ADA, "task_1") == done


# -- restarts --------------------------------------------------------------------------------------


async def test_store_recover_tasks_fails_running_and_returns_queued_oldest_first(
    store: SqliteStore, db_path: Path
) -> None:
    with trio.fail_after(CEILING):
        # created_at at a whole second and at fractions of it: their text forms differ in shape
        await accept(store, ADA, "late", session_id="s1", when=at(2.5))
        await accept(store, BOB, "early", session_id="s2", when=at(0))
        await accept(store, ADA, "mid", session_id="s1", when=at(0.25))
        await accept(store, ADA, "running", session_id="s1", when=at(-5))
        await accept(store, ADA, "done", session_id="s1", when=at(-6))
        await store.start_task("task_running", at(1))
        await store.start_task("task_done", at(1))
        reply = Message("msg_r", "s1", ADA, "assistant", "ok", at(2), None, "task_done")
        done = await store.complete_task("task_done", reply=reply, tokens_used=1)

        queued = await store.recover_tasks("interrupted by a restart")
        running = await store.get_task(ADA, "task_running")
        assert await store.get_task(ADA, "task_done") == done
    assert [t.task_id for t in queued] == ["task_early", "task_mid", "task_late"]
    assert all(t.state is TaskState.QUEUED for t in queued)
    assert running is not None
    assert (running.state, running.error) == (TaskState.FAILED, "interrupted by a restart")
    assert running.finished_at is not None


async def test_store_survives_a_restart(db_path: Path) -> None:
    """Everything written before ``aclose`` is seen by a fresh store on the same file."""
    first = SqliteStore(db_path)
    with trio.fail_after(CEILING):
        await first.open()
        accepted = await accept(first, ADA, 1, client_message_id="c1")
        await accept(first, ADA, 2, when=at(1))
        started = await first.start_task("task_2", at(2))
        note = Note("note_1", ADA, "call Ana", at(3))
        await first.add_note(note)
        await first.aclose()

        second = SqliteStore(db_path)
        await second.open()
        try:
            assert await second.get_session(ADA, "sess_1") == accepted.session
            assert await second.get_task(ADA, "task_1") == accepted.task
            assert await second.get_task(ADA, "task_2") == started
            assert await second.list_notes(ADA) == [note]
            queued = await second.recover_tasks("restarted")
            failed = await second.get_task(ADA, "task_2")
            retry = await accept(second, ADA, 3, client_message_id="c1")
        finally:
            await second.aclose()
    assert [t.task_id for t in queued] == ["task_1"]
    assert failed is not None and (failed.state, failed.error) == (TaskState.FAILED, "restarted")
    assert not retry.created and retry.task.task_id == "task_1"


# -- schema versions -------------------------------------------------------------------------------


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


async def test_store_migrations_bring_a_new_database_to_the_latest_version(
    db_path: Path,
) -> None:
    store = SqliteStore(db_path)
    with trio.fail_after(CEILING):
        await store.open()
        await store.aclose()
    assert user_version(db_path) == len(MIGRATIONS)


async def test_store_reopening_does_not_rerun_migrations(db_path: Path) -> None:
    with trio.fail_after(CEILING):
        for n in range(2):
            store = SqliteStore(db_path)
            await store.open()  # a re-run would fail: the tables exist
            await accept(store, ADA, n, session_id=f"s{n}")
            assert len(await store.list_sessions(ADA)) == n + 1
            await store.aclose()
    assert user_version(db_path) == len(MIGRATIONS)


def test_store_migrate_trusts_user_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "marked.db", isolation_level=None)
    try:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        assert migrate(db) == len(MIGRATIONS)
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        db.close()
    assert tables == []


async def test_store_refuses_a_database_from_a_newer_voisnap(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    store = SqliteStore(db_path)
    with trio.fail_after(CEILING), pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert f"schema version {len(MIGRATIONS) + 1}" in message
    assert "newer than this voisnap" in message and "upgrade voisnap" in message
    assert user_version(db_path) == len(MIGRATIONS) + 1  # left untouched


# -- the trio loop is never blocked ----------------------------------------------------------------


async def test_store_call_waits_in_a_thread_while_the_loop_runs(
    store: SqliteStore, db_path: Path
) -> None:
    """A second connection holds SQLite's write lock, so ``add_note`` waits in its
    worker thread. The lock is released by this test's own trio task, which can
    only run if the loop is free; were the store call run on the trio thread,
    it would fail with "database is locked" after the busy timeout instead."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    returned = trio.Event()

    async def write() -> None:
        await store.add_note(Note("note_1", ADA, "written under a lock", T0))
        returned.set()

    try:
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.testing.wait_all_tasks_blocked()
                assert not returned.is_set()  # in flight, and yet this task runs
                blocker.execute("COMMIT")
                await returned.wait()
            assert [n.text for n in await store.list_notes(ADA)] == ["written under a lock"]
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


# -- notes -----------------------------------------------------------------------------------------


async def test_store_notes_are_kept_per_owner_in_order(store: SqliteStore) -> None:
    notes = [
        Note("n2", ADA, "second", at(2)),
        Note("n1", ADA, "first", at(1)),
        Note("n3", BOB, "bob's", at(3)),
    ]
    with trio.fail_after(CEILING):
        for note in notes:
            await store.add_note(note)
        assert [n.note_id for n in await store.list_notes(ADA)] == ["n1", "n2"]
        assert await store.list_notes(BOB) == [notes[2]]
        assert await store.list_notes(ADA_ELSEWHERE) == []
