"""Heartbeat runs (docs/reminders.md, "Heartbeat runs") on a real SQLite store and stepped clock.

- a run actions what is due, and only that: the message is stored in the reminder's session,
  then announced to the session and told to every device of the user;
- a run that finds nothing due sends nothing; a cancelled reminder is never actioned;
- two heartbeats (two processes) on one database action each reminder once;
- the heartbeat runs at start, then every interval of the clock, and survives a store error;
- on a real chat hub endpoint, the session's device receives ``ReceiveMessage`` and the
  ``SessionNotification``; a device of the user joined to another session only the latter;
  another user nothing (``fenced``: a round trip proves what was not received).
"""

from __future__ import annotations

import datetime
from typing import Any

import trio
import trio.testing

from tests.notifications.conftest import SteppedClock
from tests.notifications.test_delivery import fenced
from tests.support.fakes import connect, make_endpoint
from voisnap.agents.reminder_tools import ReminderTools
from voisnap.apps.chat import ChatEvents, ChatHub, ChatServices
from voisnap.apps.reminders import HEARTBEAT_ACTIONED, Heartbeat
from voisnap.principal import Principal
from voisnap.storage.base import Message, Owner, StoreError
from voisnap.storage.sqlite import SqliteStore

from .conftest import ADA, BOB, CEILING, SESSION, START

INTERVAL = 60.0


class RecordingAnnouncer:
    """An announcer that writes down what it was asked to announce."""

    def __init__(self) -> None:
        self.posted_messages: list[Message] = []
        self.activity: list[tuple[Any, ...]] = []

    async def posted(self, message: Message) -> None:
        self.posted_messages.append(message)

    async def session_activity(self, *arguments: Any) -> None:
        self.activity.append(arguments)


def later(seconds: float) -> datetime.datetime:
    return START + datetime.timedelta(seconds=seconds)


async def remind(
    store: SqliteStore,
    clock: SteppedClock,
    owner: Owner,
    text: str,
    seconds: int,
    session_id: str = SESSION,
) -> str:
    tools = ReminderTools(store, clock=clock)
    reminder = await tools.set_reminder(owner, session_id, text, inSeconds=seconds)
    return reminder["reminderId"]


def heartbeat(
    store: SqliteStore, clock: SteppedClock, node: str = "node-a"
) -> tuple[Heartbeat, RecordingAnnouncer]:
    announcer = RecordingAnnouncer()
    return Heartbeat(store, announcer, node, INTERVAL, clock), announcer


async def test_heartbeat_actions_what_is_due_and_only_that(
    store: SqliteStore, clock: SteppedClock
) -> None:
    with trio.fail_after(CEILING):
        due = await remind(store, clock, ADA, "stretch", 10)
        bobs = await remind(store, clock, BOB, "water the plants", 20, "sess_bob")
        not_yet = await remind(store, clock, ADA, "call Ana", 120)
        beat, announcer = heartbeat(store, clock)
        clock.advance_to(later(30))
        actioned = await beat.beat()
    assert sorted(r.reminder_id for r in actioned) == sorted([due, bobs])
    assert {(r.status, r.actioned_by) for r in actioned} == {("actioned", "node-a")}
    assert [(m.session_id, m.role, m.content) for m in announcer.posted_messages] == [
        (SESSION, "assistant", "Reminder: stretch"),
        ("sess_bob", "assistant", "Reminder: water the plants"),
    ]
    assert announcer.activity == [
        (ADA, SESSION, HEARTBEAT_ACTIONED, due, True, "Reminder: stretch"),
        (BOB, "sess_bob", HEARTBEAT_ACTIONED, bobs, True, "Reminder: water the plants"),
    ]
    # Stored before announced, in the session, with the message id on the reminder.
    [stored] = [
        m
        for m in await store.list_messages(ADA, SESSION, limit=50, before=None)
        if m.role == "assistant"
    ]
    assert stored == announcer.posted_messages[0]
    assert actioned[0].message_id == stored.message_id
    assert [r.reminder_id for r in await store.list_reminders(ADA)] == [not_yet]


async def test_heartbeat_that_finds_nothing_due_sends_nothing(
    store: SqliteStore, clock: SteppedClock
) -> None:
    with trio.fail_after(CEILING):
        await remind(store, clock, ADA, "stretch", 10)
        beat, announcer = heartbeat(store, clock)
        clock.advance_to(later(9))
        assert await beat.beat() == []
        clock.advance_to(later(10))  # due exactly now: actioned
        assert len(await beat.beat()) == 1
        assert await beat.beat() == []  # actioned already: not again
    assert len(announcer.posted_messages) == len(announcer.activity) == 1


async def test_heartbeat_never_actions_a_cancelled_reminder(
    store: SqliteStore, clock: SteppedClock
) -> None:
    with trio.fail_after(CEILING):
        reminder_id = await remind(store, clock, ADA, "stretch", 10)
        assert await store.cancel_reminder(ADA, later(1), reminder_id=reminder_id) is not None
        beat, announcer = heartbeat(store, clock)
        clock.advance_to(later(3600))
        assert await beat.beat() == []
        # And once actioned, it cannot be cancelled.
        other = await remind(store, clock, ADA, "call Ana", 1)
        clock.advance_to(later(3602))
        assert len(await beat.beat()) == 1
        assert await store.cancel_reminder(ADA, later(3603), reminder_id=other) is None
    assert [m.content for m in announcer.posted_messages] == ["Reminder: call Ana"]


async def test_heartbeat_two_heartbeats_on_one_database_action_each_reminder_once(
    store: SqliteStore, clock: SteppedClock, tmp_path: Any
) -> None:
    other_store = SqliteStore(tmp_path / "voisnap.db")  # another process's connection
    with trio.fail_after(CEILING):
        await other_store.open()
        try:
            ids = [await remind(store, clock, ADA, f"r{n}", 5) for n in range(20)]
            first, heard_first = heartbeat(store, clock, "node-a")
            second, heard_second = heartbeat(other_store, clock, "node-b")
            clock.advance_to(later(10))
            results: dict[str, list[Any]] = {}
            async with trio.open_nursery() as nursery:
                for name, beat in (("a", first), ("b", second)):
                    nursery.start_soon(_collect, results, name, beat)
        finally:
            await other_store.aclose()
    actioned = [r.reminder_id for found in results.values() for r in found]
    assert sorted(actioned) == sorted(ids)  # every one, each once
    posted = heard_first.posted_messages + heard_second.posted_messages
    assert sorted(m.content for m in posted) == sorted(f"Reminder: r{n}" for n in range(20))
    assistant = [
        m
        for m in await store.list_messages(ADA, SESSION, limit=100, before=None)
        if m.role == "assistant"
    ]
    assert len(assistant) == 20


async def _collect(results: dict[str, list[Any]], name: str, beat: Heartbeat) -> None:
    results[name] = await beat.beat()


async def test_heartbeat_runs_at_start_then_every_interval(
    store: SqliteStore, clock: SteppedClock
) -> None:
    with trio.fail_after(CEILING):
        due_now = await remind(store, clock, ADA, "at start", 1)
        clock.advance_to(later(1))
        beat, announcer = heartbeat(store, clock)
        async with trio.open_nursery() as nursery:
            await nursery.start(beat.run)
            await clock.wait_asleep(1)  # the first run is done: it waits for the next
            assert [a[3] for a in announcer.activity] == [due_now]
            next_one = await remind(store, clock, ADA, "next beat", 30)
            clock.advance_to(later(1 + INTERVAL - 1))  # not a beat yet
            await trio.testing.wait_all_tasks_blocked()
            assert len(announcer.activity) == 1
            clock.advance_to(later(1 + INTERVAL))
            await clock.wait_asleep(1)
            assert [a[3] for a in announcer.activity] == [due_now, next_one]
            nursery.cancel_scope.cancel()


class FailingStore:
    """A store whose database is down for the first ``failures`` calls."""

    def __init__(self, store: SqliteStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def due_owners(self, now: datetime.datetime, *, limit: int) -> list[Owner]:
        if self.failures:
            self.failures -= 1
            raise StoreError("The database is not answering.")
        return await self._store.due_owners(now, limit=limit)


async def test_heartbeat_a_store_error_is_logged_and_the_next_beat_tries_again(
    store: SqliteStore, clock: SteppedClock, caplog: Any
) -> None:
    with trio.fail_after(CEILING):
        reminder_id = await remind(store, clock, ADA, "stretch", 1)
        announcer = RecordingAnnouncer()
        beat = Heartbeat(FailingStore(store, 1), announcer, "node-a", INTERVAL, clock)  # type: ignore[arg-type]
        clock.advance_to(later(1))
        async with trio.open_nursery() as nursery:
            await nursery.start(beat.run)
            await clock.wait_asleep(1)
            assert announcer.activity == []
            clock.advance_to(later(1 + INTERVAL))
            await clock.wait_asleep(1)
            nursery.cancel_scope.cancel()
    assert [a[3] for a in announcer.activity] == [reminder_id]
    assert "cannot look for due reminders: The database is not answering." in caplog.text


# -- on a real chat hub endpoint ------------------------------------------------------------------

ADA_DEVICE = Principal("ada", "acme")
BOB_DEVICE = Principal("bob", "acme")


async def test_heartbeat_the_session_gets_the_message_every_device_the_notification(
    store: SqliteStore, clock: SteppedClock
) -> None:
    endpoint = make_endpoint(ChatHub)
    events = ChatEvents(endpoint.router)
    endpoint.services = ChatServices(store=store, agents=None, runtime=None, events=events)  # type: ignore[arg-type]
    beat = Heartbeat(store, events, "node-a", INTERVAL, clock)
    with trio.fail_after(CEILING):
        async with (
            connect(endpoint, principal=ADA_DEVICE) as joined,
            connect(endpoint, principal=ADA_DEVICE) as elsewhere,
            connect(endpoint, principal=BOB_DEVICE) as bob,
        ):
            await joined.invoke("JoinSession", SESSION)
            await elsewhere.invoke("JoinSession", "sess_2")
            for client in (joined, elsewhere, bob):
                await fenced(client)
            reminder_id = await remind(store, clock, ADA, "stretch", 1)
            clock.advance_to(later(1))
            [actioned] = await beat.beat()
            got_joined, got_elsewhere, got_bob = [await fenced(c) for c in (joined, elsewhere, bob)]
    assert [target for target, _ in got_joined] == ["ReceiveMessage", "SessionNotification"]
    message = got_joined[0][1]
    assert message == {
        "messageId": actioned.message_id,
        "sessionId": SESSION,
        "role": "assistant",
        "content": "Reminder: stretch",
        "toolCalls": None,
    }
    notification = got_joined[1][1]
    assert notification == got_elsewhere[0][1]
    assert {k: v for k, v in notification.items() if k != "timestamp"} == {
        "sessionId": SESSION,
        "kind": "heartbeatActioned",
        "refId": reminder_id,
        "success": True,
        "excerpt": "Reminder: stretch",
    }
    assert [target for target, _ in got_elsewhere] == ["SessionNotification"]
    assert got_bob == []
