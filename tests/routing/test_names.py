"""Backplane names (``voisnap.routing.names``): one key, one channel, whatever the names.

Issue 10: every process and hub shares one Redis namespace, and clients choose their
group names. So the mapping from router keys to channel names must be one to one:
group ``a:b`` of tenant ``t`` and group ``b`` of tenant ``t:a`` must not meet on one
channel, nor ``%3A`` and ``:``, nor the empty name and the tenant's "all". The
tenant is always one part of the name. The strongest check is that a name can be
read back into exactly the parts it was made of: then no two inputs can share it.
"""

from __future__ import annotations

import itertools
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.routing import names
from voisnap.routing.router import GroupKey, group_key, tenant_key, user_key

HOSTILE = ["", ":", "::", "a:b", "t:a", "%", "%3A", "%3a", "%25", "a%3Ab", " ", "\n",
           "hub", "group", "connection", "ü", "u\u0308", "群组", "🙂", "\x00", "/", "*", ">"]


def parts(name: str) -> list[str]:
    """A name read back into the parts it was made of."""
    return [unquote(part, errors="strict") for part in name.split(":")]


def every_key(tenants: list[str], names_: list[str]) -> list[GroupKey]:
    keys: list[GroupKey] = [tenant_key(t) for t in tenants]
    for tenant, name in itertools.product(tenants, names_):
        keys += [group_key(tenant, name), user_key(tenant, name)]
    return keys


# -- golden names ----------------------------------------------------------------------------------


def test_names_golden() -> None:
    assert names.channel("chat", group_key("t", "a:b")) == "hub:chat:group:t:a%3Ab"
    assert names.channel("chat", group_key("t:a", "b")) == "hub:chat:group:t%3Aa:b"
    assert names.channel("chat", user_key("acme", "ada")) == "hub:chat:user:acme:ada"
    assert names.channel("chat", tenant_key("acme")) == "hub:chat:tenant:acme"
    assert names.connection_channel("chat", "acme", "c1") == "hub:chat:connection:acme:c1"
    assert names.channel("chat", group_key("t", "%")) == "hub:chat:group:t:%25"
    assert names.node_channel("n1") == "node:n1"


# -- one to one ------------------------------------------------------------------------------------


def test_names_group_a_b_of_t_and_group_b_of_t_a_differ() -> None:
    one = names.channel("chat", group_key("t", "a:b"))
    other = names.channel("chat", group_key("t:a", "b"))
    assert one != other


def test_names_hostile_keys_never_share_a_channel() -> None:
    keys = every_key(HOSTILE, HOSTILE)
    assert len(set(keys)) == len(keys)
    channels = [names.channel("chat", key) for key in keys]
    assert len(set(channels)) == len(channels)


def test_names_hostile_connections_never_share_a_channel() -> None:
    pairs = list(itertools.product(HOSTILE, HOSTILE))
    channels = {names.connection_channel("chat", t, c) for t, c in pairs}
    assert len(channels) == len(pairs)
    groups = {names.channel("chat", key) for key in every_key(HOSTILE, HOSTILE)}
    assert channels.isdisjoint(groups)


def test_names_same_key_in_two_hubs_differ() -> None:
    for hub_one, hub_two in itertools.permutations(["chat", "chat:group", "", "%", "a:b"], 2):
        for key in every_key(["t", "t:a"], ["g", "a:b"]):
            assert names.channel(hub_one, key) != names.channel(hub_two, key)


def test_names_empty_names_are_not_the_tenant() -> None:
    assert len({
        names.channel("chat", tenant_key("")),
        names.channel("chat", group_key("", "")),
        names.channel("chat", user_key("", "")),
        names.channel("chat", group_key("t", "")),
        names.channel("chat", tenant_key("t")),
    }) == 5


def test_names_every_kind_is_its_own_namespace() -> None:
    made = [
        names.node_channel("x"),
        names.negotiation_key("x"),
        names.claim_key("x"),
        names.early_key("x"),
        names.relay_channel("x"),
        names.relay_back_channel("x"),
        names.nodes_key(),
        names.node_presence_key("x"),
        names.channel("x", group_key("x", "x")),
        names.connection_channel("x", "x", "x"),
    ]
    assert len(set(made)) == len(made)


# -- read back: the parts, and the tenant among them -----------------------------------------------


@pytest.mark.parametrize(("tenant", "name"), list(itertools.product(HOSTILE, HOSTILE)))
def test_names_channel_reads_back_with_its_tenant(tenant: str, name: str) -> None:
    assert parts(names.channel("chat", group_key(tenant, name))) == [
        "hub", "chat", "group", tenant, name
    ]
    assert parts(names.channel("chat", user_key(tenant, name))) == [
        "hub", "chat", "user", tenant, name
    ]
    assert parts(names.connection_channel("chat", tenant, name)) == [
        "hub", "chat", "connection", tenant, name
    ]


@given(hub=st.text(), tenant=st.text(), name=st.text())
def test_names_any_names_read_back(hub: str, tenant: str, name: str) -> None:
    assert parts(names.channel(hub, group_key(tenant, name))) == ["hub", hub, "group", tenant, name]
    assert parts(names.channel(hub, user_key(tenant, name))) == ["hub", hub, "user", tenant, name]
    assert parts(names.channel(hub, tenant_key(tenant))) == ["hub", hub, "tenant", tenant]
    assert parts(names.connection_channel(hub, tenant, name)) == [
        "hub", hub, "connection", tenant, name
    ]


key_kinds = st.sampled_from(["group", "user", "tenant"])


@given(
    st.tuples(st.text(), key_kinds, st.text(), st.text()),
    st.tuples(st.text(), key_kinds, st.text(), st.text()),
)
def test_names_different_keys_never_share_a_channel(
    one: tuple[str, str, str, str], other: tuple[str, str, str, str]
) -> None:
    def made(hub: str, kind: str, tenant: str, name: str) -> tuple[str, GroupKey]:
        key = {"group": group_key, "user": user_key}.get(kind)
        return hub, key(tenant, name) if key is not None else tenant_key(tenant)

    first, second = made(*one), made(*other)
    if first != second:
        assert names.channel(*first) != names.channel(*second)


def test_names_lone_surrogates_map_one_to_one() -> None:
    # A JSON client can send "\ud800" (json.loads gives a lone surrogate), so a group
    # name may hold one; it still needs a channel of its own.
    tenants = ["t", "\ud800", "\udfff"]
    groups = ["\ud800", "\udc00", "a\ud800b", "\ufffd", "?", ""]
    channels = [names.channel("chat", group_key(t, g)) for t in tenants for g in groups]
    assert len(set(channels)) == len(channels)
    for channel in channels:
        channel.encode()  # what RedisNames does with it: strict UTF-8
