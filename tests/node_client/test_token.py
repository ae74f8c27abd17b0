"""The node reads its id and scopes from its token (docs/hubs/node.md, "Nodes and
their credentials"), without verifying it."""

from __future__ import annotations

import base64
import json

import pytest

from voisnap.node_client.token import read_claims, read_node_identity

from .helpers import node_token


def test_token_node_id_is_the_nid_claim() -> None:
    identity = read_node_identity(node_token("nod_abc"))
    assert identity.node_id == "nod_abc"


def test_token_scopes_unknown_without_a_scopes_claim() -> None:
    assert read_node_identity(node_token()).scopes is None


def test_token_scopes_from_a_list_claim() -> None:
    identity = read_node_identity(node_token(scopes=["echo", "read_file"]))
    assert identity.scopes == frozenset({"echo", "read_file"})


def test_token_scopes_from_a_space_separated_claim() -> None:
    identity = read_node_identity(node_token(scopes="echo shell"))
    assert identity.scopes == frozenset({"echo", "shell"})


def test_token_claims_need_no_padding() -> None:
    """base64url drops its '=' padding; claims of every length must still decode."""
    for length in range(1, 6):
        claims = {"nid": "n" * length}
        middle = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        assert read_claims(f"e30.{middle}.sig") == claims


def test_token_without_nid_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'nid' claim"):
        read_node_identity(node_token(node_id=None))


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("not-a-jwt", "three parts"),
        ("a.!!!.c", "base64url"),
        ("a." + base64.urlsafe_b64encode(b"[1, 2]").decode() + ".c", "not a JSON object"),
    ],
)
def test_token_that_is_not_a_jwt_is_refused(token: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_claims(token)
