"""The runner's memory of the turns it runs: what a resume replays without a gap.

The store is not written per token. Instead the process that runs a task
keeps the events of its turn in memory, numbered (``TurnLog``): from the
moment the task starts (or resumes after a wait, the log then beginning with
what the store holds of the turn) to its end or its next wait, and for
``retain`` seconds more. A resuming connection, once its live subscription is
in place, asks the runner for the log (``fetch``, on the task's backplane
channel: the runner may be another process) and gets every event up to a
sequence number; every later one reaches it live. docs/v1-stream.md, "Resume".

One run of a task in one process is a *segment* (a task that waits for a
person may resume in another process): live events carry their segment's id,
so that a cut made in one segment never hides another's events. When a task
begins a new segment, it says so on the task's channel, and a process still
retaining an older segment of it lets it go.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import trio

from ...background import Background
from ...backplane import BackplaneError, RequestRefused
from ...routing import names
from ...routing.cluster import Cluster
from .events import StreamEvent

log = logging.getLogger(__name__)

RETAIN = 60.0  # seconds a finished segment's log stays fetchable
FETCH_TIMEOUT = 5.0


class TurnLog:
    """One segment of one task, in the process that runs it."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.segment = uuid.uuid4().hex[:16]
        self.events: list[StreamEvent] = []
        self.ended = False
        self.open_calls: dict[str, Any] = {}  # tool calls without a result yet

    def add(self, event: dict[str, Any], *, admin_only: bool = False) -> StreamEvent:
        numbered = StreamEvent.of(
            event, task_id=self.task_id, segment=self.segment, seq=len(self.events) + 1,
            admin_only=admin_only,
        )
        self.events.append(numbered)
        return numbered

    def snapshot(self) -> bytes:
        events = [[event.data.decode(), event.admin_only] for event in self.events]
        return json.dumps({"segment": self.segment, "events": events}).encode()


@attrs.frozen
class Snapshot:
    """A turn's events up to ``seq``, as its runner had them."""

    segment: str
    events: tuple[StreamEvent, ...]

    @property
    def seq(self) -> int:
        return len(self.events)

    @classmethod
    def parse(cls, payload: bytes) -> Snapshot | None:
        try:
            document = json.loads(payload)
            segment = document["segment"]
            events = tuple(
                StreamEvent(data.encode(), admin_only=bool(admin_only))
                for data, admin_only in document["events"]
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return cls(segment, events) if isinstance(segment, str) else None


class TurnLogs(Background):
    """This process's logs, by task; as a service (``run``), it forgets them in time."""

    def __init__(self, cluster: Cluster, retain: float = RETAIN) -> None:
        super().__init__()
        self._cluster = cluster
        self._retain = retain
        self._logs: dict[str, TurnLog] = {}

    def current(self, task_id: str) -> TurnLog | None:
        """The segment running here now, if any."""
        turn = self._logs.get(task_id)
        return None if turn is None or turn.ended else turn

    async def begin(self, task_id: str, prefix: Iterable[dict[str, Any]]) -> TurnLog:
        """A new segment of ``task_id``, its log starting with ``prefix``
        (what earlier segments did: replayed, never published again)."""
        turn = TurnLog(task_id)
        for event in prefix:
            turn.add(event)
        self._logs[task_id] = turn
        channel = names.turn_channel(task_id)
        await self._cluster.subscriptions.hold(channel, _TurnListener(self, task_id))
        try:  # an older segment retained elsewhere is out of date now
            await self._cluster.backplane.publish(channel, turn.segment.encode())
        except BackplaneError as error:
            log.info("a new segment was not announced: %s", error)
        return turn

    def end(self, turn: TurnLog) -> None:
        """The segment is over; its log stays fetchable for a while."""
        if turn.ended:
            return
        turn.ended = True
        if self.running:
            self.start_soon(self._forget_later, turn)
        else:
            self._forget(turn)

    async def _forget_later(self, turn: TurnLog) -> None:
        await trio.sleep(self._retain)
        self._forget(turn)

    def _forget(self, turn: TurnLog) -> None:
        if self._logs.get(turn.task_id) is turn:
            del self._logs[turn.task_id]
        self._cluster.subscriptions.release(names.turn_channel(turn.task_id))

    def superseded(self, task_id: str, segment: bytes) -> None:
        """Another process began a segment of the task: forget an ended one here."""
        turn = self._logs.get(task_id)
        if turn is not None and turn.ended and turn.segment.encode() != segment:
            del self._logs[task_id]

    def snapshot_of(self, task_id: str) -> bytes:
        turn = self._logs.get(task_id)
        if turn is None:
            raise RequestRefused(f"No turn of task '{task_id}' is here.")
        return turn.snapshot()

    async def fetch(self, task_id: str) -> Snapshot | None:
        """The task's turn so far, from whichever process has it; None if none does."""
        try:
            reply = await self._cluster.backplane.request(
                names.turn_channel(task_id), b"", FETCH_TIMEOUT
            )
        except BackplaneError:  # nobody has it (or nobody answered): the store has the turn
            return None
        return Snapshot.parse(reply)

    @property
    def held(self) -> int:
        return len(self._logs)


class _TurnListener:
    def __init__(self, turns: TurnLogs, task_id: str) -> None:
        self._turns = turns
        self._task_id = task_id

    def message(self, payload: bytes) -> None:
        self._turns.superseded(self._task_id, payload)

    async def request(self, payload: bytes) -> bytes:
        return self._turns.snapshot_of(self._task_id)
