"""The results memory: what became of the last 1,000 ``commandId``s.

docs/hubs/node.md, "Delivery: at least once; execution: at most once": the
gateway may deliver a command again, with the same ``commandId``; "a
conforming node executes a ``commandId`` at most once: the reference node
answers a repeated one with its first result (waiting for it if it is still
running)". The memory holds one ``Run`` per ``commandId``: begun, and then
finished with its ``Outcome``. It forgets the oldest first, beyond its bound;
a run already forgotten still finishes for whoever holds it.

Nothing here runs a command (``executor.py`` does); this is bookkeeping only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import attrs
import trio

MEMORY_SIZE = 1000


@attrs.frozen
class Outcome:
    """A command's end: ``ok`` with its ``result``, or not ok with an ``error``."""

    ok: bool
    result: Any = None
    error: str | None = None

    @classmethod
    def succeeded(cls, result: Any) -> Outcome:
        return cls(ok=True, result=result)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(ok=False, error=error)


def outcome_to_wire(outcome: Outcome) -> dict[str, Any]:
    """The answer to ``ExecuteCommand``: ``{ok: true, result}`` or ``{ok: false, error}``."""
    if outcome.ok:
        return {"ok": True, "result": outcome.result}
    return {"ok": False, "error": outcome.error}


def command_result_to_wire(command_id: str, outcome: Outcome) -> dict[str, Any]:
    """``CommandResult``'s payload (hub) and the polling result body, with ``commandId``."""
    return {"commandId": command_id, **outcome_to_wire(outcome)}


class Run:
    """One ``commandId``'s run: ``wait_finished()`` until its ``outcome`` is set.

    ``answerers`` counts the deliveries waiting to answer for it; ``reported``
    says whether an answer reached the gateway (see ``executor.py``).
    """

    def __init__(self, command_id: str, command: str) -> None:
        self.command_id = command_id
        self.command = command
        self.outcome: Outcome | None = None
        self.answerers = 0
        self.reported = False
        self._finished = trio.Event()

    def finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._finished.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def wait_finished(self) -> Outcome:
        await self._finished.wait()
        assert self.outcome is not None
        return self.outcome


class ResultsMemory:
    """``commandId`` -> its ``Run``, for the last ``size`` command ids."""

    def __init__(self, size: int = MEMORY_SIZE) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._size = size

    def get(self, command_id: str) -> Run | None:
        return self._runs.get(command_id)

    def begin(self, command_id: str, command: str) -> Run:
        """Remember a new run, forgetting the oldest beyond the bound."""
        if command_id in self._runs:
            raise ValueError(f"The command {command_id!r} has begun already.")
        run = self._runs[command_id] = Run(command_id, command)
        while len(self._runs) > self._size:
            self._runs.popitem(last=False)
        return run

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        """The remembered runs, oldest first."""
        return iter(list(self._runs.values()))
