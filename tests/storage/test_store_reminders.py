"""Reminders: the store's half of issue 14's heartbeat runs (``storage.sql_reminders``).

Every test runs on SQLite and on a real PostgreSQL (``conftest``). What is checked is what
the heartbeat and the reminder tools rely on: a reminder is its owner's only; pending ones
are listed soonest first; due ones are found per user, only users with something due; a
reminder is actioned at most once, with its message stored in its session in the same
transaction, also when several stores (processes) action it at once; a cancelled one is
never actioned, an actioned one never cancelled.

Times are fixed (``records.at``). No test sleeps.
"""

from __future__ import annotations

import trio

from voisnap.storage.base import Message, Owner, Reminder
from voisnap.storage.sql import SqlStore

from .backends import Backend
from .records import ADA, ADA_ELSEWHERE, BOB, accept, at


def reminder(
    n: int, owner: Owner, due: float, text: str | None = None, session_id: str = "sess_1"
) -> Reminder:
    return Reminder(f"rem_{n}", owner, session_id, text or f"reminder {n}", at(due), at(0))


def message(n: int, owner: Owner = ADA, session_id: str = "sess_1", when: float = 100) -> Message:
    return Message(f"msg_rem_{n}", session_id, owner, "assistant", f"Reminder: {n}", at(when))


async def stored(store: SqlStore) -> None:
    """Sessions for Ada, Bob and Ada of another tenant, and reminders due at 10 ... 60."""
    await accept(store, ADA, "a", session_id="sess_1")
    await accept(store, BOB, "b", session_id="sess_b")
    await accept(store, ADA_ELSEWHERE, "c", session_id="sess_c")
    for n, owner, due, session_id in (
        (1, ADA, 30, "sess_1"),
        (2, ADA, 10, "sess_1"),
        (3, BOB, 20, "sess_b"),
        (4, ADA_ELSEWHERE, 40, "sess_c"),
        (5, ADA, 60, "sess_1"),
    ):
        await store.add_reminder(reminder(n, owner, due, session_id=session_id))


async def test_store_reminders_are_their_owners_pending_soonest_first(store: SqlStore) -> None:
    await stored(store)
    assert [r.reminder_id for r in await store.list_reminders(ADA)] == ["rem_2", "rem_1", "rem_5"]
    assert [r.reminder_id for r in await store.list_reminders(BOB)] == ["rem_3"]
    assert [r.reminder_id for r in await store.list_reminders(ADA_ELSEWHERE)] == ["rem_4"]
    [first] = [r for r in await store.list_reminders(ADA) if r.reminder_id == "rem_2"]
    assert first == reminder(2, ADA, 10)  # every field read back as written


async def test_store_reminders_due_per_user_only_users_with_something_due(
    store: SqlStore,
) -> None:
    await stored(store)
    assert await store.due_owners(at(5), limit=10) == []
    assert await store.due_owners(at(20), limit=10) == [ADA, BOB]  # due at 20 is due at 20
    assert set(await store.due_owners(at(40), limit=10)) == {ADA, BOB, ADA_ELSEWHERE}
    assert len(await store.due_owners(at(40), limit=2)) == 2
    due = await store.due_reminders(ADA, at(30), limit=10)
    assert [r.reminder_id for r in due] == ["rem_2", "rem_1"]
    assert [r.reminder_id for r in await store.due_reminders(ADA, at(30), limit=1)] == ["rem_2"]
    assert await store.due_reminders(ADA_ELSEWHERE, at(30), limit=10) == []


async def test_store_reminders_action_once_with_the_message_stored(store: SqlStore) -> None:
    await stored(store)
    actioned = await store.action_reminder("rem_2", "node-a", message(2))
    assert actioned is not None
    assert (actioned.status, actioned.actioned_by, actioned.actioned_at, actioned.message_id) == (
        "actioned",
        "node-a",
        at(100),
        "msg_rem_2",
    )
    assert await store.action_reminder("rem_2", "node-b", message(22)) is None
    assistant = [
        m
        for m in await store.list_messages(ADA, "sess_1", limit=50, before=None)
        if m.role == "assistant"
    ]
    assert assistant == [message(2)]  # the loser stored nothing
    assert [r.reminder_id for r in await store.due_reminders(ADA, at(100), limit=10)] == [
        "rem_1",
        "rem_5",
    ]
    assert await store.action_reminder("rem_unknown", "node-a", message(9)) is None


async def test_store_reminders_cancel_by_id_or_text_of_the_owner_only(store: SqlStore) -> None:
    await stored(store)
    await store.add_reminder(reminder(6, ADA, 50, text="Call Ana"))
    await store.add_reminder(reminder(7, ADA, 45, text="call ana"))
    assert await store.cancel_reminder(BOB, at(1), reminder_id="rem_2") is None
    assert await store.cancel_reminder(ADA_ELSEWHERE, at(1), reminder_id="rem_2") is None
    cancelled = await store.cancel_reminder(ADA, at(1), reminder_id="rem_2")
    assert cancelled is not None
    assert (cancelled.status, cancelled.actioned_at, cancelled.actioned_by) == (
        "cancelled",
        at(1),
        "ada",
    )
    assert await store.cancel_reminder(ADA, at(2), reminder_id="rem_2") is None
    by_text = await store.cancel_reminder(ADA, at(3), text=" CALL ANA ")
    assert by_text is not None and by_text.reminder_id == "rem_7"  # the soonest of the two
    assert await store.cancel_reminder(ADA, at(3), text="nothing like it") is None
    # Cancelled: never due, never actioned.
    assert "rem_2" not in [r.reminder_id for r in await store.due_reminders(ADA, at(99), limit=9)]
    assert await store.action_reminder("rem_2", "node-a", message(2)) is None
    # Actioned: never cancelled.
    assert await store.action_reminder("rem_1", "node-a", message(1)) is not None
    assert await store.cancel_reminder(ADA, at(200), reminder_id="rem_1") is None


async def test_store_reminders_actioned_at_once_by_several_stores_have_one_winner(
    backend: Backend,
) -> None:
    """Several processes (a store each, on one database) find the same reminders due."""
    stores = [await backend.open() for _ in range(4)]
    await stored(stores[0])
    won: dict[str, list[str]] = {}

    async def action(store: SqlStore, node: str, reminder_id: str) -> None:
        if await store.action_reminder(reminder_id, node, message(hash((node, reminder_id)))):
            won.setdefault(reminder_id, []).append(node)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for index, store in enumerate(stores):
                for reminder_id in ("rem_1", "rem_2", "rem_5"):
                    nursery.start_soon(action, store, f"node-{index}", reminder_id)
    assert sorted(won) == ["rem_1", "rem_2", "rem_5"]
    assert all(len(nodes) == 1 for nodes in won.values()), won
    assistant = [
        m
        for m in await stores[0].list_messages(ADA, "sess_1", limit=50, before=None)
        if m.role == "assistant"
    ]
    assert len(assistant) == 3
