"""Plain invocations through a real HubConnection (HubProtocol.md, "Invocation",
"Completion", "Non-Blocking Invocations"; error texts of ASP.NET Core's
DefaultHubDispatcher, wire reference section 11), and the order in which one
connection's invocations run (MaximumParallelInvocationsPerClient)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from tests.support.fakes import connect, make_endpoint
from voisnap.config import Settings
from voisnap.errors import HubError
from voisnap.hubs.hub import Hub
from voisnap.protocol import CompletionMessage, InvocationMessage, StreamItemMessage


class Probe:
    """Shared state a test hub reports to: a log and events the test controls."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.started: dict[str, trio.Event] = {}
        self.release: dict[str, trio.Event] = {}

    def started_event(self, name: str) -> trio.Event:
        return self.started.setdefault(name, trio.Event())

    def release_event(self, name: str) -> trio.Event:
        return self.release.setdefault(name, trio.Event())


class CallsHub(Hub):
    async def echo(self, value: Any) -> Any:
        return value

    async def add_numbers(self, a: int, b: int) -> int:
        return a + b

    async def nothing(self) -> None:
        pass

    async def fail_hub_error(self, text: str) -> None:
        raise HubError(text)

    async def fail_value_error(self) -> None:
        raise ValueError("secret internals")

    async def note(self, text: str) -> None:
        self.services.log.append(text)

    async def hold(self, name: str) -> str:
        """Log start, wait until the test releases ``name``, log end."""
        probe: Probe = self.services
        probe.log.append(f"{name} start")
        probe.started_event(name).set()
        await probe.release_event(name).wait()
        probe.log.append(f"{name} end")
        return name

    async def ask_caller(self, question: str) -> Any:
        return await self.clients.caller.invoke("Prompt", question)

    async def count(self, n: int) -> Any:
        for i in range(n):
            yield i


def endpoint(**settings: Any):
    return make_endpoint(CallsHub, Settings(**settings), services=Probe())


FAILED = "Failed to invoke '{}' due to an error on the server."


async def test_invocation_returns_result_completion(autojump_clock):
    async with connect(endpoint()) as client:
        assert await client.invoke("Echo", {"a": [1, "x"]}) == CompletionMessage.with_result(
            "0", {"a": [1, "x"]}
        )
        assert await client.invoke("AddNumbers", 40, 2) == CompletionMessage.with_result("1", 42)


async def test_invocation_void_method_sends_null_result(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("Nothing", invocation_id="7")
        assert await client.receive_record() == b'{"type":3,"invocationId":"7","result":null}'


async def test_invocation_non_blocking_gets_no_answer_even_on_error(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_invocation("Note", "first")
        await client.send_invocation("NoSuchMethod", 1)
        await client.send_invocation("FailHubError", "boom")
        await client.send_invocation("FailValueError")
        await client.send_invocation("AddNumbers", "x", "y")
        await client.send_invocation("Count", 3)  # a streaming method
        await client.send_invocation("Note", "last")
        # Had any of them been answered, that answer would come before this one.
        await client.send_invocation("Echo", "after", invocation_id="42")
        assert await client.receive() == CompletionMessage.with_result("42", "after")
        assert hub.services.log == ["first", "last"]


async def test_invocation_empty_id_is_non_blocking(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_json(
            {"type": 1, "invocationId": "", "target": "Note", "arguments": ["x"]}
        )
        await client.send_invocation("Echo", "after", invocation_id="1")
        assert await client.receive() == CompletionMessage.with_result("1", "after")
        assert hub.services.log == ["x"]


async def test_invocation_headers_and_unknown_properties_ignored(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_json({
            "type": 1, "invocationId": "0", "target": "Echo", "arguments": [5],
            "headers": {"traceparent": "00-abc"}, "somethingNew": [1, 2],
        })
        assert await client.receive() == CompletionMessage.with_result("0", 5)


async def test_invocation_unknown_method_error(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("NoSuchMethod", 1)
        assert completion == CompletionMessage.with_error(
            "0",
            "Failed to invoke 'NoSuchMethod' due to an error on the server. "
            "HubException: Method does not exist.",
        )
        assert (await client.invoke("Echo", 1)).result == 1


async def test_invocation_method_names_ignore_case_and_underscores(autojump_clock):
    async with connect(endpoint()) as client:
        for target in ("AddNumbers", "addNumbers", "addnumbers", "ADD_NUMBERS", "add_numbers"):
            completion = await client.invoke(target, 1, 2)
            assert completion.error is None, target
            assert completion.result == 3, target


async def test_invocation_wrong_argument_count_error(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("AddNumbers", 1)
        assert completion.error == FAILED.format("AddNumbers")
        completion = await client.invoke("AddNumbers", 1, 2, 3)
        assert completion.error == FAILED.format("AddNumbers")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_invocation_wrong_argument_count_detailed_names_problem(autojump_clock):
    async with connect(endpoint(detailed_errors=True)) as client:
        completion = await client.invoke("AddNumbers", 1)
        assert completion.error is not None
        assert completion.error.startswith(FAILED.format("AddNumbers") + " ")
        assert "Invocation provides 1 argument(s) but target expects 2." in completion.error


async def test_invocation_wrong_argument_types_error(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("AddNumbers", "1", 2)
        assert completion.error == FAILED.format("AddNumbers")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_invocation_wrong_argument_types_detailed_names_problem(autojump_clock):
    async with connect(endpoint(detailed_errors=True)) as client:
        completion = await client.invoke("AddNumbers", "1", 2)
        assert completion.error is not None
        assert completion.error.startswith(FAILED.format("AddNumbers") + " ")
        assert "Error binding arguments." in completion.error
        assert "expected an integer, got str" in completion.error


async def test_invocation_hub_error_text_reaches_caller(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("FailHubError", "nope, not today")
        assert completion == CompletionMessage.with_error(
            "0",
            "An unexpected error occurred invoking 'FailHubError' on the server. "
            "HubException: nope, not today",
        )
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_invocation_other_exception_hides_detail(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("FailValueError")
        assert completion.error == (
            "An unexpected error occurred invoking 'FailValueError' on the server."
        )
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_invocation_other_exception_detail_when_detailed(autojump_clock):
    async with connect(endpoint(detailed_errors=True)) as client:
        completion = await client.invoke("FailValueError")
        assert completion.error == (
            "An unexpected error occurred invoking 'FailValueError' on the server. "
            "ValueError: secret internals"
        )


# -- one at a time (max_parallel_invocations) -----------------------------------------------------


async def test_invocation_queue_runs_one_at_a_time_in_order(autojump_clock):
    hub = endpoint(max_parallel_invocations=1)
    probe: Probe = hub.services
    async with connect(hub) as client:
        await client.send_invocation("Hold", "A", invocation_id="a")
        await client.send_invocation("Hold", "B", invocation_id="b")
        await client.send_invocation("Hold", "C", invocation_id="c")
        with trio.fail_after(5):
            await probe.started_event("A").wait()
        await trio.testing.wait_all_tasks_blocked()
        assert probe.log == ["A start"]  # B waits for A, although A is blocked

        probe.release_event("B").set()
        probe.release_event("C").set()
        await trio.testing.wait_all_tasks_blocked()
        assert probe.log == ["A start"]  # B may not overtake A even when free to finish

        probe.release_event("A").set()
        assert (await client.receive()).invocation_id == "a"
        assert (await client.receive()).invocation_id == "b"
        assert (await client.receive()).invocation_id == "c"
        assert probe.log == ["A start", "A end", "B start", "B end", "C start", "C end"]


async def test_invocation_queue_allows_overlap_when_configured(autojump_clock):
    hub = endpoint(max_parallel_invocations=2)
    probe: Probe = hub.services
    async with connect(hub) as client:
        await client.send_invocation("Hold", "A", invocation_id="a")
        await client.send_invocation("Hold", "B", invocation_id="b")
        with trio.fail_after(5):
            await probe.started_event("B").wait()
        assert probe.log == ["A start", "B start"]
        probe.release_event("B").set()
        assert await client.receive() == CompletionMessage.with_result("b", "B")
        probe.release_event("A").set()
        assert await client.receive() == CompletionMessage.with_result("a", "A")


async def test_invocation_client_result_does_not_block_reader(autojump_clock):
    """With one invocation at a time, a method awaiting a client result still
    gets it: the reader hands the client's Completion over meanwhile."""
    async with connect(endpoint(max_parallel_invocations=1)) as client:
        await client.send_invocation("AskCaller", "name?", invocation_id="q")
        await client.send_invocation("Echo", "queued", invocation_id="e")
        request = await client.receive()
        assert isinstance(request, InvocationMessage)
        assert request.target == "Prompt"
        await client.send_completion(request.invocation_id, result="Ada")
        assert await client.receive() == CompletionMessage.with_result("q", "Ada")
        assert await client.receive() == CompletionMessage.with_result("e", "queued")


async def test_invocation_stream_runs_beside_blocked_invocation(autojump_clock):
    hub = endpoint(max_parallel_invocations=1)
    probe: Probe = hub.services
    async with connect(hub) as client:
        await client.send_invocation("Hold", "A", invocation_id="a")
        with trio.fail_after(5):
            await probe.started_event("A").wait()
        messages = await client.stream("Count", 3)
        assert messages == [
            StreamItemMessage(invocation_id="0", item=0),
            StreamItemMessage(invocation_id="0", item=1),
            StreamItemMessage(invocation_id="0", item=2),
            CompletionMessage.empty("0"),
        ]
        assert probe.log == ["A start"]
        probe.release_event("A").set()
        assert await client.receive() == CompletionMessage.with_result("a", "A")
