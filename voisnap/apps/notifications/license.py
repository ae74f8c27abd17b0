"""``LicenseWarning``: the license expires soon, or has (docs/hubs/notifications.md).

With ``--license-expires DATE`` (docs/settings.md), from 14 days before that
date on, and for ever after it, the tenants' administrators are warned:

- each connection with the role ``admin``, on connect, to it alone (not stored);
- once a day, at midnight UTC, every tenant that has an admin connection on
  this process at that moment: to the tenant's admins (the role group), stored
  in the feed. With several processes, each of them may have such a
  connection; the warning of one tenant on one day is *claimed* in the store
  (``license-warning/<tenant>/<date>``), and only the process that wins the
  claim sends it, so it is sent once.

A connection without the role ``admin`` never receives it: it is not in the
role group, and the on-connect warning is sent only to admins.

Time comes from a ``Clock``, so that tests drive days and midnights without
waiting for them.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict

import trio

from ...clock import Clock, SystemClock
from ...failures import error_boundary
from ...storage.base import ROLE, Audience, NotificationStore, StoreError
from .events import LicenseWarning
from .hub import ADMIN
from .publisher import Notifications

log = logging.getLogger(__name__)

WARN_DAYS = 14
DAY = datetime.timedelta(days=1)


def days_left(expires: datetime.date, today: datetime.date) -> int:
    """Whole days from ``today`` to ``expires``: 0 on the day, negative after it."""
    return (expires - today).days


def warning_on(expires: datetime.date | None, today: datetime.date) -> LicenseWarning | None:
    """The warning due on ``today``, if one is."""
    if expires is None or days_left(expires, today) > WARN_DAYS:
        return None
    return LicenseWarning(expires.isoformat(), days_left(expires, today))


def next_midnight(now: datetime.datetime) -> datetime.datetime:
    """The first midnight UTC after ``now``."""
    today = now.astimezone(datetime.UTC).date()
    return datetime.datetime.combine(today + DAY, datetime.time(), datetime.UTC)


def claim_key(tenant_id: str, day: datetime.date) -> str:
    return f"license-warning/{tenant_id}/{day.isoformat()}"


class LicenseWatch:
    """The warnings of one process: it counts this process's admin connections
    per tenant (the hub tells it), and runs in the server's nursery."""

    def __init__(
        self,
        expires: datetime.date | None,
        notifications: Notifications,
        store: NotificationStore,
        node: str,
        clock: Clock | None = None,
    ) -> None:
        self._expires = expires
        self._notifications = notifications
        self._store = store
        self._node = node
        self._clock = clock or SystemClock()
        self._admins: defaultdict[str, set[str]] = defaultdict(set)

    # -- what the hub tells it --------------------------------------------------------------------

    def warning_now(self) -> LicenseWarning | None:
        return warning_on(self._expires, self._clock.now().astimezone(datetime.UTC).date())

    def admin_connected(self, tenant_id: str, connection_id: str) -> None:
        self._admins[tenant_id].add(connection_id)

    def admin_disconnected(self, tenant_id: str, connection_id: str) -> None:
        connections = self._admins.get(tenant_id)
        if connections is not None:
            connections.discard(connection_id)
            if not connections:
                del self._admins[tenant_id]

    def tenants_with_admins(self) -> list[str]:
        return sorted(self._admins)

    # -- every midnight ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Warn at every midnight UTC, for as long as the server runs."""
        task_status.started()
        if self._expires is None:
            await trio.sleep_forever()
        while True:
            midnight = next_midnight(self._clock.now())
            await self._clock.sleep_until(midnight)
            await self.warn_tenants(midnight.date())

    async def warn_tenants(self, day: datetime.date) -> list[str]:
        """The day's warning, to each tenant with admins here that no other
        process has warned today; the tenants this process warned."""
        warning = warning_on(self._expires, day)
        if warning is None:
            return []
        warned = []
        for tenant_id in self.tenants_with_admins():
            # One tenant's failure must not stop the others' warnings.
            with error_boundary(log, f"the license warning of tenant {tenant_id}"):
                if await self._warn(tenant_id, day, warning):
                    warned.append(tenant_id)
        return warned

    async def _warn(self, tenant_id: str, day: datetime.date, warning: LicenseWarning) -> bool:
        """Claim the tenant's warning of ``day``; if this process won, send it."""
        try:
            won = await self._store.claim(claim_key(tenant_id, day), self._node, self._clock.now())
            if won:
                await self._notifications.publish(
                    tenant_id, Audience(ROLE, ADMIN), "LicenseWarning", warning
                )
        except StoreError as error:  # the database is down: not a bug, and not for ever
            log.warning("no license warning for tenant %s on %s: %s", tenant_id, day, error)
            return False
        return won
