"""Is a connection alive? Keep-alive, client timeout and token expiry as plain
bookkeeping, checked on each heartbeat tick (``hubs.heartbeat``).

HubProtocol.md, "Ping (aka Keep Alive)", and ASP.NET Core's
``HubConnectionContext.KeepAliveTick`` / ``CheckClientTimeout``:

- the server sends a Ping once it has sent nothing for ``keep_alive_interval``;
- a client that has sent nothing for ``client_timeout`` is closed, but only once
  it has sent its first Ping (clients that never ping are never timed out);
- a connection is closed when its access token expires.

Nothing here does I/O or reads a clock: the tick brings the time and two
counters (frames sent and received so far), and gets back what to do. Comparing
counters from tick to tick tells when traffic last happened, to within a tick,
without stamping the time on every send (the fan-out hot path).
"""

from __future__ import annotations

import enum
import math


class Verdict(enum.Enum):
    FINE = "nothing to do"
    PING = "send a Ping"
    CLIENT_TIMED_OUT = "close: the client went silent"
    TOKEN_EXPIRED = "close: the access token expired"


class Liveness:
    # one per connection: slots keep idle connections small
    __slots__ = (
        "_client_timeout",
        "_expires_at",
        "_heard_at",
        "_keep_alive_interval",
        "_pinged",
        "_quiet_since",
        "_received_seen",
        "_sent_seen",
    )

    def __init__(
        self,
        now: float,
        *,
        keep_alive_interval: float,
        client_timeout: float,
        expires_at: float = math.inf,
    ) -> None:
        self._keep_alive_interval = keep_alive_interval
        self._client_timeout = client_timeout
        self._expires_at = expires_at  # on the same clock as ``now``
        self._sent_seen = self._received_seen = 0
        self._quiet_since = self._heard_at = now
        self._pinged = False

    def client_pinged(self, now: float) -> None:
        """The client sent a Ping: from now on, its silence counts."""
        if not self._pinged:
            self._pinged = True
            self._heard_at = now

    def check(self, now: float, sent: int, received: int) -> Verdict:
        if now >= self._expires_at:
            return Verdict.TOKEN_EXPIRED
        if received != self._received_seen:
            self._received_seen, self._heard_at = received, now
        elif self._pinged and now - self._heard_at >= self._client_timeout:
            return Verdict.CLIENT_TIMED_OUT
        if sent != self._sent_seen:
            self._sent_seen, self._quiet_since = sent, now
        elif now - self._quiet_since >= self._keep_alive_interval:
            self._sent_seen, self._quiet_since = sent + 1, now  # the Ping about to go
            return Verdict.PING
        return Verdict.FINE
