"""Reading and checking a judge's verdict, the hash rules, and the rule-based built-ins
(``agents.verdict``, ``agents.rule_based``; docs/hubs/discussion.md)."""

from __future__ import annotations

import hashlib
import json

import pytest

from voisnap.agents.base import DiscussionBrief, SpokenTurn
from voisnap.agents.rule_based import rule_based_turn, rule_based_verdict
from voisnap.agents.verdict import InvalidVerdict, parse_verdict, verdict_hash

SEATS = ["p1", "p2", "p3"]
GOOD = {"winner": "p2", "summary": "p2 argued best.", "scores": {"p1": 3, "p2": 9.5, "p3": 0}}


def test_verdict_valid_is_kept_with_only_its_three_keys() -> None:
    text = json.dumps({**GOOD, "reasoning": "not kept"})
    assert parse_verdict(text, SEATS) == GOOD


def test_verdict_in_a_markdown_fence_is_read() -> None:
    assert parse_verdict(f"```json\n{json.dumps(GOOD)}\n```", SEATS) == GOOD


def test_verdict_whole_number_scores_become_integers() -> None:
    verdict = parse_verdict(json.dumps({**GOOD, "scores": {"p1": 3.0, "p2": 10, "p3": 0.0}}),
                            SEATS)
    assert verdict["scores"] == {"p1": 3, "p2": 10, "p3": 0}
    assert all(type(score) is int for score in verdict["scores"].values())


def test_verdict_null_winner_is_a_tie() -> None:
    assert parse_verdict(json.dumps({**GOOD, "winner": None}), SEATS)["winner"] is None


@pytest.mark.parametrize(("text", "why"), [
    ("the winner is p2", "it is not JSON."),
    ("[1, 2]", "it is not a JSON object."),
    (json.dumps({"summary": "s", "scores": {}}), "it has no 'winner'."),
    (json.dumps({**GOOD, "winner": "p4"}), "'winner' must be one of p1, p2, p3 or null."),
    (json.dumps({**GOOD, "summary": 7}), "'summary' must be a string."),
    (json.dumps({**GOOD, "scores": [1, 2, 3]}),
     "'scores' must be an object from panelist id to a number."),
    (json.dumps({**GOOD, "scores": {"p1": 1, "p2": 2}}),
     "'scores' must have exactly the keys p1, p2, p3."),
    (json.dumps({**GOOD, "scores": {"p1": 1, "p2": 2, "p3": 3, "p4": 4}}),
     "'scores' must have exactly the keys p1, p2, p3."),
    (json.dumps({**GOOD, "scores": {"p1": "9", "p2": 2, "p3": 3}}),
     "the score of p1 is not a number."),
    (json.dumps({**GOOD, "scores": {"p1": True, "p2": 2, "p3": 3}}),
     "the score of p1 is not a number."),
    (json.dumps({**GOOD, "scores": {"p1": 1, "p2": 11, "p3": 3}}),
     "the score of p2 is not from 0 to 10."),
    (json.dumps({**GOOD, "scores": {"p1": 1, "p2": 2, "p3": -0.5}}),
     "the score of p3 is not from 0 to 10."),
])
def test_verdict_invalid_says_why(text: str, why: str) -> None:
    with pytest.raises(InvalidVerdict) as raised:
        parse_verdict(text, SEATS)
    assert str(raised.value) == f"The judge's verdict is not valid: {why}"


def test_verdict_hash_is_sha256_of_canonical_json() -> None:
    verdict = {"winner": None, "summary": "égalité — “tie”", "scores": {"p2": 5, "p1": 5}}
    canonical = '{"scores":{"p1":5,"p2":5},"summary":"égalité — “tie”","winner":null}'
    assert verdict_hash(verdict) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def brief(turns: tuple[SpokenTurn, ...] = (), **fields: object) -> DiscussionBrief:
    return DiscussionBrief("Tea or coffee?", (("p1", "sophon"), ("p2", "sophon")), 2,
                           turns, **fields)  # type: ignore[arg-type]


def test_rule_based_turn_says_it_is_rule_based_and_is_deterministic() -> None:
    first = rule_based_turn("sophon", brief(panelist_id="p1", round_number=1))
    assert first == rule_based_turn("sophon", brief(panelist_id="p1", round_number=1))
    assert first.startswith("[rule-based turn] p1 (sophon), round 1 of 2, argues for "
                            "“Tea or coffee?”")
    spoken = (SpokenTurn("p1", "sophon", 1, first),)
    second = rule_based_turn("sophon", brief(spoken, panelist_id="p2", round_number=1))
    assert "argues against" in second and "Responding to p1" in second


def test_rule_based_verdict_unique_most_distinct_words_wins_else_nobody() -> None:
    turns = (SpokenTurn("p1", "sophon", 1, "one two three four"),
             SpokenTurn("p2", "sophon", 1, "one one one two"))
    verdict = parse_verdict(rule_based_verdict(brief(turns, judging=True)), ["p1", "p2"])
    assert verdict["winner"] == "p1" and verdict["scores"] == {"p1": 10, "p2": 5}
    assert verdict["summary"].startswith("[rule-based verdict]")
    tied = (SpokenTurn("p1", "sophon", 1, "a b"), SpokenTurn("p2", "sophon", 1, "c d"))
    verdict = parse_verdict(rule_based_verdict(brief(tied, judging=True)), ["p1", "p2"])
    assert verdict["winner"] is None and verdict["scores"] == {"p1": 10, "p2": 10}
