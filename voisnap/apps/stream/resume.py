"""``session.resume``: the session's transcript, then live, without a gap or a duplicate.

The connection already watches the session (its live events are held back)
when ``replay`` begins; so every event published from now on will reach it.
Then, for each turn of the session, oldest first: the user's prompt
(``user.message``), and the turn's events, from the runner's log if a
process still has one (``turns.fetch``: everything up to a sequence number,
the rest is in the held-back live events) or else from the store.

The ``Cut`` says which live events the replay already showed, and is applied
to the held-back events and to every later one (a live event published just
before the fetch may still be on its way):

- a turn replayed from a log: its events of that segment up to the log's
  sequence number;
- a turn that had ended when the store was read, with no log anywhere: all of
  its events (they were published long ago, or are in the store's version).
"""

from __future__ import annotations

import datetime

import attrs

from ...storage.base import Owner, Store, utc_now
from . import events
from .events import StreamEvent
from .face import stored_events
from .turns import RETAIN, TurnLogs

MAX_TURNS = 500  # the newest turns a replay shows


@attrs.frozen
class Cut:
    replayed: dict[str, tuple[str, int]]
    """task id -> (segment, last sequence number replayed from its log)."""
    ended: frozenset[str]
    """Tasks replayed from the store as ended."""

    def passes(self, event: StreamEvent) -> bool:
        if event.task_id in self.ended:
            return False
        seen = self.replayed.get(event.task_id)
        return seen is None or event.segment != seen[0] or event.seq > seen[1]


async def replay(
    store: Store, turns: TurnLogs, owner: Owner, session_id: str
) -> tuple[list[StreamEvent], Cut]:
    """The session's replay (framed by ``replay_start`` and ``replay_end``), and its cut."""
    tasks = await store.list_session_tasks(owner, session_id, limit=MAX_TURNS)
    recent = utc_now() - datetime.timedelta(seconds=RETAIN)
    shown = [StreamEvent.of(events.replay_start(session_id))]
    replayed: dict[str, tuple[str, int]] = {}
    ended: set[str] = set()
    for task in tasks:
        prompt = await store.get_message(owner, task.message_id)
        shown.append(StreamEvent.of(events.user_message(task, prompt.content if prompt else "")))
        may_have_log = task.finished_at is None or task.finished_at >= recent
        snapshot = await turns.fetch(task.task_id) if may_have_log else None
        if snapshot is not None:
            shown += snapshot.events
            replayed[task.task_id] = (snapshot.segment, snapshot.seq)
            continue
        shown += [StreamEvent.of(event) for event in await stored_events(store, task)]
        if task.state.finished:
            ended.add(task.task_id)
    shown.append(StreamEvent.of(events.replay_end(session_id)))
    return shown, Cut(replayed, frozenset(ended))
