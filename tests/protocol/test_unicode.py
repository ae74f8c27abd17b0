"""Strings that can be stored (voisnap/protocol/unicode.py): a lone surrogate (valid
JSON, and a valid JavaScript string) or a NUL (PostgreSQL's text cannot hold it) is
refused where a store would have to keep it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.principal import Principal
from voisnap.protocol.unicode import is_storable, json_is_storable
from voisnap.server.http import HttpError
from voisnap.server.routes import RestRequest


def decoded(document: bytes) -> object:
    return json.loads(document)


@pytest.mark.parametrize(
    "document",
    [
        b'"\\ud800"',
        b'{"topic": "a\\uDFFFb"}',
        b'{"\\udc00": 1}',
        b'[1, {"x": ["ok", "\\ud83d"]}]',
        b'{"topic": "a\\u0000b"}',
    ],
)
def test_unicode_lone_surrogates_and_nuls_anywhere_are_not_storable(document: bytes) -> None:
    assert not json_is_storable(document, decoded(document))


@pytest.mark.parametrize(
    "document",
    [b'"plain"', b'"\\ud83d\\ude00"', '"é 😀"'.encode(), b'{"a": [1, 2.5, null, true]}', b"{}"],
)
def test_unicode_text_and_surrogate_pairs_are_storable(document: bytes) -> None:
    assert json_is_storable(document, decoded(document))


@given(st.text(st.characters(blacklist_characters="\x00")))
def test_unicode_any_text_without_a_nul_is_storable(text: str) -> None:
    """Hypothesis's characters are never surrogates: every such string is
    storable, however json.dumps escapes it."""
    for ascii_only in (True, False):
        document = json.dumps({"value": text}, ensure_ascii=ascii_only).encode()
        assert json_is_storable(document, decoded(document))
    assert is_storable(text)


def rest(body: bytes) -> RestRequest:
    return RestRequest(Principal(user_id="ada", tenant_id="acme"), {}, {}, body)


def test_unicode_rest_body_with_a_lone_surrogate_or_a_nul_is_a_400() -> None:
    with pytest.raises(HttpError) as refused:
        rest(b'{"title": "\\ud800", "body": "b"}').json()
    assert refused.value.status == 400
    assert "lone UTF-16 surrogate" in str(refused.value)
    with pytest.raises(HttpError):
        rest(b'{"title": "a\\u0000"}').json()
    assert rest('{"title": "é\\ud83d\\ude00"}'.encode()).json() == {"title": "é😀"}
