"""The front door: who gets a WebSocket upgrade, and by which path it is served.

``server/front_door.py`` reads each connection's request head. A WebSocket
upgrade to a hub path takes the fast path (voisnap's own transport) after the
admission checks of ``HubServer.admit`` (TransportProtocols.md, "WebSockets"
and "POST [endpoint-base]/negotiate"): the access token (401, and no
connection is created), the browser ``Origin`` (403), and the ``id`` of a
negotiated connection (404 unknown, 403 another user's, 409 in use). An
upgrade that arrives on a connection already handed to hypercorn (a keep-alive
connection that served a request first) takes the slow ASGI path, and must
work as well; if hypercorn's internals that ``hypercorn_bridge`` relies on
change, these tests fail.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import trio
import trio_websocket

from tests.support.ws_client import (
    HttpResponseReader,
    HubClient,
    UpgradeRefused,
    get_stats,
    negotiate,
    open_hub_client,
    open_websocket_after_request,
    wait_for_stats,
    with_query,
)

TIMEOUT = 10
HUB_PATH = "/hubs/playground"
GOOD_ORIGIN = "http://good.example"
# RFC 6455 section 1.3's example key, and the accept value it implies.
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
OTHER_SECRET = "a-different-secret-of-at-least-32-bytes!"


def ws_hub_url(server) -> str:
    return f"{server.ws_url}{HUB_PATH}"


def claims(ttl: float = 3600) -> dict:
    return {"sub": "alice", "tid": "acme", "roles": [], "exp": int(time.time() + ttl)}


def unsigned_token() -> str:
    """A token with ``alg: none`` and an empty signature."""

    def part(document: dict) -> str:
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims())}."


async def expect_refused(url: str, *, token: str | None, connection_token: str | None = None,
                         headers: tuple = ()) -> trio_websocket.ConnectionRejected:
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with open_hub_client(url, token=token, connection_token=connection_token,
                                   headers=headers, handshake=False):
            pass
    return refused.value


def upgrade_request(port: int, target: str, extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


def masked_text_frame(text: str) -> bytes:
    """A client text frame (RFC 6455 5.2) with an all-zero mask, so the payload
    goes out as it is. Payloads under 126 bytes only."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


# -- the access token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda server: None, id="missing"),
        pytest.param(lambda server: server.token(ttl=-60), id="expired"),
        pytest.param(lambda server: jwt.encode(claims(), OTHER_SECRET, algorithm="HS256"),
                     id="badly-signed"),
        pytest.param(lambda server: unsigned_token(), id="alg-none"),
        pytest.param(lambda server: "not.a.jwt", id="garbage"),
    ],
)
async def test_upgrade_with_bad_token_is_refused_401_and_creates_no_connection(server, make_token):
    token = make_token(server)
    with trio.fail_after(TIMEOUT):
        refused = await expect_refused(ws_hub_url(server), token=token)
        stats = await get_stats(server.url)
    assert refused.status_code == 401
    assert refused.body, "a refusal says why"
    assert stats["connections"] == 0
    assert stats["hubs"][HUB_PATH]["connections"] == 0


async def test_upgrade_with_token_in_authorization_header_is_accepted(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(
            ws_hub_url(server), headers=[("Authorization", f"Bearer {token}")]
        ) as client:
            assert await client.call("Echo", "header") == "header"


# -- the Origin header --------------------------------------------------------------------------


async def test_upgrade_with_disallowed_origin_is_refused_403(start_server):
    server = start_server(args=["--cors-origin", GOOD_ORIGIN])
    token = server.token()
    with trio.fail_after(TIMEOUT):
        refused = await expect_refused(ws_hub_url(server), token=token,
                                       headers=(("Origin", "http://evil.example"),))
        stats = await get_stats(server.url)
    assert refused.status_code == 403
    assert b"http://evil.example" in refused.body
    assert stats["connections"] == 0


async def test_upgrade_with_origin_and_no_allowed_origins_is_refused_403(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        refused = await expect_refused(ws_hub_url(server), token=token,
                                       headers=(("Origin", GOOD_ORIGIN),))
    assert refused.status_code == 403


async def test_upgrade_with_allowed_origin_is_accepted(start_server):
    server = start_server(args=["--cors-origin", GOOD_ORIGIN])
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token,
                                   headers=[("Origin", GOOD_ORIGIN)]) as client:
            assert await client.call("Echo", 1) == 1


async def test_upgrade_without_origin_is_accepted(server):
    """Not a browser: nothing to check (trio-websocket sends no Origin; a raw
    request proves it)."""
    token = server.token()
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            target = with_query(HUB_PATH, access_token=token)
            await stream.send_all(upgrade_request(server.port, target))
            response = await HttpResponseReader(stream).read_response()
    assert response.status == 101, response


# -- the connection id --------------------------------------------------------------------------


async def test_upgrade_with_unknown_id_is_refused_404(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        refused = await expect_refused(ws_hub_url(server), token=token,
                                       connection_token="no-such-connection")
    assert refused.status_code == 404
    assert refused.body == b"No Connection with that ID"


async def test_negotiated_token_is_good_for_one_websocket_only(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(server.hub_url(), token)).json()
        connection_token = document["connectionToken"]
        async with open_hub_client(ws_hub_url(server), token=token,
                                   connection_token=connection_token) as first:
            assert await first.call("Echo", "first") == "first"
            refused = await expect_refused(ws_hub_url(server), token=token,
                                           connection_token=connection_token)
            assert refused.status_code == 409
            # The refused attempt did not disturb the first connection.
            assert await first.call("Echo", "still") == "still"
        await wait_for_stats(server.url, lambda stats: stats["connections"] == 0)
        after = await expect_refused(ws_hub_url(server), token=token,
                                     connection_token=connection_token)
    assert after.status_code == 404


async def test_upgrade_with_another_users_connection_token_is_refused_403(server):
    alice, bob = server.token(user="alice"), server.token(user="bob")
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(server.hub_url(), alice)).json()
        refused = await expect_refused(ws_hub_url(server), token=bob,
                                       connection_token=document["connectionToken"])
        # Refusing bob did not spend alice's token.
        async with open_hub_client(ws_hub_url(server), token=alice,
                                   connection_token=document["connectionToken"]) as client:
            assert await client.call("Echo", "alice") == "alice"
    assert refused.status_code == 403


async def test_upgrade_with_another_tenants_connection_token_is_refused_403(server):
    acme, other = server.token(tenant="acme"), server.token(tenant="other")
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(server.hub_url(), acme)).json()
        refused = await expect_refused(ws_hub_url(server), token=other,
                                       connection_token=document["connectionToken"])
    assert refused.status_code == 403


async def test_upgrade_with_version_0_connection_id_is_accepted(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(server.hub_url(), token, version=None)).json()
        async with open_hub_client(ws_hub_url(server), token=token,
                                   connection_token=document["connectionId"]) as client:
            assert await client.call("Echo", "v0") == "v0"


async def test_upgrade_without_id_skips_negotiation(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            assert await client.call("Echo", {"skip": True}) == {"skip": True}
            stats = await get_stats(server.url)
    assert stats["connections"] == 1
    assert stats["hubs"][HUB_PATH]["connections"] == 1


# -- the 101 response ---------------------------------------------------------------------------


async def test_upgrade_offering_permessage_deflate_gets_no_extensions(server):
    token = server.token()
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            reader = HttpResponseReader(stream)
            await stream.send_all(
                upgrade_request(server.port, with_query(HUB_PATH, access_token=token), offer)
            )
            response = await reader.read_response()
            await stream.send_all(masked_text_frame('{"protocol":"json","version":1}\x1e'))
            while len(reader.buffer) < 2:
                reader.buffer += await stream.receive_some(1024)
    assert response.status == 101
    assert response.header("sec-websocket-accept") == SAMPLE_ACCEPT
    assert response.header("sec-websocket-extensions") is None
    # The handshake response comes back uncompressed: FIN + text, RSV1 clear.
    assert reader.buffer[0] == 0x81


# -- the slow path ------------------------------------------------------------------------------


async def test_slow_path_upgrade_after_http_request_serves_the_hub(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        websocket, first = await open_websocket_after_request(
            "127.0.0.1", server.port, with_query(HUB_PATH, access_token=token)
        )
        client = HubClient(websocket)
        try:
            assert await client.handshake() == {}
            assert await client.call("Echo", "slow path") == "slow path"
            assert await client.call("Echo", [1, 2, 3]) == [1, 2, 3]
            stats = await get_stats(server.url)
        finally:
            await client.aclose()
    assert first.status == 200
    assert stats["connections"] == 1


async def test_slow_path_upgrade_without_token_is_refused_401(server):
    with trio.fail_after(TIMEOUT), pytest.raises(UpgradeRefused) as refused:
        websocket, _ = await open_websocket_after_request("127.0.0.1", server.port, HUB_PATH)
        await websocket.aclose()
    assert refused.value.status_code == 401
    with trio.fail_after(TIMEOUT):
        stats = await get_stats(server.url)
    assert stats["connections"] == 0


async def test_upgrade_to_a_path_without_a_hub_is_refused_404(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        refused = await expect_refused(f"{server.ws_url}/hubs/nope", token=token)
    assert refused.status_code == 404


# -- connections that never finish their head ---------------------------------------------------


async def test_connection_that_sends_nothing_is_closed_after_head_timeout(server):
    # request_head_timeout is 2 s in the fast settings.
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            assert await stream.receive_some(1024) == b""
        # The server is still serving.
        stats = await get_stats(server.url)
    assert stats["connections"] == 0


@pytest.mark.parametrize("header_size", [20_000, 100_000])
async def test_oversize_request_head_is_refused_431(server, header_size):
    """request_head_max_size is 16 KiB by default: a larger head is refused,
    whether it arrives in one segment or in many."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"X-Big: {'a' * header_size}\r\n\r\n".encode()
            )
            response = await HttpResponseReader(stream).read_response()
    assert response.status == 431


# -- the upgrade request itself -----------------------------------------------------------------


async def test_upgrade_request_in_several_segments_is_accepted(server):
    token = server.token()
    request = upgrade_request(server.port, with_query(HUB_PATH, access_token=token))
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            reader = HttpResponseReader(stream)
            for start in range(0, len(request), 25):
                await stream.send_all(request[start : start + 25])
            response = await reader.read_response()
            await stream.send_all(masked_text_frame('{"protocol":"json","version":1}\x1e'))
            while len(reader.buffer) < 5:
                reader.buffer += await stream.receive_some(1024)
    assert response.status == 101
    # An unmasked text frame holding the handshake response "{}\x1e".
    assert bytes(reader.buffer[:5]) == b"\x81\x03{}\x1e"


async def test_invalid_upgrade_request_is_refused_400(server):
    """An upgrade without Sec-WebSocket-Key is not a WebSocket request (RFC 6455
    4.2.1): the front door leaves it to hypercorn, which answers 400."""
    token = server.token()
    request = (
        f"GET {with_query(HUB_PATH, access_token=token)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    ).encode()
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(request)
            response = await HttpResponseReader(stream).read_response()
        stats = await get_stats(server.url)
    assert response.status == 400
    assert stats["connections"] == 0
