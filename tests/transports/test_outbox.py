"""The per-connection Outbox: a bounded queue by count and by bytes.

Seed 000, "Backpressure" (100 events per connection, then the slow consumer is
dropped); STYLE.md habit 4 and the trio vocabulary (``put_nowait`` raising
``trio.WouldBlock``, ``wait_*``, ``statistics()``). Covered: both caps, in-flight
accounting through ``take_all``/``done``, the writer started only while there is
a backlog (and never two at once), the waiters waking (and not waking early),
``close()``. Waiting tests run on pytest-trio's ``autojump_clock``, so a
waiter that never wakes fails at the ``trio.fail_after`` ceiling in virtual time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from voisnap.transports.outbox import Lag, Outbox, OutboxStatistics

CEILING = 10  # seconds of (virtual) time before a stuck waiter fails the test


class Waiter:
    """Runs one ``wait_*`` call in the nursery and remembers how it ended."""

    def __init__(self, nursery: trio.Nursery, wait: Callable[[], Awaitable[None]]) -> None:
        self.finished = trio.Event()
        self.error: BaseException | None = None
        nursery.start_soon(self._run, wait)

    async def _run(self, wait: Callable[[], Awaitable[None]]) -> None:
        try:
            await wait()
        except trio.ClosedResourceError as error:
            self.error = error
        self.finished.set()


# -- caps ----------------------------------------------------------------------------------------


async def test_outbox_put_nowait_until_capacity_then_would_block() -> None:
    outbox: Outbox[str] = Outbox(capacity=3, max_bytes=10_000)
    for item in "abc":
        outbox.put_nowait(item, 1)
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait("d", 1)
    assert outbox.take_all() == ["a", "b", "c"]


async def test_outbox_byte_cap_refuses_an_item_that_would_exceed_it() -> None:
    outbox: Outbox[str] = Outbox(capacity=100, max_bytes=100)
    outbox.put_nowait("a", 60)
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait("b", 41)
    outbox.put_nowait("c", 40)  # exactly at the cap is fine
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait("d", 1)
    assert outbox.take_all() == ["a", "c"]


async def test_outbox_accepts_one_oversize_item_into_an_empty_outbox() -> None:
    outbox: Outbox[str] = Outbox(capacity=100, max_bytes=100)
    outbox.put_nowait("big", 500)
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait("small", 1)
    assert outbox.statistics().queued_bytes == 500


async def test_outbox_in_flight_items_count_toward_capacity_until_done() -> None:
    outbox: Outbox[int] = Outbox(capacity=2, max_bytes=10_000)
    outbox.put_nowait(1, 1)
    outbox.put_nowait(2, 1)
    assert outbox.take_all() == [1, 2]
    assert not outbox.empty
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait(3, 1)
    outbox.done()
    assert outbox.empty
    outbox.put_nowait(3, 1)
    outbox.put_nowait(4, 1)


async def test_outbox_in_flight_bytes_count_toward_byte_cap_until_done() -> None:
    outbox: Outbox[str] = Outbox(capacity=100, max_bytes=100)
    outbox.put_nowait("a", 80)
    outbox.take_all()
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait("b", 30)
    outbox.done()
    outbox.put_nowait("b", 30)


async def test_outbox_in_flight_and_queued_items_share_the_caps() -> None:
    outbox: Outbox[int] = Outbox(capacity=3, max_bytes=10_000)
    outbox.put_nowait(1, 1)
    outbox.take_all()
    outbox.put_nowait(2, 1)
    outbox.put_nowait(3, 1)
    with pytest.raises(trio.WouldBlock):
        outbox.put_nowait(4, 1)
    assert outbox.take_all() == [2, 3]


async def test_outbox_take_all_on_empty_outbox_returns_nothing() -> None:
    outbox: Outbox[int] = Outbox(capacity=3, max_bytes=100)
    assert outbox.take_all() == []
    outbox.done()
    assert outbox.empty


async def test_outbox_statistics_report_queued_and_in_flight(
    autojump_clock: MockClock,
) -> None:
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=1000)
    assert outbox.statistics() == OutboxStatistics(
        queued=0, queued_bytes=0, in_flight=0, capacity=5, max_bytes=1000, closed=False,
        backlog_since=None,
    )
    started = trio.current_time()
    outbox.put_nowait("a", 10)
    outbox.put_nowait("b", 20)
    outbox.take_all()
    outbox.put_nowait("c", 30)
    assert outbox.statistics() == OutboxStatistics(
        queued=1, queued_bytes=30, in_flight=2, capacity=5, max_bytes=1000, closed=False,
        backlog_since=started,
    )
    outbox.done()
    assert outbox.statistics().in_flight == 0


async def test_outbox_backlog_since_spans_batches_until_the_outbox_drains(
    autojump_clock: MockClock,
) -> None:
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=1000)
    started = trio.current_time()
    outbox.put_nowait("a", 1)
    autojump_clock.jump(3)
    outbox.take_all()
    outbox.put_nowait("b", 1)  # arrives while "a" is being written
    outbox.done()
    assert outbox.backlog_since == started  # "b" is still waiting: still behind
    autojump_clock.jump(2)
    outbox.take_all()
    outbox.done()
    assert outbox.backlog_since is None
    outbox.put_nowait("c", 1)
    assert outbox.backlog_since == started + 5


# -- waiters ---------------------------------------------------------------------------------------


class RecordingWriter:
    """A transport's ``write_batch`` that records batches and can be held up."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = trio.Event()
        self.blocking = False
        self.running = 0
        self.most_running = 0

    async def __call__(self, batch: list[str]) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            self.batches.append(batch)
            if self.blocking:
                await self.release.wait()
            await trio.lowlevel.checkpoint()
        finally:
            self.running -= 1


async def test_outbox_starts_a_writer_only_when_items_are_queued(
    autojump_clock: MockClock,
) -> None:
    writer = RecordingWriter()
    outbox: Outbox[str] = Outbox(capacity=10, max_bytes=100)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            outbox.start_writer(nursery, writer)
            await wait_all_tasks_blocked()
            assert writer.batches == []
            assert len(nursery.child_tasks) == 0  # an idle outbox costs no task
            outbox.put_nowait("a", 1)
            outbox.put_nowait("b", 1)
            await outbox.wait_empty()
            await wait_all_tasks_blocked()
            assert len(nursery.child_tasks) == 0  # the writer ended with the backlog
    assert writer.batches == [["a", "b"]]
    assert outbox.empty
    assert outbox.backlog_since is None


async def test_outbox_writer_takes_items_queued_while_it_writes(
    autojump_clock: MockClock,
) -> None:
    writer = RecordingWriter()
    writer.blocking = True
    outbox: Outbox[str] = Outbox(capacity=10, max_bytes=100)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            outbox.start_writer(nursery, writer)
            outbox.put_nowait("a", 1)
            await wait_all_tasks_blocked()
            assert writer.batches == [["a"]]  # "a" is being written
            outbox.put_nowait("b", 1)  # in flight, so no second writer starts
            outbox.put_nowait("c", 1)
            writer.release.set()
            await outbox.wait_empty()
    assert writer.batches == [["a"], ["b", "c"]]
    assert writer.most_running == 1


async def test_outbox_wait_for_space_wakes_when_done_frees_capacity(
    autojump_clock: MockClock,
) -> None:
    outbox: Outbox[int] = Outbox(capacity=2, max_bytes=10_000)
    outbox.put_nowait(1, 1)
    outbox.put_nowait(2, 1)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            waiter = Waiter(nursery, partial(outbox.wait_for_space, 1))
            await wait_all_tasks_blocked()
            assert not waiter.finished.is_set()
            outbox.take_all()  # in flight: still no space
            await wait_all_tasks_blocked()
            assert not waiter.finished.is_set()
            outbox.done()
            await waiter.finished.wait()
    assert waiter.error is None
    outbox.put_nowait(3, 1)


async def test_outbox_wait_for_space_blocks_while_the_byte_cap_is_reached(
    autojump_clock: MockClock,
) -> None:
    # A sender that waits for space and then retries must not find the outbox
    # still full: DirectWebSocket.send loops exactly like that.
    outbox: Outbox[str] = Outbox(capacity=100, max_bytes=100)
    outbox.put_nowait("a", 100)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            waiter = Waiter(nursery, partial(outbox.wait_for_space, 1))
            await wait_all_tasks_blocked()
            assert not waiter.finished.is_set(), "returned while no byte was free"
            outbox.take_all()
            outbox.done()
            await waiter.finished.wait()


async def test_outbox_wait_empty_wakes_when_everything_is_written(
    autojump_clock: MockClock,
) -> None:
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=100)
    outbox.put_nowait("a", 1)
    outbox.take_all()
    outbox.put_nowait("b", 1)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            waiter = Waiter(nursery, outbox.wait_empty)
            await wait_all_tasks_blocked()
            assert not waiter.finished.is_set()
            outbox.done()  # "a" written, "b" still queued
            await wait_all_tasks_blocked()
            assert not waiter.finished.is_set()
            outbox.take_all()
            outbox.done()
            await waiter.finished.wait()
    assert outbox.empty


async def test_outbox_wait_empty_returns_at_once_when_empty(autojump_clock: MockClock) -> None:
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=100)
    with trio.fail_after(CEILING):
        await outbox.wait_empty()


# -- close -----------------------------------------------------------------------------------------


async def test_outbox_close_drops_the_backlog() -> None:
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=100)
    outbox.put_nowait("a", 10)
    outbox.put_nowait("b", 10)
    outbox.close()
    assert outbox.closed
    assert outbox.take_all() == []
    stats = outbox.statistics()
    assert (stats.queued, stats.queued_bytes, stats.in_flight, stats.closed) == (0, 0, 0, True)


async def test_outbox_close_clears_backlog_since() -> None:
    # OutboxStatistics.backlog_since: "... if it is not empty". A closed outbox is.
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=100)
    outbox.put_nowait("a", 10)
    outbox.close()
    assert outbox.statistics().backlog_since is None


async def test_outbox_put_after_close_raises_closed_resource_error() -> None:
    outbox: Outbox[str] = Outbox(capacity=5, max_bytes=100)
    outbox.close()
    with pytest.raises(trio.ClosedResourceError):
        outbox.put_nowait("a", 1)


async def test_outbox_close_wakes_every_waiter(autojump_clock: MockClock) -> None:
    full: Outbox[str] = Outbox(capacity=1, max_bytes=100)
    full.put_nowait("a", 1)
    idle: Outbox[str] = Outbox(capacity=1, max_bytes=100)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            space = Waiter(nursery, partial(full.wait_for_space, 1))
            empty = Waiter(nursery, full.wait_empty)
            await wait_all_tasks_blocked()
            assert not any(w.finished.is_set() for w in (space, empty))
            idle.close()
            full.close()
            for waiter in (space, empty):
                await waiter.finished.wait()
    assert isinstance(space.error, trio.ClosedResourceError)
    assert empty.error is None


async def test_outbox_waiters_return_at_once_after_close(autojump_clock: MockClock) -> None:
    outbox: Outbox[str] = Outbox(capacity=1, max_bytes=100)
    outbox.put_nowait("a", 1)
    outbox.take_all()
    outbox.close()
    with trio.fail_after(CEILING):
        await outbox.wait_empty()
        with pytest.raises(trio.ClosedResourceError):
            await outbox.wait_for_space(1)


async def test_outbox_lag_says_how_long_it_has_been_behind_and_full(
    autojump_clock: MockClock,
) -> None:
    outbox: Outbox[str] = Outbox(capacity=2, max_bytes=100)
    started = trio.current_time()
    assert outbox.lag(started) == Lag(0.0, 0.0)
    outbox.put_nowait("a", 1)  # behind: the kernel did not take "a"
    await trio.sleep(3)
    outbox.put_nowait("b", 1)  # now full
    await trio.sleep(2)
    assert outbox.lag(trio.current_time()) == Lag(behind_seconds=5.0, full_seconds=2.0)
    outbox.take_all()
    outbox.done()
    assert outbox.lag(trio.current_time()) == Lag(0.0, 0.0)
