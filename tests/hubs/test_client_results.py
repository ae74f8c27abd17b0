"""Client results: the server invokes a client method and waits for its Completion.

HubProtocol.md, "Invocation" (an Invocation from the server *with* an id asks
for a Completion); ASP.NET Core's ``DefaultHubLifetimeManager`` numbers those
ids "s1", "s2", ... and answers a cancelled wait with "Invocation canceled by
the server." (wire reference, section 7).
"""

from __future__ import annotations

from typing import Any

import trio

from tests.support.fakes import connect, make_endpoint
from voisnap.apps.playground import PlaygroundHub
from voisnap.config import Settings
from voisnap.hubs.hub import Hub
from voisnap.principal import Principal
from voisnap.protocol import CloseMessage, CompletionMessage, InvocationMessage


class RelayHub(PlaygroundHub):
    async def ask_connection(self, connection_id: str, question: str) -> Any:
        return await self.clients.connection(connection_id).invoke("Prompt", question)


class EagerHub(Hub):
    async def on_connected(self) -> None:
        await self.clients.caller.invoke("Prompt", "too early")


async def ask(client: Any, question: str, invocation_id: str) -> InvocationMessage:
    """Call Ask; the server's Invocation of the client's Prompt."""
    await client.send_invocation("Ask", question, invocation_id=invocation_id)
    request = await client.receive()
    assert isinstance(request, InvocationMessage), request
    return request


async def test_client_result_round_trip(autojump_clock):
    async with connect(PlaygroundHub) as client:
        request = await ask(client, "favourite colour?", "0")
        assert request == InvocationMessage(
            invocation_id="s1", target="Prompt", arguments=("favourite colour?",)
        )
        await client.send_completion("s1", result={"colour": "green"})
        assert await client.receive() == CompletionMessage.with_result("0", {"colour": "green"})


async def test_client_result_wire_form(autojump_clock):
    async with connect(PlaygroundHub) as client:
        await client.send_invocation("Ask", "q", invocation_id="0")
        assert await client.receive_record() == (
            b'{"type":1,"invocationId":"s1","target":"Prompt","arguments":["q"]}'
        )


async def test_client_result_ids_count_per_hub(autojump_clock):
    hub = make_endpoint(PlaygroundHub)
    async with connect(hub) as first, connect(hub) as second:
        assert (await ask(first, "a", "0")).invocation_id == "s1"
        assert (await ask(second, "b", "0")).invocation_id == "s2"
        await second.send_completion("s2", result="B")
        await first.send_completion("s1", result="A")
        assert await second.receive_completion("0") == CompletionMessage.with_result("0", "B")
        assert await first.receive_completion("0") == CompletionMessage.with_result("0", "A")
        assert (await ask(first, "c", "1")).invocation_id == "s3"
        await first.send_completion("s3", result="C")
        assert await first.receive_completion("1") == CompletionMessage.with_result("1", "C")


async def test_client_result_null_result(autojump_clock):
    async with connect(PlaygroundHub) as client:
        request = await ask(client, "anything?", "0")
        await client.send_completion(request.invocation_id, result=None, has_result=True)
        assert await client.receive() == CompletionMessage.with_result("0", None)


async def test_client_result_error_reaches_caller(autojump_clock):
    async with connect(PlaygroundHub) as client:
        request = await ask(client, "q", "0")
        await client.send_completion(request.invocation_id, error="Client didn't provide a result.")
        completion = await client.receive()
        assert completion.invocation_id == "0"
        assert completion.error is not None
        assert "Client didn't provide a result." in completion.error
        assert completion.error == (
            "An unexpected error occurred invoking 'Ask' on the server. "
            "HubException: Client didn't provide a result."
        )


async def test_client_result_timeout(autojump_clock):
    async with connect(PlaygroundHub, Settings(client_result_timeout=5)) as client:
        start = trio.current_time()
        await ask(client, "q", "0")
        completion = await client.receive()
        assert completion.invocation_id == "0"
        assert completion.error is not None
        assert "Invocation canceled by the server." in completion.error
        assert trio.current_time() - start >= 5


async def test_client_result_late_answer_is_ignored(autojump_clock):
    async with connect(PlaygroundHub, Settings(client_result_timeout=5)) as client:
        request = await ask(client, "q", "0")
        assert "Invocation canceled by the server." in (await client.receive()).error
        await client.send_completion(request.invocation_id, result="too late")
        await client.send_completion(request.invocation_id, error="also too late")
        assert (await client.invoke("Echo", "alive")).result == "alive"
        # And a new client result still works.
        request = await ask(client, "again?", "9")
        await client.send_completion(request.invocation_id, result="yes")
        assert await client.receive() == CompletionMessage.with_result("9", "yes")


async def test_client_result_unknown_completion_is_ignored(autojump_clock):
    async with connect(PlaygroundHub) as client:
        await client.send_completion("s999", result=1)
        await client.send_completion("whatever", error="nobody asked")
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_client_result_answer_for_other_connection_is_ignored(autojump_clock):
    hub = make_endpoint(PlaygroundHub, Settings(client_result_timeout=5))
    async with connect(hub) as asked, connect(hub) as intruder:
        request = await ask(asked, "q", "0")
        await intruder.send_completion(request.invocation_id, result="not yours")
        assert (await intruder.invoke("Echo", "alive")).result == "alive"
        await asked.send_completion(request.invocation_id, result="mine")
        assert await asked.receive() == CompletionMessage.with_result("0", "mine")


async def test_client_result_concurrent_answers_out_of_order(autojump_clock):
    async with connect(PlaygroundHub, Settings(max_parallel_invocations=2)) as client:
        first = await ask(client, "one", "0")
        second = await ask(client, "two", "1")
        await client.send_completion(second.invocation_id, result=2)
        assert await client.receive() == CompletionMessage.with_result("1", 2)
        await client.send_completion(first.invocation_id, result=1)
        assert await client.receive() == CompletionMessage.with_result("0", 1)


async def test_client_result_from_another_connection(autojump_clock):
    hub = make_endpoint(RelayHub)
    async with connect(hub) as asker, connect(hub) as answerer:
        target = answerer.connection.connection_id
        await asker.send_invocation("AskConnection", target, "ready?", invocation_id="0")
        request = await answerer.receive()
        assert request == InvocationMessage(
            invocation_id=request.invocation_id, target="Prompt", arguments=("ready?",)
        )
        await answerer.send_completion(request.invocation_id, result="ready")
        assert await asker.receive() == CompletionMessage.with_result("0", "ready")


async def test_client_result_other_tenant_connection_does_not_exist(autojump_clock):
    hub = make_endpoint(RelayHub)
    elsewhere = Principal(user_id="user", tenant_id="other")
    async with connect(hub) as asker, connect(hub, principal=elsewhere) as stranger:
        target = stranger.connection.connection_id
        completion = await asker.invoke("AskConnection", target, "hello?")
        assert completion.error == (
            "An unexpected error occurred invoking 'AskConnection' on the server. "
            f"HubException: Connection '{target}' does not exist."
        )
        assert (await stranger.invoke("Echo", "untouched")).result == "untouched"
        assert list(stranger.unread) == []


async def test_client_result_inside_on_connected_is_refused(autojump_clock):
    async with connect(EagerHub) as client:
        messages = await client.receive_until_closed()
        assert len(messages) == 1, messages
        close = messages[0]
        assert isinstance(close, CloseMessage)
        assert close.error is not None
        assert close.error.startswith("Connection closed with an error.")
        assert "Client results inside OnConnectedAsync Hub methods are not allowed." in close.error
        assert close.allow_reconnect is False
