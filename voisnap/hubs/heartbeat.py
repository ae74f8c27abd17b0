"""One timer for all connections: keep-alive Pings, client timeouts, token expiry.

ASP.NET Core does not give each connection timers of its own: its
``HttpConnectionManager`` scans every connection once a second (the
"heartbeat"), and each connection checks its keep-alive and client timeout on
that tick (``HubConnectionContext.KeepAliveTick`` / ``CheckClientTimeout``).
voisnap does the same, for the same reason: a sleeping task per connection
costs memory and wake-ups, and a server with 5000 idle connections would pay
5000 of them.

The tick comes at most every second, and more often when a setting is shorter
(tests shrink them), so that every deadline is met within one tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import trio

from ..config import Settings
from ..failures import error_boundary

log = logging.getLogger(__name__)

MAX_PERIOD = 1.0


class Ticking(Protocol):
    def tick(self, now: float) -> None:
        """Check keep-alive, client timeout and expiry; ``now`` is trio's clock."""

    def crashed(self, error: Exception) -> None:
        """``tick`` raised: close this connection with an error."""


def heartbeat_period(settings: Settings) -> float:
    return min(MAX_PERIOD, settings.keep_alive_interval / 2, settings.client_timeout / 2)


async def run_heartbeat(
    connections: Callable[[], Iterable[Ticking]],
    settings: Settings,
    also: Callable[[float], None] = lambda now: None,
) -> None:
    """Tick every connection ``connections()`` returns, then ``also(now)``, forever.

    Each tick runs in its own error boundary: a connection whose tick fails is
    closed, and the heartbeat goes on for every other one.
    """
    period = heartbeat_period(settings)
    while True:
        await trio.sleep(period)
        now = trio.current_time()
        for connection in list(connections()):
            with error_boundary(log, "a heartbeat tick", connection.crashed):
                connection.tick(now)
        with error_boundary(log, "the heartbeat"):
            also(now)
