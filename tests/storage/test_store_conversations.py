"""Voisnap conversations, on both stores: the per-tenant limit counts live
links across processes, resuming, leaving, ending, lapsed links."""

from __future__ import annotations

import datetime

import attrs
import trio

from voisnap.storage.base import Conversation, ConversationLink, Owner, Refusal
from voisnap.storage.sql import SqlStore

from .backends import Backend

T0 = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
ALICE = Owner("acme", "alice")
BOB = Owner("acme", "bob")
LEASE = datetime.timedelta(seconds=30)


def conversation(session_id: str, owner: Owner = ALICE, at: datetime.datetime = T0) -> Conversation:
    return Conversation(
        session_id, owner, "sophon", "chat", at, metadata={"plan": "gold"}, language="es-MX"
    )


def link(connection_id: str, session_id: str, node: str = "n1",
         at: datetime.datetime = T0, tenant: str = "acme") -> ConversationLink:
    return ConversationLink(connection_id, session_id, tenant, node, at + LEASE)


async def test_a_started_conversation_reads_back(store: SqlStore) -> None:
    assert await store.start_conversation(conversation("s1"), link("c1", "s1"), limit=5) is None
    assert await store.get_conversation("s1") == conversation("s1")
    assert await store.get_conversation("nope") is None


async def test_the_limit_counts_held_conversations_of_the_tenant(store: SqlStore) -> None:
    assert await store.start_conversation(conversation("s1"), link("c1", "s1"), limit=2) is None
    assert await store.start_conversation(
        conversation("s2", BOB), link("c2", "s2"), limit=2) is None
    refused = await store.start_conversation(conversation("s3"), link("c3", "s3"), limit=2)
    assert refused is Refusal.LIMIT
    assert await store.get_conversation("s3") is None
    other_tenant = Conversation("s4", Owner("globex", "carol"), "sophon", "voice", T0)
    assert await store.start_conversation(
        other_tenant, link("c4", "s4", tenant="globex"), limit=2) is None
    await store.leave_conversation("c1", T0)  # a place is free again
    assert await store.start_conversation(conversation("s3"), link("c3", "s3"), limit=2) is None


async def test_a_second_connection_to_a_held_conversation_takes_no_place(store: SqlStore) -> None:
    assert await store.start_conversation(conversation("s1"), link("c1", "s1"), limit=1) is None
    resumed = await store.resume_conversation(
        ALICE, "s1", link("c2", "s1"), limit=1, now=T0, left_after=T0 - LEASE)
    assert resumed == conversation("s1")


async def test_resume_is_refused_for_others_ended_unknown_and_long_left(store: SqlStore) -> None:
    await store.start_conversation(conversation("s1"), link("c1", "s1"), limit=5)
    later = T0 + datetime.timedelta(hours=2)
    window = datetime.timedelta(hours=1)

    async def resume(owner: Owner, session_id: str, at: datetime.datetime) -> object:
        return await store.resume_conversation(
            owner, session_id, link("c9", session_id, at=at), limit=5, now=at,
            left_after=at - window)

    assert await resume(BOB, "s1", T0) is Refusal.GONE
    assert await resume(ALICE, "unknown", T0) is Refusal.GONE
    await store.leave_conversation("c1", T0 + datetime.timedelta(minutes=1))
    assert await resume(ALICE, "s1", later) is Refusal.GONE  # left two hours ago
    resumed = await resume(ALICE, "s1", T0 + datetime.timedelta(minutes=30))
    assert isinstance(resumed, Conversation) and resumed.session_id == "s1"
    ended = await store.end_conversation(ALICE, "s1", "ended", T0)
    assert ended is not None and ended.end_reason == "ended" and ended.ended_at == T0
    assert await store.end_conversation(ALICE, "s1", "again", T0) is None
    assert await resume(ALICE, "s1", T0) is Refusal.GONE


async def test_a_dead_process_links_lapse_and_free_their_places(store: SqlStore) -> None:
    await store.start_conversation(conversation("s1"), link("c1", "s1", node="dead"), limit=1)
    soon = T0 + datetime.timedelta(seconds=10)
    refused = await store.start_conversation(
        conversation("s2", at=soon), link("c2", "s2", at=soon), limit=1)
    assert refused is Refusal.LIMIT
    renewed_until = T0 + datetime.timedelta(seconds=70)
    held = [link("c1", "s1", node="dead")]
    await store.renew_conversation_links("dead", held, renewed_until)  # still alive: renewed
    late = T0 + LEASE + datetime.timedelta(seconds=20)  # past the first lease, not the renewed
    refused = await store.start_conversation(
        conversation("s2", at=late), link("c2", "s2", at=late), limit=1)
    assert refused is Refusal.LIMIT
    lapsed = renewed_until + datetime.timedelta(seconds=1)  # no renewal since: it died
    assert await store.start_conversation(
        conversation("s2", at=lapsed), link("c2", "s2", at=lapsed), limit=1) is None
    first = await store.get_conversation("s1")
    assert first is not None and first.left_at == renewed_until


async def test_two_processes_never_overshoot_the_limit(backend: Backend) -> None:
    """Many starts at once from two stores (two processes): exactly ``limit`` win."""
    stores = [await backend.open(), await backend.open()]
    results: list[Refusal | None] = []

    async def start(index: int) -> None:
        session_id = f"s{index}"
        results.append(await stores[index % 2].start_conversation(
            conversation(session_id), link(f"c{index}", session_id), limit=3))

    async with trio.open_nursery() as nursery:
        for index in range(10):
            nursery.start_soon(start, index)
    assert results.count(None) == 3
    assert results.count(Refusal.LIMIT) == 7


async def test_a_messages_metadata_is_kept(store: SqlStore) -> None:
    from .records import records

    session, message, task = records(ALICE, 1, session_id="s1")
    message = attrs.evolve(message, metadata={"userId": "user_12345", "tags": ["a", 1]})
    await store.accept_message(session=session, message=message, task=task)
    assert await store.get_message(ALICE, message.message_id) == message
    [listed] = await store.list_messages(ALICE, "s1", limit=10, before=None)
    assert listed.metadata == {"userId": "user_12345", "tags": ["a", 1]}


async def test_renewal_keeps_what_is_held_drops_the_rest_and_brings_back_the_lost(
    backend: Backend,
) -> None:
    """A process renews the links its connections hold: a link it no longer
    holds (its leave failed) goes; one another process took for lapsed during
    an outage comes back."""
    mine, other = await backend.open(), await backend.open()
    await mine.start_conversation(conversation("s1"), link("c1", "s1"), limit=5)
    await mine.start_conversation(conversation("s2"), link("c2", "s2"), limit=5)
    later = T0 + LEASE + datetime.timedelta(seconds=5)  # both lapsed: an outage
    assert await other.start_conversation(
        conversation("s3", BOB, at=later), link("c3", "s3", node="n2", at=later), limit=5) is None
    # The sweep took c1 and c2; c2's connection has gone meanwhile, c1's is live.
    await mine.renew_conversation_links("n1", [link("c1", "s1")], later + LEASE)
    refused = await other.start_conversation(
        conversation("s4", BOB, at=later), link("c4", "s4", node="n2", at=later), limit=2)
    assert refused is Refusal.LIMIT  # s1 (back) and s3 hold the two places
    resumed = await other.resume_conversation(
        ALICE, "s2", link("c5", "s2", node="n2", at=later), limit=3, now=later,
        left_after=T0)
    assert isinstance(resumed, Conversation)  # s2 is held by nobody: resumable


async def test_an_ended_conversation_takes_no_place(store: SqlStore) -> None:
    await store.start_conversation(conversation("s1"), link("c1", "s1"), limit=1)
    await store.end_conversation(ALICE, "s1", "ended_by_user", T0)  # its tab is still open
    assert await store.start_conversation(conversation("s2"), link("c2", "s2"), limit=1) is None


async def test_a_lapsed_tab_does_not_mark_a_held_conversation_left(store: SqlStore) -> None:
    await store.start_conversation(conversation("s1"), link("c1", "s1", node="dead"), limit=5)
    await store.resume_conversation(ALICE, "s1", link("c2", "s1", node="live"), limit=5,
                                    now=T0, left_after=T0)
    later = T0 + LEASE + datetime.timedelta(seconds=1)
    await store.renew_conversation_links("live", [link("c2", "s1", node="live")], later + LEASE)
    await store.start_conversation(conversation("s9", BOB, at=later),
                                   link("c9", "s9", at=later), limit=5)  # sweeps c1
    held = await store.get_conversation("s1")
    assert held is not None and held.left_at is None
    await store.leave_conversation("c2", later)
    left = await store.get_conversation("s1")
    assert left is not None and left.left_at == later
