"""The garbage collector's pauses are observable (issue 9).

A full collection stops every connection at once, so its length is a server
figure the bench reads from ``GET /stats``. Collections are forced here with
cycles built on purpose; the pause lengths are real (or come from an injected
clock where an exact value is checked), never asserted against the wall clock.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import httpx
import trio

from voisnap.config import Settings
from voisnap.server.collector import (
    BUCKETS_MS,
    RECENT,
    GarbageCollectorWatch,
    collector_statistics,
    install_collector,
)
from voisnap.server.factory import create_server
from voisnap.server.runner import serve

CEILING = 30
CYCLES = 2000


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycles(number: int) -> None:
    """``number`` pairs of objects that hold each other: only the collector frees them."""
    for _ in range(number):
        first, second = Node(), Node()
        first.other, second.other = second, first


@contextmanager
def watching(watch: GarbageCollectorWatch) -> Iterator[GarbageCollectorWatch]:
    watch.install()
    try:
        yield watch
    finally:
        watch.uninstall()


def test_collector_records_a_full_collection_of_cycles() -> None:
    gc.collect()
    with watching(GarbageCollectorWatch()) as watch:
        make_cycles(CYCLES)
        gc.collect()
    full = watch.statistics().generations[2]
    assert full.generation == 2
    assert full.collections >= 1
    # Two Nodes and their two instance dicts per cycle (fewer if a younger
    # collection freed some first; none of them survive).
    assert full.collected + sum(g.collected for g in watch.statistics().generations[:2]) >= (
        2 * CYCLES
    )
    assert full.uncollectable == 0
    assert 0 < full.longest_ms <= full.total_ms
    assert 0 <= full.longest_cpu_ms <= full.total_cpu_ms
    assert len(full.recent_ms) == full.collections
    assert max(full.recent_ms) == full.longest_ms
    assert sum(full.histogram_ms.values()) == full.collections


def test_collector_counts_each_generation_apart() -> None:
    with watching(GarbageCollectorWatch()) as watch:
        for generation in (0, 0, 1, 2):
            gc.collect(generation)
    collections = [g.collections for g in watch.statistics().generations]
    # Allocation may trigger young collections of its own, never a full one here.
    assert collections[0] >= 2
    assert collections[1] >= 1
    assert collections[2] == 1


def test_collector_pause_is_the_time_between_start_and_stop() -> None:
    ticks, cpu_ticks = count(), count()
    watch = GarbageCollectorWatch(
        clock=lambda: next(ticks) * 0.030, cpu_clock=lambda: next(cpu_ticks) * 0.010
    )
    with watching(watch):
        gc.collect()
    full = watch.statistics().generations[2]
    assert full.recent_ms[-1] == full.longest_ms == 30.0
    assert full.longest_cpu_ms == 10.0
    empty = {str(bound): 0 for bound in BUCKETS_MS} | {"inf": 0}
    assert full.histogram_ms == empty | {"50": full.collections}


def test_collector_keeps_only_the_recent_pauses() -> None:
    with watching(GarbageCollectorWatch()) as watch:
        for _ in range(RECENT + 5):
            gc.collect(0)
    young = watch.statistics().generations[0]
    assert young.collections >= RECENT + 5
    assert len(young.recent_ms) == RECENT


def test_collector_stops_counting_once_uninstalled() -> None:
    with watching(GarbageCollectorWatch()) as watch:
        gc.collect()
    before = watch.statistics()
    gc.collect()
    assert watch.statistics() == before
    assert not watch.installed


def test_install_collector_once_per_process() -> None:
    first = install_collector()
    second = install_collector()
    assert first is second
    assert gc.callbacks.count(first._callback) == 1
    gc.collect()
    figures = collector_statistics()
    assert figures is not None
    assert [g["generation"] for g in figures["generations"]] == [0, 1, 2]
    assert figures["generations"][2]["collections"] >= 1


async def test_collector_statistics_in_server_stats(tmp_path: Path) -> None:
    settings = Settings(host="127.0.0.1", port=0, data_dir=tmp_path, shutdown_timeout=2)
    server = create_server(settings)
    listening = trio.Event()
    url: list[str] = []

    def ready(line: str) -> None:
        url.append(line.split()[-1])
        listening.set()

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve(server, ready=ready))
            await listening.wait()
            gc.collect()
            async with httpx.AsyncClient() as http:
                stats = (await http.get(url[0] + "/stats")).json()
            nursery.cancel_scope.cancel()
    full = stats["gc"]["generations"][2]
    assert full["collections"] >= 1
    assert full["longest_ms"] > 0
    assert stats["gc"]["frozen"] > 0
