"""Reminders (issue 14; docs/reminders.md): what a heartbeat tells a user, once.

A reminder is ``pending`` until its time; then the first heartbeat (of any
process) that finds it due *actions* it: one conditional update moves it from
``pending`` to ``actioned`` and, in the same transaction, the agent's message
is stored in the reminder's session. Of several processes that find the same
reminder due, exactly one changes the row (the others' updates match nothing),
so the message is stored and announced once. A cancelled reminder is no longer
``pending``, so no heartbeat can action it, and an actioned one cannot be
cancelled.

The heartbeat reads, for each user with something due (``due_owners``: the
index on ``(status, due_at)``), what is due for that user (``due_reminders``:
the index on ``(tenant_id, user_id, status, due_at)``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from .base import (
    PENDING,
    REMINDER_ACTIONED,
    REMINDER_CANCELLED,
    Message,
    Owner,
    Reminder,
)

REMINDER_COLUMNS = (
    "reminder_id, tenant_id, user_id, session_id, text, due_at, status, created_at, "
    "actioned_at, actioned_by, message_id"
)


class ReminderQueries:
    """The reminders part of ``SqlStore`` (it supplies ``_run``, ``dialect`` and
    ``_insert_message``)."""

    dialect: Any
    _run: Callable[..., Any]
    _insert_message: Callable[..., None]

    async def add_reminder(self, reminder: Reminder) -> None:
        time_in = self.dialect.time_in
        row = (
            reminder.reminder_id,
            reminder.owner.tenant_id,
            reminder.owner.user_id,
            reminder.session_id,
            reminder.text,
            time_in(reminder.due_at),
            reminder.status,
            time_in(reminder.created_at),
            time_in(reminder.actioned_at),
            reminder.actioned_by,
            reminder.message_id,
        )
        placeholders = ", ".join("?" for _ in row)
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO reminders ({REMINDER_COLUMNS}) VALUES ({placeholders})", row
            )
        )

    async def list_reminders(self, owner: Owner) -> list[Reminder]:
        def work(db: Any) -> list[Reminder]:
            rows = db.execute(
                f"SELECT {REMINDER_COLUMNS} FROM reminders WHERE tenant_id = ? AND user_id = ? "
                "AND status = ? ORDER BY due_at, reminder_id",
                (owner.tenant_id, owner.user_id, PENDING),
            ).fetchall()
            return [self._reminder(row) for row in rows]

        return await self._run(work)

    async def cancel_reminder(
        self,
        owner: Owner,
        now: datetime.datetime,
        *,
        reminder_id: str | None = None,
        text: str | None = None,
    ) -> Reminder | None:
        def work(db: Any) -> Reminder | None:
            if reminder_id is not None:
                condition, value = "reminder_id = ?", reminder_id
            else:
                condition, value = "LOWER(text) = LOWER(?)", (text or "").strip()
            row = db.execute(
                f"SELECT reminder_id FROM reminders WHERE tenant_id = ? AND user_id = ? "
                f"AND status = ? AND {condition} ORDER BY due_at LIMIT 1",
                (owner.tenant_id, owner.user_id, PENDING, value),
            ).fetchone()
            if row is None:
                return None
            # Conditional on still being pending: a heartbeat that actioned it
            # a moment ago wins, and the cancel finds nothing.
            changed = db.execute(
                "UPDATE reminders SET status = ?, actioned_at = ?, actioned_by = ? "
                "WHERE reminder_id = ? AND status = ?",
                (REMINDER_CANCELLED, self.dialect.time_in(now), owner.user_id, row[0], PENDING),
            ).rowcount
            return self._get_reminder(db, row[0]) if changed else None

        return await self._run(work)

    async def due_owners(self, now: datetime.datetime, *, limit: int) -> list[Owner]:
        def work(db: Any) -> list[Owner]:
            rows = db.execute(
                "SELECT DISTINCT tenant_id, user_id FROM reminders WHERE status = ? "
                "AND due_at <= ? ORDER BY tenant_id, user_id LIMIT ?",
                (PENDING, self.dialect.time_in(now), limit),
            ).fetchall()
            return [Owner(row[0], row[1]) for row in rows]

        return await self._run(work)

    async def due_reminders(
        self, owner: Owner, now: datetime.datetime, *, limit: int
    ) -> list[Reminder]:
        def work(db: Any) -> list[Reminder]:
            rows = db.execute(
                f"SELECT {REMINDER_COLUMNS} FROM reminders WHERE tenant_id = ? AND user_id = ? "
                "AND status = ? AND due_at <= ? ORDER BY due_at, reminder_id LIMIT ?",
                (owner.tenant_id, owner.user_id, PENDING, self.dialect.time_in(now), limit),
            ).fetchall()
            return [self._reminder(row) for row in rows]

        return await self._run(work)

    async def action_reminder(
        self, reminder_id: str, node: str, message: Message
    ) -> Reminder | None:
        def work(db: Any) -> Reminder | None:
            changed = db.execute(
                "UPDATE reminders SET status = ?, actioned_at = ?, actioned_by = ?, "
                "message_id = ? WHERE reminder_id = ? AND status = ?",
                (
                    REMINDER_ACTIONED,
                    self.dialect.time_in(message.created_at),
                    node,
                    message.message_id,
                    reminder_id,
                    PENDING,
                ),
            ).rowcount
            if not changed:
                return None  # another process actioned it, or its owner cancelled it
            self._insert_message(db, message)
            return self._get_reminder(db, reminder_id)

        return await self._run(work)

    def _get_reminder(self, db: Any, reminder_id: str) -> Reminder | None:
        row = db.execute(
            f"SELECT {REMINDER_COLUMNS} FROM reminders WHERE reminder_id = ?", (reminder_id,)
        ).fetchone()
        return None if row is None else self._reminder(row)

    def _reminder(self, row: tuple) -> Reminder:
        time_out = self.dialect.time_out
        return Reminder(
            reminder_id=row[0],
            owner=Owner(row[1], row[2]),
            session_id=row[3],
            text=row[4],
            due_at=time_out(row[5]),
            status=row[6],
            created_at=time_out(row[7]),
            actioned_at=time_out(row[8]),
            actioned_by=row[9],
            message_id=row[10],
        )
