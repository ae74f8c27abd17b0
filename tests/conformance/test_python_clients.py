"""The Python SignalR clients from PyPI against a real ``voisnap serve``.

- **pysignalr** (asyncio): negotiates without ``negotiateVersion`` (so version 0,
  ``id`` = connectionId) and copies its ``access_token_factory`` into its headers
  only during the handshake, after negotiate: the token goes in the URL query
  (``?access_token=``), which it keeps for negotiate and the WebSocket. Each test
  runs its coroutine with ``asyncio.run`` inside a plain test function.
- **signalrcore** (threads): ``access_token_factory`` becomes an
  ``Authorization: Bearer`` header. Its ``stop()`` closes the socket under its
  own reader thread and then joins it, so it returns only when the server sends
  something: the server pings every second here (``keep_alive_interval``).

Hub: ``/hubs/playground``. Every wait has a deadline; nothing sleeps to wait.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from typing import Any

import pytest
from pysignalr.messages import CompletionMessage

from tests.support.pysignalr_client import pysignalr_client, pysignalr_invoke, run_async
from tests.support.server import ServerProcess
from tests.support.signalrcore_client import signalrcore_connection, signalrcore_invoke

pytestmark = pytest.mark.conformance

TIMEOUT = 10.0
UNKNOWN_METHOD = (
    "Failed to invoke 'NoSuchMethod' due to an error on the server. "
    "HubException: Method does not exist."
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"keep_alive_interval": "1"}
    with ServerProcess(tmp_path_factory.mktemp("python-clients") / "data", settings) as server:
        yield server


# -- pysignalr ---------------------------------------------------------------------------------


def test_pysignalr_echo_returns_result(hub: ServerProcess) -> None:
    value = {"text": "héllo", "list": [1, 2.5, None, {"deep": [True]}]}

    async def scenario() -> CompletionMessage:
        async with pysignalr_client(hub, hub.token("alice", "acme")) as client:
            return await pysignalr_invoke(client, "Echo", value)

    completion = run_async(scenario())
    assert completion.error is None
    assert completion.result == value


def test_pysignalr_group_message_is_received(hub: ServerProcess) -> None:
    async def scenario() -> list[Any]:
        received: asyncio.Queue[list[Any]] = asyncio.Queue()

        async def on_receive(arguments: list[Any]) -> None:
            await received.put(arguments)

        member_token, sender_token = hub.token("alice", "acme"), hub.token("bob", "acme")
        async with pysignalr_client(hub, member_token, {"Receive": on_receive}) as member, \
                pysignalr_client(hub, sender_token) as sender:
            joined = await pysignalr_invoke(member, "JoinGroup", "pysignalr-room")
            assert joined.error is None, joined.error
            sent = await pysignalr_invoke(sender, "SendToGroup", "pysignalr-room", {"n": 1})
            assert sent.error is None, sent.error
            return await received.get()

    assert run_async(scenario()) == [{"n": 1}]


def test_pysignalr_client_result_answers_ask(hub: ServerProcess) -> None:
    async def on_prompt(arguments: list[Any]) -> dict[str, str]:
        return {"answer": arguments[0].upper()}

    async def scenario() -> CompletionMessage:
        async with pysignalr_client(hub, hub.token(), {"Prompt": on_prompt}) as client:
            return await pysignalr_invoke(client, "Ask", "why?")

    completion = run_async(scenario())
    assert completion.error is None
    assert completion.result == {"answer": "WHY?"}


def test_pysignalr_counter_stream_items_then_completion(hub: ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], CompletionMessage]:
        items: list[Any] = []
        completed: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

        async def on_next(item: Any) -> None:
            items.append(item)

        async def on_complete(message: CompletionMessage) -> None:
            completed.set_result(message)

        async with pysignalr_client(hub, hub.token()) as client:
            await client.stream("Counter", [5, 1], on_next=on_next, on_complete=on_complete)
            return items, await completed

    items, completion = run_async(scenario())
    assert items == [0, 1, 2, 3, 4]
    assert completion.error is None


# -- signalrcore -------------------------------------------------------------------------------


def test_signalrcore_echo_returns_result(hub: ServerProcess) -> None:
    value = {"text": "héllo", "list": [1, 2.5, None, {"deep": [True]}]}
    with signalrcore_connection(hub, hub.token("alice", "acme")) as connection:
        assert signalrcore_invoke(connection, "Echo", value) == value


def test_signalrcore_group_message_is_received(hub: ServerProcess) -> None:
    received: queue.Queue[list[Any]] = queue.Queue()
    with signalrcore_connection(hub, hub.token("alice", "acme")) as member, \
            signalrcore_connection(hub, hub.token("bob", "acme")) as sender:
        member.on("Receive", received.put)
        signalrcore_invoke(member, "JoinGroup", "signalrcore-room")
        signalrcore_invoke(sender, "SendToGroup", "signalrcore-room", "hello")
        assert received.get(timeout=TIMEOUT) == ["hello"]


def test_signalrcore_counter_stream_items_then_completion(hub: ServerProcess) -> None:
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    with signalrcore_connection(hub, hub.token()) as connection:
        connection.stream("Counter", [5, 1]).subscribe({
            "next": lambda item: events.put(("next", item)),
            "complete": lambda message: events.put(("complete", message.error)),
            "error": lambda message: events.put(("error", message)),
        })
        seen = [events.get(timeout=TIMEOUT) for _ in range(6)]
    assert seen == [("next", n) for n in range(5)] + [("complete", None)]


def test_signalrcore_unknown_method_reports_aspnet_error(hub: ServerProcess) -> None:
    errors: queue.Queue[str] = queue.Queue()
    with signalrcore_connection(hub, hub.token()) as connection:
        connection.on_error(lambda message: errors.put(message.error))
        connection.invoke("NoSuchMethod", [1])
        assert errors.get(timeout=TIMEOUT) == UNKNOWN_METHOD
