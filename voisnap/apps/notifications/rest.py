"""The notifications over REST (docs/rest.md, "Notifications").

- ``GET /notifications?limit=50&before=<id>``: the feed, newest first: the
  caller's notifications (for its user, its tenant, or one of its roles);
- ``GET /insights``: the caller's cards not dismissed, newest first;
- ``POST /insights`` ``{title, body}``: a new card (201, and
  ``InsightCardAdded``); ``DELETE /insights/{id}``: dismiss it (204, and
  ``InsightCardDismissed``). Another user's card, an unknown one and one
  dismissed already all answer 404, with the same message;
- ``POST /admin/announcements`` ``{title, body, severity}``: a
  ``SystemAnnouncement`` to the caller's tenant (role ``admin``; 201);
- ``POST /admin/notifications`` ``{event, payload, audience}``: any event of
  the hub to a user, the tenant or a role of the caller's tenant (role
  ``admin``; 201), for integrations.

A malformed body answers 400, a caller without the role 403, each with
``{"error": ...}`` saying why.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...server.routes import RestRequest, Route
from ...storage.base import (
    ROLE,
    TENANT,
    USER,
    Audience,
    Notification,
    NotificationStore,
    Owner,
    Reader,
)
from ..chat.rest import MAX_LIMIT, page_limit
from .events import PayloadError, payload_of
from .hub import ADMIN
from .insights import CardError, Insights, card_added
from .publisher import Notifications

ADMINS = Audience(ROLE, ADMIN)
NOT_ADMIN = "Only a user with the role 'admin' may do this."
AUDIENCE_SHAPE = (
    '\'audience\' must be exactly one of {"user": id}, {"tenant": true}, {"role": name}.'
)


def feed_item(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.notification_id,
        "event": notification.event,
        "payload": notification.payload,
        "createdAt": unstructure(notification.created_at),
    }


def audience_of(document: Any) -> Audience:
    """The audience a body names; PayloadError unless it names exactly one."""
    if not isinstance(document, dict) or len(document) != 1:
        raise PayloadError(AUDIENCE_SHAPE)
    ((kind, value),) = document.items()
    if kind == TENANT and value is True:
        return Audience(TENANT)
    if kind in (USER, ROLE) and isinstance(value, str) and value.strip():
        return Audience(kind, value)
    raise PayloadError(AUDIENCE_SHAPE)


class NotificationsRest:
    def __init__(
        self, store: NotificationStore, notifications: Notifications, insights: Insights
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._insights = insights

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/notifications", self.feed),
            Route.of("GET", "/insights", self.list_insights),
            Route.of("POST", "/insights", self.add_insight),
            Route.of("DELETE", "/insights/{insight_id}", self.dismiss_insight),
            Route.of("POST", "/admin/announcements", self.announce),
            Route.of("POST", "/admin/notifications", self.notify),
        ]

    async def feed(self, request: RestRequest) -> tuple[int, Any]:
        limit = page_limit(request.query.get("limit"))
        if limit is None:
            return 400, {"error": f"'limit' must be an integer from 1 to {MAX_LIMIT}."}
        before = request.query.get("before") or None
        principal = request.principal
        reader = Reader(principal.tenant_id, principal.user_id, frozenset(principal.roles))
        found = await self._store.list_notifications(reader, limit=limit, before=before)
        if found is None:
            return 400, {"error": f"'before' names no notification of yours: {before!r}."}
        return 200, [feed_item(notification) for notification in found]

    async def list_insights(self, request: RestRequest) -> tuple[int, Any]:
        cards = await self._insights.list(_owner(request))
        return 200, [unstructure(card_added(card)) for card in cards]

    async def add_insight(self, request: RestRequest) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict):
            return 400, {"error": "The body must be a JSON object with a 'title' and a 'body'."}
        try:
            card = await self._insights.add(_owner(request), body.get("title"), body.get("body"))
        except CardError as error:
            return 400, {"error": str(error)}
        return 201, unstructure(card_added(card))

    async def dismiss_insight(self, request: RestRequest) -> tuple[int, Any]:
        insight_id = request.params["insight_id"]
        if await self._insights.dismiss(_owner(request), insight_id) is None:
            return 404, {"error": f"Insight card '{insight_id}' does not exist."}
        return 204, None

    async def announce(self, request: RestRequest) -> tuple[int, Any]:
        if not request.principal.has_role(ADMIN):
            return 403, {"error": NOT_ADMIN}
        body = request.json()
        if not isinstance(body, dict):
            return 400, {"error": "The body must be a JSON object: {title, body, severity}."}
        return await self._publish(request, Audience(TENANT), "SystemAnnouncement", body)

    async def notify(self, request: RestRequest) -> tuple[int, Any]:
        if not request.principal.has_role(ADMIN):
            return 403, {"error": NOT_ADMIN}
        body = request.json()
        if not isinstance(body, dict) or set(body) != {"event", "payload", "audience"}:
            return 400, {"error": "The body must be a JSON object: {event, payload, audience}."}
        try:
            audience = audience_of(body["audience"])
        except PayloadError as error:
            return 400, {"error": str(error)}
        if body["event"] == "LicenseWarning" and audience != ADMINS:
            # Connections without the role admin never receive it, whoever sends it.
            return 400, {
                "error": "LicenseWarning is for admins only: its audience must be "
                '{"role": "admin"}.'
            }
        return await self._publish(request, audience, body["event"], body["payload"])

    async def _publish(
        self, request: RestRequest, audience: Audience, event: Any, payload: Any
    ) -> tuple[int, Any]:
        """Check ``payload`` against ``event``, then publish it in the caller's tenant."""
        try:
            checked = payload_of(event, payload)
        except PayloadError as error:
            return 400, {"error": str(error)}
        tenant_id = request.principal.tenant_id
        notification = await self._notifications.publish(tenant_id, audience, event, checked)
        return 201, feed_item(notification)


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
