"""The discussion hub's payloads, exactly as docs/hubs/discussion.md names them.

Python fields are snake_case; the binder sends them camelCase (``run_id`` ->
``runId``). A verdict is plain JSON data (``{"winner", "summary", "scores"}``),
sent as it is stored, so its keys (``p1``, ``p2``...) are left alone.
"""

from __future__ import annotations

from typing import Any

import attrs

# -- client to server -----------------------------------------------------------------------------


@attrs.frozen
class CancelRunRequest:
    run_id: str


# -- server to client -----------------------------------------------------------------------------


@attrs.frozen
class PanelistView:
    panelist_id: str
    agent_id: str


@attrs.frozen
class DiscussionStarted:
    run_id: str
    topic: str
    panelists: list[PanelistView]
    judge: str


@attrs.frozen
class RoundStarted:
    run_id: str
    round_number: int


@attrs.frozen
class TurnStarted:
    run_id: str
    panelist_id: str
    round_number: int


@attrs.frozen
class TurnCompleted:
    run_id: str
    panelist_id: str
    content_hash: str
    duration_ms: int


@attrs.frozen
class JudgeStarted:
    run_id: str


@attrs.frozen
class Verdict:
    run_id: str
    verdict: dict[str, Any]


@attrs.frozen
class DiscussionCompleted:
    run_id: str
    verdict_hash: str
    duration_ms: int


@attrs.frozen
class DiscussionFailed:
    run_id: str
    error: str


@attrs.frozen
class DiscussionCancelled:
    run_id: str
    cancelled_by: str
