"""Server-to-client and client-to-server streams through a hub connection.

HubProtocol.md, "Streaming", "Upload streaming" and "Cancellation"; the error
texts are ASP.NET Core's ``DefaultHubDispatcher`` (wire reference, section 6).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio
import trio.testing

from tests.support.fakes import RS, connect, make_endpoint
from voisnap.config import Settings
from voisnap.errors import HubError
from voisnap.hubs.hub import Hub
from voisnap.protocol import CompletionMessage, StreamItemMessage


class Probe:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = trio.Event()
        self.release = trio.Event()
        self.finally_ran = trio.Event()


class StreamingHub(Hub):
    async def counter(self, count: int) -> AsyncIterator[int]:
        for number in range(count):
            yield number

    async def endless(self) -> AsyncIterator[int]:
        number = 0
        try:
            while True:
                yield number
                number += 1
                await trio.sleep(1)
        finally:
            self.services.finally_ran.set()

    async def broken(self) -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("disk on fire")

    async def refused(self) -> AsyncIterator[int]:
        yield 1
        raise HubError("no more for you")

    async def echo(self, value: Any) -> Any:
        return value

    async def note(self, text: str) -> None:
        self.services.log.append(text)

    async def sum(self, numbers: AsyncIterator[int]) -> int:
        total = 0
        async for number in numbers:
            total += number
        return total

    async def sum_or_complaint(self, numbers: AsyncIterator[int]) -> str:
        total = 0
        try:
            async for number in numbers:
                total += number
        except HubError as error:
            return f"after {total}: {error}"
        return f"total {total}"

    async def sum_pairs(self, label: str, a: AsyncIterator[int], b: AsyncIterator[int]) -> str:
        return f"{label}: {sum([x async for x in a])} {sum([x async for x in b])}"

    async def running_total(self, numbers: AsyncIterator[int]) -> AsyncIterator[int]:
        total = 0
        async for number in numbers:
            total += number
            yield total

    async def hoard(self, numbers: AsyncIterator[int]) -> int:
        """Take nothing from the upload until the test says so."""
        self.services.started.set()
        await self.services.release.wait()
        return sum([number async for number in numbers])

    async def ignore(self, numbers: AsyncIterator[int]) -> str:
        """Never read the upload; return when the test says so."""
        self.services.started.set()
        await self.services.release.wait()
        return "ignored"

    async def first_only(self, numbers: AsyncIterator[int]) -> int:
        async for number in numbers:
            return number
        return -1


def endpoint(**settings: Any):
    return make_endpoint(StreamingHub, Settings(**settings), services=Probe())


# -- server-to-client streams ---------------------------------------------------------------------


async def test_stream_items_then_empty_completion(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_stream_invocation("Counter", 3, invocation_id="s")
        records = [await client.receive_record() for _ in range(4)]
        assert records == [
            b'{"type":2,"invocationId":"s","item":0}',
            b'{"type":2,"invocationId":"s","item":1}',
            b'{"type":2,"invocationId":"s","item":2}',
            b'{"type":3,"invocationId":"s"}',
        ]


async def test_stream_empty_sends_only_completion(autojump_clock):
    async with connect(endpoint()) as client:
        assert await client.stream("Counter", 0) == [CompletionMessage.empty("0")]


async def test_stream_cancel_completes_without_error_and_runs_finally(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_stream_invocation("Endless", invocation_id="e")
        assert await client.receive() == StreamItemMessage(invocation_id="e", item=0)
        assert await client.receive() == StreamItemMessage(invocation_id="e", item=1)
        await client.cancel("e")
        messages = await client.receive_stream("e")
        # Items already in flight may precede the Completion (HubProtocol.md, "Cancellation").
        assert all(isinstance(m, StreamItemMessage) for m in messages[:-1])
        assert messages[-1] == CompletionMessage.empty("e")
        assert hub.services.finally_ran.is_set()
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_stream_cancel_unknown_id_is_ignored(autojump_clock):
    async with connect(endpoint()) as client:
        await client.cancel("nobody")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_stream_error_hides_detail(autojump_clock):
    async with connect(endpoint()) as client:
        messages = await client.stream("Broken")
        assert messages == [
            StreamItemMessage(invocation_id="0", item=1),
            CompletionMessage.with_error(
                "0", "An error occurred on the server while streaming results."
            ),
        ]
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_stream_error_detail_when_detailed(autojump_clock):
    async with connect(endpoint(detailed_errors=True)) as client:
        messages = await client.stream("Broken")
        assert messages[-1].error == (
            "An error occurred on the server while streaming results. RuntimeError: disk on fire"
        )


async def test_stream_hub_error_detail_always_shown(autojump_clock):
    async with connect(endpoint()) as client:
        messages = await client.stream("Refused")
        assert messages[-1].error == (
            "An error occurred on the server while streaming results. "
            "HubException: no more for you"
        )


async def test_stream_method_via_invocation_is_refused(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("Counter", 3)
        assert completion == CompletionMessage.with_error(
            "0",
            "The client attempted to invoke the streaming 'Counter' method "
            "with a non-streaming invocation.",
        )


async def test_stream_invocation_of_plain_method_is_refused(autojump_clock):
    async with connect(endpoint()) as client:
        assert await client.stream("Echo", 1) == [
            CompletionMessage.with_error(
                "0",
                "The client attempted to invoke the non-streaming 'Echo' method "
                "with a streaming invocation.",
            )
        ]


async def test_stream_invocation_of_unknown_method(autojump_clock):
    async with connect(endpoint()) as client:
        assert await client.stream("Nope") == [
            CompletionMessage.with_error(
                "0",
                "Failed to invoke 'Nope' due to an error on the server. "
                "HubException: Method does not exist.",
            )
        ]


async def test_stream_binding_failure(autojump_clock):
    async with connect(endpoint()) as client:
        assert await client.stream("Counter", "3") == [
            CompletionMessage.with_error(
                "0", "Failed to invoke 'Counter' due to an error on the server."
            )
        ]


async def test_stream_duplicate_id_is_refused(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_stream_invocation("Endless", invocation_id="7")
        assert await client.receive() == StreamItemMessage(invocation_id="7", item=0)
        await client.send_stream_invocation("Counter", 2, invocation_id="7")
        completion = await client.receive_completion("7")
        assert completion == CompletionMessage.with_error(
            "7", "Invocation ID '7' is already in use."
        )
        # The first stream is still running and can still be cancelled.
        assert not hub.services.finally_ran.is_set()
        await client.cancel("7")
        assert await client.receive_completion("7") == CompletionMessage.empty("7")
        assert hub.services.finally_ran.is_set()
        # Once ended, the id may be used again.
        await client.send_stream_invocation("Counter", 1, invocation_id="7")
        assert await client.receive_stream("7") == [
            StreamItemMessage(invocation_id="7", item=0),
            CompletionMessage.empty("7"),
        ]


# -- client-to-server streams ---------------------------------------------------------------------


async def test_upload_items_then_completion_give_total(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("Sum", invocation_id="0", stream_ids=("u",))
        for number in (1, 2, 3, 4):
            await client.send_item("u", number)
        await client.send_completion("u")
        assert await client.receive_completion("0") == CompletionMessage.with_result("0", 10)


async def test_upload_in_the_same_bytes_as_its_invocation(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_raw(
            b'{"type":1,"invocationId":"0","target":"Sum","arguments":[],"streamIds":["u"]}' + RS
            + b'{"type":2,"invocationId":"u","item":5}' + RS
            + b'{"type":2,"invocationId":"u","item":6}' + RS
            + b'{"type":3,"invocationId":"u"}' + RS
        )
        assert await client.receive_completion("0") == CompletionMessage.with_result("0", 11)


async def test_upload_two_streams_with_value_argument(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("SumPairs", "pair", invocation_id="0", stream_ids=("a", "b"))
        await client.send_item("b", 10)
        await client.send_item("a", 1)
        await client.send_item("b", 20)
        await client.send_completion("b")
        await client.send_item("a", 2)
        await client.send_completion("a")
        assert (await client.receive_completion("0")).result == "pair: 3 30"


async def test_upload_into_server_stream(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_stream_invocation("RunningTotal", invocation_id="r", stream_ids=("u",))
        for number in (1, 2, 3):
            await client.send_item("u", number)
        await client.send_completion("u")
        assert await client.receive_stream("r") == [
            StreamItemMessage(invocation_id="r", item=1),
            StreamItemMessage(invocation_id="r", item=3),
            StreamItemMessage(invocation_id="r", item=6),
            CompletionMessage.empty("r"),
        ]


async def test_upload_completed_with_error_surfaces_in_method(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("SumOrComplaint", invocation_id="0", stream_ids=("u",))
        await client.send_item("u", 4)
        await client.send_completion("u", error="the microphone was unplugged")
        completion = await client.receive_completion("0")
        assert completion.result == "after 4: the microphone was unplugged"


async def test_upload_completed_with_error_fails_invocation(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("Sum", invocation_id="0", stream_ids=("u",))
        await client.send_completion("u", error="source failed")
        completion = await client.receive_completion("0")
        assert completion.error == (
            "An unexpected error occurred invoking 'Sum' on the server. HubException: source failed"
        )


async def test_upload_stream_count_mismatch_too_many(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("Echo", 1, invocation_id="0", stream_ids=("u",))
        completion = await client.receive_completion("0")
        assert completion.error == (
            "An unexpected error occurred invoking 'Echo' on the server. "
            "HubException: Client sent 1 stream(s), Hub method expects 0."
        )
        # The refused upload's items go nowhere and harm nothing.
        await client.send_item("u", 1)
        await client.send_completion("u")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_upload_stream_count_mismatch_too_few(autojump_clock):
    async with connect(endpoint()) as client:
        completion = await client.invoke("Sum")
        assert completion.error == (
            "An unexpected error occurred invoking 'Sum' on the server. "
            "HubException: Client sent 0 stream(s), Hub method expects 1."
        )


async def test_upload_items_for_unknown_stream_are_ignored(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_item("nobody", 1)
        await client.send_completion("nobody")
        await client.send_completion("nobody-either", error="whatever")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_upload_items_after_method_returned_are_ignored(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("FirstOnly", invocation_id="0", stream_ids=("u",))
        await client.send_item("u", 7)
        assert await client.receive_completion("0") == CompletionMessage.with_result("0", 7)
        for number in range(20):
            await client.send_item("u", number)
        await client.send_completion("u")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_upload_non_blocking_invocation_runs_without_answer(autojump_clock):
    """pysignalr uploads with an Invocation that has no id: the method runs, nothing is sent."""
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_invocation("Hoard", stream_ids=("u",))
        await client.send_item("u", 1)
        with trio.fail_after(5):
            await hub.services.started.wait()
        hub.services.release.set()
        await client.send_completion("u")
        await client.send_invocation("Echo", "next", invocation_id="1")
        assert await client.receive() == CompletionMessage.with_result("1", "next")


async def upload_then_note(client: Any, hub: Any) -> None:
    await client.send_invocation("Hoard", invocation_id="h", stream_ids=("u",))
    for number in (1, 2, 3):
        await client.send_item("u", number)
    await client.send_invocation("Note", "reader moved on")
    with trio.fail_after(5):
        await hub.services.started.wait()
    await trio.testing.wait_all_tasks_blocked()


async def test_upload_backpressure_stops_reader_when_buffer_full(autojump_clock):
    hub = endpoint(stream_buffer_capacity=2)
    async with connect(hub) as client:
        await upload_then_note(client, hub)
        # Items 1 and 2 fill the buffer; the reader waits to hand over item 3
        # and has not read the Invocation behind it.
        assert hub.services.log == []
        hub.services.release.set()
        await client.send_completion("u")
        assert await client.receive_completion("h") == CompletionMessage.with_result("h", 6)
        assert hub.services.log == ["reader moved on"]


async def test_upload_buffer_below_capacity_keeps_reader_going(autojump_clock):
    hub = endpoint(stream_buffer_capacity=3)
    async with connect(hub) as client:
        await upload_then_note(client, hub)
        assert hub.services.log == ["reader moved on"]
        hub.services.release.set()
        await client.send_completion("u")
        assert await client.receive_completion("h") == CompletionMessage.with_result("h", 6)


async def test_upload_method_returning_unblocks_waiting_reader(autojump_clock):
    hub = endpoint(stream_buffer_capacity=1)
    async with connect(hub) as client:
        await client.send_invocation("Ignore", invocation_id="i", stream_ids=("u",))
        for number in (1, 2, 3):
            await client.send_item("u", number)
        await client.send_invocation("Note", "reader moved on")
        with trio.fail_after(5):
            await hub.services.started.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert hub.services.log == []
        hub.services.release.set()  # the method returns without reading its upload
        assert await client.receive_completion("i") == CompletionMessage.with_result("i", "ignored")
        await client.send_completion("u")
        assert (await client.invoke("Echo", "alive")).result == "alive"
        assert hub.services.log == ["reader moved on"]


async def test_upload_item_of_wrong_type_fails_invocation(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("Sum", invocation_id="0", stream_ids=("u",))
        await client.send_item("u", 1)
        await client.send_item("u", "two")
        await client.send_item("u", 3)
        await client.send_completion("u")
        completion = await client.receive_completion("0")
        assert completion.error is not None
        assert completion.error.startswith(
            "An unexpected error occurred invoking 'Sum' on the server."
        )
        assert (await client.invoke("Echo", "alive")).result == "alive"
