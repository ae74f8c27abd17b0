"""One path for every notification: store it, then send it (docs/hubs/notifications.md).

docs/rest.md, "Catching up": missed events are not replayed, clients catch up
over REST. So a notification is stored first (the feed, ``GET
/notifications``), then sent once to its audience's router key: the router
serializes it once per protocol and fans it out, and, when voisnap runs as
several processes, publishes it on the backplane for the others' connections.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import Any

from ...hubs.binder import unstructure
from ...hubs.hub import invocation_of
from ...routing.router import Router
from ...storage.base import Audience, Notification, NotificationStore, utc_now
from .hub import audience_key


class Notifications:
    def __init__(
        self,
        store: NotificationStore,
        router: Router,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._store = store
        self._router = router
        self._now = now

    async def publish(
        self, tenant_id: str, audience: Audience, event: str, payload: Any
    ) -> Notification:
        """Store ``event`` with ``payload`` (an event of ``events``, or its wire
        form) for ``audience`` in ``tenant_id``, then send it there."""
        notification = Notification(
            notification_id="ntf_" + uuid.uuid4().hex,
            tenant_id=tenant_id,
            audience=audience,
            event=event,
            payload=unstructure(payload),
            created_at=self._now(),
        )
        await self._store.add_notification(notification)
        message = invocation_of(event, (notification.payload,))
        await self._router.send_group(audience_key(tenant_id, audience), message)
        return notification
