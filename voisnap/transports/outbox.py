"""The per-connection outbox: a bounded queue of frames the kernel has not taken yet.

docs/limits.md, "Outbox and slow consumers": the server buffers outgoing
messages per connection (100 by default); beyond that, the slowest consumer is
dropped. The outbox is that buffer. It has the semantics of a trio memory channel of capacity 100
(``put_nowait`` raises ``trio.WouldBlock`` when full, ``statistics()``), plus a
byte cap, because 100 voice frames would otherwise hold megabytes per connection.

Everything accepted and not yet written counts against both caps, including the
batch the writer is in the middle of writing (``take_all`` / ``done``), so
"at most 100 messages" holds exactly.

The outbox does no I/O itself. A transport tries to write a frame straight to
its socket first and only puts here what the kernel did not take. When the
queue goes from empty to not empty, the outbox starts one writer task (in the
nursery its transport gave ``start_writer``), which hands batches to the
transport's ``write_batch`` until the queue is empty again, and then ends: an
idle connection costs no task, and there is never more than one writer. Who
decides what "full" means for a sender is not the outbox's business either: a
fan-out evicts the connection (``routing.router``), while a connection's own
replies wait with ``wait_for_space``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import attrs
import trio

T = TypeVar("T")


@attrs.frozen
class Lag:
    """How far behind a connection is: how long its outbox has held a backlog
    (the kernel would not take more), and how long it has been full."""

    behind_seconds: float
    full_seconds: float


@attrs.frozen
class OutboxStatistics:
    queued: int
    queued_bytes: int
    in_flight: int
    capacity: int
    max_bytes: int
    closed: bool
    backlog_since: float | None
    """trio time at which the queue last went from empty to non-empty, if it is not empty."""


class Outbox(Generic[T]):
    # one per connection: slots keep idle connections small
    __slots__ = (
        "_bytes",
        "_capacity",
        "_closed",
        "_in_flight",
        "_in_flight_bytes",
        "_items",
        "_max_bytes",
        "_nursery",
        "_space",
        "_write_batch",
        "_writing",
        "backlog_since",
        "full_since",
    )

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self._items: list[tuple[T, int]] = []
        self._bytes = 0
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._closed = False
        self.backlog_since: float | None = None
        self.full_since: float | None = None
        self._space: trio.lowlevel.ParkingLot | None = None  # made when someone waits
        self._nursery: trio.Nursery | None = None
        self._write_batch: Callable[[list[T]], Awaitable[None]] | None = None
        self._writing = False

    def start_writer(
        self, nursery: trio.Nursery, write_batch: Callable[[list[T]], Awaitable[None]]
    ) -> None:
        """From now on, whatever is queued is handed to ``write_batch`` by a
        task in ``nursery``, started when needed. Without a writer (long
        polling), the consumer calls ``take_all`` and ``done`` itself."""
        self._nursery = nursery
        self._write_batch = write_batch

    def put_nowait(self, item: T, size: int) -> None:
        """Queue ``item`` (``size`` bytes) or raise ``trio.WouldBlock`` when full.

        One item larger than the byte cap is accepted into an empty outbox: the
        cap bounds a backlog, not the size of a single message.
        """
        if self._closed:
            raise trio.ClosedResourceError("the outbox is closed")
        if not self._fits(size):
            raise trio.WouldBlock
        if self.empty:
            self.backlog_since = trio.current_time()
        self._items.append((item, size))
        self._bytes += size
        if self.full_since is None and self._is_full():
            self.full_since = trio.current_time()
        if not self._writing and self._nursery is not None:
            self._writing = True
            self._nursery.start_soon(self._write_backlog)

    async def _write_backlog(self) -> None:
        """The writer: batches to the transport until nothing is queued."""
        try:
            while self._items and self._write_batch is not None:
                await self._write_batch(self.take_all())
                self.done()
        finally:
            self._writing = False

    def _is_full(self) -> bool:
        count = len(self._items) + self._in_flight
        return count >= self._capacity or self._bytes + self._in_flight_bytes >= self._max_bytes

    def lag(self, now: float) -> Lag:
        """How long this outbox has been behind, and full (0 if it is not)."""
        behind = 0.0 if self.backlog_since is None else now - self.backlog_since
        full = 0.0 if self.full_since is None else now - self.full_since
        return Lag(behind_seconds=behind, full_seconds=full)

    def _fits(self, size: int) -> bool:
        count = len(self._items) + self._in_flight
        held = self._bytes + self._in_flight_bytes
        return count < self._capacity and (count == 0 or held + size <= self._max_bytes)

    @property
    def queued(self) -> int:
        """Items waiting for the writer (not counting a batch being written)."""
        return len(self._items)

    @property
    def empty(self) -> bool:
        """True when nothing is queued or being written."""
        return not self._items and not self._in_flight

    def take_all(self) -> list[T]:
        """Hand every queued item to the writer; they still count until ``done``."""
        items = [item for item, _ in self._items]
        self._in_flight += len(items)
        self._in_flight_bytes += self._bytes
        self._items.clear()
        self._bytes = 0
        return items

    def done(self) -> None:
        """The writer handed its whole batch to the kernel."""
        self._in_flight = 0
        self._in_flight_bytes = 0
        if not self._items:
            self.backlog_since = None
        if not self._is_full():
            self.full_since = None
        self._wake_space_waiters()

    async def wait_for_space(self, size: int) -> None:
        """Block until an item of ``size`` bytes fits; ClosedResourceError once closed."""
        while not self._fits(size) and not self._closed:
            await self._space_lot().park()
        if self._closed:
            raise trio.ClosedResourceError("the outbox is closed")

    async def wait_empty(self) -> None:
        """Block until the writer has handed everything to the kernel."""
        while not self.empty and not self._closed:
            await self._space_lot().park()

    def _space_lot(self) -> trio.lowlevel.ParkingLot:
        if self._space is None:
            self._space = trio.lowlevel.ParkingLot()
        return self._space

    def _wake_space_waiters(self) -> None:
        if self._space is not None:
            self._space.unpark_all()

    def close(self) -> None:
        """Drop the backlog (a closed connection's messages go nowhere) and wake
        waiters. The writer's references go too: a transport and its outbox
        point at each other while they work, and nothing should keep either
        alive (or leave a cycle to collect) once the connection is closed."""
        self._closed = True
        self._nursery = None
        self._write_batch = None
        self._items.clear()
        self._bytes = 0
        self.backlog_since = self.full_since = None
        self._wake_space_waiters()

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            queued=len(self._items),
            queued_bytes=self._bytes,
            in_flight=self._in_flight,
            capacity=self._capacity,
            max_bytes=self._max_bytes,
            closed=self._closed,
            backlog_since=self.backlog_since,
        )
