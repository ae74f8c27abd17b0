"""Approvals, info requests and the waiting tasks behind them: the store's half of issue 12.

Every test runs on SQLite and on a real PostgreSQL (``conftest``). What is checked is
what the driver, the decisions and the approvals hub rely on (``storage.sql_requests``):
``wait_for`` stores the request and the transcript and parks the task (``waiting``, no
lease) only for the node that holds its lease; a request is resolved exactly once, also
when several stores (processes) resolve it at once; its task goes back to the queue
only when none of its requests is pending; expiry and a task's cancel resolve what is
pending, once; requests are found by tool call, by id, and listed for a user or a
whole tenant; and the tasks and notes queries issue 12 added (``list_tasks``,
``delete_note``).

Times are fixed (``records.at``) except where the wall clock is the point (``utc_now``
for a claim's lease). No test sleeps.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest
import trio

from voisnap.storage.base import (
    PENDING,
    Approval,
    InfoRequest,
    Note,
    Owner,
    Request,
    Resolution,
    Task,
    TaskState,
)
from voisnap.storage.sql import SqlStore

from .backends import Backend
from .records import ADA, ADA_ELSEWHERE, BOB, CEILING, T0, accept, at

LEASE = at(3600)
TRANSCRIPT = '[{"type": "call", "id": "call_1", "name": "delete_note", "arguments": {}}]'


async def running_task(store: SqlStore, n: int, owner: Owner = ADA, node: str = "node-a",
                       when: datetime.datetime = T0) -> Task:
    """Task ``n`` of ``owner`` (its own session), claimed by ``node``. Make every task
    before resolving anything: a requeued task is claimed first."""
    await accept(store, owner, n, session_id=f"sess_{owner.tenant_id}_{owner.user_id}_{n}",
                 when=when)
    claimed = await store.claim_task(node, when, LEASE)
    assert claimed is not None and claimed.task_id == f"task_{n}", claimed
    return claimed


IN_TEN_MINUTES = at(600)


def approval_for(task: Task, n: int | str, *, call_id: str = "call_1",
                 created: datetime.datetime = T0,
                 expires: datetime.datetime = IN_TEN_MINUTES,
                 params: dict[str, Any] | None = None) -> Approval:
    return Approval(
        approval_id=f"appr_{n}", task_id=task.task_id, session_id=task.session_id,
        owner=task.owner, agent_id=task.agent_id, call_id=call_id, tool_name="delete_note",
        params=params if params is not None else {"text": "to call “Ana”"},
        reason="The agent wants to run delete_note.", status=PENDING, created_at=created,
        expires_at=expires,
    )


def info_for(task: Task, n: int | str, *, call_id: str = "call_2",
             options: tuple[str, ...] | None = ("call Ana", "buy milk"),
             created: datetime.datetime = T0,
             expires: datetime.datetime = IN_TEN_MINUTES) -> InfoRequest:
    return InfoRequest(
        info_id=f"info_{n}", task_id=task.task_id, session_id=task.session_id,
        owner=task.owner, agent_id=task.agent_id, call_id=call_id,
        question="Which note should I delete?", options=options, status=PENDING,
        created_at=created, expires_at=expires,
    )


async def parked(store: SqlStore, task: Task, request: Request,
                 transcript: str = TRANSCRIPT) -> Task:
    waiting = await store.wait_for(task.task_id, "node-a", transcript, request)
    assert waiting is not None
    return waiting


async def also_pending(store: SqlStore, request: Request) -> None:
    """A second pending request for a task that waits already. The driver makes one at a
    time; the store must still requeue only when none is pending, so one is added here
    straight through the store's own insert."""
    await store._run(lambda db: store._insert_request(db, request))


async def stored(store: SqlStore, request: Request) -> Request | None:
    if isinstance(request, Approval):
        return await store.get_approval(request.approval_id)
    return await store.get_info_request(request.info_id)


# -- wait_for, save_transcript, get_transcript -----------------------------------------------------


async def test_store_wait_for_parks_the_task_and_stores_the_request(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        assert await store.get_transcript(task.task_id) is None
        approval = approval_for(task, 1)
        waiting = await store.wait_for(task.task_id, "node-a", TRANSCRIPT, approval)
        info = info_for(await running_task(store, 2), 2, options=None)
        await store.wait_for("task_2", "node-a", "[]", info)
        assert waiting == await store.get_task_by_id(task.task_id)
        assert await store.get_approval("appr_1") == approval
        assert await store.get_info_request("info_2") == info
        assert await store.get_transcript(task.task_id) == TRANSCRIPT
        assert await store.count_queued() == 0
        assert await store.claim_task("node-b", at(1), LEASE) is None  # nothing to run
        assert await store.expire_leases(at(99_999), "interrupted") == []  # holds no lease
        assert (await store.get_task_by_id(task.task_id)).state is TaskState.WAITING
    assert waiting is not None
    assert (waiting.state, waiting.lease_owner, waiting.lease_until) == (
        TaskState.WAITING, None, None
    )
    assert waiting.started_at == task.started_at and waiting.finished_at is None


async def test_store_wait_for_only_by_the_lease_owner_of_a_running_task(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1)
        assert await store.wait_for(task.task_id, "node-b", TRANSCRIPT, approval) is None
        assert await store.get_approval("appr_1") is None  # nothing stored
        assert await store.get_transcript(task.task_id) is None
        assert (await store.get_task_by_id(task.task_id)).state is TaskState.RUNNING
        await accept(store, ADA, 2, session_id="sess_queued")
        queued_approval = approval_for(await store.get_task_by_id("task_2"), 2)
        assert await store.wait_for("task_2", "node-a", "[]", queued_approval) is None
        assert await store.wait_for("task_nope", "node-a", "[]", None) is None
        await parked(store, task, approval)
        assert await store.wait_for(task.task_id, "node-a", "[]", None) is None  # not running
        assert await store.get_approval("appr_2") is None


async def test_store_wait_for_again_on_a_pending_request(store: SqlStore) -> None:
    """The driver parks a task again on a request it stored before (None: nothing new)."""
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1)
        await parked(store, task, approval)
        await store._run(lambda db: db.execute(
            "UPDATE tasks SET state = 'queued' WHERE task_id = 'task_1'"))
        again = await store.claim_task("node-b", at(1), LEASE)
        assert again is not None and again.task_id == task.task_id
        waiting = await store.wait_for(task.task_id, "node-b", TRANSCRIPT + " ", None)
        assert await store.list_approvals("acme", "ada", None) == [approval]
        assert await store.get_transcript(task.task_id) == TRANSCRIPT + " "
    assert waiting is not None and waiting.state is TaskState.WAITING


async def test_store_save_transcript_only_by_the_lease_owner(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        assert await store.save_transcript(task.task_id, "node-a", "[1]")
        assert not await store.save_transcript(task.task_id, "node-b", "[2]")
        assert await store.get_transcript(task.task_id) == "[1]"
        await store.expire_leases(at(7200), "taken away")
        assert not await store.save_transcript(task.task_id, "node-a", "[3]")
        assert await store.get_transcript(task.task_id) == "[1]"
        assert await store.get_transcript("task_nope") is None


# -- resolve ---------------------------------------------------------------------------------------


async def test_store_resolve_decides_once_and_requeues(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1)
        await parked(store, task, approval)
        won = await store.resolve(approval, "edited", detail={"text": "x"}, by="ada", now=at(5))
        lost = await store.resolve(approval, "rejected", detail="no", by="bob", now=at(6))
        requeued = await store.get_task_by_id(task.task_id)
    assert won.won and not lost.won
    decided = attrs.evolve(approval, status="edited", outcome_detail={"text": "x"},
                           resolved_at=at(5), resolved_by="ada")
    assert won.request == decided and lost.request == decided
    assert requeued is not None and requeued.state is TaskState.QUEUED
    assert requeued.lease_owner is None
    assert won.requeued == requeued and lost.requeued is None


@pytest.mark.parametrize(
    ("status", "detail"),
    [("approved", None), ("rejected", "not now"), ("edited", {"noteId": "n1"}),
     ("timeOut", None)],
)
async def test_store_resolve_keeps_each_outcome(store: SqlStore, status: str, detail: Any) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1)
        await parked(store, task, approval)
        resolution = await store.resolve(approval, status, detail=detail, by="ada", now=at(1))
        found = await store.get_approval(approval.approval_id)
    assert found == resolution.request
    assert (found.status, found.outcome_detail, found.resolved_at) == (status, detail, at(1))


async def test_store_resolve_an_info_request_keeps_the_answer(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        info = info_for(task, 1)
        await parked(store, task, info)
        answered = await store.resolve(info, "answered", detail="buy milk", by="ada", now=at(2))
        again = await store.resolve(info, "answered", detail="call Ana", by="ada", now=at(3))
    assert answered.won and not again.won
    assert answered.request == attrs.evolve(info, status="answered", response="buy milk",
                                            resolved_at=at(2), resolved_by="ada")
    assert again.request == answered.request
    assert answered.requeued is not None and answered.requeued.state is TaskState.QUEUED


async def test_store_resolve_under_concurrency_has_one_winner(backend: Backend) -> None:
    """Six stores (six processes) resolve each request at the same moment, each with
    its own outcome: exactly one wins, everyone sees the winner's outcome, the task is
    requeued once."""
    stores = [await backend.open() for _ in range(6)]
    outcomes = ["approved", "rejected", "edited", "timeOut", "approved", "rejected"]
    with trio.fail_after(CEILING * 2):
        tasks = [await running_task(stores[0], n) for n in range(1, 5)]
        approvals = [approval_for(task, n) for n, task in enumerate(tasks, start=1)]
        for task, approval in zip(tasks, approvals, strict=True):
            await parked(stores[0], task, approval)
        for approval in approvals:
            results: list[Resolution] = []
            go = trio.Event()

            async def resolve(store: SqlStore, status: str, approval: Approval = approval,
                              results: list[Resolution] = results,
                              go: trio.Event = go) -> None:
                await go.wait()
                results.append(await store.resolve(approval, status, by=status, now=at(9)))

            async with trio.open_nursery() as nursery:
                for store, status in zip(stores, outcomes, strict=True):
                    nursery.start_soon(resolve, store, status)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
            winners = [r for r in results if r.won]
            assert len(results) == 6 and len(winners) == 1
            [winner] = winners
            assert all(r.request == winner.request for r in results)
            assert winner.request.resolved_by == winner.request.status  # the winner's own
            assert [r.requeued is not None for r in results].count(True) == 1
            assert await stores[3].get_approval(approval.approval_id) == winner.request


async def test_store_requeue_waits_until_no_request_of_the_task_is_pending(
    store: SqlStore,
) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        first, second = approval_for(task, 1), info_for(task, 2)
        await parked(store, task, first)
        await also_pending(store, second)
        one = await store.resolve(first, "approved", by="ada", now=at(1))
        assert one.won and one.requeued is None
        assert (await store.get_task_by_id(task.task_id)).state is TaskState.WAITING
        two = await store.resolve(second, "answered", detail="call Ana", by="ada", now=at(2))
    assert two.won and two.requeued is not None
    assert two.requeued.state is TaskState.QUEUED


async def test_store_resolve_never_requeues_a_task_that_is_not_waiting(store: SqlStore) -> None:
    """A finished task (cancelled while its request was made pending again by hand, say)
    stays finished whatever is decided."""
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1)
        await parked(store, task, approval)
        assert await store.request_cancel(task.task_id, "ada") is not None
        resolution = await store.resolve(approval, "approved", by="ada", now=at(1))
        found = await store.get_task_by_id(task.task_id)
    assert resolution.won and resolution.requeued is None
    assert found.state is TaskState.CANCELLED


# -- expire_requests, cancel_requests_of -----------------------------------------------------------


async def test_store_expire_requests_times_out_what_is_past_its_time(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        tasks = [await running_task(store, n) for n in range(1, 5)]
        late = approval_for(tasks[0], 1, expires=at(10))
        late_info = info_for(tasks[1], 2, expires=at(10))
        on_time = approval_for(tasks[2], 3, expires=at(20))
        at_the_limit = info_for(tasks[3], 4, expires=at(15))
        for task, request in zip(tasks, [late, late_info, on_time, at_the_limit], strict=True):
            await parked(store, task, request)
        expired = await store.expire_requests(at(15))
        again = await store.expire_requests(at(15))
        requeued = {t.task_id: (await store.get_task_by_id(t.task_id)).state for t in tasks}
        pending = [await stored(store, on_time), await stored(store, at_the_limit)]
    assert again == []
    assert sorted(r.request.task_id for r in expired) == ["task_1", "task_2"]
    for resolution in expired:
        assert resolution.won and resolution.requeued is not None
        assert resolution.request.status == "timeOut"
        assert (resolution.request.resolved_at, resolution.request.resolved_by) == (at(15), None)
    assert requeued == {"task_1": TaskState.QUEUED, "task_2": TaskState.QUEUED,
                        "task_3": TaskState.WAITING, "task_4": TaskState.WAITING}
    assert pending == [on_time, at_the_limit]  # expires_at is not past at expires_at


async def test_store_expire_requests_skips_what_was_resolved(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1, expires=at(10))
        await parked(store, task, approval)
        await store.resolve(approval, "approved", by="ada", now=at(5))
        assert await store.expire_requests(at(60)) == []
        assert (await store.get_approval("appr_1")).status == "approved"


async def test_store_cancel_requests_of_a_task(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task, other = await running_task(store, 1), await running_task(store, 2)
        decided, pending_approval = approval_for(task, 1), approval_for(task, 3, call_id="c3")
        pending_info = info_for(task, 4)
        await parked(store, task, decided)
        await parked(store, other, info_for(other, 2))
        await store.resolve(decided, "rejected", detail="no", by="ada", now=at(1))
        await store._run(lambda db: db.execute(  # the task waits again, for two requests
            "UPDATE tasks SET state = 'waiting' WHERE task_id = 'task_1'"))
        await also_pending(store, pending_approval)
        await also_pending(store, pending_info)
        cancelled = await store.cancel_requests_of(task.task_id, at(30))
        again = await store.cancel_requests_of(task.task_id, at(31))
        others = await store.get_info_request("info_2")
        kept = await store.get_approval("appr_1")
    assert sorted((type(r).__name__, r.status) for r in cancelled) == [
        ("Approval", "cancelled"), ("InfoRequest", "cancelled")
    ]
    assert {r.resolved_at for r in cancelled} == {at(30)}
    assert again == []
    assert kept is not None and kept.status == "rejected"
    assert others is not None and others.status == PENDING


# -- finding requests ------------------------------------------------------------------------------


async def test_store_request_for_call_finds_the_request_of_a_tool_call(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        approval = approval_for(task, 1, call_id="call_1")
        await parked(store, task, approval)
        info = info_for(task, 2, call_id="call_2")
        await also_pending(store, info)
        assert await store.request_for_call(task.task_id, "call_1") == approval
        assert await store.request_for_call(task.task_id, "call_2") == info
        assert await store.request_for_call(task.task_id, "call_3") is None
        assert await store.request_for_call("task_nope", "call_1") is None


async def test_store_requests_round_trip(store: SqlStore) -> None:
    """Every field comes back as it went in: unicode, nested params, no options, an
    empty params object; unknown ids find nothing."""
    with trio.fail_after(CEILING):
        task = await running_task(store, 1)
        nested = {"text": "“quoted” é", "tags": ["a", {"b": None}], "n": 1.5}
        approval = approval_for(task, 1, params=nested)
        await parked(store, task, approval)
        empty = approval_for(task, 2, params={}, call_id="c2")
        free = info_for(task, 3, options=None)
        for request in (empty, free):
            await also_pending(store, request)
        assert await store.get_approval("appr_1") == approval
        assert await store.get_approval("appr_2") == empty
        assert await store.get_info_request("info_3") == free
        assert await store.get_approval("appr_nope") is None
        assert await store.get_info_request("info_nope") is None
        assert await store.get_approval("info_3") is None


async def test_store_list_approvals_for_a_user_or_the_tenant(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        tasks = {
            1: await running_task(store, 1, ADA),
            2: await running_task(store, 2, BOB),
            3: await running_task(store, 3, ADA),
            4: await running_task(store, 4, ADA_ELSEWHERE),
        }
        made = {n: approval_for(task, n, created=at(n)) for n, task in tasks.items()}
        for n, task in tasks.items():
            await parked(store, task, made[n])
        await store.resolve(made[3], "approved", by="ada", now=at(10))
        adas = await store.list_approvals("acme", "ada", None)
        adas_pending = await store.list_approvals("acme", "ada", PENDING)
        tenant = await store.list_approvals("acme", None, None)
        tenant_pending = await store.list_approvals("acme", None, PENDING)
        newest = await store.list_approvals("acme", None, None, limit=1)
        approved = await store.list_approvals("acme", None, "approved")
        elsewhere = await store.list_approvals("globex", None, None)
        nobody = await store.list_approvals("acme", "carol", None)
    ids = lambda requests: [r.approval_id for r in requests]  # noqa: E731
    assert ids(adas) == ["appr_3", "appr_1"]  # newest first
    assert ids(adas_pending) == ["appr_1"]
    assert ids(tenant) == ["appr_3", "appr_2", "appr_1"]
    assert ids(tenant_pending) == ["appr_2", "appr_1"]
    assert ids(newest) == ["appr_3"]
    assert ids(approved) == ["appr_3"] and approved[0].status == "approved"
    assert ids(elsewhere) == ["appr_4"]
    assert nobody == []


async def test_store_list_info_requests_for_a_user_or_the_tenant(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        tasks = {
            1: await running_task(store, 1, ADA),
            2: await running_task(store, 2, BOB),
            3: await running_task(store, 3, ADA_ELSEWHERE),
        }
        made = {n: info_for(task, n, created=at(n)) for n, task in tasks.items()}
        for n, task in tasks.items():
            await parked(store, task, made[n])
        await store.resolve(made[1], "answered", detail="call Ana", by="ada", now=at(10))
        adas = await store.list_info_requests("acme", "ada", None)
        tenant_pending = await store.list_info_requests("acme", None, PENDING)
        answered = await store.list_info_requests("acme", None, "answered")
        elsewhere = await store.list_info_requests("globex", "ada", None)
    assert [i.info_id for i in adas] == ["info_1"] and adas[0].response == "call Ana"
    assert [i.info_id for i in tenant_pending] == ["info_2"]
    assert [i.info_id for i in answered] == ["info_1"]
    assert [i.info_id for i in elsewhere] == ["info_3"]


# -- tasks and notes -------------------------------------------------------------------------------


async def test_store_list_tasks_by_state_newest_first(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        for n in range(1, 6):
            await accept(store, ADA, n, when=at(n))
        await accept(store, BOB, 9, session_id="sess_bob", when=at(9))
        running = await store.claim_task("node-a", at(10), LEASE)  # task_1
        assert running is not None and running.task_id == "task_1"
        claimed = await store.claim_task("node-a", at(10), LEASE)  # task_2, then parked
        await store.wait_for(claimed.task_id, "node-a", "[]", approval_for(claimed, 2))
        await store.request_cancel("task_3", "ada")
        every = await store.list_tasks(ADA)
        unfinished = await store.list_tasks(
            ADA, states=(TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING)
        )
        waiting = await store.list_tasks(ADA, states=(TaskState.WAITING,))
        two = await store.list_tasks(ADA, limit=2)
        before = await store.list_tasks(ADA, before="task_4")
        before_page = await store.list_tasks(ADA, before="task_4", limit=2)
        bobs = await store.list_tasks(BOB)
        nobody = await store.list_tasks(ADA_ELSEWHERE)
    ids = lambda tasks: [t.task_id for t in tasks]  # noqa: E731
    assert ids(every) == ["task_5", "task_4", "task_3", "task_2", "task_1"]
    assert ids(unfinished) == ["task_5", "task_4", "task_2", "task_1"]
    assert ids(waiting) == ["task_2"] and waiting[0].state is TaskState.WAITING
    assert ids(two) == ["task_5", "task_4"]
    assert ids(before) == ["task_3", "task_2", "task_1"]
    assert ids(before_page) == ["task_3", "task_2"]
    assert ids(bobs) == ["task_9"]
    assert nobody == []
    assert every[2].state is TaskState.CANCELLED


async def test_store_delete_note_by_id_or_text(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await store.add_note(Note("n3", ADA, "call Ana", at(3)))
        await store.add_note(Note("n1", ADA, "call Ana", at(1)))
        await store.add_note(Note("n2", ADA, "buy milk", at(2)))
        await store.add_note(Note("b1", BOB, "bob's", at(1)))
        await store.add_note(Note("g1", ADA_ELSEWHERE, "call Ana", at(0)))
        by_text = await store.delete_note(ADA, text="call Ana")
        by_id = await store.delete_note(ADA, note_id="n2")
        again = await store.delete_note(ADA, note_id="n2")
        not_exact = await store.delete_note(ADA, text="Call Ana")
        bobs = await store.delete_note(ADA, note_id="b1")
        bobs_text = await store.delete_note(ADA, text="bob's")
        left = [n.note_id for n in await store.list_notes(ADA)]
        bob_left = [n.note_id for n in await store.list_notes(BOB)]
        elsewhere = [n.note_id for n in await store.list_notes(ADA_ELSEWHERE)]
    assert by_text == Note("n1", ADA, "call Ana", at(1))  # the oldest with that text
    assert by_id == Note("n2", ADA, "buy milk", at(2))
    assert again is None and not_exact is None
    assert bobs is None and bobs_text is None
    assert left == ["n3"] and bob_left == ["b1"] and elsewhere == ["g1"]


async def test_store_two_requests_of_a_task_resolved_at_once_requeue_it(
    backend: Backend,
) -> None:
    """A task waits for two requests; two stores (two processes) resolve one each, at the
    same moment. Whichever commits last finds nothing pending and requeues the task: it
    must not be left waiting forever with nothing left to wait for."""
    first, second = await backend.open(), await backend.open()
    trials = 20
    with trio.fail_after(CEILING * 3):
        tasks = [await running_task(first, n) for n in range(1, trials + 1)]
        pairs = []
        for n, task in enumerate(tasks, start=1):
            approval, info = approval_for(task, n), info_for(task, n)
            await parked(first, task, approval)
            await also_pending(first, info)
            pairs.append((approval, info))
        for approval, info in pairs:
            go = trio.Event()

            async def resolve(store: SqlStore, request: Request, status: str,
                              go: trio.Event = go) -> None:
                await go.wait()
                await store.resolve(request, status, detail=None, by="ada", now=at(9))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(resolve, first, approval, "approved")
                nursery.start_soon(resolve, second, info, "timeOut")
                await trio.testing.wait_all_tasks_blocked()
                go.set()
        states = [(await first.get_task_by_id(t.task_id)).state for t in tasks]
    stuck = [t.task_id for t, state in zip(tasks, states, strict=True)
             if state is not TaskState.QUEUED]
    assert stuck == [], f"{len(stuck)} of {trials} tasks left waiting: {stuck}"
