"""The connect query of the Voisnap hubs, read and checked (docs/hubs/voisnap.md,
"The connect query"), without a server."""

from __future__ import annotations

import json

import pytest

from voisnap.apps.voisnap.conversations import _read_query
from voisnap.apps.voisnap.errors import INVALID_REQUEST, VoisnapFault


@pytest.mark.parametrize("tag", ["en", "es-MX", "zh-Hant-TW", "sr-Latn-RS", "de-CH-1996",
                                 "es-419", "yue-HK", "EN-us"])
def test_well_formed_language_tags_are_taken(tag: str) -> None:
    assert _read_query({"agentId": "sophon", "language": tag})[3] == tag


@pytest.mark.parametrize("tag", ["", "e", "english!", "es_MX", "es-", "-es", "es--MX",
                                 "a" * 9, "es-MX-" + "x" * 40, "en-US\n", "12"])
def test_malformed_language_tags_are_invalid_requests(tag: str) -> None:
    with pytest.raises(VoisnapFault) as refused:
        _read_query({"agentId": "sophon", "language": tag})
    assert refused.value.code == INVALID_REQUEST and not refused.value.recoverable


def test_metadata_is_a_json_object_of_at_most_4_kib() -> None:
    assert _read_query({"agentId": "a", "metadata": '{"plan": "gold"}'})[2] == {"plan": "gold"}
    fits = json.dumps({"pad": "x" * (4096 - 11)})
    assert len(fits) == 4096 and _read_query({"agentId": "a", "metadata": fits})[2] is not None
    for bad in ("[1]", "null", "{", "1e999999", json.dumps({"pad": "x" * 4096}), "[" * 100_000):
        with pytest.raises(VoisnapFault):
            _read_query({"agentId": "a", "metadata": bad})


def test_agent_and_session_ids_are_required_and_bounded() -> None:
    for query in ({}, {"agentId": ""}, {"agentId": "a" * 129},
                  {"agentId": "a", "sessionId": "s" * 129}):
        with pytest.raises(VoisnapFault):
            _read_query(query)
    assert _read_query({"agentId": "a", "sessionId": ""})[1] is None


def test_a_streamed_reply_is_cut_into_sentences_that_add_up() -> None:
    from voisnap.apps.voisnap.face import Sentences

    sentences = Sentences()
    deltas = ["Hello, I am ", "sophon. Pi is 3.14", " today! Is it? Yes:", " fine\nnext", " line"]
    cut = [piece for delta in deltas for piece in sentences.add(delta)]
    assert cut == ["Hello, I am sophon.", " Pi is 3.14 today!", " Is it?", " Yes:", " fine\n"]
    assert sentences.said == "".join(cut)
    assert "".join(deltas).startswith(sentences.said)  # the rest goes with the final message
