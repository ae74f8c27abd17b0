"""``--schedules-file``: schedules an operator keeps in a TOML file (docs/schedules.md).

::

    [[schedules]]
    id = "morning-brief"          # optional: the schedule's id is "file-morning-brief"
    tenant = "acme"
    user = "ana"
    cron = "0 8 * * mon-fri"
    timezone = "Europe/Berlin"    # optional, default "UTC"
    agent = "sophon"
    prompt = "What is on my calendar?"
    session = "sess-brief"        # optional: else a new session at the first fire
    paused = false                # optional

The file is read once, at start; every entry is checked as ``POST /schedules``
checks a body (and its agent must exist now), so a file that cannot be used
stops ``voisnap serve`` (exit status 2) with a line naming the file and the
entry. The store then holds exactly the file's schedules as those of source
``file`` (``Scheduler.sync_file``): an entry keeps its id from one start to the
next (its ``id``, or a digest of what it says), so an unchanged schedule keeps
its next slot, and a slot missed while the server was down fires once.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs

from ...agents.registry import AgentRegistry, UnknownAgent
from ...storage.base import FROM_FILE, Owner, Schedule
from .cron import CronError, parse
from .orders import MAX_PROMPT

KEYS = ("id", "tenant", "user", "cron", "timezone", "agent", "prompt", "session", "paused")
REQUIRED = ("tenant", "user", "cron", "agent", "prompt")
ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PREFIX = "file-"


@attrs.frozen
class FileSchedule:
    """One checked entry of the file."""

    schedule_id: str
    owner: Owner
    cron: str
    timezone: str
    agent_id: str
    prompt: str
    session_id: str | None
    paused: bool

    def schedule(self, now: datetime.datetime) -> Schedule:
        """The entry as a store row, its first slot the next after ``now``."""
        next_due_at = parse(self.cron, self.timezone, now).next_slot(now)
        return Schedule(
            self.schedule_id,
            self.owner,
            self.cron,
            self.timezone,
            self.agent_id,
            self.prompt,
            self.session_id,
            self.paused,
            FROM_FILE,
            next_due_at,
            now,
            now,
        )


def load_schedules_file(
    path: Path, agents: AgentRegistry, now: datetime.datetime
) -> list[FileSchedule]:
    """Every schedule of the file, checked; ValueError naming the file and the
    entry for a file that cannot be used."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"schedules file {path}: {error}") from None
    entries = document.get("schedules", [])
    if set(document) - {"schedules"} or not isinstance(entries, list):
        raise ValueError(f"schedules file {path}: it must hold only [[schedules]] tables")
    loaded: dict[str, FileSchedule] = {}
    for number, entry in enumerate(entries, 1):
        name = f"schedule {number}"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            name += f" ({entry['id']!r})"
        try:
            checked = _entry(entry, agents, now)
        except (CronError, UnknownAgent, ValueError) as error:
            raise ValueError(f"schedules file {path}: {name}: {error}") from None
        if checked.schedule_id in loaded:
            raise ValueError(f"schedules file {path}: {name}: the same id as an earlier one")
        loaded[checked.schedule_id] = checked
    return list(loaded.values())


def _entry(entry: Any, agents: AgentRegistry, now: datetime.datetime) -> FileSchedule:
    if not isinstance(entry, dict):
        raise ValueError("must be a table")
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown keys {unknown} (known: {list(KEYS)})")
    for key in REQUIRED:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ValueError(f"'{key}' must be a non-empty string")
    timezone = entry.get("timezone", "UTC")
    parse(entry["cron"], timezone, now)
    agents.entry(entry["agent"])
    if len(entry["prompt"]) > MAX_PROMPT:
        raise ValueError(f"'prompt' may be at most {MAX_PROMPT} characters long")
    session = entry.get("session")
    if session is not None and (not isinstance(session, str) or not ID.fullmatch(session)):
        raise ValueError("'session' must be an id of letters, digits, '_', '.' and '-'")
    paused = entry.get("paused", False)
    if not isinstance(paused, bool):
        raise ValueError("'paused' must be true or false")
    return FileSchedule(
        schedule_id=PREFIX + _id_of(entry),
        owner=Owner(entry["tenant"], entry["user"]),
        cron=" ".join(entry["cron"].split()),
        timezone=timezone,
        agent_id=entry["agent"],
        prompt=entry["prompt"],
        session_id=session,
        paused=paused,
    )


def _id_of(entry: dict[str, Any]) -> str:
    """The entry's ``id``, or a digest of what it says (the same entry, the same id)."""
    if "id" in entry:
        if not isinstance(entry["id"], str) or not ID.fullmatch(entry["id"]):
            raise ValueError("'id' must be 1 to 64 letters, digits, '_', '.' and '-'")
        return entry["id"]
    said = [entry.get(key) for key in ("tenant", "user", "cron", "timezone", "agent", "prompt")]
    return hashlib.sha256(repr(said).encode()).hexdigest()[:16]
