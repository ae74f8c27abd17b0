"""How long the cyclic garbage collector stops the server, per generation (issue 9).

Theory of operation: reference counting frees most objects the moment nobody
holds them; only objects that reference each other wait for CPython's cyclic
collector. A collection runs on whichever thread happened to allocate, holding
the GIL, so while it runs trio's loop runs nothing: every connection waits at
once, and a long full (generation 2) collection is a latency spike for all of
them. A soak of churning clients found full collections of 94-157 ms, which is
why this is measured in the server rather than guessed at from a client.

CPython calls each function in ``gc.callbacks`` with ``("start", info)`` just
before a collection and ``("stop", info)`` just after it; ``info`` names the
generation and, on stop, how many objects were collected and how many were
uncollectable. ``GarbageCollectorWatch`` times the gap between the two and keeps,
per generation, counts, the longest pause, a coarse histogram and the last
``RECENT`` pauses. ``GET /stats`` shows them under ``"gc"``.

A pause is wall-clock time: what the connections wait. On a busy machine it also
holds time the process was not scheduled, so the thread's CPU time is kept too
(``longest_cpu_ms``): that part is the collector's own work.

Collections never overlap (the collector refuses to start a second one while one
runs), so one start time is enough, whichever thread the collection runs on.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any

import attrs

RECENT = 100
"""How many of the latest pauses each generation keeps."""
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200)
"""Upper bounds of the histogram's buckets; a last bucket takes the rest."""
GENERATIONS = 3


@attrs.frozen
class GenerationStatistics:
    """Collections of one generation since the watch was installed (2 is a full one)."""

    generation: int
    collections: int
    collected: int
    """Objects freed: each was unreachable, held only by a cycle."""
    uncollectable: int
    longest_ms: float
    total_ms: float
    longest_cpu_ms: float
    """The most CPU time one collection used (on the thread that ran it)."""
    total_cpu_ms: float
    histogram_ms: dict[str, int]
    """Pauses by duration: the key is the bucket's upper bound in ms ("inf": the rest)."""
    recent_ms: tuple[float, ...]
    """The last ``RECENT`` pauses, oldest first."""


@attrs.frozen
class CollectorStatistics:
    generations: tuple[GenerationStatistics, ...]
    frozen: int
    """Objects ``gc.freeze()`` moved out of every collection (the server's start-up state)."""


class _Generation:
    """The running tallies of one generation; mutated only by the callback."""

    __slots__ = (
        "collected",
        "collections",
        "histogram",
        "longest",
        "longest_cpu",
        "recent",
        "total",
        "total_cpu",
        "uncollectable",
    )

    def __init__(self) -> None:
        self.collections = 0
        self.collected = 0
        self.uncollectable = 0
        self.longest = 0.0
        self.total = 0.0
        self.longest_cpu = 0.0
        self.total_cpu = 0.0
        self.histogram = [0] * (len(BUCKETS_MS) + 1)
        self.recent: deque[float] = deque(maxlen=RECENT)

    def record(self, pause_ms: float, cpu_ms: float, info: dict[str, int]) -> None:
        self.collections += 1
        self.collected += info.get("collected", 0)
        self.uncollectable += info.get("uncollectable", 0)
        self.longest = max(self.longest, pause_ms)
        self.total += pause_ms
        self.longest_cpu = max(self.longest_cpu, cpu_ms)
        self.total_cpu += cpu_ms
        self.histogram[_bucket(pause_ms)] += 1
        self.recent.append(pause_ms)

    def statistics(self, generation: int) -> GenerationStatistics:
        labels = [str(bound) for bound in BUCKETS_MS] + ["inf"]
        return GenerationStatistics(
            generation=generation,
            collections=self.collections,
            collected=self.collected,
            uncollectable=self.uncollectable,
            longest_ms=round(self.longest, 3),
            total_ms=round(self.total, 3),
            longest_cpu_ms=round(self.longest_cpu, 3),
            total_cpu_ms=round(self.total_cpu, 3),
            histogram_ms=dict(zip(labels, self.histogram, strict=True)),
            recent_ms=tuple(round(pause, 3) for pause in self.recent),
        )


def _bucket(pause_ms: float) -> int:
    for index, bound in enumerate(BUCKETS_MS):
        if pause_ms <= bound:
            return index
    return len(BUCKETS_MS)


class GarbageCollectorWatch:
    """Times every collection through ``gc.callbacks``; ``install``/``uninstall``
    are idempotent."""

    def __init__(self, clock: Any = time.perf_counter, cpu_clock: Any = time.thread_time) -> None:
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._generations = [_Generation() for _ in range(GENERATIONS)]
        self._started: tuple[float, float] | None = None

    @property
    def installed(self) -> bool:
        return self._callback in gc.callbacks

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        while self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside the collection, so it allocates little and never raises:
        # an exception here would be printed as unraisable in every collection.
        if phase == "start":
            self._started = (self._clock(), self._cpu_clock())
        elif self._started is not None:
            started, cpu_started = self._started
            pause_ms = (self._clock() - started) * 1000
            cpu_ms = (self._cpu_clock() - cpu_started) * 1000
            self._started = None
            generation = min(info.get("generation", 0), GENERATIONS - 1)
            self._generations[generation].record(pause_ms, cpu_ms, info)

    def statistics(self) -> CollectorStatistics:
        return CollectorStatistics(
            generations=tuple(
                tallies.statistics(generation)
                for generation, tallies in enumerate(self._generations)
            ),
            frozen=gc.get_freeze_count(),
        )


_process_watch: GarbageCollectorWatch | None = None


def install_collector() -> GarbageCollectorWatch:
    """The process's one watch, installed: a server started twice in one process
    (as in the tests) keeps counting on the same one rather than timing each
    collection twice."""
    global _process_watch
    if _process_watch is None:
        _process_watch = GarbageCollectorWatch()
    _process_watch.install()
    return _process_watch


def collector_statistics() -> dict[str, Any] | None:
    """The process watch's figures for ``GET /stats``; None before ``install_collector``."""
    if _process_watch is None:
        return None
    return attrs.asdict(_process_watch.statistics())
