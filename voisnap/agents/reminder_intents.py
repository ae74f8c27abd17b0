"""What ``sophon`` understands about reminders (docs/reminders.md, "What sophon understands").

- "remind me at 15:30 to call Ana", "remind me to call Ana at 3pm": ``set_reminder``
  with ``at`` (the next such time in the user's zone);
- "remind me in 10 minutes to stretch" (also seconds and hours: "in 30 seconds",
  "in 2 hours", "in 5 min"), "remind me to stretch in 10 minutes":
  ``set_reminder`` with ``inSeconds`` or ``inMinutes``;
- "remind me ..." with no time it can read: a reply that says how to give one;
- "cancel reminder rem_…", "cancel my reminder to stretch" (also "delete",
  "remove"): ``cancel_reminder`` by id or by text;
- any other message that mentions "reminders", as in "what are my reminders",
  "list my reminders": ``list_reminders``.

Each intent is one tool call and a reply made from its result; the times in
the replies are the tool's, in the user's zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

AT = r"at\s+(?P<hour>\d{1,2})(?:[:.h](?P<minute>\d{2}))?\s*(?P<half>[ap]\.?m\.?)?"
IN = r"in\s+(?P<amount>\d+)\s*(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|[smh])"
WHEN = rf"(?:{AT}|{IN})"
REMIND = re.compile(r"^\s*(?:please\s+)?remind\s+me\b\s*(?P<rest>.*?)\s*[.!]?\s*$", re.I | re.S)
WHEN_FIRST = re.compile(rf"^{WHEN}\s+(?P<text>.+)$", re.I | re.S)
WHEN_LAST = re.compile(rf"^(?P<text>.+?)\s+{WHEN}$", re.I | re.S)
LEAD_WORDS = re.compile(r"^(?:to|about|that|of)\s+", re.I)
CANCEL = re.compile(
    r"^\s*(?:please\s+)?(?:cancel|delete|remove)\s+(?:the\s+|my\s+)?reminder\s+"
    r"(?:(?P<id>rem_\w+)|(?:to\s+|about\s+)?[“\"']?(?P<text>.+?)[”\"']?)\s*[.!]?\s*$",
    re.I | re.S,
)
LIST = re.compile(r"\breminders\b", re.I)
SECONDS = ("s", "sec", "secs", "second", "seconds")
HOURS = ("h", "hr", "hrs", "hour", "hours")
HOW = (
    "Tell me when, as in “remind me at 15:30 to call Ana” or “remind me in 10 minutes to stretch”."
)

Reply = Callable[[Any], str]
Intent = tuple[str, dict[str, Any], Reply]
"""A tool to call, its arguments, and the reply made from its result."""


def reminder_intent(content: str) -> Intent | str | None:
    """The reminder intent of ``content``: a tool call, a reply without one, or None."""
    remind = REMIND.match(content)
    if remind:
        return _set(remind["rest"])
    cancel = CANCEL.match(content)
    if cancel:
        if cancel["id"]:
            return "cancel_reminder", {"reminderId": cancel["id"]}, cancelled
        return "cancel_reminder", {"text": cancel["text"].strip()}, cancelled
    if LIST.search(content):
        return "list_reminders", {}, describe_reminders
    return None


def _set(rest: str) -> Intent | str:
    found = WHEN_FIRST.match(rest) or WHEN_LAST.match(rest)
    if found is None:
        return HOW
    text = LEAD_WORDS.sub("", found["text"].strip()).strip()
    if not text:
        return HOW
    when = _clock_time(found) if found["hour"] is not None else _duration(found)
    if isinstance(when, str):
        return when
    return "set_reminder", {"text": text, **when}, reminder_set


def _clock_time(found: re.Match[str]) -> dict[str, Any] | str:
    hour, minute = int(found["hour"]), int(found["minute"] or 0)
    half = (found["half"] or "").lower().replace(".", "")
    if half and not 1 <= hour <= 12:
        return f"{found['hour']}{found['half']} is not a time of day I know. {HOW}"
    if half == "pm" and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return f"That is not a time of day I know. {HOW}"
    return {"at": f"{hour:02d}:{minute:02d}"}


def _duration(found: re.Match[str]) -> dict[str, Any] | str:
    amount, unit = int(found["amount"]), found["unit"].lower()
    if amount < 1:
        return f"Give me a time at least a second from now. {HOW}"
    if unit in SECONDS:
        return {"inSeconds": amount}
    return {"inMinutes": amount * 60 if unit in HOURS else amount}


def reminder_set(reminder: dict[str, Any]) -> str:
    return f"Reminder set for {reminder['dueLocal']}: “{reminder['text']}”."


def cancelled(reminder: dict[str, Any]) -> str:
    return f"Cancelled the reminder “{reminder['text']}” ({reminder['dueLocal']})."


def describe_reminders(reminders: list[dict[str, Any]]) -> str:
    if not reminders:
        return "You have no reminders. Say “remind me in 10 minutes to stretch” and I will set one."
    lines = "\n".join(f"- {r['dueLocal']}: “{r['text']}” ({r['reminderId']})" for r in reminders)
    return f"Your reminders, soonest first:\n{lines}"
