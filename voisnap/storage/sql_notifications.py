"""The notification feed, insight cards and claims (issue 13; docs/hubs/notifications.md).

A notification is stored before it is sent, so a client that was away catches
up from the feed (``GET /notifications``): the rows of its tenant addressed to
its user, to the whole tenant, or to one of its roles, newest first. ``seq``
orders them (the order they were stored); a page ends at a notification id.

A claim is a row whose key only one process can insert (``ON CONFLICT DO
NOTHING``, which SQLite and PostgreSQL both spell so): the process that
inserts it does the claimed work (a day's ``LicenseWarning`` for a tenant),
every other one learns that it is done.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from .base import ROLE, TENANT, USER, Audience, Insight, Notification, Owner, Reader

NOTIFICATION_COLUMNS = (
    "notification_id, tenant_id, audience_kind, audience, event, payload, created_at"
)
INSIGHT_COLUMNS = "insight_id, tenant_id, user_id, title, body, created_at, dismissed_at"


class NotificationQueries:
    """The notifications half of ``SqlStore`` (it supplies ``_run`` and ``dialect``)."""

    dialect: Any
    _run: Callable[..., Any]

    # -- the feed ---------------------------------------------------------------------------------

    async def add_notification(self, notification: Notification) -> None:
        audience = notification.audience
        row = (
            notification.notification_id,
            notification.tenant_id,
            audience.kind,
            audience.name,
            notification.event,
            json.dumps(notification.payload),
            self.dialect.time_in(notification.created_at),
        )
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def list_notifications(
        self, reader: Reader, *, limit: int, before: str | None = None
    ) -> list[Notification] | None:
        def work(db: Any) -> list[Notification] | None:
            visible, parameters = _visible_to(reader)
            bound = ""
            if before is not None:
                cursor = db.execute(
                    f"SELECT seq FROM notifications WHERE notification_id = ? AND {visible}",
                    (before, *parameters),
                ).fetchone()
                if cursor is None:
                    return None
                bound, parameters = "AND seq < ?", [*parameters, cursor[0]]
            rows = db.execute(
                f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE {visible} {bound} "
                "ORDER BY seq DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
            return [self._notification(row) for row in rows]

        return await self._run(work)

    def _notification(self, row: tuple) -> Notification:
        return Notification(
            notification_id=row[0],
            tenant_id=row[1],
            audience=Audience(row[2], row[3]),
            event=row[4],
            payload=json.loads(row[5]),
            created_at=self.dialect.time_out(row[6]),
        )

    # -- insight cards ----------------------------------------------------------------------------

    async def add_insight(self, insight: Insight) -> None:
        time_in = self.dialect.time_in
        row = (
            insight.insight_id,
            insight.owner.tenant_id,
            insight.owner.user_id,
            insight.title,
            insight.body,
            time_in(insight.created_at),
            time_in(insight.dismissed_at),
        )
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO insights ({INSIGHT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row
            )
        )

    async def list_insights(self, owner: Owner) -> list[Insight]:
        def work(db: Any) -> list[Insight]:
            rows = db.execute(
                f"SELECT {INSIGHT_COLUMNS} FROM insights WHERE tenant_id = ? AND user_id = ? "
                "AND dismissed_at IS NULL ORDER BY created_at DESC, insight_id DESC",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [self._insight(row) for row in rows]

        return await self._run(work)

    async def dismiss_insight(
        self, owner: Owner, insight_id: str, now: datetime.datetime
    ) -> Insight | None:
        def work(db: Any) -> Insight | None:
            # Conditional on not being dismissed yet: of two dismissals at once,
            # one changes the row, and only that one announces it.
            changed = db.execute(
                "UPDATE insights SET dismissed_at = ? WHERE insight_id = ? AND tenant_id = ? "
                "AND user_id = ? AND dismissed_at IS NULL",
                (self.dialect.time_in(now), insight_id, owner.tenant_id, owner.user_id),
            ).rowcount
            if not changed:
                return None
            row = db.execute(
                f"SELECT {INSIGHT_COLUMNS} FROM insights WHERE insight_id = ?", (insight_id,)
            ).fetchone()
            return self._insight(row)

        return await self._run(work)

    def _insight(self, row: tuple) -> Insight:
        time_out = self.dialect.time_out
        return Insight(
            insight_id=row[0],
            owner=Owner(row[1], row[2]),
            title=row[3],
            body=row[4],
            created_at=time_out(row[5]),
            dismissed_at=time_out(row[6]),
        )

    # -- claims -----------------------------------------------------------------------------------

    async def claim(self, claim: str, node: str, now: datetime.datetime) -> bool:
        def work(db: Any) -> bool:
            return (
                db.execute(
                    "INSERT INTO claims (claim, node, claimed_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (claim) DO NOTHING",
                    (claim, node, self.dialect.time_in(now)),
                ).rowcount
                == 1
            )

        return await self._run(work)


def _visible_to(reader: Reader) -> tuple[str, list[Any]]:
    """The condition (and its parameters) for the rows ``reader`` may read: of its
    tenant, for its user, its whole tenant, or one of its roles."""
    audiences = ["audience_kind = ?", "(audience_kind = ? AND audience = ?)"]
    parameters: list[Any] = [reader.tenant_id, TENANT, USER, reader.user_id]
    roles = sorted(reader.roles)
    if roles:
        audiences.append(f"(audience_kind = ? AND audience IN ({', '.join('?' for _ in roles)}))")
        parameters += [ROLE, *roles]
    return f"tenant_id = ? AND ({' OR '.join(audiences)})", parameters
