"""Who receives what on ``/hubs/notifications`` (issue 13), in one process.

Connections are in-memory clients of a real hub endpoint; notifications go through the
real publisher onto a real SQLite store. Each connection receives its user's events, its
tenant's and its roles'; nothing crosses tenants. "Did not receive" is proven by a fence: a
round trip on the same connection (an invocation of a method the hub does not have), whose
error Completion is written after anything the connection was sent before it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import trio

from tests.support.fakes import TestClient, connect
from voisnap.principal import Principal
from voisnap.protocol import CompletionMessage, InvocationMessage
from voisnap.storage.base import Audience, Owner, Reader

from .conftest import CEILING, App

ADA = Principal("ada", "acme", frozenset({"admin"}))
BOB = Principal("bob", "acme")
ELSEWHERE = Principal("ada", "globex", frozenset({"admin"}))
ANNOUNCEMENT = {"title": "Maintenance", "body": "Tonight", "severity": "info"}


async def fenced(client: TestClient) -> list[tuple[str, Any]]:
    """Everything the connection was sent up to now, as (target, payload)."""
    completion = await client.invoke("NoSuchMethod")
    assert isinstance(completion, CompletionMessage) and completion.error
    received = [
        (m.target, m.arguments[0]) for m in client.unread if isinstance(m, InvocationMessage)
    ]
    client.unread.clear()
    return received


@contextlib.asynccontextmanager
async def clients(app: App, *principals: Principal) -> AsyncIterator[list[TestClient]]:
    """Connected clients, each past ``on_connected`` (a fence proves it)."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(connect(app.endpoint, principal=principal))
            for principal in principals
        ]
        for client in opened:
            await fenced(client)  # on connect, an admin may be warned (test_license.py)
        yield opened


async def test_delivery_user_tenant_and_role_reach_exactly_their_connections(app: App) -> None:
    with trio.fail_after(CEILING):
        async with clients(app, ADA, ADA, BOB, ELSEWHERE) as (ada1, ada2, bob, other):
            await app.notifications.publish(
                "acme", Audience("user", "ada"), "InsightCardDismissed", {"id": "ins_1"}
            )
            await app.notifications.publish(
                "acme", Audience("tenant"), "SystemAnnouncement", ANNOUNCEMENT
            )
            await app.notifications.publish(
                "acme",
                Audience("role", "admin"),
                "NodeOffline",
                {"nodeId": "n1", "name": "box", "at": "x"},
            )
            seen = [await fenced(client) for client in (ada1, ada2, bob, other)]
    for_ada = [
        ("InsightCardDismissed", {"id": "ins_1"}),
        ("SystemAnnouncement", ANNOUNCEMENT),
        ("NodeOffline", {"nodeId": "n1", "name": "box", "at": "x"}),
    ]
    assert seen == [for_ada, for_ada, [("SystemAnnouncement", ANNOUNCEMENT)], []]


async def test_delivery_is_stored_first_in_the_readers_feeds(app: App) -> None:
    with trio.fail_after(CEILING):
        sent = await app.notifications.publish(
            "acme", Audience("role", "admin"), "SystemAnnouncement", ANNOUNCEMENT
        )
        ada = await app.store.list_notifications(
            Reader("acme", "ada", frozenset({"admin"})), limit=10
        )
        bob = await app.store.list_notifications(Reader("acme", "bob"), limit=10)
    assert ada == [sent] and bob == []
    assert sent.created_at == app.clock.now()


async def test_delivery_insight_cards_to_their_owner_only(app: App) -> None:
    with trio.fail_after(CEILING):
        async with clients(app, BOB, BOB, ADA) as (bob1, bob2, ada):
            await fenced(ada)
            card = await app.insights.add(Owner("acme", "bob"), " Q3 ", "Revenue is up.")
            dismissed = await app.insights.dismiss(Owner("acme", "bob"), card.insight_id)
            again = await app.insights.dismiss(Owner("acme", "bob"), card.insight_id)
            seen = [await fenced(client) for client in (bob1, bob2, ada)]
    added = {
        "id": card.insight_id,
        "title": "Q3",
        "body": "Revenue is up.",
        "createdAt": "2026-12-01T10:30:00.000Z",
    }
    both = [("InsightCardAdded", added), ("InsightCardDismissed", {"id": card.insight_id})]
    assert seen == [both, both, []]
    assert dismissed is not None and again is None
