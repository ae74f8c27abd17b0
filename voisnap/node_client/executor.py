"""Running commands at most once, and answering every delivery of them.

docs/hubs/node.md, "Delivery: at least once; execution: at most once". Each
delivery of a command (an ``ExecuteCommand``, or a command in a poll's answer)
goes through ``CommandExecutor.answer``:

- a new ``commandId`` begins a run in the *node's* nursery, not the
  connection's: a command keeps running when the connection that delivered it
  drops, and its redelivery on the next connection waits for that same run;
- a ``commandId`` still running is waited for; a finished one answers at once
  with the outcome the results memory kept.

A transport answers inside ``async with executor.answer(...) as outcome``; if
the body ends without an exception, the outcome counts as *reported*. An
outcome nobody reported (its connection died first) is handed to the next
connection's late reporter (``wait_unreported``), which sends it as
``CommandResult`` (hub) or to the ``result`` route (polling): "the node
answers each by its ``result`` route (or by ``CommandResult``, once it is back
on the hub)" (docs/hubs/node.md, "Polling").
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .commands import NodeCommands
from .errors import CommandError
from .results import Outcome, ResultsMemory, Run

logger = logging.getLogger(__name__)


class CommandExecutor:
    def __init__(self, commands: NodeCommands, memory: ResultsMemory, nursery: trio.Nursery):
        self._commands = commands
        self._memory = memory
        # The node's nursery, passed in so that a run outlives the connection
        # that delivered it (see the module docstring).
        self._nursery = nursery
        self._changed = trio.Event()

    @asynccontextmanager
    async def answer(self, command_id: str, command: str, params: Any) -> AsyncIterator[Outcome]:
        """The outcome of ``command_id``, running it only if it is new."""
        run = self._memory.get(command_id)
        if run is None:
            run = self._memory.begin(command_id, command)
            self._nursery.start_soon(self._run, run, params)
        run.answerers += 1
        try:
            outcome = await run.wait_finished()
            yield outcome
            run.reported = True
        finally:
            run.answerers -= 1
            self._notify()

    def unreported(self) -> list[Run]:
        """Finished runs that no delivery is answering for and nobody reported."""
        return [
            run for run in self._memory if run.finished and not run.reported and run.answerers == 0
        ]

    async def wait_unreported(self) -> list[Run]:
        while not (runs := self.unreported()):
            await self._changed.wait()
        return runs

    async def _run(self, run: Run, params: Any) -> None:
        try:
            outcome = _sendable(Outcome.succeeded(await self._commands.run(run.command, params)))
        except CommandError as error:
            outcome = Outcome.failed(str(error))
        except Exception as error:
            # A bug in a command must not take the node down; the gateway hears of it.
            logger.exception("command %s %s raised", run.command, run.command_id)
            outcome = Outcome.failed(f"The command failed: {type(error).__name__}: {error}")
        run.finish(outcome)
        logger.info("command %s %s ok=%s", run.command, run.command_id, outcome.ok)
        self._notify()

    def _notify(self) -> None:
        # Wake every waiter of wait_unreported; later waiters wait for the next change.
        self._changed.set()
        self._changed = trio.Event()


MAX_RESULT_BYTES = 24 * 1024
"""The most a result may take as JSON: an answer travels in one hub message,
which the gateway limits to 32 KiB by default (``--max-message-size``), with
room for the Completion around it."""


def _sendable(outcome: Outcome) -> Outcome:
    """``outcome``, or a failure that says the result was too large to send:
    a gateway closes a connection whose message is over its limit."""
    size = len(json.dumps(outcome.result, separators=(",", ":"), default=str))
    if size <= MAX_RESULT_BYTES:
        return outcome
    return Outcome.failed(
        f"The result takes {size} bytes as JSON; one answer may take {MAX_RESULT_BYTES}."
    )
