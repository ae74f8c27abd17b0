"""Execution at most once (docs/hubs/node.md, "Delivery: at least once; execution:
at most once"): the results memory and the executor that consults it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from voisnap.node_client.commands import NodeCommands, NodeScopes
from voisnap.node_client.errors import CommandError
from voisnap.node_client.executor import CommandExecutor
from voisnap.node_client.results import (
    MEMORY_SIZE,
    Outcome,
    ResultsMemory,
    command_result_to_wire,
    outcome_to_wire,
)


class GatedCommands(NodeCommands):
    """``slow`` waits for ``gate`` and counts its runs; ``broken`` has a bug."""

    def __init__(self) -> None:
        super().__init__(Path("."), NodeScopes())
        self.gate = trio.Event()
        self.runs = 0

    async def run(self, command: str, params: Any) -> Any:
        self.runs += 1
        if command == "slow":
            await self.gate.wait()
            return {"run": self.runs, "params": params}
        if command == "broken":
            raise KeyError("oops")
        return await super().run(command, params)


def test_outcome_wire_shapes() -> None:
    assert outcome_to_wire(Outcome.succeeded({"a": 1})) == {"ok": True, "result": {"a": 1}}
    assert outcome_to_wire(Outcome.failed("no")) == {"ok": False, "error": "no"}
    assert command_result_to_wire("c1", Outcome.succeeded(None)) == {
        "commandId": "c1",
        "ok": True,
        "result": None,
    }


def test_memory_forgets_the_oldest_beyond_its_bound() -> None:
    memory = ResultsMemory()
    for number in range(MEMORY_SIZE + 5):
        memory.begin(f"c{number}", "echo")
    assert MEMORY_SIZE == 1000
    assert len(memory) == 1000
    assert memory.get("c4") is None
    assert memory.get("c5") is not None
    assert memory.get(f"c{MEMORY_SIZE + 4}") is not None


def test_memory_refuses_to_begin_a_command_twice() -> None:
    memory = ResultsMemory()
    memory.begin("c1", "echo")
    with pytest.raises(ValueError, match="begun already"):
        memory.begin("c1", "echo")


async def answer(executor: CommandExecutor, command_id: str, command: str, params: Any) -> Outcome:
    async with executor.answer(command_id, command, params) as outcome:
        return outcome


async def test_executor_duplicate_while_running_waits_and_runs_once() -> None:
    commands = GatedCommands()
    outcomes: list[Outcome] = []

    async def deliver() -> None:
        outcomes.append(await answer(executor, "c1", "slow", {"n": 1}))

    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(commands, ResultsMemory(), nursery)
        nursery.start_soon(deliver)
        nursery.start_soon(deliver)
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == []  # both wait for the one run
        commands.gate.set()
    assert commands.runs == 1
    assert outcomes == [Outcome.succeeded({"run": 1, "params": {"n": 1}})] * 2


async def test_executor_finished_command_answers_from_memory() -> None:
    commands = GatedCommands()
    commands.gate.set()
    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(commands, ResultsMemory(), nursery)
        first = await answer(executor, "c1", "slow", "first")
        again = await answer(executor, "c1", "slow", "second params are ignored")
    assert first == again == Outcome.succeeded({"run": 1, "params": "first"})
    assert commands.runs == 1


async def test_executor_forgotten_command_runs_again() -> None:
    commands = GatedCommands()
    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(commands, ResultsMemory(size=2), nursery)
        for command_id in ("c1", "c2", "c3", "c1"):
            await answer(executor, command_id, "echo", command_id)
    assert commands.runs == 4


async def test_executor_command_error_is_a_failed_outcome() -> None:
    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(GatedCommands(), ResultsMemory(), nursery)
        outcome = await answer(executor, "c1", "nope", {})
    assert outcome == Outcome.failed("This node has no command 'nope'.")


async def test_executor_a_bug_in_a_command_is_a_failed_outcome() -> None:
    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(GatedCommands(), ResultsMemory(), nursery)
        outcome = await answer(executor, "c1", "broken", {})
    assert outcome == Outcome.failed("The command failed: KeyError: 'oops'")


async def test_executor_run_outlives_the_delivery_that_started_it() -> None:
    """A connection that dies cancels its delivery, not the command; the outcome is
    then unreported, for the next connection to send."""
    commands = GatedCommands()
    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(commands, ResultsMemory(), nursery)
        with trio.CancelScope() as connection:
            async with trio.open_nursery() as deliveries:
                deliveries.start_soon(answer, executor, "c1", "slow", None)
                await trio.testing.wait_all_tasks_blocked()
                connection.cancel()
        assert executor.unreported() == []  # still running
        commands.gate.set()
        with trio.fail_after(1):
            (run,) = await executor.wait_unreported()
        assert run.command_id == "c1"
        assert run.outcome == Outcome.succeeded({"run": 1, "params": None})
        # A redelivery answers with it, and it counts as reported.
        assert await answer(executor, "c1", "slow", None) == run.outcome
        assert executor.unreported() == []
    assert commands.runs == 1


async def test_executor_an_answer_that_failed_to_send_stays_unreported() -> None:
    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(GatedCommands(), ResultsMemory(), nursery)
        with pytest.raises(OSError):
            async with executor.answer("c1", "echo", 1):
                raise OSError("the connection broke while sending")
        assert [run.command_id for run in executor.unreported()] == ["c1"]
        await answer(executor, "c2", "echo", 2)
        assert [run.command_id for run in executor.unreported()] == ["c1"]


async def test_executor_error_text_of_a_command_error_is_kept() -> None:
    class Failing(GatedCommands):
        async def run(self, command: str, params: Any) -> Any:
            raise CommandError("The file 'a' is larger than the limit of 10 bytes.")

    async with trio.open_nursery() as nursery:
        executor = CommandExecutor(Failing(), ResultsMemory(), nursery)
        outcome = await answer(executor, "c1", "read_file", {})
    assert outcome.error == "The file 'a' is larger than the limit of 10 bytes."
