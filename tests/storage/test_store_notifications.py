"""The notification feed, insight cards and claims: the store's half of issue 13.

Every test runs on SQLite and on a real PostgreSQL (``conftest``). What is checked is
what the notifications app relies on (``storage.sql_notifications``): a reader's feed holds
the notifications of its tenant for its user, its whole tenant or one of its roles, newest
first, paged by a notification id that the reader may read (None otherwise); a card is its
owner's only, listed newest first until dismissed, and dismissed once; a claim is won by
exactly one of several stores (processes) on one database, also when they claim at once.

Times are fixed (``records.at``). No test sleeps.
"""

from __future__ import annotations

import trio

from voisnap.storage.base import Audience, Insight, Notification, Owner, Reader
from voisnap.storage.sql import SqlStore

from .backends import Backend
from .records import ADA, ADA_ELSEWHERE, BOB, at

ADA_READS = Reader("acme", "ada", frozenset({"admin"}))
BOB_READS = Reader("acme", "bob")
ELSEWHERE_READS = Reader("globex", "ada", frozenset({"admin"}))


def notification(n: int, audience: Audience, tenant: str = "acme") -> Notification:
    return Notification(
        f"ntf_{n}",
        tenant,
        audience,
        "SystemAnnouncement",
        {"title": f"t{n}", "body": "b", "severity": "info"},
        at(n),
    )


async def feed(store: SqlStore, reader: Reader, **page: object) -> list[str] | None:
    found = await store.list_notifications(reader, limit=page.pop("limit", 50), **page)  # type: ignore[arg-type]
    return None if found is None else [n.notification_id for n in found]


async def stored_feed(store: SqlStore) -> None:
    for n, audience, tenant in (
        (1, Audience("tenant"), "acme"),
        (2, Audience("user", "ada"), "acme"),
        (3, Audience("user", "bob"), "acme"),
        (4, Audience("role", "admin"), "acme"),
        (5, Audience("tenant"), "globex"),
        (6, Audience("role", "auditor"), "acme"),
        (7, Audience("tenant"), "acme"),
    ):
        await store.add_notification(notification(n, audience, tenant))


async def test_store_notifications_each_reader_reads_its_own_newest_first(
    store: SqlStore,
) -> None:
    await stored_feed(store)
    assert await feed(store, ADA_READS) == ["ntf_7", "ntf_4", "ntf_2", "ntf_1"]
    assert await feed(store, BOB_READS) == ["ntf_7", "ntf_3", "ntf_1"]
    assert await feed(store, ELSEWHERE_READS) == ["ntf_5"]
    auditor = Reader("acme", "eve", frozenset({"auditor", "admin"}))
    assert await feed(store, auditor) == ["ntf_7", "ntf_6", "ntf_4", "ntf_1"]


async def test_store_notifications_round_trip_every_field(store: SqlStore) -> None:
    stored = notification(2, Audience("user", "ada"))
    await store.add_notification(stored)
    assert await store.list_notifications(ADA_READS, limit=1) == [stored]


async def test_store_notifications_page_before_a_notification(store: SqlStore) -> None:
    await stored_feed(store)
    assert await feed(store, ADA_READS, limit=2) == ["ntf_7", "ntf_4"]
    assert await feed(store, ADA_READS, limit=2, before="ntf_4") == ["ntf_2", "ntf_1"]
    assert await feed(store, ADA_READS, limit=2, before="ntf_1") == []


async def test_store_notifications_cursor_the_reader_may_not_read_is_unknown(
    store: SqlStore,
) -> None:
    await stored_feed(store)
    assert await feed(store, ADA_READS, before="ntf_3") is None  # Bob's
    assert await feed(store, ADA_READS, before="ntf_5") is None  # another tenant's
    assert await feed(store, BOB_READS, before="ntf_4") is None  # for admins
    assert await feed(store, ADA_READS, before="nope") is None


async def test_store_insights_listed_newest_first_for_their_owner_only(
    store: SqlStore,
) -> None:
    for n, owner in ((1, ADA), (2, BOB), (3, ADA), (4, ADA_ELSEWHERE)):
        await store.add_insight(Insight(f"ins_{n}", owner, f"title {n}", "body", at(n)))
    assert [i.insight_id for i in await store.list_insights(ADA)] == ["ins_3", "ins_1"]
    assert [i.insight_id for i in await store.list_insights(BOB)] == ["ins_2"]
    assert [i.insight_id for i in await store.list_insights(ADA_ELSEWHERE)] == ["ins_4"]
    assert await store.list_insights(Owner("acme", "nobody")) == []


async def test_store_insights_dismissed_once_by_their_owner(store: SqlStore) -> None:
    card = Insight("ins_1", ADA, "Title", "Body", at(1))
    await store.add_insight(card)
    assert await store.dismiss_insight(BOB, "ins_1", at(2)) is None
    assert await store.dismiss_insight(ADA_ELSEWHERE, "ins_1", at(2)) is None
    dismissed = await store.dismiss_insight(ADA, "ins_1", at(3))
    assert dismissed == Insight("ins_1", ADA, "Title", "Body", at(1), dismissed_at=at(3))
    assert await store.dismiss_insight(ADA, "ins_1", at(4)) is None
    assert await store.list_insights(ADA) == []


async def test_store_claims_one_winner_per_key(store: SqlStore) -> None:
    assert await store.claim("license-warning/acme/2024-05-01", "node-a", at(0)) is True
    assert await store.claim("license-warning/acme/2024-05-01", "node-b", at(1)) is False
    assert await store.claim("license-warning/acme/2024-05-02", "node-b", at(2)) is True
    assert await store.claim("license-warning/globex/2024-05-01", "node-b", at(3)) is True


async def test_store_claims_of_several_stores_at_once_have_one_winner(
    backend: Backend,
) -> None:
    """Several processes (a store each, on one database) claim the same key at once."""
    stores = [await backend.open() for _ in range(4)]
    won: list[str] = []

    async def claim(store: SqlStore, node: str) -> None:
        if await store.claim("license-warning/acme/2024-05-01", node, at(0)):
            won.append(node)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for index, store in enumerate(stores):
                for attempt in range(3):
                    nursery.start_soon(claim, store, f"node-{index}-{attempt}")
    assert len(won) == 1, won
