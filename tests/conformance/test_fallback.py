"""Per-hub transports, and the official client's fallback between them.

TransportProtocols.md, "POST [endpoint-base]/negotiate" (``availableTransports``,
in the server's order, with their ``transferFormats``) and "Transport
Requests"; the wire reference, sections 1 and 2: the JS client tries the
advertised transports in order, skipping those it cannot use (Server-Sent
Events for a binary protocol); a transport a hub does not offer is refused with
404 "<T> transport not supported by this end point type".

Three servers: all transports (the default); ``--hub-transports
/hubs/playground=ServerSentEvents,LongPolling`` (the flag); and long polling
only, through ``VOISNAP_HUB_TRANSPORTS`` with two hubs separated by ``;``. The
client is ``@microsoft/signalr`` 10.0.11, unmodified: no transport option
(``js/fallback.mjs``); what it used is read from its transport object and its
own traffic (WebSockets and EventSources it opened).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.http_transports import EventStream
from tests.support.node import run_scenario
from tests.support.server import ServerProcess
from tests.support.ws_client import UpgradeRefused, negotiate, open_raw_websocket, with_query

pytestmark = pytest.mark.conformance

HUB_PATH = "/hubs/playground"
TIMEOUT = 10
WEBSOCKETS = {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}
SERVER_SENT_EVENTS = {"transport": "ServerSentEvents", "transferFormats": ["Text"]}
LONG_POLLING = {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}


def serve(path: Path, settings: dict[str, str] | None = None,
          args: list[str] | None = None) -> Iterator[ServerProcess]:
    with ServerProcess(path / "data", settings, args or []) as server:
        yield server


@pytest.fixture(scope="module")
def all_transports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serve(tmp_path_factory.mktemp("all-transports"))


@pytest.fixture(scope="module")
def no_websockets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--hub-transports", f"{HUB_PATH}=ServerSentEvents,LongPolling"]
    yield from serve(tmp_path_factory.mktemp("no-websockets"), args=args)


@pytest.fixture(scope="module")
def long_polling_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"hub_transports": f"/hubs/elsewhere=WebSockets;{HUB_PATH}=LongPolling"}
    yield from serve(tmp_path_factory.mktemp("long-polling-only"), settings)


def client(server: ServerProcess, protocol: str = "json",
           transport: str = "all") -> dict[str, Any]:
    return run_scenario("fallback.mjs", 20, url=server.hub_url(), token=server.token(),
                        transport=transport, protocol=protocol)


async def available_transports(server: ServerProcess) -> list[dict[str, Any]]:
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), server.token())
    assert response.status_code == 200
    return response.json()["availableTransports"]


# -- negotiate ----------------------------------------------------------------------------------


async def test_fallback_negotiate_lists_all_transports_by_default(all_transports):
    assert await available_transports(all_transports) == [
        WEBSOCKETS, SERVER_SENT_EVENTS, LONG_POLLING
    ]


async def test_fallback_negotiate_lists_only_the_hubs_transports_from_the_flag(no_websockets):
    assert await available_transports(no_websockets) == [SERVER_SENT_EVENTS, LONG_POLLING]


async def test_fallback_negotiate_lists_only_the_hubs_transports_from_the_variable(
    long_polling_only,
):
    assert await available_transports(long_polling_only) == [LONG_POLLING]


# -- the unmodified client ----------------------------------------------------------------------


def test_fallback_default_client_uses_websockets_when_offered(all_transports) -> None:
    """The control: with everything offered, the client takes the first."""
    result = client(all_transports)
    assert result["started"] is True, result
    assert result["transport"] == "WebSocketTransport"
    assert result["echoed"] == "over WebSocketTransport"


def test_fallback_default_client_falls_back_to_server_sent_events(no_websockets) -> None:
    result = client(no_websockets)
    assert result["started"] is True, result
    assert result["transport"] == "ServerSentEventsTransport"
    assert result["echoed"] == "over ServerSentEventsTransport"
    assert result["tap"]["webSockets"] == 0  # WebSockets was not offered, so never tried
    assert result["tap"]["eventSources"] == 1


def test_fallback_default_messagepack_client_skips_server_sent_events(no_websockets) -> None:
    """Server-Sent Events is Text only: a binary protocol goes on to long polling."""
    result = client(no_websockets, protocol="messagepack")
    assert result["started"] is True, result
    assert result["transport"] == "LongPollingTransport"
    assert result["echoed"] == "over LongPollingTransport"
    assert result["tap"]["webSockets"] == result["tap"]["eventSources"] == 0


def test_fallback_default_client_falls_back_to_long_polling(long_polling_only) -> None:
    result = client(long_polling_only)
    assert result["started"] is True, result
    assert result["transport"] == "LongPollingTransport"
    assert result["echoed"] == "over LongPollingTransport"
    assert result["tap"]["webSockets"] == result["tap"]["eventSources"] == 0
    polls = [r for r in result["tap"]["requests"] if r["method"] == "GET"]
    assert polls, result["tap"]


def test_fallback_client_requiring_websockets_fails_when_not_offered(no_websockets) -> None:
    result = client(no_websockets, transport="WebSockets")
    assert result["started"] is False
    assert "Unable to connect to the server with any of the available transports" in (
        result["error"]
    ), result["error"]
    assert result["tap"]["webSockets"] == 0


# -- requests for a transport the hub does not offer --------------------------------------------


async def test_fallback_websocket_to_hub_without_websockets_is_404(no_websockets):
    token = no_websockets.token()
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(no_websockets.hub_url(), token)).json()
        refused = []
        for connection_token in (document["connectionToken"], None):  # None: skipNegotiation
            target = with_query(HUB_PATH, id=connection_token, access_token=token)
            with pytest.raises(UpgradeRefused) as error:
                await open_raw_websocket("127.0.0.1", no_websockets.port, target)
            refused.append(error.value)
    for error in refused:
        assert error.status_code == 404
        assert error.body == b"WebSockets transport not supported by this end point type"


async def test_fallback_event_stream_to_hub_without_it_is_404(long_polling_only):
    token = long_polling_only.token()
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(long_polling_only.hub_url(), token)).json()
        events = await EventStream.open(long_polling_only.hub_url(),
                                        document["connectionToken"], token)
        body = await events.read_bytes(1)
        await events.aclose()
        # The refusal did not bind the token: long polling can still use it.
        async with httpx.AsyncClient() as http:
            poll = await http.get(long_polling_only.hub_url(),
                                  params={"id": document["connectionToken"]},
                                  headers={"Authorization": f"Bearer {token}"})
            await http.delete(long_polling_only.hub_url(),
                              params={"id": document["connectionToken"]},
                              headers={"Authorization": f"Bearer {token}"})
    assert events.status == 404
    assert body == b"ServerSentEvents transport not supported by this end point type"
    assert (poll.status_code, poll.content) == (200, b"")
