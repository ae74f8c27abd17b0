"""Nodes and their commands (issue 15; docs/hubs/node.md), in the shared SQL.

Commands live here, not in a process: any process may deliver a node's
command, and exactly one does, because delivering is a conditional update
(``queued`` -> ``sent``) that only one caller's transaction can make. The same
holds for every change others act on: a command's outcome (from an open status
only: exactly one result is recorded), a node coming online or going offline
(from the other status only: each change is announced once), a revocation.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from .base import (
    COMMAND_ACCEPTED,
    COMMAND_FAILED,
    COMMAND_OPEN,
    COMMAND_QUEUED,
    COMMAND_SENT,
    COMMAND_TIMED_OUT,
    OFFLINE,
    ONLINE,
    Node,
    NodeCommand,
    Owner,
    Presence,
    StoreError,
)

NODE_COLUMNS = (
    "node_id, tenant_id, user_id, name, scopes, acknowledged_scopes, created_at, revoked_at, "
    "status, transport, connection_id, last_heartbeat, presence_until, uptime"
)
COMMAND_COLUMNS = (
    "command_id, node_id, tenant_id, user_id, command, params, status, result, error, queued, "
    "timeout_seconds, deadline, delivered_via, deliveries, created_at, sent_at, completed_at"
)
OPEN = ", ".join(f"'{status}'" for status in COMMAND_OPEN)
DISCONNECTED = "node disconnected"
TIMED_OUT = "The node did not answer in time."


class NodeQueries:
    """The nodes part of ``SqlStore`` (it supplies ``_run`` and ``dialect``)."""

    dialect: Any
    _run: Callable[..., Any]

    # -- nodes -----------------------------------------------------------------------------------

    async def add_node(self, node: Node) -> None:
        time_in = self.dialect.time_in
        row = (
            node.node_id,
            node.owner.tenant_id,
            node.owner.user_id,
            node.name,
            json.dumps(list(node.scopes)),
            None,
            time_in(node.created_at),
            None,
            OFFLINE,
            None,
            None,
            None,
            None,
            None,
        )
        placeholders = ", ".join("?" for _ in row)
        try:
            await self._run(
                lambda db: db.execute(
                    f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES ({placeholders})", row
                )
            )
        except self.dialect.duplicate:
            raise StoreError(f"You have a node named '{node.name}' already.") from None

    async def get_node(self, node_id: str) -> Node | None:
        return await self._run(lambda db: self._get_node(db, node_id))

    async def list_nodes(self, owner: Owner) -> list[Node]:
        def work(db: Any) -> list[Node]:
            rows = db.execute(
                f"SELECT {NODE_COLUMNS} FROM nodes WHERE tenant_id = ? AND user_id = ? "
                "AND revoked_at IS NULL ORDER BY created_at, node_id",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [self._node(row) for row in rows]

        return await self._run(work)

    async def set_node_scopes(
        self, node_id: str, scopes: tuple[str, ...] | None = None, *, acknowledged: bool = False
    ) -> Node | None:
        column = "acknowledged_scopes" if acknowledged else "scopes"

        def work(db: Any) -> Node | None:
            changed = db.execute(
                f"UPDATE nodes SET {column} = ? WHERE node_id = ? AND revoked_at IS NULL",
                (json.dumps(list(scopes or ())), node_id),
            ).rowcount
            return self._get_node(db, node_id) if changed else None

        return await self._run(work)

    async def revoke_node(self, node_id: str, now: datetime.datetime) -> tuple[Node, bool] | None:
        def work(db: Any) -> tuple[Node, bool] | None:
            before = self._get_node(db, node_id)
            if before is None or before.revoked_at is not None:
                return None
            changed = db.execute(
                "UPDATE nodes SET revoked_at = ?, status = ?, transport = NULL, "
                "connection_id = NULL WHERE node_id = ? AND revoked_at IS NULL",
                (self.dialect.time_in(now), OFFLINE, node_id),
            ).rowcount
            if not changed:
                return None
            return self._get_node(db, node_id), before.status == ONLINE

        return await self._run(work)

    async def node_heard(self, node_id: str, presence: Presence) -> tuple[Node, bool] | None:
        time_in = self.dialect.time_in

        def work(db: Any) -> tuple[Node, bool] | None:
            came_online = db.execute(
                "UPDATE nodes SET status = ? WHERE node_id = ? AND status = ? "
                "AND revoked_at IS NULL",
                (ONLINE, node_id, OFFLINE),
            ).rowcount
            changed = db.execute(
                "UPDATE nodes SET transport = ?, connection_id = ?, last_heartbeat = ?, "
                "presence_until = ?, uptime = COALESCE(?, uptime) "
                "WHERE node_id = ? AND revoked_at IS NULL",
                (
                    presence.transport,
                    presence.connection_id,
                    time_in(presence.at),
                    time_in(presence.until),
                    presence.uptime,
                    node_id,
                ),
            ).rowcount
            if not changed:
                return None
            return self._get_node(db, node_id), bool(came_online)

        return await self._run(work)

    async def node_disconnected(
        self, node_id: str, connection_id: str, successor: str | None = None
    ) -> Node | None:
        def work(db: Any) -> Node | None:
            if successor is not None:
                db.execute(
                    "UPDATE nodes SET connection_id = ? WHERE node_id = ? AND connection_id = ?",
                    (successor, node_id, connection_id),
                )
                return None
            changed = db.execute(
                "UPDATE nodes SET status = ?, transport = NULL, connection_id = NULL "
                "WHERE node_id = ? AND connection_id = ? AND status = ?",
                (OFFLINE, node_id, connection_id, ONLINE),
            ).rowcount
            return self._get_node(db, node_id) if changed else None

        return await self._run(work)

    async def expire_presence(self, now: datetime.datetime) -> list[Node]:
        moment = self.dialect.time_in(now)

        def work(db: Any) -> list[Node]:
            lapsed = db.execute(
                "SELECT node_id FROM nodes WHERE status = ? AND presence_until < ?",
                (ONLINE, moment),
            ).fetchall()
            offline = []
            for (node_id,) in lapsed:
                # Conditional: of several processes' sweeps, one changes the row.
                changed = db.execute(
                    "UPDATE nodes SET status = ?, transport = NULL, connection_id = NULL "
                    "WHERE node_id = ? AND status = ? AND presence_until < ?",
                    (OFFLINE, node_id, ONLINE, moment),
                ).rowcount
                if changed:
                    offline.append(self._get_node(db, node_id))
            return offline

        return await self._run(work)

    def _get_node(self, db: Any, node_id: str) -> Node | None:
        row = db.execute(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE node_id = ?", (node_id,)
        ).fetchone()
        return None if row is None else self._node(row)

    def _node(self, row: tuple) -> Node:
        time_out = self.dialect.time_out
        return Node(
            node_id=row[0],
            owner=Owner(row[1], row[2]),
            name=row[3],
            scopes=tuple(json.loads(row[4])),
            acknowledged_scopes=None if row[5] is None else tuple(json.loads(row[5])),
            created_at=time_out(row[6]),
            revoked_at=time_out(row[7]),
            status=row[8],
            transport=row[9],
            connection_id=row[10],
            last_heartbeat=time_out(row[11]),
            presence_until=time_out(row[12]),
            uptime=row[13],
        )

    # -- commands --------------------------------------------------------------------------------

    async def add_command(self, command: NodeCommand) -> None:
        time_in = self.dialect.time_in
        row = (
            command.command_id,
            command.node_id,
            command.owner.tenant_id,
            command.owner.user_id,
            command.command,
            json.dumps(command.params),
            command.status,
            None,
            None,
            self.dialect.flag_in(command.queued),
            command.timeout_seconds,
            time_in(command.deadline),
            None,
            0,
            time_in(command.created_at),
            None,
            None,
        )
        placeholders = ", ".join("?" for _ in row)
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO node_commands ({COMMAND_COLUMNS}) VALUES ({placeholders})", row
            )
        )

    async def count_open_commands(self, node_id: str) -> int:
        def work(db: Any) -> int:
            return db.execute(
                f"SELECT COUNT(*) FROM node_commands WHERE node_id = ? AND status IN ({OPEN})",
                (node_id,),
            ).fetchone()[0]

        return await self._run(work)

    async def get_command(self, command_id: str) -> NodeCommand | None:
        return await self._run(lambda db: self._get_command(db, command_id))

    async def list_commands(self, node_id: str, *, limit: int) -> list[NodeCommand]:
        def work(db: Any) -> list[NodeCommand]:
            rows = db.execute(
                f"SELECT {COMMAND_COLUMNS} FROM node_commands WHERE node_id = ? "
                "ORDER BY created_at DESC, command_id DESC LIMIT ?",
                (node_id, limit),
            ).fetchall()
            return [self._command(row) for row in rows]

        return await self._run(work)

    async def claim_commands(
        self, node_id: str, via: str, now: datetime.datetime, *, limit: int
    ) -> list[NodeCommand]:
        moment = self.dialect.time_in(now)

        def work(db: Any) -> list[NodeCommand]:
            waiting = db.execute(
                "SELECT command_id FROM node_commands WHERE node_id = ? AND status = ? "
                "AND deadline > ? ORDER BY created_at, command_id LIMIT ?",
                (node_id, COMMAND_QUEUED, moment, limit),
            ).fetchall()
            claimed = []
            for (command_id,) in waiting:
                changed = db.execute(
                    "UPDATE node_commands SET status = ?, delivered_via = ?, "
                    "deliveries = deliveries + 1, sent_at = ? WHERE command_id = ? AND status = ?",
                    (COMMAND_SENT, via, moment, command_id, COMMAND_QUEUED),
                ).rowcount
                if changed:
                    claimed.append(self._get_command(db, command_id))
            return claimed

        return await self._run(work)

    async def unclaim_commands(self, command_ids: list[str], via: str) -> None:
        def work(db: Any) -> None:
            for command_id in command_ids:
                db.execute(
                    "UPDATE node_commands SET status = ?, delivered_via = NULL, "
                    "deliveries = deliveries - 1, sent_at = NULL "
                    "WHERE command_id = ? AND status = ? AND delivered_via = ?",
                    (COMMAND_QUEUED, command_id, COMMAND_SENT, via),
                )

        await self._run(work)

    async def accept_command(self, command_id: str, via: str) -> bool:
        def work(db: Any) -> bool:
            return bool(
                db.execute(
                    "UPDATE node_commands SET status = ? WHERE command_id = ? AND status = ? "
                    "AND delivered_via = ?",
                    (COMMAND_ACCEPTED, command_id, COMMAND_SENT, via),
                ).rowcount
            )

        return await self._run(work)

    async def finish_command(
        self,
        command_id: str,
        node_id: str,
        status: str,
        now: datetime.datetime,
        *,
        result: Any = None,
        error: str | None = None,
    ) -> NodeCommand | None:
        def work(db: Any) -> NodeCommand | None:
            changed = db.execute(
                "UPDATE node_commands SET status = ?, result = ?, error = ?, completed_at = ? "
                f"WHERE command_id = ? AND node_id = ? AND status IN ({OPEN})",
                (
                    status,
                    json.dumps(result),
                    error,
                    self.dialect.time_in(now),
                    command_id,
                    node_id,
                ),
            ).rowcount
            return self._get_command(db, command_id) if changed else None

        return await self._run(work)

    async def release_commands(
        self, node_id: str, via: str | None, now: datetime.datetime, *, fail_unqueued: bool
    ) -> list[NodeCommand]:
        moment = self.dialect.time_in(now)
        delivered = "status IN (?, ?)" if via is None else "delivered_via = ? AND status IN (?, ?)"
        by = () if via is None else (via,)

        def work(db: Any) -> list[NodeCommand]:
            db.execute(
                "UPDATE node_commands SET status = ?, delivered_via = NULL "
                f"WHERE node_id = ? AND {delivered} AND queued = ?",
                (
                    COMMAND_QUEUED,
                    node_id,
                    *by,
                    COMMAND_SENT,
                    COMMAND_ACCEPTED,
                    self.dialect.flag_in(True),
                ),
            )
            if not fail_unqueued:
                return []
            stranded = db.execute(
                f"SELECT command_id FROM node_commands WHERE node_id = ? AND {delivered}",
                (node_id, *by, COMMAND_SENT, COMMAND_ACCEPTED),
            ).fetchall()
            return self._fail(db, [row[0] for row in stranded], DISCONNECTED, moment)

        return await self._run(work)

    async def fail_open_commands(
        self, node_id: str, error: str, now: datetime.datetime
    ) -> list[NodeCommand]:
        moment = self.dialect.time_in(now)

        def work(db: Any) -> list[NodeCommand]:
            rows = db.execute(
                f"SELECT command_id FROM node_commands WHERE node_id = ? AND status IN ({OPEN})",
                (node_id,),
            ).fetchall()
            return self._fail(db, [row[0] for row in rows], error, moment)

        return await self._run(work)

    def _fail(self, db: Any, command_ids: list[str], error: str, moment: Any) -> list[NodeCommand]:
        """Fail each command still open; the ones this call failed."""
        failed = []
        for command_id in command_ids:
            changed = db.execute(
                "UPDATE node_commands SET status = ?, error = ?, completed_at = ? "
                f"WHERE command_id = ? AND status IN ({OPEN})",
                (COMMAND_FAILED, error, moment, command_id),
            ).rowcount
            if changed:
                failed.append(self._get_command(db, command_id))
        return failed

    async def expire_commands(self, now: datetime.datetime) -> list[NodeCommand]:
        moment = self.dialect.time_in(now)

        def work(db: Any) -> list[NodeCommand]:
            late = db.execute(
                f"SELECT command_id FROM node_commands WHERE status IN ({OPEN}) AND deadline <= ?",
                (moment,),
            ).fetchall()
            expired = []
            for (command_id,) in late:
                changed = db.execute(
                    "UPDATE node_commands SET status = ?, error = ?, completed_at = ? "
                    f"WHERE command_id = ? AND status IN ({OPEN})",
                    (COMMAND_TIMED_OUT, TIMED_OUT, moment, command_id),
                ).rowcount
                if changed:
                    expired.append(self._get_command(db, command_id))
            return expired

        return await self._run(work)

    def _get_command(self, db: Any, command_id: str) -> NodeCommand | None:
        row = db.execute(
            f"SELECT {COMMAND_COLUMNS} FROM node_commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return None if row is None else self._command(row)

    def _command(self, row: tuple) -> NodeCommand:
        time_out = self.dialect.time_out
        return NodeCommand(
            command_id=row[0],
            node_id=row[1],
            owner=Owner(row[2], row[3]),
            command=row[4],
            params=json.loads(row[5]),
            status=row[6],
            result=None if row[7] is None else json.loads(row[7]),
            error=row[8],
            queued=bool(row[9]),
            timeout_seconds=row[10],
            deadline=time_out(row[11]),
            delivered_via=row[12],
            deliveries=row[13],
            created_at=time_out(row[14]),
            sent_at=time_out(row[15]),
            completed_at=time_out(row[16]),
        )
