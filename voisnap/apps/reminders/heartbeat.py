"""Heartbeat runs (docs/reminders.md, "Heartbeat runs"): due reminders, actioned once.

Every ``--heartbeat-interval`` seconds (and once at start, for what came due
while the server was down) a heartbeat run looks at the users who have a due
reminder, and only at them; for each, at what is due; and actions each
reminder:

1. it claims the reminder and stores the agent's message in the reminder's
   session, in one transaction (``Store.action_reminder``). With several
   processes, each heartbeat may find the same reminder due; the claim is a
   conditional update that only one of them wins, and only the winner goes on;
2. it announces the message to the session's devices (``ReceiveMessage``,
   as a task's reply is announced), then tells every device of the user
   (``SessionNotification`` of kind ``heartbeatActioned``), joined to the
   session or not. Stored before announced: a device that misses both catches
   up over REST.

The message is made by rule (``Reminder: <text>``), not by a model: a reminder
says what the user asked to be reminded of, and costs no model call.

A run that finds nothing due sends nothing. A cancelled reminder is no longer
pending, so no run finds or claims it. Each user's run has its own error
boundary, and the database being down is logged and tried again at the next
beat: one bad reminder or an outage never stops the heartbeat.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Protocol

import trio

from ...clock import Clock, SystemClock
from ...failures import error_boundary
from ...storage.base import Message, Owner, Reminder, ReminderStore, StoreError

log = logging.getLogger(__name__)

HEARTBEAT_ACTIONED = "heartbeatActioned"
USERS_PER_RUN = 100  # the rest wait for the next beat, which comes soon
REMINDERS_PER_USER = 100


class Announcer(Protocol):
    """Who hears of an actioned reminder (``apps.chat.ChatEvents``)."""

    async def posted(self, message: Message) -> None: ...

    async def session_activity(
        self,
        owner: Owner,
        session_id: str,
        kind: str,
        ref_id: str,
        success: bool | None,
        text: str | None,
    ) -> None: ...


def reminder_message(reminder: Reminder) -> str:
    return f"Reminder: {reminder.text}"


class Heartbeat:
    def __init__(
        self,
        store: ReminderStore,
        announcer: Announcer,
        node: str,
        interval: float,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._announcer = announcer
        self._node = node
        self._interval = datetime.timedelta(seconds=interval)
        self._clock = clock or SystemClock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A heartbeat run now, then one every interval, for as long as the server runs."""
        task_status.started()
        while True:
            with error_boundary(log, "a heartbeat run"):
                await self.beat()
            await self._clock.sleep_until(self._clock.now() + self._interval)

    async def beat(self) -> list[Reminder]:
        """One heartbeat run; the reminders this process actioned."""
        now = self._clock.now()
        try:
            owners = await self._store.due_owners(now, limit=USERS_PER_RUN)
        except StoreError as error:  # the database is down: not a bug, and not for ever
            log.warning("heartbeat: cannot look for due reminders: %s", error)
            return []
        actioned: list[Reminder] = []
        for owner in owners:
            # One user's failure must not hold up the others' reminders.
            with error_boundary(log, f"the heartbeat run for user {owner.user_id}"):
                actioned += await self._run_for(owner, now)
        return actioned

    async def _run_for(self, owner: Owner, now: datetime.datetime) -> list[Reminder]:
        try:
            due = await self._store.due_reminders(owner, now, limit=REMINDERS_PER_USER)
        except StoreError as error:
            log.warning("heartbeat: cannot read the due reminders of %s: %s", owner.user_id, error)
            return []
        actioned = []
        for reminder in due:
            done = await self._action(reminder, now)
            if done is not None:
                actioned.append(done)
        return actioned

    async def _action(self, reminder: Reminder, now: datetime.datetime) -> Reminder | None:
        """Claim ``reminder`` with its message; if this process won, announce it."""
        message = Message(
            message_id=f"msg_{uuid.uuid4().hex}",
            session_id=reminder.session_id,
            owner=reminder.owner,
            role="assistant",
            content=reminder_message(reminder),
            created_at=now,
        )
        try:
            actioned = await self._store.action_reminder(reminder.reminder_id, self._node, message)
        except StoreError as error:
            log.warning("heartbeat: reminder %s not actioned: %s", reminder.reminder_id, error)
            return None
        if actioned is None:
            return None  # another process actioned it, or its owner cancelled it just now
        await self._announcer.posted(message)
        await self._announcer.session_activity(
            reminder.owner,
            reminder.session_id,
            HEARTBEAT_ACTIONED,
            reminder.reminder_id,
            True,
            message.content,
        )
        return actioned
