"""Decisions: who may decide an approval or answer a question, and exactly once.

docs/hubs/approvals.md, "Who sees, who decides": the owner of the task's session, or a
user of the same tenant with the role ``admin``; anyone else (another user, another
tenant, even an admin there) gets the same "does not exist" error as for an unknown id,
so ids cannot be probed. A decision is one conditional update in the store: with two
``Decisions`` on two stores of one database (two processes) deciding at once, exactly
one wins and the other is told the outcome it lost to. An edit whose parameters do not
fit the tool's schema, an answer outside the options or an unknown outcome is refused
and leaves the request pending. Every resolution is announced
(``events.request_resolved``) and, once the task waits for nothing more, the task is
requeued and the workers woken (``requeued``).

Real stores (SQLite; the concurrency tests also PostgreSQL); records at fixed times,
requests that expire in an hour unless a test says otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.storage.backends import Backend, Database, postgres_database, sqlite_database
from tests.storage.records import ADA, BOB, CEILING, T0, accept
from voisnap.agents.decisions import Decider, DecisionError, Decisions
from voisnap.storage.base import (
    PENDING,
    Approval,
    InfoRequest,
    Owner,
    Request,
    Task,
    TaskState,
    utc_now,
)
from voisnap.storage.sql import SqlStore

BOTH = pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
HOUR = datetime.timedelta(hours=1)

OWNER = Decider("acme", "ada")
ADMIN = Decider("acme", "carol", frozenset({"admin"}))
OUTSIDERS = [
    Decider("acme", "bob"),
    Decider("acme", "bob", frozenset({"viewer"})),
    Decider("globex", "ada"),
    Decider("globex", "root", frozenset({"admin"})),
]
OUTSIDER_IDS = ["other-user", "other-user-not-admin", "same-name-other-tenant",
                "admin-of-another-tenant"]


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if getattr(request, "param", "sqlite") == "sqlite":
        return sqlite_database(tmp_path)
    return postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
async def backend(database: Database) -> AsyncIterator[Backend]:
    opened = Backend(database)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def store(backend: Backend) -> SqlStore:
    return await backend.open()


class Recorder:
    """The ``events`` and ``requeued`` of a Decisions: what it announced."""

    def __init__(self) -> None:
        self.resolved: list[Request] = []
        self.requeued: list[Task] = []

    async def request_resolved(self, request: Request) -> None:
        self.resolved.append(request)

    async def wake(self, task: Task) -> None:
        self.requeued.append(task)

    def decisions(self, store: SqlStore) -> Decisions:
        return Decisions(store, self, self.wake)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def waiting_task(store: SqlStore, n: int, owner: Owner = ADA) -> Task:
    """A task of ``owner`` (in its own session), claimed by node-a (make them before
    deciding anything: a requeued task would be claimed first)."""
    await accept(store, owner, n, session_id=f"sess_{owner.user_id}_{n}")
    claimed = await store.claim_task("node-a", utc_now(), utc_now() + HOUR)
    assert claimed is not None and claimed.task_id == f"task_{n}"
    return claimed


async def pending_approval(store: SqlStore, n: int, *, owner: Owner = ADA,
                           expires_in: datetime.timedelta = HOUR) -> Approval:
    """A delete_note call of task ``n`` that waits for a decision."""
    task = await waiting_task(store, n, owner)
    approval = Approval(
        approval_id=f"appr_{n}", task_id=task.task_id, session_id=task.session_id,
        owner=owner, agent_id="sophon", call_id="call_1", tool_name="delete_note",
        params={"text": "to call Ana"}, reason="The agent wants to run delete_note.",
        status=PENDING, created_at=T0, expires_at=utc_now() + expires_in,
    )
    assert await store.wait_for(task.task_id, "node-a", "[]", approval) is not None
    return approval


async def pending_question(store: SqlStore, n: int, *, owner: Owner = ADA,
                           options: tuple[str, ...] | None = ("call Ana", "buy milk"),
                           expires_in: datetime.timedelta = HOUR) -> InfoRequest:
    task = await waiting_task(store, n, owner)
    info = InfoRequest(
        info_id=f"info_{n}", task_id=task.task_id, session_id=task.session_id, owner=owner,
        agent_id="sophon", call_id="call_2", question="Which note should I delete?",
        options=options, status=PENDING, created_at=T0, expires_at=utc_now() + expires_in,
    )
    assert await store.wait_for(task.task_id, "node-a", "[]", info) is not None
    return info


async def assert_untouched(store: SqlStore, recorder: Recorder, request: Request) -> None:
    """Still pending, its task still waiting, nothing announced."""
    if isinstance(request, Approval):
        now = await store.get_approval(request.approval_id)
    else:
        now = await store.get_info_request(request.info_id)
    assert now == request
    task = await store.get_task_by_id(request.task_id)
    assert task is not None and task.state is TaskState.WAITING
    assert recorder.resolved == [] and recorder.requeued == []


# -- deciding --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decider", "outcome", "extra", "detail"),
    [
        (OWNER, "approved", {}, None),
        (ADMIN, "approved", {}, None),
        (OWNER, "rejected", {"reason": "not now"}, "not now"),
        (OWNER, "rejected", {}, None),
        (ADMIN, "edited", {"modified_params": {"noteId": "n7"}}, {"noteId": "n7"}),
    ],
    ids=["owner-approves", "admin-approves", "rejected-with-reason", "rejected-without",
         "admin-edits"],
)
async def test_decisions_decide_resolves_announces_and_requeues(
    store: SqlStore, recorder: Recorder, decider: Decider, outcome: str,
    extra: dict[str, Any], detail: Any,
) -> None:
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        decided = await recorder.decisions(store).decide(
            decider, approval.approval_id, outcome, **extra
        )
        stored = await store.get_approval(approval.approval_id)
        task = await store.get_task_by_id(approval.task_id)
    assert (decided.status, decided.outcome_detail, decided.resolved_by) == (
        outcome, detail, decider.user_id
    )
    assert decided.resolved_at is not None
    assert decided.params == approval.params  # the original parameters are kept
    assert stored == decided
    assert recorder.resolved == [decided]
    assert task is not None and task.state is TaskState.QUEUED
    assert recorder.requeued == [task]


@pytest.mark.parametrize("decider", OUTSIDERS, ids=OUTSIDER_IDS)
async def test_decisions_others_are_told_the_approval_does_not_exist(
    store: SqlStore, recorder: Recorder, decider: Decider
) -> None:
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        with pytest.raises(DecisionError) as refused:
            await decisions.decide(decider, approval.approval_id, "approved")
        with pytest.raises(DecisionError) as unknown:
            await decisions.decide(decider, "appr_nope", "approved")
        # An invalid edit or outcome tells nothing either: existence is checked first.
        with pytest.raises(DecisionError) as edit:
            await decisions.decide(decider, approval.approval_id, "edited", modified_params={})
        await assert_untouched(store, recorder, approval)
    assert str(refused.value) == "Approval 'appr_1' does not exist."
    assert str(unknown.value) == "Approval 'appr_nope' does not exist."
    assert str(edit.value) == str(refused.value)


@pytest.mark.parametrize("decider", OUTSIDERS, ids=OUTSIDER_IDS)
async def test_decisions_others_are_told_the_info_request_does_not_exist(
    store: SqlStore, recorder: Recorder, decider: Decider
) -> None:
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        info = await pending_question(store, 1)
        with pytest.raises(DecisionError) as refused:
            await decisions.answer(decider, info.info_id, "call Ana")
        with pytest.raises(DecisionError) as unknown:
            await decisions.answer(decider, "info_nope", "call Ana")
        await assert_untouched(store, recorder, info)
    assert str(refused.value) == "Info request 'info_1' does not exist."
    assert str(unknown.value) == "Info request 'info_nope' does not exist."


async def test_decisions_an_approval_is_not_an_info_request(
    store: SqlStore, recorder: Recorder
) -> None:
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        info = await pending_question(store, 2)
        with pytest.raises(DecisionError, match=r"^Info request 'appr_1' does not exist\.$"):
            await decisions.answer(OWNER, approval.approval_id, "yes")
        with pytest.raises(DecisionError, match=r"^Approval 'info_2' does not exist\.$"):
            await decisions.decide(OWNER, info.info_id, "approved")


@pytest.mark.parametrize("outcome", ["maybe", "timeOut", "cancelled", "answered", "pending"])
async def test_decisions_unknown_outcomes_are_refused(
    store: SqlStore, recorder: Recorder, outcome: str
) -> None:
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        with pytest.raises(DecisionError) as caught:
            await recorder.decisions(store).decide(OWNER, approval.approval_id, outcome)
        await assert_untouched(store, recorder, approval)
    assert str(caught.value) == "The outcome must be one of approved, rejected, edited."


@pytest.mark.parametrize(
    "params",
    [{}, {"noteId": "n1", "text": "x"}, {"text": ""}, {"text": 5}, {"path": "/"}, None, ["x"]],
    ids=["empty", "both", "empty-text", "text-not-string", "unknown-key", "none", "list"],
)
async def test_decisions_an_edit_that_does_not_fit_the_schema_stays_pending(
    store: SqlStore, recorder: Recorder, params: Any
) -> None:
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        with pytest.raises(DecisionError) as caught:
            await decisions.decide(OWNER, approval.approval_id, "edited", modified_params=params)
        await assert_untouched(store, recorder, approval)
        # ...and can still be decided.
        edited = await decisions.decide(OWNER, approval.approval_id, "edited",
                                        modified_params={"text": "buy milk"})
    assert str(caught.value).startswith("Invalid parameters for 'delete_note': ")
    assert (edited.status, edited.outcome_detail) == ("edited", {"text": "buy milk"})


async def test_decisions_a_second_decision_names_the_first(
    store: SqlStore, recorder: Recorder
) -> None:
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        first = await decisions.decide(OWNER, approval.approval_id, "rejected", reason="no")
        with pytest.raises(DecisionError) as again:
            await decisions.decide(ADMIN, approval.approval_id, "approved")
        stored = await store.get_approval(approval.approval_id)
    assert str(again.value) == "Approval 'appr_1' was already resolved: rejected."
    assert stored == first
    assert recorder.resolved == [first] and len(recorder.requeued) == 1


async def test_decisions_a_cancelled_request_cannot_be_decided(
    store: SqlStore, recorder: Recorder
) -> None:
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        approval = await pending_approval(store, 1)
        info = await pending_question(store, 2)
        for request in (approval, info):
            assert await store.request_cancel(request.task_id, "ada") is not None
            await store.cancel_requests_of(request.task_id, utc_now())
        with pytest.raises(DecisionError) as decided:
            await decisions.decide(OWNER, approval.approval_id, "approved")
        with pytest.raises(DecisionError) as answered:
            await decisions.answer(OWNER, info.info_id, "call Ana")
    assert str(decided.value) == "Approval 'appr_1' was already resolved: cancelled."
    assert str(answered.value) == "Info request 'info_2' was already resolved: cancelled."
    assert recorder.resolved == [] and recorder.requeued == []


# -- answering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("decider", [OWNER, ADMIN], ids=["owner", "admin"])
async def test_decisions_answer_one_of_the_options(
    store: SqlStore, recorder: Recorder, decider: Decider
) -> None:
    with trio.fail_after(CEILING):
        info = await pending_question(store, 1)
        answered = await recorder.decisions(store).answer(decider, info.info_id, "buy milk")
        stored = await store.get_info_request(info.info_id)
        task = await store.get_task_by_id(info.task_id)
    assert (answered.status, answered.response, answered.resolved_by) == (
        "answered", "buy milk", decider.user_id
    )
    assert stored == answered and recorder.resolved == [answered]
    assert task is not None and task.state is TaskState.QUEUED and recorder.requeued == [task]


@pytest.mark.parametrize("response", ["Buy milk", "buy milk ", "call", "something else"])
async def test_decisions_an_answer_outside_the_options_stays_pending(
    store: SqlStore, recorder: Recorder, response: str
) -> None:
    with trio.fail_after(CEILING):
        info = await pending_question(store, 1)
        with pytest.raises(DecisionError) as caught:
            await recorder.decisions(store).answer(OWNER, info.info_id, response)
        await assert_untouched(store, recorder, info)
    assert str(caught.value) == "The response must be one of 'call Ana', 'buy milk'."


@pytest.mark.parametrize("response", ["", 42, None, ["call Ana"], "x" * 4001],
                         ids=["empty", "number", "none", "list", "too-long"])
async def test_decisions_an_answer_must_be_a_short_text(
    store: SqlStore, recorder: Recorder, response: Any
) -> None:
    with trio.fail_after(CEILING):
        info = await pending_question(store, 1, options=None)
        with pytest.raises(DecisionError) as caught:
            await recorder.decisions(store).answer(OWNER, info.info_id, response)
        await assert_untouched(store, recorder, info)
    assert str(caught.value) == "The response must be a text of 1 to 4000 characters."


async def test_decisions_a_free_question_takes_any_text(
    store: SqlStore, recorder: Recorder
) -> None:
    with trio.fail_after(CEILING):
        info = await pending_question(store, 1, options=None)
        answered = await recorder.decisions(store).answer(OWNER, info.info_id, "é" * 4000)
    assert (answered.status, answered.response) == ("answered", "é" * 4000)


# -- expiry ----------------------------------------------------------------------------------------


async def test_decisions_expire_times_out_what_nobody_resolved(
    store: SqlStore, recorder: Recorder
) -> None:
    decisions = recorder.decisions(store)
    past = -datetime.timedelta(seconds=1)
    with trio.fail_after(CEILING):
        late_approval = await pending_approval(store, 1, expires_in=past)
        late_info = await pending_question(store, 2, expires_in=past)
        fresh = await pending_approval(store, 3)
        await decisions.expire()
        await decisions.expire()  # once only
        stored_fresh = await store.get_approval(fresh.approval_id)
        with pytest.raises(DecisionError) as late:
            await decisions.decide(OWNER, late_approval.approval_id, "approved")
    timed_out = {r.task_id: r for r in recorder.resolved}
    assert set(timed_out) == {"task_1", "task_2"}
    assert (timed_out["task_1"].status, timed_out["task_1"].resolved_by) == ("timeOut", None)
    assert (timed_out["task_2"].status, timed_out["task_2"].response) == ("timeOut", None)
    assert timed_out["task_2"].info_id == late_info.info_id
    assert sorted(t.task_id for t in recorder.requeued) == ["task_1", "task_2"]
    assert all(t.state is TaskState.QUEUED for t in recorder.requeued)
    assert stored_fresh == fresh
    assert str(late.value) == "Approval 'appr_1' was already resolved: timeOut."


# -- two processes at once -------------------------------------------------------------------------


async def decide_at_once(backend: Backend, request: Request, attempts: list[Any],
                         recorder: Recorder) -> list[Any]:
    """Each of ``attempts`` (a Decisions method's name and arguments) on its own
    Decisions and its own store, all released at the same moment; each one's
    result or DecisionError."""
    stores = [await backend.open() for _ in attempts]
    go = trio.Event()
    outcomes: list[Any] = [None] * len(attempts)

    async def attempt(index: int, method: str, *arguments: Any) -> None:
        decisions = recorder.decisions(stores[index])
        await go.wait()
        try:
            outcomes[index] = await getattr(decisions, method)(OWNER, *arguments)
        except DecisionError as error:
            outcomes[index] = error

    async with trio.open_nursery() as nursery:
        for index, (method, *arguments) in enumerate(attempts):
            nursery.start_soon(attempt, index, method, *arguments)
        await trio.testing.wait_all_tasks_blocked()
        go.set()
    return outcomes


@BOTH
async def test_decisions_two_processes_decide_at_once_one_wins(
    backend: Backend, store: SqlStore, recorder: Recorder
) -> None:
    """Two Decisions on two stores decide each approval at the same moment, one
    approving, the other rejecting: exactly one wins; the loser is told what the
    approval was decided as; it is announced and requeued once."""
    with trio.fail_after(CEILING * 2):
        approvals = [await pending_approval(store, n) for n in range(1, 6)]
        for approval in approvals:
            recorder.resolved.clear()
            recorder.requeued.clear()
            outcomes = await decide_at_once(backend, approval, [
                ("decide", approval.approval_id, "approved"),
                ("decide", approval.approval_id, "rejected"),
            ], recorder)
            winners = [o for o in outcomes if isinstance(o, Approval)]
            losers = [o for o in outcomes if isinstance(o, DecisionError)]
            assert len(winners) == 1 and len(losers) == 1, outcomes
            [winner], [loser] = winners, losers
            stored = await store.get_approval(approval.approval_id)
            assert stored == winner
            assert str(loser) == (
                f"Approval '{approval.approval_id}' was already resolved: {winner.status}."
            )
            assert recorder.resolved == [winner]
            assert [t.task_id for t in recorder.requeued] == [approval.task_id]


@BOTH
async def test_decisions_two_processes_answer_at_once_one_wins(
    backend: Backend, store: SqlStore, recorder: Recorder
) -> None:
    with trio.fail_after(CEILING * 2):
        infos = [await pending_question(store, n) for n in range(1, 4)]
        for info in infos:
            recorder.resolved.clear()
            recorder.requeued.clear()
            outcomes = await decide_at_once(backend, info, [
                ("answer", info.info_id, "call Ana"),
                ("answer", info.info_id, "buy milk"),
            ], recorder)
            winners = [o for o in outcomes if isinstance(o, InfoRequest)]
            losers = [o for o in outcomes if isinstance(o, DecisionError)]
            assert len(winners) == 1 and len(losers) == 1, outcomes
            assert str(losers[0]) == (
                f"Info request '{info.info_id}' was already resolved: answered."
            )
            assert await store.get_info_request(info.info_id) == winners[0]
            assert recorder.resolved == winners and len(recorder.requeued) == 1


async def test_decisions_of_another_owner_in_the_same_tenant_by_an_admin(
    store: SqlStore, recorder: Recorder
) -> None:
    """Bob's approval: bob decides it; ada (no admin) cannot; carol (admin) can."""
    decisions = recorder.decisions(store)
    with trio.fail_after(CEILING):
        bobs = await pending_approval(store, 1, owner=BOB)
        other = await pending_approval(store, 2, owner=BOB)
        with pytest.raises(DecisionError, match=r"^Approval 'appr_1' does not exist\.$"):
            await decisions.decide(OWNER, bobs.approval_id, "approved")
        decided = await decisions.decide(Decider("acme", "bob"), bobs.approval_id, "approved")
        by_admin = await decisions.decide(ADMIN, other.approval_id, "rejected", reason="policy")
    assert decided.resolved_by == "bob"
    assert (by_admin.status, by_admin.resolved_by) == ("rejected", "carol")
