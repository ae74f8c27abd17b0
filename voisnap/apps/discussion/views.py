"""A run as ``GET /discussions/{runId}`` and ``Subscribe`` return it (docs/hubs/discussion.md).

The run's state, error, times and ``cancelledBy`` are its task's (a run is a
task of kind ``discussion``); the topic, panel, turns and verdict its own.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from ...storage.base import Discussion, Task, Turn
from .events import PanelistView


@attrs.frozen
class TurnView:
    round_number: int
    panelist_id: str
    agent_id: str
    content: str
    content_hash: str
    duration_ms: int


@attrs.frozen
class RunView:
    run_id: str
    topic: str
    session_id: str
    state: str
    panelists: list[PanelistView]
    judge: str
    rounds: int
    turns: list[TurnView] | None
    """None in a list of runs (``GET /discussions``): fetch the run for its turns."""
    verdict: dict[str, Any] | None
    verdict_hash: str | None
    error: str | None
    cancelled_by: str | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    duration_ms: int | None


def run_view(run: Discussion, task: Task, turns: list[Turn] | None) -> RunView:
    return RunView(
        run_id=run.run_id,
        topic=run.topic,
        session_id=run.session_id,
        state=task.state.value,
        panelists=[PanelistView(seat.panelist_id, seat.agent_id) for seat in run.panelists],
        judge=run.judge,
        rounds=run.rounds,
        turns=None if turns is None else [turn_view(turn) for turn in turns],
        verdict=run.verdict,
        verdict_hash=run.verdict_hash,
        error=task.error,
        cancelled_by=task.cancelled_by,
        created_at=run.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        duration_ms=task.duration_ms,
    )


def turn_view(turn: Turn) -> TurnView:
    return TurnView(
        turn.round_number,
        turn.panelist_id,
        turn.agent_id,
        turn.content,
        turn.content_hash,
        turn.duration_ms,
    )
