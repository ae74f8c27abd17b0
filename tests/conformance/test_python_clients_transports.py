"""The Python SignalR clients from PyPI on the other transports and on MessagePack.

HubProtocol.md, "MessagePack (MsgPack) Encoding"; TransportProtocols.md,
"Server-Sent Events" and "Long Polling"; the wire reference, sections 2 and 5
(and its notes on these clients). ``tests/conformance/test_python_clients.py``
covers both clients with JSON over WebSockets.

What works, and is tested here:

- **pysignalr** 1.3.3, MessagePack over WebSockets (its only transport):
  Echo (a ``bytes`` value comes back as ``bytes``, which JSON cannot carry:
  the proof that MessagePack was used), a group message, a client result
  (Ask), a Counter stream.
- **signalrcore** 1.0.2, Server-Sent Events with JSON: Echo, a group message,
  a hub error; MessagePack over WebSockets: Echo with ``bytes``, a group
  message, a Counter stream.

What does not, and why (client bugs are documented, not tested):

- signalrcore, long polling with JSON: **a voisnap bug**. signalrcore POSTs its
  handshake before its first poll; ASP.NET Core takes a POST for any
  negotiated connection, voisnap answers 404 until a poll has started the
  connection, so signalrcore never connects. The test below fails until
  voisnap is fixed (``tests/transports/test_long_polling.py`` has the raw form;
  with that fixed in a copy of voisnap, this test passes). The token goes in
  the URL's ``access_token`` for it: signalrcore's polls do not send the
  ``Authorization`` header its ``access_token_factory`` sets (a client bug:
  they get 401, and it polls again at once, in a tight loop). Its poll reader
  also takes only the first record of each poll body and keeps the rest until
  the next body (the wire reference's "SHOULD" 8, one record per body for such
  a client, which voisnap does not do): so the group message comes from another
  connection, and each poll body here holds one record.
- signalrcore, long polling with MessagePack: a client bug,
  ``LongPollingBinaryClient.__init__`` calls ``super(LongPollingTextClient,
  self)`` (a TypeError), and its poll reader splits bodies on 0x1E, which
  binary records do not use.
- signalrcore, Server-Sent Events with MessagePack: not possible (SSE is Text
  only); asked for Binary, signalrcore picks JSON from negotiate's formats.
- signalrcore, streams over Server-Sent Events: a client race. ``stream()``
  sends the StreamInvocation (a blocking POST) before the caller can
  ``subscribe``; the first item often arrives in between and is dropped with
  "next stream handler fired, no callback configured" (over WebSockets too,
  rarely, which the MessagePack stream test below allows for).
- signalrcore's MessagePack uploads, and its client results: see the wire
  reference (its msgpack upload Invocation lacks the id slot; it never answers
  client results). pysignalr uploads with a non-blocking Invocation, so the
  server's answer to Sum cannot be observed.
- pysignalr has no transport but WebSockets.

Hub: ``/hubs/playground``; one server for the module, pinging every half
second (signalrcore's ``stop()`` returns only once the server sends something).
Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from typing import Any

import pytest
from pysignalr.messages import CompletionMessage
from pysignalr.protocol.messagepack import MessagepackProtocol
from signalrcore.hub.base_hub_connection import BaseHubConnection
from signalrcore.types import HttpTransportType, HubProtocolEncoding

from tests.support.pysignalr_client import pysignalr_client, pysignalr_invoke, run_async
from tests.support.server import ServerProcess
from tests.support.signalrcore_client import signalrcore_connection, signalrcore_invoke

pytestmark = pytest.mark.conformance

TIMEOUT = 10.0
BINARY = b"\x00\x01\xfe\xff"
VALUE = {"text": "héllo", "list": [1, 2.5, None, {"deep": [True]}]}
UNKNOWN_METHOD = (
    "Failed to invoke 'NoSuchMethod' due to an error on the server. "
    "HubException: Method does not exist."
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"keep_alive_interval": "0.5"}
    with ServerProcess(tmp_path_factory.mktemp("py-transports") / "data", settings) as server:
        yield server


# -- pysignalr, MessagePack over WebSockets ------------------------------------------------------


def test_pysignalr_messagepack_echo_returns_bytes_and_nested_values(hub: ServerProcess) -> None:
    async def scenario() -> CompletionMessage:
        async with pysignalr_client(hub, hub.token(), protocol=MessagepackProtocol()) as client:
            return await pysignalr_invoke(client, "Echo", {**VALUE, "bytes": BINARY})

    completion = run_async(scenario())
    assert completion.error is None
    assert completion.result == {**VALUE, "bytes": BINARY}


def test_pysignalr_messagepack_group_message_is_received(hub: ServerProcess) -> None:
    async def scenario() -> list[Any]:
        received: asyncio.Queue[list[Any]] = asyncio.Queue()

        async def on_receive(arguments: list[Any]) -> None:
            await received.put(arguments)

        handlers = {"Receive": on_receive}
        msgpack = MessagepackProtocol()
        async with pysignalr_client(hub, hub.token("alice"), handlers, msgpack) as member, \
                pysignalr_client(hub, hub.token("bob"), protocol=msgpack) as sender:
            joined = await pysignalr_invoke(member, "JoinGroup", "pysignalr-msgpack")
            assert joined.error is None, joined.error
            sent = await pysignalr_invoke(sender, "SendToGroup", "pysignalr-msgpack",
                                          {"n": 1, "raw": BINARY})
            assert sent.error is None, sent.error
            return await received.get()

    assert run_async(scenario()) == [{"n": 1, "raw": BINARY}]


def test_pysignalr_messagepack_client_result_answers_ask(hub: ServerProcess) -> None:
    async def on_prompt(arguments: list[Any]) -> dict[str, str]:
        return {"answer": arguments[0].upper()}

    async def scenario() -> CompletionMessage:
        handlers = {"Prompt": on_prompt}
        async with pysignalr_client(hub, hub.token(), handlers, MessagepackProtocol()) as client:
            return await pysignalr_invoke(client, "Ask", "why?")

    completion = run_async(scenario())
    assert completion.error is None
    assert completion.result == {"answer": "WHY?"}


def test_pysignalr_messagepack_counter_stream_items_then_completion(hub: ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], CompletionMessage]:
        items: list[Any] = []
        completed: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

        async def on_next(item: Any) -> None:
            items.append(item)

        async def on_complete(message: CompletionMessage) -> None:
            completed.set_result(message)

        async with pysignalr_client(hub, hub.token(), protocol=MessagepackProtocol()) as client:
            await client.stream("Counter", [5, 1], on_next=on_next, on_complete=on_complete)
            return items, await completed

    items, completion = run_async(scenario())
    assert items == [0, 1, 2, 3, 4]
    assert completion.error is None


# -- signalrcore -------------------------------------------------------------------------------


def kinds(connection: BaseHubConnection) -> tuple[str, str]:
    return type(connection.transport).__name__, type(connection.protocol).__name__


SSE = HttpTransportType.server_sent_events
WEBSOCKETS = HttpTransportType.web_sockets
LONG_POLLING = HttpTransportType.long_polling
MESSAGEPACK = HubProtocolEncoding.binary


def test_signalrcore_server_sent_events_echo_returns_result(hub: ServerProcess) -> None:
    with signalrcore_connection(hub, hub.token(), SSE) as connection:
        assert kinds(connection) == ("SSETransport", "JsonHubProtocol")
        assert signalrcore_invoke(connection, "Echo", VALUE) == VALUE


def test_signalrcore_server_sent_events_group_message_is_received(hub: ServerProcess) -> None:
    received: queue.Queue[list[Any]] = queue.Queue()
    with signalrcore_connection(hub, hub.token("alice"), SSE) as member, \
            signalrcore_connection(hub, hub.token("bob"), SSE) as sender:
        member.on("Receive", received.put)
        signalrcore_invoke(member, "JoinGroup", "signalrcore-sse")
        signalrcore_invoke(sender, "SendToGroup", "signalrcore-sse", "hello")
        assert received.get(timeout=TIMEOUT) == ["hello"]


def test_signalrcore_server_sent_events_unknown_method_reports_aspnet_error(
    hub: ServerProcess,
) -> None:
    errors: queue.Queue[str] = queue.Queue()
    with signalrcore_connection(hub, hub.token(), SSE) as connection:
        connection.on_error(lambda message: errors.put(message.error))
        connection.invoke("NoSuchMethod", [1])
        assert errors.get(timeout=TIMEOUT) == UNKNOWN_METHOD


def test_signalrcore_messagepack_echo_returns_bytes(hub: ServerProcess) -> None:
    with signalrcore_connection(hub, hub.token(), WEBSOCKETS, MESSAGEPACK) as connection:
        assert kinds(connection) == ("WebsocketTransport", "MessagePackHubProtocol")
        value = {**VALUE, "bytes": BINARY}
        assert signalrcore_invoke(connection, "Echo", value) == value


def test_signalrcore_messagepack_group_message_is_received(hub: ServerProcess) -> None:
    received: queue.Queue[list[Any]] = queue.Queue()
    with signalrcore_connection(hub, hub.token("alice"), WEBSOCKETS, MESSAGEPACK) as member, \
            signalrcore_connection(hub, hub.token("bob"), WEBSOCKETS, MESSAGEPACK) as sender:
        member.on("Receive", received.put)
        signalrcore_invoke(member, "JoinGroup", "signalrcore-msgpack")
        signalrcore_invoke(sender, "SendToGroup", "signalrcore-msgpack", {"n": 2})
        assert received.get(timeout=TIMEOUT) == [{"n": 2}]


def test_signalrcore_messagepack_counter_stream_items_then_completion(hub: ServerProcess) -> None:
    """The stream's first item can be lost to signalrcore's own race (its
    ``stream()`` sends before the caller can ``subscribe``; see the module
    docstring), rarely over WebSockets, when the machine is busy: the items
    seen must be the rest of the stream, in order, then the completion."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    with signalrcore_connection(hub, hub.token(), WEBSOCKETS, MESSAGEPACK) as connection:
        connection.stream("Counter", [5, 20]).subscribe({
            "next": lambda item: events.put(("next", item)),
            "complete": lambda message: events.put(("complete", message.error)),
            "error": lambda message: events.put(("error", message)),
        })
        seen = [events.get(timeout=TIMEOUT)]
        while seen[-1][0] == "next":
            seen.append(events.get(timeout=TIMEOUT))
    items = [value for kind, value in seen[:-1]]
    assert seen[-1] == ("complete", None)
    assert items in ([0, 1, 2, 3, 4], [1, 2, 3, 4]), items


def test_signalrcore_long_polling_echo_and_group_message(hub: ServerProcess) -> None:
    """Fails: a voisnap bug (see the module docstring): the handshake POST,
    sent before the first poll, is answered 404."""
    received: queue.Queue[list[Any]] = queue.Queue()
    with signalrcore_connection(hub, hub.token("alice"), LONG_POLLING,
                                token_in_url=True) as member, \
            signalrcore_connection(hub, hub.token("bob"), WEBSOCKETS) as sender:
        assert kinds(member) == ("LongPollingTransport", "JsonHubProtocol")
        assert signalrcore_invoke(member, "Echo", VALUE) == VALUE
        member.on("Receive", received.put)
        signalrcore_invoke(member, "JoinGroup", "signalrcore-lp")
        signalrcore_invoke(sender, "SendToGroup", "signalrcore-lp", "polled")
        assert received.get(timeout=TIMEOUT) == ["polled"]
