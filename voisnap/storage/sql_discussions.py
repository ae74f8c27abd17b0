"""Discussion runs and their turns (issue 13, docs/hubs/discussion.md).

A run is a task of kind ``discussion`` (so it is claimed, leased, cancelled
and expired like every task) plus a row in ``discussions`` with the same id:
the topic, the panel, the judge, the number of rounds and, at the end, the
verdict. Each turn is a row of ``discussion_turns``, keyed by run, round and
seat, stored as soon as it is spoken.

Writes made while a run runs are conditional on its runner still holding the
lease, as ``complete_task`` is: a process that lost a run (its lease lapsed,
another process failed it) cannot add a turn or a verdict to it afterwards.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from .base import Accepted, Discussion, Message, Owner, Panelist, Session, Task, TaskState, Turn

DISCUSSION_COLUMNS = (
    "run_id, tenant_id, user_id, session_id, topic, panelists, judge, rounds, verdict, "
    "verdict_hash, created_at"
)
TURN_COLUMNS = (
    "run_id, round_number, panelist_id, agent_id, content, content_hash, duration_ms, created_at"
)


class DiscussionQueries:
    """The discussion half of ``SqlStore`` (it supplies ``_run``, ``dialect``,
    ``_accept`` and the task rows)."""

    dialect: Any
    _run: Callable[..., Any]
    _accept: Callable[..., Accepted]
    _complete: Callable[..., Task | None]
    _get_task: Callable[..., Task | None]

    async def start_discussion(
        self, *, session: Session, message: Message, task: Task, discussion: Discussion
    ) -> Accepted:
        def work(db: Any) -> Accepted:
            accepted = self._accept(db, session, message, task)
            self._insert_discussion(db, discussion)
            return accepted

        return await self._run(work)

    async def get_discussion(self, owner: Owner, run_id: str) -> Discussion | None:
        found = await self.get_discussion_by_id(run_id)
        return found if found is not None and found.owner == owner else None

    async def get_discussion_by_id(self, run_id: str) -> Discussion | None:
        def work(db: Any) -> Discussion | None:
            row = db.execute(
                f"SELECT {DISCUSSION_COLUMNS} FROM discussions WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else self._discussion(row)

        return await self._run(work)

    async def list_discussions(self, owner: Owner, *, limit: int) -> list[Discussion]:
        def work(db: Any) -> list[Discussion]:
            rows = db.execute(
                f"SELECT {DISCUSSION_COLUMNS} FROM discussions WHERE tenant_id = ? "
                "AND user_id = ? ORDER BY created_at DESC, run_id DESC LIMIT ?",
                (owner.tenant_id, owner.user_id, limit),
            ).fetchall()
            return [self._discussion(row) for row in rows]

        return await self._run(work)

    async def add_turn(self, turn: Turn, node: str) -> bool:
        def work(db: Any) -> bool:
            if not self._holds(db, turn.run_id, node):
                return False
            db.execute(
                f"INSERT INTO discussion_turns ({TURN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn.run_id,
                    turn.round_number,
                    turn.panelist_id,
                    turn.agent_id,
                    turn.content,
                    turn.content_hash,
                    turn.duration_ms,
                    self.dialect.time_in(turn.created_at),
                ),
            )
            return True

        return await self._run(work)

    async def list_turns(self, run_id: str) -> list[Turn]:
        def work(db: Any) -> list[Turn]:
            # Seats are p1 ... p8 (at most eight panelists): one digit, so their
            # text order is the order they speak in.
            rows = db.execute(
                f"SELECT {TURN_COLUMNS} FROM discussion_turns WHERE run_id = ? "
                "ORDER BY round_number, panelist_id",
                (run_id,),
            ).fetchall()
            return [self._turn(row) for row in rows]

        return await self._run(work)

    async def complete_discussion(
        self,
        run_id: str,
        node: str,
        *,
        verdict: dict[str, Any],
        verdict_hash: str,
        reply: Message,
        tokens_used: int = 0,
    ) -> Task | None:
        def work(db: Any) -> Task | None:
            done = self._complete(db, run_id, node, reply, tokens_used)
            if done is None:
                return None  # the lease was lost: the verdict is not this runner's to give
            db.execute(
                "UPDATE discussions SET verdict = ?, verdict_hash = ? WHERE run_id = ?",
                (json.dumps(verdict, ensure_ascii=False), verdict_hash, run_id),
            )
            return done

        return await self._run(work)

    # -- rows <-> records -------------------------------------------------------------------------

    def _holds(self, db: Any, run_id: str, node: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM tasks WHERE task_id = ? AND state = ? AND lease_owner = ?",
            (run_id, TaskState.RUNNING.value, node),
        ).fetchone()
        return row is not None

    def _insert_discussion(self, db: Any, discussion: Discussion) -> None:
        panelists = [[seat.panelist_id, seat.agent_id] for seat in discussion.panelists]
        db.execute(
            f"INSERT INTO discussions ({DISCUSSION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                discussion.run_id,
                discussion.owner.tenant_id,
                discussion.owner.user_id,
                discussion.session_id,
                discussion.topic,
                json.dumps(panelists),
                discussion.judge,
                discussion.rounds,
                None if discussion.verdict is None else json.dumps(discussion.verdict),
                discussion.verdict_hash,
                self.dialect.time_in(discussion.created_at),
            ),
        )

    def _discussion(self, row: tuple) -> Discussion:
        panelists = tuple(Panelist(seat, agent) for seat, agent in json.loads(row[5]))
        return Discussion(
            run_id=row[0],
            owner=Owner(row[1], row[2]),
            session_id=row[3],
            topic=row[4],
            panelists=panelists,
            judge=row[6],
            rounds=int(row[7]),
            verdict=None if row[8] is None else json.loads(row[8]),
            verdict_hash=row[9],
            created_at=_time(self.dialect.time_out(row[10])),
        )

    def _turn(self, row: tuple) -> Turn:
        return Turn(
            run_id=row[0],
            round_number=int(row[1]),
            panelist_id=row[2],
            agent_id=row[3],
            content=row[4],
            content_hash=row[5],
            duration_ms=int(row[6]),
            created_at=_time(self.dialect.time_out(row[7])),
        )


def _time(moment: datetime.datetime | None) -> datetime.datetime:
    assert moment is not None, "a NOT NULL column"
    return moment
