"""Insight cards: short notes for one user's Home feed (docs/hubs/notifications.md).

A card belongs to one user. It is added by ``POST /insights`` or by an agent
(the ``add_insight`` tool, ``agents.tools``), listed by ``GET /insights`` until
it is dismissed (``DELETE /insights/{id}``). Adding and dismissing are
announced to every connection of the owner (``InsightCardAdded``,
``InsightCardDismissed``) through the one notification path (``publisher``).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import Any

from ...storage.base import (
    MAX_INSIGHT_BODY,
    MAX_INSIGHT_TITLE,
    USER,
    Audience,
    Insight,
    NotificationStore,
    Owner,
    utc_now,
)
from .events import InsightCardAdded, InsightCardDismissed
from .publisher import Notifications


class CardError(ValueError):
    """A title or body that cannot make a card; the text says why."""


def check_card(title: Any, body: Any) -> None:
    """CardError unless ``title`` and ``body`` make a card."""
    for name, value, limit in (
        ("title", title, MAX_INSIGHT_TITLE),
        ("body", body, MAX_INSIGHT_BODY),
    ):
        if not isinstance(value, str) or not value.strip():
            raise CardError(f"'{name}' must be a non-empty string.")
        if len(value) > limit:
            raise CardError(f"'{name}' must be at most {limit} characters.")


def card_added(insight: Insight) -> InsightCardAdded:
    """The card as ``InsightCardAdded`` shows it (and ``GET /insights`` lists it)."""
    return InsightCardAdded(insight.insight_id, insight.title, insight.body, insight.created_at)


class Insights:
    def __init__(
        self,
        store: NotificationStore,
        notifications: Notifications,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._now = now

    async def add(self, owner: Owner, title: str, body: str) -> Insight:
        """A new card of ``owner``'s, stored and announced; CardError for a bad one."""
        check_card(title, body)
        insight = Insight(
            "ins_" + uuid.uuid4().hex, owner, title.strip(), body.strip(), self._now()
        )
        await self._store.add_insight(insight)
        await self._announce(owner, "InsightCardAdded", card_added(insight))
        return insight

    async def dismiss(self, owner: Owner, insight_id: str) -> Insight | None:
        """The card, dismissed and announced; None if ``owner`` has no such card
        left (unknown, another user's, or dismissed already)."""
        dismissed = await self._store.dismiss_insight(owner, insight_id, self._now())
        if dismissed is not None:
            await self._announce(owner, "InsightCardDismissed", InsightCardDismissed(insight_id))
        return dismissed

    async def list(self, owner: Owner) -> list[Insight]:
        return await self._store.list_insights(owner)

    async def _announce(self, owner: Owner, event: str, payload: object) -> None:
        await self._notifications.publish(
            owner.tenant_id, Audience(USER, owner.user_id), event, payload
        )
