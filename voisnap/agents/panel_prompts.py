"""What a model is sent when it sits on a discussion panel, or judges one.

docs/agents.md, "Discussion turns". An OpenAI-compatible agent gets the same
chat-completions request as for a chat step, with these messages instead of
the session's: its own system prompt (if any), then a system message saying
its role, then one user message with the topic and every turn so far, each
headed with its round, seat and agent. A panelist is asked for its argument
for this round; the judge for a JSON object ``{"winner", "summary",
"scores"}`` (``agents.verdict`` reads and checks it). No tools are offered.
"""

from __future__ import annotations

import json

from .base import DiscussionBrief

PANELIST = (
    "You are {seat}, one of {count} panelists in a discussion of {rounds} round(s) on a "
    "topic. Each round every panelist speaks once, in seat order. Argue your position in a "
    "few sentences; answer the other panelists' points where it helps. Write only your turn."
)
JUDGE = (
    "You are the judge of a discussion between {count} panelists ({seats}). Read it, then "
    "answer with only a JSON object, no other text: "
    '{{"winner": the id of the panelist who argued best, or null for a tie, '
    '"summary": a short summary of the discussion and of your reasons, '
    '"scores": {example}}} where every score is a number from 0 to 10.'
)


def discussion_messages(brief: DiscussionBrief, system_prompt: str | None) -> list[dict[str, str]]:
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "system", "content": _role(brief)})
    messages.append({"role": "user", "content": _discussion_so_far(brief)})
    return messages


def _role(brief: DiscussionBrief) -> str:
    seats = [seat for seat, _ in brief.panelists]
    if brief.judging:
        example = json.dumps({seat: "<0-10>" for seat in seats})
        return JUDGE.format(count=len(seats), seats=", ".join(seats), example=example)
    return PANELIST.format(seat=brief.panelist_id, count=len(seats), rounds=brief.rounds)


def _discussion_so_far(brief: DiscussionBrief) -> str:
    lines = [f"Topic: {brief.topic}", ""]
    if brief.turns:
        lines.append("The discussion so far:")
        for turn in brief.turns:
            lines.append(f"[round {turn.round_number}, {turn.panelist_id} ({turn.agent_id})]")
            lines.append(turn.content)
            lines.append("")
    else:
        lines += ["Nobody has spoken yet.", ""]
    if brief.judging:
        lines.append("The discussion is over. Give your verdict as the JSON object described.")
    else:
        lines.append(
            f"It is round {brief.round_number} of {brief.rounds}; you are "
            f"{brief.panelist_id}. Your turn."
        )
    return "\n".join(lines)
