"""``/hubs/notifications``: a user's live feed (docs/hubs/notifications.md).

Every connection receives its user's events, its tenant's events, and the
events for each of its roles: the router already keys every connection by its
user and its tenant (``user_key``, ``tenant_key``), and on connect the
connection joins one server-internal group per role of its token
(``role_key``). Clients call nothing: the hub only sends.

A connection with the role ``admin`` is also told, on connect and to it alone,
when the license expires soon (``LicenseWarning``, not stored); the license
watch counts those connections, to know which tenants to warn each day.
"""

from __future__ import annotations

from typing import Protocol

from ...hubs.hub import Hub
from ...routing.router import GroupKey, group_key, tenant_key, user_key
from ...storage.base import ROLE, USER, Audience
from .events import LicenseWarning

ROLES = "notify-role/"
ADMIN = "admin"


def role_group(role: str) -> str:
    return ROLES + role


def role_key(tenant_id: str, role: str) -> GroupKey:
    """The connections of a tenant whose token has ``role`` (server-internal)."""
    return group_key(tenant_id, role_group(role))


def audience_key(tenant_id: str, audience: Audience) -> GroupKey:
    """The router key of an audience in a tenant."""
    if audience.kind == USER:
        return user_key(tenant_id, audience.name)
    if audience.kind == ROLE:
        return role_key(tenant_id, audience.name)
    return tenant_key(tenant_id)


class AdminPresence(Protocol):
    """What the hub tells the license watch (``license.LicenseWatch``)."""

    def warning_now(self) -> LicenseWarning | None: ...

    def admin_connected(self, tenant_id: str, connection_id: str) -> None: ...

    def admin_disconnected(self, tenant_id: str, connection_id: str) -> None: ...


class NotificationsHub(Hub):
    services: AdminPresence

    async def on_connected(self) -> None:
        context = self.context
        for role in sorted(context.roles):
            await self.groups.add(context.connection_id, role_group(role))
        if ADMIN in context.roles:
            self.services.admin_connected(context.tenant_id, context.connection_id)
            warning = self.services.warning_now()
            if warning is not None:
                await self.clients.caller.send("LicenseWarning", warning)

    async def on_disconnected(self, error: Exception | None) -> None:
        context = self.context
        if ADMIN in context.roles:
            self.services.admin_disconnected(context.tenant_id, context.connection_id)
