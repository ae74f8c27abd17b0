"""The ``Store`` conformance suite: every test runs on SQLite and on a real PostgreSQL.

What is checked is what the chat hub and the task runtime rely on (``storage.base``):
``accept_message`` is one transaction that creates the session once, refuses a session
of someone else and is idempotent by the client's message id, also when the same retry
reaches two processes at once; every read is scoped by owner (another owner simply finds
nothing); tasks move forward only (queued -> running -> finished), are claimed with a
lease by exactly one caller, also when many stores claim at once, and are finished only
by their lease owner; lapsed leases fail; a cancel is immediate for a queued task and a
request for a running one; what was written survives reopening; and the trio loop keeps
running while a call waits in its worker thread.

Times are fixed (``records.at``), so nothing depends on the wall clock. No test sleeps:
the blocked-call test holds a real lock from another connection and releases it from a
trio task.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from voisnap.errors import ServiceUnavailable
from voisnap.storage.base import (
    Accepted,
    Note,
    Owner,
    StoreError,
    StoreUnavailable,
    Task,
    TaskState,
)
from voisnap.storage.sql import SqlStore

from .backends import Backend
from .records import ADA, ADA_ELSEWHERE, BOB, CEILING, T0, accept, at, records, reply_to

# -- accept_message --------------------------------------------------------------------------------


async def test_store_accept_message_stores_the_message_and_its_task(store: SqlStore) -> None:
    session, message, task = records(ADA, 1, client_message_id="c1")
    with trio.fail_after(CEILING):
        accepted = await store.accept_message(session=session, message=message, task=task)
        assert (accepted.created, accepted.session_created) == (True, True)
        assert (accepted.session, accepted.message, accepted.task) == (session, message, task)
        assert await store.get_session(ADA, "sess_1") == session
        assert await store.get_message(ADA, "msg_1") == message
        assert await store.get_task(ADA, "task_1") == task
        assert await store.get_task_by_id("task_1") == task
        assert await store.count_queued() == 1


async def test_store_accept_message_creates_the_session_once(store: SqlStore) -> None:
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
    store: SqlStore, intruder: Owner
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
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
        assert [m.message_id for m in messages] == ["msg_1"]
        assert await store.count_queued() == 1


async def test_store_accept_message_retry_returns_the_same_task(store: SqlStore) -> None:
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


async def test_store_accept_message_retry_returns_the_task_as_it_is_now(store: SqlStore) -> None:
    """A retry after the task ran answers with its current state, not the queued one."""
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, client_message_id="client-7")
        claimed = await store.claim_task("node-a", at(1), at(11))
        retry = await accept(store, ADA, 2, client_message_id="client-7", when=at(3))
    assert claimed is not None
    assert not retry.created and retry.task == claimed


async def test_store_accept_message_retry_in_another_session_still_returns_the_first(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        first = await accept(store, ADA, 1, client_message_id="client-7")
        retry = await accept(store, ADA, 2, client_message_id="client-7", session_id="sess_2")
        assert await store.get_session(ADA, "sess_2") is None
    assert not retry.created
    assert retry.task.session_id == "sess_1"
    assert retry.task == first.task


async def test_store_accept_message_client_ids_are_per_owner(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        ada = await accept(store, ADA, 1, client_message_id="same", session_id="s_ada")
        bob = await accept(store, BOB, 2, client_message_id="same", session_id="s_bob")
        far = await accept(store, ADA_ELSEWHERE, 3, client_message_id="same", session_id="s_far")
        tasks = [await store.get_task_by_id(f"task_{n}") for n in (1, 2, 3)]
    assert ada.created and bob.created and far.created
    assert [t.owner for t in tasks if t is not None] == [ADA, BOB, ADA_ELSEWHERE]


async def test_store_accept_message_without_client_id_is_never_deduplicated(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        again = await accept(store, ADA, 2)
    assert again.created
    assert again.task.task_id == "task_2"


async def test_store_accept_message_is_safe_from_concurrent_callers(store: SqlStore) -> None:
    """Many calls at once on one store, all into the same new session: all land, and the
    session is created once."""
    results = []

    async def one(n: int) -> None:
        results.append(await accept(store, ADA, n, when=at(n)))

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(one, n)
        messages = await store.list_messages(ADA, "sess_1", limit=100, before=None)
    assert sorted(m.message_id for m in messages) == sorted(f"msg_{n}" for n in range(20))
    assert sum(r.session_created for r in results) == 1
    assert all(r.created for r in results)


async def test_store_accept_message_from_several_stores_into_one_new_session(
    backend: Backend,
) -> None:
    """Three processes take three different messages for the same new session at once:
    all land, the session is created once, none fails. A lock on ``sessions`` held
    elsewhere lines them up: each has looked for the session and found none before any
    of them may create it."""
    stores = [await backend.open() for _ in range(3)]
    results: list[Accepted] = []

    async def one(store: SqlStore, n: int) -> None:
        results.append(await accept(store, ADA, n, when=at(n)))

    lock = backend.hold_write_lock("sessions")
    try:
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                for n, store in enumerate(stores):
                    nursery.start_soon(one, store, n)
                await backend.wait_until_waiting(len(stores))
                lock.release()
            messages = await stores[0].list_messages(ADA, "sess_1", limit=10, before=None)
    finally:
        lock.close()
    assert sorted(m.message_id for m in messages) == ["msg_0", "msg_1", "msg_2"]
    assert all(r.created for r in results)
    assert sum(r.session_created for r in results) == 1


@pytest.mark.parametrize("same_session", [True, False], ids=["same-session", "other-sessions"])
async def test_store_accept_message_same_retry_from_several_stores_makes_one_task(
    backend: Backend, same_session: bool
) -> None:
    """The same client message id reaches three processes at once (a retry that raced its
    original): one task is made, and every caller is answered with it. A lock on
    ``tasks`` held elsewhere lines them up: each has looked for an earlier task and found
    none before any of them may insert one."""
    stores = [await backend.open() for _ in range(3)]
    results: list[Accepted] = []

    async def one(store: SqlStore, n: int) -> None:
        session_id = "sess_1" if same_session else f"sess_{n}"
        results.append(await accept(store, ADA, n, session_id=session_id,
                                    client_message_id="client-7", when=at(n)))

    lock = backend.hold_write_lock("tasks")
    try:
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                for n, store in enumerate(stores):
                    nursery.start_soon(one, store, n)
                await backend.wait_until_waiting(len(stores))
                lock.release()
            sessions = await stores[0].list_sessions(ADA)
            queued = await stores[0].count_queued()
    finally:
        lock.close()
    [winner] = [r for r in results if r.created]
    assert len(results) == 3
    assert {r.task for r in results} == {winner.task}
    assert {r.message for r in results} == {winner.message}
    assert {r.session for r in results} == {winner.session}
    assert queued == 1
    # The losers' sessions (when they differ) were not kept either.
    assert [s.session_id for s in sessions] == [winner.session.session_id]


# -- sessions and messages -------------------------------------------------------------------------


async def test_store_list_sessions_most_recently_active_first(store: SqlStore) -> None:
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


async def test_store_update_session_sets_the_title(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        updated = await store.update_session(ADA, "sess_1", updated_at=at(1), title="Renamed")
        assert await store.get_session(ADA, "sess_1") == updated
    assert updated is not None and updated.title == "Renamed"


async def test_store_list_messages_oldest_first_with_limit_and_before(store: SqlStore) -> None:
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
    store: SqlStore,
) -> None:
    tool_calls = ({"toolName": "calculator", "arguments": {"expression": "1+1"}, "ok": True},)
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(1), at(11))
        reply = attrs.evolve(reply_to("task_1", at(2), "2"), tool_calls=tool_calls)
        await store.complete_task("task_1", "node-a", reply=reply, tokens_used=3)
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1] == reply
    assert messages[1].tool_calls == tool_calls


async def test_store_reads_are_scoped_by_owner(store: SqlStore) -> None:
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


async def test_store_get_unknown_ids_find_nothing(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        assert await store.get_session(ADA, "nope") is None
        assert await store.get_message(ADA, "nope") is None
        assert await store.get_task(ADA, "nope") is None
        assert await store.get_task_by_id("nope") is None
        assert await store.cancel_requested("nope") is None
        assert await store.request_cancel("nope", "ada") is None
        assert not await store.renew_lease("nope", "node-a", at(10))


# -- claiming tasks --------------------------------------------------------------------------------


async def test_store_claim_task_takes_the_oldest_queued_with_a_lease(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        # created_at at a whole second and at fractions of it: in SQLite their text
        # forms differ in shape, and must still sort as times.
        await accept(store, ADA, "late", session_id="s1", when=at(2.5))
        await accept(store, BOB, "early", session_id="s2", when=at(0))
        await accept(store, ADA, "mid", session_id="s1", when=at(0.25))
        assert await store.count_queued() == 3
        first = await store.claim_task("node-a", at(10), at(20))
        second = await store.claim_task("node-b", at(11), at(21))
        third = await store.claim_task("node-a", at(12), at(22))
        none_left = await store.claim_task("node-b", at(13), at(23))
        assert await store.count_queued() == 0
        stored = await store.get_task_by_id("task_early")
    assert [t.task_id for t in (first, second, third) if t is not None] == [
        "task_early", "task_mid", "task_late"
    ]
    assert none_left is None
    assert first is not None and second is not None
    assert (first.state, first.started_at, first.lease_owner) == (
        TaskState.RUNNING, at(10), "node-a"
    )
    assert (second.started_at, second.lease_owner) == (at(11), "node-b")
    assert first.cancel_requested_by is None and first.finished_at is None
    assert stored == first


async def test_store_claim_task_only_takes_queued_tasks(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, when=at(0))
        await accept(store, ADA, 2, when=at(1))
        await accept(store, ADA, 3, when=at(2))
        await store.request_cancel("task_1", "ada")  # queued: cancelled at once
        running = await store.claim_task("node-a", at(3), at(13))
        await store.finish_task("task_3", TaskState.FAILED, error="gone")
        nothing = await store.claim_task("node-b", at(4), at(14))
        still = await store.get_task_by_id("task_2")
    assert running is not None and running.task_id == "task_2"
    assert nothing is None
    assert still == running  # not taken again, lease unchanged


async def test_store_claim_task_from_an_empty_store_finds_nothing(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        assert await store.claim_task("node-a", at(0), at(10)) is None
        assert await store.count_queued() == 0


async def test_store_claim_task_gives_each_task_to_exactly_one_claimer(backend: Backend) -> None:
    """Several stores on one database (several processes), several claimers on each, all
    claiming at once until nothing is left: every task is claimed, each exactly once."""
    stores = [await backend.open() for _ in range(4)]
    tasks = 40
    claims: list[tuple[str, str]] = []

    async def claimer(store: SqlStore, node: str) -> None:
        while True:
            task = await store.claim_task(node, at(100), at(200))
            if task is None:
                return
            claims.append((task.task_id, node))

    with trio.fail_after(CEILING * 2):
        for n in range(tasks):
            await accept(stores[n % 4], ADA, n, when=at(n))
        async with trio.open_nursery() as nursery:
            for s, store in enumerate(stores):
                for w in range(3):
                    nursery.start_soon(claimer, store, f"node-{s}-{w}")
        stored = {n: await stores[0].get_task_by_id(f"task_{n}") for n in range(tasks)}
        assert await stores[0].count_queued() == 0
    claimed_ids = [task_id for task_id, _ in claims]
    assert sorted(claimed_ids) == sorted(f"task_{n}" for n in range(tasks))
    assert len(set(claimed_ids)) == len(claimed_ids), "a task was claimed twice"
    owners = dict(claims)
    for n, task in stored.items():
        assert task is not None and task.state is TaskState.RUNNING
        assert task.lease_owner == owners[f"task_{n}"]


async def test_store_claim_task_burst_of_claimers_for_few_tasks(backend: Backend) -> None:
    """More claimers than tasks, all at once: exactly as many win as there are tasks."""
    stores = [await backend.open() for _ in range(4)]
    results: list[Task | None] = []

    async def claim(store: SqlStore, node: str) -> None:
        results.append(await store.claim_task(node, at(100), at(200)))

    with trio.fail_after(CEILING):
        for n in range(5):
            await accept(stores[0], ADA, n, when=at(n))
        async with trio.open_nursery() as nursery:
            for i in range(24):
                nursery.start_soon(claim, stores[i % 4], f"node-{i}")
    won = [task.task_id for task in results if task is not None]
    assert sorted(won) == [f"task_{n}" for n in range(5)]
    assert len(results) == 24


# -- leases ----------------------------------------------------------------------------------------


async def test_store_renew_lease_only_for_its_owner(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, when=at(0))
        await accept(store, ADA, 2, when=at(1))
        await store.claim_task("node-a", at(1), at(11))
        assert await store.renew_lease("task_1", "node-a", at(21))
        assert not await store.renew_lease("task_1", "node-b", at(31))
        assert not await store.renew_lease("task_2", "node-a", at(31))  # queued: nobody's
        # Renewed to 21 (not 11, and not node-b's 31): alive at 15, lapsed at 25.
        assert await store.expire_leases(at(15), "lapsed") == []
        [expired] = await store.expire_leases(at(25), "lapsed")
        assert not await store.renew_lease("task_1", "node-a", at(41))  # finished now
    assert expired.task_id == "task_1" and expired.lease_owner == "node-a"


async def test_store_expire_leases_fails_running_tasks_whose_lease_lapsed(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        for n, when in enumerate([0, 1, 2, 3, 4]):
            await accept(store, ADA, n, when=at(when))
        await store.claim_task("node-a", at(5), at(10))  # task_0: lapses at 10
        await store.claim_task("node-b", at(5), at(30))  # task_1: alive until 30
        await store.claim_task("node-a", at(5), at(10))  # task_2: completed in time
        await store.complete_task("task_2", "node-a", reply=reply_to("task_2", at(8)),
                                  tokens_used=1)
        await store.claim_task("node-a", at(5), at(10))  # task_3: cancelled in time
        await store.finish_task("task_3", TaskState.CANCELLED, cancelled_by="ada", node="node-a")
        # task_4 stays queued: a queued task has no lease to lapse.
        expired = await store.expire_leases(at(20), "interrupted")
        again = await store.expire_leases(at(20), "interrupted")
        stored = [await store.get_task_by_id(f"task_{n}") for n in range(5)]
    assert [t.task_id for t in expired] == ["task_0"]
    [failed] = expired
    assert (failed.state, failed.error, failed.lease_owner) == (
        TaskState.FAILED, "interrupted", "node-a"
    )
    assert failed.finished_at == at(20) and failed.duration_ms == 15_000
    assert stored[0] == failed
    assert again == []  # failed once, by whoever looked first
    assert [t.state for t in stored if t is not None] == [
        TaskState.FAILED, TaskState.RUNNING, TaskState.COMPLETED, TaskState.CANCELLED,
        TaskState.QUEUED,
    ]


async def test_store_expire_leases_at_the_lease_end_keeps_the_task(store: SqlStore) -> None:
    """A lease lapses after ``lease_until``, not at it."""
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(0), at(10))
        assert await store.expire_leases(at(10), "interrupted") == []
        assert [t.task_id for t in await store.expire_leases(at(10.001), "interrupted")] == [
            "task_1"
        ]


async def test_store_a_lapsed_runner_cannot_finish_its_task(store: SqlStore) -> None:
    """Once its lease lapsed and the task failed, the old runner's late words change nothing."""
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(0), at(10))
        [failed] = await store.expire_leases(at(11), "interrupted")
        late = reply_to("task_1", at(12), "too late")
        assert await store.complete_task("task_1", "node-a", reply=late, tokens_used=1) is None
        assert await store.finish_task("task_1", TaskState.FAILED, error="x", node="node-a") is None
        assert await store.finish_task("task_1", TaskState.CANCELLED, cancelled_by="ada") is None
        assert not await store.renew_lease("task_1", "node-a", at(20))
        assert await store.get_message(ADA, late.message_id) is None
        assert await store.get_task_by_id("task_1") == failed


# -- finishing tasks -------------------------------------------------------------------------------


async def test_store_complete_task_stores_the_reply_and_the_outcome(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(1), at(11))
        reply = reply_to("task_1", at(3.25), "Hello")
        done = await store.complete_task("task_1", "node-a", reply=reply, tokens_used=17)
        assert await store.get_message(ADA, reply.message_id) == reply
        assert await store.get_task(ADA, "task_1") == done
    assert done is not None
    assert done.state is TaskState.COMPLETED
    assert done.finished_at == at(3.25)
    assert done.duration_ms == 2250
    assert done.tokens_used == 17
    assert done.result_message_id == reply.message_id
    assert done.error is None and done.lease_owner == "node-a"


async def test_store_complete_task_only_by_the_lease_owner(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, when=at(0))
        await accept(store, ADA, 2, when=at(1))
        claimed = await store.claim_task("node-a", at(1), at(11))
        other = reply_to("task_1", at(2), "from node-b")
        assert await store.complete_task("task_1", "node-b", reply=other, tokens_used=1) is None
        queued = reply_to("task_2", at(2), "never claimed")
        assert await store.complete_task("task_2", "node-a", reply=queued, tokens_used=1) is None
        assert await store.complete_task("task_9", "node-a", reply=queued, tokens_used=1) is None
        # A refused completion stores no reply either.
        assert await store.get_message(ADA, other.message_id) is None
        assert await store.get_message(ADA, queued.message_id) is None
        assert await store.get_task_by_id("task_1") == claimed
        assert (await store.get_task_by_id("task_2")).state is TaskState.QUEUED  # type: ignore[union-attr]
        mine = reply_to("task_1", at(3), "from node-a")
        done = await store.complete_task("task_1", "node-a", reply=mine, tokens_used=1)
        again = await store.complete_task("task_1", "node-a", reply=reply_to("x", at(4)),
                                          tokens_used=1)
    assert done is not None and done.state is TaskState.COMPLETED
    assert again is None


async def test_store_finish_task_fails_or_cancels_once(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, when=at(0))
        await accept(store, ADA, 2, when=at(0.5))
        await store.claim_task("node-a", at(1), at(11))
        failed = await store.finish_task(
            "task_1", TaskState.FAILED, error="boom", finished_at=at(1.5)
        )
        cancelled = await store.finish_task("task_2", TaskState.CANCELLED, cancelled_by="bob")
        assert await store.finish_task("task_1", TaskState.CANCELLED, cancelled_by="x") is None
        assert await store.finish_task("task_2", TaskState.FAILED, error="late") is None
        assert await store.finish_task("task_none", TaskState.FAILED, error="?") is None
        assert await store.get_task(ADA, "task_1") == failed
        assert await store.get_task(ADA, "task_2") == cancelled
        assert await store.count_queued() == 0
    assert failed is not None and cancelled is not None
    assert (failed.state, failed.error, failed.duration_ms) == (TaskState.FAILED, "boom", 500)
    assert failed.finished_at == at(1.5)
    assert (cancelled.state, cancelled.cancelled_by) == (TaskState.CANCELLED, "bob")
    assert cancelled.finished_at is not None and cancelled.error is None


async def test_store_finish_task_with_a_node_only_by_the_lease_owner(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        claimed = await store.claim_task("node-a", at(1), at(11))
        assert await store.finish_task("task_1", TaskState.FAILED, error="x", node="node-b") is None
        assert await store.get_task_by_id("task_1") == claimed
        failed = await store.finish_task("task_1", TaskState.FAILED, error="mine", node="node-a")
    assert failed is not None and (failed.state, failed.error) == (TaskState.FAILED, "mine")


async def test_store_finish_task_on_a_completed_task_returns_none(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(1), at(11))
        done = await store.complete_task("task_1", "node-a", reply=reply_to("task_1", at(2)),
                                         tokens_used=1)
        assert await store.finish_task("task_1", TaskState.CANCELLED, cancelled_by="ada") is None
        assert await store.finish_task("task_1", TaskState.FAILED, error="x", node="node-a") is None
        assert await store.get_task(ADA, "task_1") == done


# -- cancelling ------------------------------------------------------------------------------------


async def test_store_request_cancel_of_a_queued_task_cancels_it_now(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        cancelled = await store.request_cancel("task_1", "ada")
        again = await store.request_cancel("task_1", "bob")
        assert await store.claim_task("node-a", at(1), at(11)) is None  # never runs
        stored = await store.get_task_by_id("task_1")
        assert await store.count_queued() == 0
    assert cancelled is not None
    assert (cancelled.state, cancelled.cancelled_by) == (TaskState.CANCELLED, "ada")
    assert cancelled.started_at is None and cancelled.finished_at is not None
    assert again is None  # finished already: nothing to do
    assert stored == cancelled


async def test_store_request_cancel_of_a_running_task_marks_it_for_its_runner(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(1), at(11))
        assert await store.cancel_requested("task_1") is None
        assert await store.request_cancel("task_1", "bob") is None
        assert await store.request_cancel("task_1", "someone else") is None
        asked = await store.cancel_requested("task_1")
        marked = await store.get_task_by_id("task_1")
        # The runner still holds its lease, and decides the end.
        assert await store.renew_lease("task_1", "node-a", at(21))
        finished = await store.finish_task("task_1", TaskState.CANCELLED, cancelled_by=asked,
                                           node="node-a")
    assert asked == "bob"  # the first who asked
    assert marked is not None
    assert (marked.state, marked.cancel_requested_by) == (TaskState.RUNNING, "bob")
    assert finished is not None
    assert (finished.state, finished.cancelled_by) == (TaskState.CANCELLED, "bob")


async def test_store_request_cancel_of_a_finished_task_changes_nothing(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1)
        await store.claim_task("node-a", at(1), at(11))
        done = await store.complete_task("task_1", "node-a", reply=reply_to("task_1", at(2)),
                                         tokens_used=1)
        assert await store.request_cancel("task_1", "ada") is None
        assert await store.cancel_requested("task_1") is None
        assert await store.get_task_by_id("task_1") == done


# -- reopening -------------------------------------------------------------------------------------


async def test_store_survives_a_restart(backend: Backend) -> None:
    """Everything written before ``aclose`` is seen by a fresh store on the same database;
    a task that was running keeps its lease until it lapses."""
    first = await backend.open()
    with trio.fail_after(CEILING):
        accepted = await accept(first, ADA, 1, client_message_id="c1")
        await accept(first, ADA, 2, when=at(1))
        await accept(first, ADA, 3, when=at(2))
        claimed = await first.claim_task("node-a", at(2), at(12))
        note = Note("note_1", ADA, "call Ana", at(3))
        await first.add_note(note)
        await first.aclose()

        second = await backend.open()
        assert await second.get_session(ADA, "sess_1") == accepted.session
        assert await second.get_task(ADA, "task_1") == claimed
        assert await second.get_task(ADA, "task_2") == records(ADA, 2, when=at(1))[2]
        assert await second.list_notes(ADA) == [note]
        assert await second.count_queued() == 2
        assert await second.expire_leases(at(11), "restarted") == []
        [failed] = await second.expire_leases(at(13), "restarted")
        queued = await second.claim_task("node-b", at(14), at(24))
        retry = await accept(second, ADA, 4, client_message_id="c1")
    assert claimed is not None and claimed.task_id == "task_1"
    assert (failed.task_id, failed.state, failed.error) == ("task_1", TaskState.FAILED,
                                                            "restarted")
    assert queued is not None and queued.task_id == "task_2"
    assert not retry.created and retry.task.task_id == "task_1"


# -- readiness and errors --------------------------------------------------------------------------


async def test_store_ping_answers(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await store.ping()


def test_store_unavailable_is_a_store_error_and_a_service_error() -> None:
    """A hub method lets a StoreError through with its text; unavailability is also the
    readiness probe's and the REST layer's ServiceUnavailable."""
    assert issubclass(StoreUnavailable, StoreError)
    assert issubclass(StoreUnavailable, ServiceUnavailable)


# -- the trio loop is never blocked ----------------------------------------------------------------


async def test_store_call_waits_in_a_thread_while_the_loop_runs(
    store: SqlStore, backend: Backend
) -> None:
    """Another connection holds a lock that makes ``add_note`` wait in its worker thread.
    The lock is released by this test's own trio task, which can only run if the loop is
    free; were the store call run on the trio thread, the test would hang (and fail at its
    ceiling) or the call would fail with "database is locked"."""
    lock = backend.hold_write_lock("notes")
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
                lock.release()
                await returned.wait()
            assert [n.text for n in await store.list_notes(ADA)] == ["written under a lock"]
    finally:
        lock.close()


# -- notes -----------------------------------------------------------------------------------------


async def test_store_notes_are_kept_per_owner_in_order(store: SqlStore) -> None:
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
