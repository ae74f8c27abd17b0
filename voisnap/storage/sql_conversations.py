"""Voisnap conversations and the links that hold them (docs/hubs/voisnap.md, "Sessions").

A conversation is held by the connections using it: one ``conversation_links``
row each, renewed by its process (``renew_conversation_links``) and deleted
when the connection ends. The per-tenant limit counts the conversations with a
live link, across every process; a process that dies leaves links that lapse.

Starting or resuming takes the tenant's row in ``conversation_tenants`` first
(``FOR UPDATE`` in PostgreSQL; SQLite's transactions take the write lock at
the start), so two processes admitting the tenant's last place at once are
served one after the other: the count never overshoots the limit.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from .base import Conversation, ConversationLink, Owner, Refusal, Session

COLUMNS = (
    "session_id, tenant_id, user_id, agent_id, hub, metadata, language, started_at, left_at, "
    "ended_at, end_reason"
)
LINK_COLUMNS = "connection_id, session_id, tenant_id, node, live_until"
TITLES = {"chat": "Chat", "voice": "Call"}


class ConversationQueries:
    """The Voisnap part of ``SqlStore`` (it supplies ``_run``, ``dialect`` and ``_for_update``)."""

    dialect: Any
    _run: Callable[..., Any]
    _for_update: Callable[[], str]
    _insert_session: Callable[[Any, Session], bool]

    async def start_conversation(
        self, conversation: Conversation, link: ConversationLink, *, limit: int
    ) -> Refusal | None:
        time_in = self.dialect.time_in
        row = (
            conversation.session_id,
            conversation.owner.tenant_id,
            conversation.owner.user_id,
            conversation.agent_id,
            conversation.hub,
            None if conversation.metadata is None else json.dumps(conversation.metadata),
            conversation.language,
            time_in(conversation.started_at),
            None,
            None,
            None,
        )

        def work(db: Any) -> Refusal | None:
            now = conversation.started_at
            if self._held_elsewhere(db, link.tenant_id, now) >= limit:
                return Refusal.LIMIT
            db.execute(f"INSERT INTO conversations ({COLUMNS}) VALUES ({_marks(11)})", row)
            # A session of the store from the start: GET /sessions lists it at once.
            title = TITLES.get(conversation.hub, "Conversation") + f" with {conversation.agent_id}"
            self._insert_session(db, Session(conversation.session_id, conversation.owner, title,
                                             now, now))
            self._hold(db, link)
            return None

        return await self._run(work)

    async def resume_conversation(
        self,
        owner: Owner,
        session_id: str,
        link: ConversationLink,
        *,
        limit: int,
        now: datetime.datetime,
        left_after: datetime.datetime,
    ) -> Conversation | Refusal:
        def work(db: Any) -> Conversation | Refusal:
            held = self._held_elsewhere(db, link.tenant_id, now)
            conversation = self._conversation(db, session_id)
            if (
                conversation is None
                or conversation.owner != owner
                or conversation.ended_at is not None
            ):
                return Refusal.GONE
            live = self._live_links(db, session_id, now)
            if not live:
                if conversation.left_at is not None and conversation.left_at < left_after:
                    return Refusal.GONE
                if held >= limit:
                    return Refusal.LIMIT
            db.execute(
                "UPDATE conversations SET left_at = NULL WHERE session_id = ?", (session_id,)
            )
            self._hold(db, link)
            return conversation

        return await self._run(work)

    async def leave_conversation(self, connection_id: str, now: datetime.datetime) -> None:
        def work(db: Any) -> None:
            held = db.execute(
                "SELECT tenant_id FROM conversation_links WHERE connection_id = ?",
                (connection_id,),
            ).fetchone()
            if held is None:
                return
            self._lock_tenant(db, held[0])  # the order every writer takes: no deadlock
            row = db.execute(
                "DELETE FROM conversation_links WHERE connection_id = ? RETURNING session_id",
                (connection_id,),
            ).fetchone()
            if row is not None and not self._live_links(db, row[0], now):
                db.execute(
                    "UPDATE conversations SET left_at = ? WHERE session_id = ?",
                    (self.dialect.time_in(now), row[0]),
                )

        await self._run(work)

    async def end_conversation(
        self, owner: Owner, session_id: str, reason: str, now: datetime.datetime
    ) -> Conversation | None:
        def work(db: Any) -> Conversation | None:
            ended = db.execute(
                "UPDATE conversations SET ended_at = ?, end_reason = ? WHERE session_id = ? "
                "AND tenant_id = ? AND user_id = ? AND ended_at IS NULL",
                (self.dialect.time_in(now), reason, session_id, owner.tenant_id, owner.user_id),
            ).rowcount
            return self._conversation(db, session_id) if ended == 1 else None

        return await self._run(work)

    async def renew_conversation_links(
        self,
        node: str,
        links: list[ConversationLink],
        live_until: datetime.datetime,
        *,
        opening: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        until = self.dialect.time_in(live_until)

        def work(db: Any) -> None:
            held = {link.connection_id for link in links} | opening
            rows = db.execute(
                "SELECT connection_id FROM conversation_links WHERE node = ?", (node,)
            ).fetchall()
            for (connection_id,) in rows:
                if connection_id not in held:  # its connection is gone: let go
                    db.execute(
                        "DELETE FROM conversation_links WHERE connection_id = ?", (connection_id,)
                    )
            for link in links:  # back, if another process took it for lapsed meanwhile
                db.execute(
                    f"INSERT INTO conversation_links ({LINK_COLUMNS}) VALUES ({_marks(5)}) "
                    "ON CONFLICT (connection_id) DO UPDATE SET live_until = excluded.live_until",
                    (link.connection_id, link.session_id, link.tenant_id, node, until),
                )

        await self._run(work)

    async def get_conversation(self, session_id: str) -> Conversation | None:
        return await self._run(lambda db: self._conversation(db, session_id))

    # -- inside a transaction -------------------------------------------------------------------

    def _held_elsewhere(self, db: Any, tenant_id: str, now: datetime.datetime) -> int:
        """Lock the tenant (see the module's text), note the lapsed links' last
        moment as their conversations' ``left_at`` and drop them, then count the
        tenant's conversations that a live link holds."""
        self._lock_tenant(db, tenant_id)
        moment = self.dialect.time_in(now)
        lapsed = db.execute(
            "SELECT session_id, MAX(live_until) FROM conversation_links "
            "WHERE tenant_id = ? AND live_until <= ? GROUP BY session_id",
            (tenant_id, moment),
        ).fetchall()
        for session_id, last in lapsed:
            if not self._live_links(db, session_id, now):  # another tab still holds it
                db.execute(
                    "UPDATE conversations SET left_at = ? WHERE session_id = ? "
                    "AND left_at IS NULL",
                    (last, session_id),
                )
        db.execute(
            "DELETE FROM conversation_links WHERE tenant_id = ? AND live_until <= ?",
            (tenant_id, moment),
        )
        # An ended conversation takes no place, though a tab of it is still open.
        return db.execute(
            "SELECT COUNT(DISTINCT l.session_id) FROM conversation_links l "
            "JOIN conversations c ON c.session_id = l.session_id "
            "WHERE l.tenant_id = ? AND c.ended_at IS NULL",
            (tenant_id,),
        ).fetchone()[0]

    def _lock_tenant(self, db: Any, tenant_id: str) -> None:
        db.execute(
            "INSERT INTO conversation_tenants (tenant_id) VALUES (?) ON CONFLICT DO NOTHING",
            (tenant_id,),
        )
        db.execute(
            f"SELECT tenant_id FROM conversation_tenants WHERE tenant_id = ?{self._for_update()}",
            (tenant_id,),
        ).fetchone()

    def _live_links(self, db: Any, session_id: str, now: datetime.datetime) -> int:
        return db.execute(
            "SELECT COUNT(*) FROM conversation_links WHERE session_id = ? AND live_until > ?",
            (session_id, self.dialect.time_in(now)),
        ).fetchone()[0]

    def _hold(self, db: Any, link: ConversationLink) -> None:
        db.execute(
            f"INSERT INTO conversation_links ({LINK_COLUMNS}) VALUES ({_marks(5)})",
            (
                link.connection_id,
                link.session_id,
                link.tenant_id,
                link.node,
                self.dialect.time_in(link.live_until),
            ),
        )

    def _conversation(self, db: Any, session_id: str) -> Conversation | None:
        row = db.execute(
            f"SELECT {COLUMNS} FROM conversations WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            return None
        time_out = self.dialect.time_out
        return Conversation(
            session_id=row[0],
            owner=Owner(row[1], row[2]),
            agent_id=row[3],
            hub=row[4],
            metadata=None if row[5] is None else json.loads(row[5]),
            language=row[6],
            started_at=time_out(row[7]),
            left_at=time_out(row[8]),
            ended_at=time_out(row[9]),
            end_reason=row[10],
        )


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))
