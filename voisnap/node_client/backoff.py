"""How long to wait before each reconnection attempt.

docs/hubs/node.md, "The reference node": the node "reconnects with backoff (0,
2, 10, 30 s, then every 30 s)". A connection that succeeds starts the count
again, so a node that loses a good connection retries at once.
"""

from __future__ import annotations

from collections.abc import Sequence


class Backoff:
    """``next_delay()`` walks the delays, then repeats the last; ``reset()`` starts over."""

    def __init__(self, delays: Sequence[float]) -> None:
        if not delays:
            raise ValueError("Backoff needs at least one delay.")
        self._delays = tuple(delays)
        self._attempt = 0

    def next_delay(self) -> float:
        delay = self._delays[min(self._attempt, len(self._delays) - 1)]
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0
