"""Plain HTTP on the hub port, served by hypercorn behind voisnap's front door.

The front door reads each connection's request head and hands every request
that is not a hub WebSocket to hypercorn with the bytes it already read
(``server/hypercorn_bridge.py``). These tests check that nothing is lost in
that hand-over, over real sockets: keep-alive connections that carry several
requests, heads and bodies that arrive in several TCP segments; and the
endpoints the ASGI app answers (``GET /healthz``, ``POST {hub}/negotiate``
as in TransportProtocols.md, "POST [endpoint-base]/negotiate", and CORS).
"""

from __future__ import annotations

import httpx
import trio

from tests.support.ws_client import HttpResponseReader, negotiate, open_hub_client

TIMEOUT = 10
GOOD_ORIGIN = "http://good.example"
CORS_ARGS = ["--cors-origin", GOOD_ORIGIN]
# Spreads the pieces of one request over separate TCP segments (with TCP_NODELAY,
# which trio sets, each send is pushed at once). It shapes the input; no test
# waits on the clock for anything the server does.
SEGMENT_GAP = 0.02


def http_request(
    method: str, target: str, port: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_connection(port: int) -> tuple[trio.SocketStream, HttpResponseReader]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return stream, HttpResponseReader(stream)


# -- endpoints ----------------------------------------------------------------------------------


async def test_healthz_returns_200(server):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_unknown_path_returns_404(server):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{server.url}/no/such/thing")
    assert response.status_code == 404


async def test_negotiate_version_1_returns_connection_id_and_token(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), token, version=1)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["negotiateVersion"] == 1
    assert document["connectionId"]
    assert document["connectionToken"]
    assert document["connectionToken"] != document["connectionId"]
    transports = {t["transport"]: t["transferFormats"] for t in document["availableTransports"]}
    assert transports["WebSockets"] == ["Text", "Binary"]


async def test_negotiate_without_version_answers_version_0_without_token(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), token, version=None)
    assert response.status_code == 200
    document = response.json()
    assert document["negotiateVersion"] == 0
    assert document["connectionId"]
    assert "connectionToken" not in document


async def test_negotiate_newer_version_is_answered_with_version_1(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), token, version=7)
    assert response.status_code == 200
    assert response.json()["negotiateVersion"] == 1


async def test_negotiate_non_integer_version_returns_error_json(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), token, version="one")
    # As ASP.NET Core: status 200, and the error in the document.
    assert response.status_code == 200
    assert response.json() == {"error": "The client requested a non-integer protocol version."}


async def test_negotiate_without_token_returns_401(server):
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_negotiate_unknown_hub_returns_404(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        response = await negotiate(f"{server.url}/hubs/nope", token)
    assert response.status_code == 404


# -- keep-alive and segmentation through the front door -----------------------------------------


async def test_keep_alive_connection_serves_several_requests(server):
    with trio.fail_after(TIMEOUT):
        stream, reader = await open_connection(server.port)
        async with stream:
            for _ in range(3):
                await stream.send_all(http_request("GET", "/healthz", server.port))
                response = await reader.read_response()
                assert response.status == 200, response
                assert response.json() == {"status": "ok"}


async def test_keep_alive_connection_answers_pipelined_requests_in_order(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        stream, reader = await open_connection(server.port)
        async with stream:
            await stream.send_all(
                http_request("GET", "/healthz", server.port)
                + http_request("POST", "/hubs/playground/negotiate?negotiateVersion=1",
                               server.port, {"Authorization": f"Bearer {token}"})
            )
            first = await reader.read_response()
            second = await reader.read_response()
    assert first.status == 200
    assert first.json() == {"status": "ok"}
    assert second.status == 200
    assert second.json()["negotiateVersion"] == 1


async def test_request_head_sent_byte_by_byte_is_answered(server):
    request = http_request("GET", "/healthz", server.port)
    with trio.fail_after(TIMEOUT):
        stream, reader = await open_connection(server.port)
        async with stream:
            for index in range(len(request)):
                await stream.send_all(request[index : index + 1])
            response = await reader.read_response()
    assert response.status == 200
    assert response.json() == {"status": "ok"}


async def test_request_head_in_three_segments_is_answered(server):
    request = http_request("GET", "/healthz", server.port)
    pieces = [request[:7], request[7:30], request[30:]]  # "GET /he", ..., ending "\r\n\r\n"
    with trio.fail_after(TIMEOUT):
        stream, reader = await open_connection(server.port)
        async with stream:
            for piece in pieces:
                await stream.send_all(piece)
                await trio.sleep(SEGMENT_GAP)
            response = await reader.read_response()
            # The connection is still in step: a second request is answered too.
            await stream.send_all(http_request("GET", "/healthz", server.port))
            again = await reader.read_response()
    assert response.status == 200
    assert again.status == 200


async def test_request_body_in_a_later_segment_is_read(server):
    token = server.token()
    body = b'{"ignored": true}'
    request = http_request("POST", "/hubs/playground/negotiate?negotiateVersion=1", server.port,
                           {"Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"}, body)
    head, payload = request[: -len(body)], request[-len(body):]
    with trio.fail_after(TIMEOUT):
        stream, reader = await open_connection(server.port)
        async with stream:
            await stream.send_all(head)
            await trio.sleep(SEGMENT_GAP)  # the front door hands over the head alone
            await stream.send_all(payload[:5])
            await trio.sleep(SEGMENT_GAP)
            await stream.send_all(payload[5:])
            response = await reader.read_response()
            # The whole body was consumed: the next request on the connection parses.
            await stream.send_all(http_request("GET", "/healthz", server.port))
            after = await reader.read_response()
    assert response.status == 200, response
    assert response.json()["connectionToken"]
    assert after.status == 200, after


async def test_request_with_head_and_body_in_one_segment_is_answered(server):
    token = server.token()
    request = http_request("POST", "/hubs/playground/negotiate", server.port,
                           {"Authorization": f"Bearer {token}"}, b"{}")
    with trio.fail_after(TIMEOUT):
        stream, reader = await open_connection(server.port)
        async with stream:
            await stream.send_all(request + http_request("GET", "/healthz", server.port))
            response = await reader.read_response()
            after = await reader.read_response()
    assert response.status == 200
    assert response.json()["negotiateVersion"] == 0
    assert after.status == 200


# -- CORS ---------------------------------------------------------------------------------------


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, x-requested-with",
    }


async def test_cors_preflight_from_allowed_origin_returns_204(start_server):
    server = start_server(args=CORS_ARGS)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.options(
                f"{server.hub_url()}/negotiate", headers=preflight_headers(GOOD_ORIGIN)
            )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == GOOD_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_cors_preflight_from_other_origin_returns_403_with_body(start_server):
    server = start_server(args=CORS_ARGS)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.options(
                f"{server.hub_url()}/negotiate", headers=preflight_headers("http://evil.example")
            )
    assert response.status_code == 403
    assert "http://evil.example" in response.text
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_without_configured_origins_returns_403(server):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.options(
                f"{server.hub_url()}/negotiate", headers=preflight_headers(GOOD_ORIGIN)
            )
    assert response.status_code == 403
    assert response.text


async def test_cors_request_from_allowed_origin_carries_cors_headers(start_server):
    server = start_server(args=CORS_ARGS)
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{server.hub_url()}/negotiate?negotiateVersion=1",
                headers={"Origin": GOOD_ORIGIN, "Authorization": f"Bearer {token}"},
            )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == GOOD_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_cors_request_from_other_origin_carries_no_cors_headers(start_server):
    server = start_server(args=CORS_ARGS)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{server.url}/healthz", headers={"Origin": "http://evil.example"}
            )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


# -- other requests to a hub path ---------------------------------------------------------------


async def test_http2_prior_knowledge_request_is_answered(server):
    """An h2c connection is not HTTP/1.x: the front door hands it to hypercorn as it is."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(http1=False, http2=True) as http:
            response = await http.get(f"{server.url}/healthz")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_hub_request_without_token_returns_401(server):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.get(server.hub_url(), params={"id": "nobody"})
    assert response.status_code == 401


async def test_hub_request_without_id_returns_400(server):
    # Authenticated (auth comes first, as ASP.NET's authorization middleware does).
    headers = {"Authorization": f"Bearer {server.token()}"}
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.get(server.hub_url(), headers=headers)
    assert response.status_code == 400
    assert response.text == "Connection ID required"


async def test_hub_request_with_unknown_id_returns_404(server):
    headers = {"Authorization": f"Bearer {server.token()}"}
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            response = await http.post(server.hub_url(), params={"id": "nobody"}, headers=headers)
    assert response.status_code == 404
    assert response.text == "No Connection with that ID"


async def test_post_to_a_websocket_connection_returns_405(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        document = (await negotiate(server.hub_url(), token)).json()
        url = f"{server.ws_url}/hubs/playground"
        async with open_hub_client(url, token=token,
                                   connection_token=document["connectionToken"]) as client:
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    server.hub_url(), params={"id": document["connectionToken"]},
                    headers={"Authorization": f"Bearer {token}"}, content=b'{"type":6}\x1e',
                )
            assert await client.call("Echo", "unharmed") == "unharmed"
    assert response.status_code == 405
    assert response.text == "POST requests are not allowed for WebSocket connections."
