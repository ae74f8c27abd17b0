"""API tokens, on both stores (docs/api-tokens.md): found by the hash of their
secret, listed and revoked by their owner only."""

from __future__ import annotations

import datetime

import attrs

from voisnap.storage.base import ApiToken, Owner
from voisnap.storage.sql import SqlStore

T0 = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
ANN = Owner("acme", "ann")
BEN = Owner("acme", "ben")


def token(token_id: str, owner: Owner = ANN, minutes: int = 0, **more: object) -> ApiToken:
    at = T0 + datetime.timedelta(minutes=minutes)
    return ApiToken(token_id, owner, f"name of {token_id}", ("admin", "ops"), at, **more)


async def test_a_token_is_found_by_its_hash_and_read_back_whole(store: SqlStore) -> None:
    expiring = token("t1", expires_at=T0 + datetime.timedelta(days=30))
    await store.add_api_token(expiring, "hash-1")
    assert await store.find_api_token("hash-1") == expiring
    assert await store.find_api_token("hash-2") is None


async def test_the_owner_lists_tokens_oldest_first_without_revoked_ones(store: SqlStore) -> None:
    await store.add_api_token(token("t2", minutes=2), "h2")
    await store.add_api_token(token("t1", minutes=1), "h1")
    await store.add_api_token(token("t3", BEN), "h3")
    assert [t.token_id for t in await store.list_api_tokens(ANN)] == ["t1", "t2"]
    await store.revoke_api_token(ANN, "t1", T0 + datetime.timedelta(hours=1))
    assert [t.token_id for t in await store.list_api_tokens(ANN)] == ["t2"]
    assert [t.token_id for t in await store.list_api_tokens(BEN)] == ["t3"]


async def test_revoking_is_for_the_owner_and_keeps_the_first_time(store: SqlStore) -> None:
    await store.add_api_token(token("t1"), "h1")
    assert await store.revoke_api_token(BEN, "t1", T0) is None  # not Ben's
    assert await store.revoke_api_token(Owner("globex", "ann"), "t1", T0) is None
    assert (await store.find_api_token("h1")).revoked_at is None
    first = T0 + datetime.timedelta(minutes=5)
    revoked = await store.revoke_api_token(ANN, "t1", first)
    assert revoked == attrs.evolve(token("t1"), revoked_at=first)
    again = await store.revoke_api_token(ANN, "t1", first + datetime.timedelta(hours=1))
    assert again is not None and again.revoked_at == first
    assert (await store.find_api_token("h1")).revoked_at == first
    assert await store.revoke_api_token(ANN, "nope", T0) is None
