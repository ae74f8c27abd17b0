"""The server's garbage-collector pauses during a measurement, from ``/stats``.

voisnap's ``/stats`` has a ``"gc"`` key (``voisnap/server/collector.py``): per
generation, totals since start-up, a histogram of pause lengths and the last
100 pauses. A measurement wants only what happened inside its window, and when:
so ``GcWatch`` polls ``/stats`` while the window is open, and keeps the pauses
that are new at each poll with the poll's time. Full collections are rare
(seconds apart), so each of theirs is seen; young ones can outrun the last-100
list between polls, which ``unseen`` counts (the histogram still counts them).

A server without the ``"gc"`` key (a voisnap from before issue 9) gives None.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

POLL_SECONDS = 0.5
SLOW_BUCKETS = ("50", "100", "200", "inf")
"""The histogram's buckets above 20 ms (the issue's limit for one pause)."""


class GcWatch:
    def __init__(self, fetch: Callable[[], dict | None]) -> None:
        self._fetch = fetch
        self._first: dict | None = None
        self._last: dict | None = None
        self._pauses: list[tuple[float, int, float]] = []  # (seconds, generation, ms)
        self._unseen = [0, 0, 0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._first = self._last = self._gc()
        if self._first is not None:
            self._thread.start()

    def _gc(self) -> dict | None:
        stats = self._fetch()
        return None if stats is None else stats.get("gc")

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._take(self._gc())

    def _take(self, now: dict | None) -> None:
        if now is None or self._last is None:
            return
        at = time.monotonic() - self._started
        for generation, (old, new) in enumerate(
            zip(self._last["generations"], now["generations"], strict=True)
        ):
            fresh = new["collections"] - old["collections"]
            seen = new["recent_ms"][-fresh:] if fresh else []
            self._unseen[generation] += fresh - len(seen)
            self._pauses.extend((at, generation, pause) for pause in seen)
        self._last = now

    def stop(self) -> dict | None:
        """The window's figures; None if the server reports no ``gc``."""
        if self._first is None:
            return None
        self._stop.set()
        self._thread.join()
        self._take(self._gc())
        return self._summary(self._first, self._last)

    def _summary(self, first: dict, last: dict) -> dict:
        pairs = list(zip(first["generations"], last["generations"], strict=True))
        longest = [
            max((ms for _, g, ms in self._pauses if g == generation), default=0.0)
            for generation in range(len(pairs))
        ]
        full_old, full_new = pairs[2]
        fulls = full_new["collections"] - full_old["collections"]
        full_cpu = full_new.get("total_cpu_ms", 0.0) - full_old.get("total_cpu_ms", 0.0)
        return {
            "collections": [new["collections"] - old["collections"] for old, new in pairs],
            "collected": [new["collected"] - old["collected"] for old, new in pairs],
            "full_collections": fulls,
            "longest_ms": longest,
            "longest_full_ms": longest[2],
            # The collector's own work, without time the process was not scheduled.
            "mean_full_cpu_ms": full_cpu / fulls if fulls else 0.0,
            "longest_cpu_ms_since_start": [
                new.get("longest_cpu_ms") for new in last["generations"]
            ],
            "pauses_over_20ms": sum(
                new["histogram_ms"][bucket] - old["histogram_ms"][bucket]
                for old, new in pairs
                for bucket in SLOW_BUCKETS
            ),
            "unseen": list(self._unseen),
            "full_pauses": [(at, ms) for at, g, ms in self._pauses if g == 2],
            "frozen": last.get("frozen"),
        }
