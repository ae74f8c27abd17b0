"""Discussion turns and verdicts without a model: what the built-in agents say on a panel.

docs/agents.md, "Discussion turns". ``sophon`` (and the synthetic agents) have
no model to argue with, so a discussion of theirs is made of rules, and every
turn and verdict says so (``[rule-based turn]``, ``[rule-based verdict]``):
a discussion runs end to end on a fresh machine, and nobody mistakes it for a
debate.

- A turn: odd seats (p1, p3, ...) argue for the topic, even seats against; the
  argument is picked from a short list by round and seat; from the second
  speaker on, it responds to the last one who spoke.
- The verdict: each panelist scores the number of distinct words of its turns,
  scaled so that the most gets 10 (rounded to whole numbers); the single
  highest wins, a tie at the top has no winner.

Everything follows from the brief, so the same discussion gets the same words.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import trio

from .base import AgentEvent, AgentRequest, DiscussionBrief, Final, Status, Token

TOPIC_EXCERPT = 120
WORDS = re.compile(r"\w+")
TOKENS = re.compile(r"\S+\s*|\s+")  # words with their trailing spaces, as sophon streams
FOR = (
    "it helps more people than it harms",
    "the evidence so far points this way",
    "the cost of waiting is higher than the cost of acting",
    "it is simpler, and simple things last",
)
AGAINST = (
    "the risks are larger than they look",
    "the evidence is thinner than it seems",
    "there are cheaper ways to the same end",
    "it trades a small gain now for a larger loss later",
)


async def discussion_step(
    agent_id: str, request: AgentRequest, token_delay: float
) -> AsyncIterator[AgentEvent]:
    """One step of a built-in agent on a panel: its turn, or its verdict, a word
    at a time, ``token_delay`` apart."""
    brief = request.discussion
    assert brief is not None
    yield Status("thinking")
    text = rule_based_verdict(brief) if brief.judging else rule_based_turn(agent_id, brief)
    for token in TOKENS.findall(text):
        await trio.sleep(token_delay)
        yield Token(token)
    yield Final(text, tokens_used=len(TOKENS.findall(text)))


def rule_based_turn(agent_id: str, brief: DiscussionBrief) -> str:
    seat = _seat(brief.panelist_id or "p1")
    stance, arguments = ("for", FOR) if seat % 2 == 1 else ("against", AGAINST)
    argument = arguments[(seat + brief.round_number) % len(arguments)]
    topic = " ".join(brief.topic.split())[:TOPIC_EXCERPT]
    text = (
        f"[rule-based turn] {brief.panelist_id} ({agent_id}), round {brief.round_number} "
        f"of {brief.rounds}, argues {stance} “{topic}”: {argument}."
    )
    if brief.turns:
        last = brief.turns[-1]
        text += f" Responding to {last.panelist_id}: that is not the whole story."
    return text


def rule_based_verdict(brief: DiscussionBrief) -> str:
    """The verdict as the JSON text a model judge would write."""
    distinct = {panelist_id: set[str]() for panelist_id, _ in brief.panelists}
    for turn in brief.turns:
        distinct.setdefault(turn.panelist_id, set()).update(
            word.lower() for word in WORDS.findall(turn.content)
        )
    counts = {panelist_id: len(words) for panelist_id, words in distinct.items()}
    most = max(counts.values(), default=0)
    scores = {pid: round(10 * count / most) if most else 0 for pid, count in counts.items()}
    leaders = [pid for pid, count in counts.items() if count == most]
    winner = leaders[0] if len(leaders) == 1 else None
    tally = ", ".join(f"{pid}: {count}" for pid, count in counts.items())
    outcome = f"{winner} used the most." if winner else "the top is a tie, so nobody wins."
    summary = (
        "[rule-based verdict] Scored by the number of distinct words each panelist "
        f"used ({tally}); {outcome}"
    )
    return json.dumps({"winner": winner, "summary": summary, "scores": scores})


def _seat(panelist_id: str) -> int:
    digits = panelist_id.lstrip("p")
    return int(digits) if digits.isdigit() else 1
