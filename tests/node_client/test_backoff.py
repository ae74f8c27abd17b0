"""Reconnection delays: 0, 2, 10, 30 s, then every 30 s (docs/hubs/node.md)."""

from __future__ import annotations

from voisnap.node_client.backoff import Backoff
from voisnap.node_client.config import BACKOFF_DELAYS


def test_backoff_walks_the_delays_then_repeats_the_last() -> None:
    backoff = Backoff(BACKOFF_DELAYS)
    assert [backoff.next_delay() for _ in range(6)] == [0, 2, 10, 30, 30, 30]


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(BACKOFF_DELAYS)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0
