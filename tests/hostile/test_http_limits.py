"""HTTP body deadlines, body limits and ambiguous framing (issue 8, cases 4 and 5).

- A declared body larger than the route allows is refused with 413 at once,
  before a byte of it is read: negotiate and other REST bodies may be 64 KiB,
  a long-polling POST 1 MiB.
- A body that stops arriving gets 408 after ``request_body_timeout`` (shrunk
  here to ``BODY_TIMEOUT``), and the connection is closed.
- RFC 9112 section 6.1: "A server MAY reject a request that contains both
  Content-Length and Transfer-Encoding ... Regardless, the server MUST close
  the connection after responding to such a request". Section 6.3: differing
  Content-Length values are "an unrecoverable error": 400, then close.

Everything here is on raw sockets: an HTTP client library would not send these.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from tests.hostile.helpers import (
    HUB_PATH,
    TIMEOUT,
    assert_closed_after,
    make_token,
    open_tcp,
    request_head,
)
from tests.support.http_transports import LongPollingClient
from tests.support.ws_client import HttpResponse, HttpResponseReader

BODY_TIMEOUT = 2.0
SERVER_SETTINGS = {"request_body_timeout": str(BODY_TIMEOUT), "long_polling_timeout": "3"}
AT_ONCE = 1.0  # well before BODY_TIMEOUT
# Past the body timeout: a server that waits for the body shows its answer.
LATE = BODY_TIMEOUT + 3
HUGE = "1000000000000"
NEGOTIATE = f"{HUB_PATH}/negotiate?negotiateVersion=1"
PING_RECORD = b'{"type":6}\x1e'


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


@asynccontextmanager
async def long_polling_connection(server) -> AsyncIterator[str]:
    """A negotiated long-polling connection (handshake done) with a poll
    always in flight, so that it outlives ``disconnect_timeout``; yields its
    connection token."""
    async with httpx.AsyncClient() as http:
        client = await LongPollingClient.open(http, server.hub_url(), make_token("alice"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_polling, client)
            yield client.connection_token
            nursery.cancel_scope.cancel()


async def keep_polling(client: LongPollingClient) -> None:
    with contextlib.suppress(httpx.HTTPError):
        while (await client.poll()).status_code == 200:
            pass


async def first_response(server, request: bytes) -> tuple[HttpResponse, float]:
    """Send ``request`` (no body follows); the response and how long it took."""
    stream = await open_tcp(server)
    async with stream:
        started = trio.current_time()
        await stream.send_all(request)
        response = await HttpResponseReader(stream).read_response()
    return response, trio.current_time() - started


# -- declared too large: 413 at once ------------------------------------------------------------


@pytest.mark.parametrize("target, auth", [
    pytest.param(NEGOTIATE, True, id="negotiate"),
    pytest.param("/healthz", False, id="healthz"),
])
async def test_http_declared_huge_body_is_refused_413_at_once(server, neighbour, target, auth):
    headers = [("Content-Length", HUGE), ("Content-Type", "application/json")]
    if auth:
        headers.append(bearer(make_token("alice")))
    with trio.fail_after(LATE):
        response, elapsed = await first_response(server, request_head("POST", target, server,
                                                                       headers))
    assert response.status == 413, response
    assert response.body, "a refusal says why"
    assert elapsed < AT_ONCE, elapsed
    await neighbour.check()


async def test_http_long_polling_post_declared_over_1_mib_is_refused_413_at_once(
        server, neighbour):
    headers = [("Content-Length", str(1024 * 1024 + 1)), bearer(make_token("alice")),
               ("Content-Type", "text/plain;charset=UTF-8")]
    with trio.fail_after(TIMEOUT):
        async with long_polling_connection(server) as connection_token:
            response, elapsed = await first_response(server, request_head(
                "POST", f"{HUB_PATH}?id={connection_token}", server, headers))
    assert response.status == 413, response
    assert response.body
    assert elapsed < AT_ONCE, elapsed
    await neighbour.check()


# -- a body that never completes: 408, then closed ----------------------------------------------


async def assert_incomplete_body_times_out(server, target: str, token: str) -> None:
    headers = [("Content-Length", "100"), bearer(token),
               ("Content-Type", "text/plain;charset=UTF-8")]
    with trio.fail_after(LATE):
        stream = await open_tcp(server)
        async with stream:
            started = trio.current_time()
            await stream.send_all(request_head("POST", target, server, headers) + b"0123456789")
            reader = HttpResponseReader(stream)
            response = await reader.read_response()
            elapsed = trio.current_time() - started
            assert response.status == 408, response
            assert BODY_TIMEOUT * 0.75 <= elapsed <= BODY_TIMEOUT + 3, elapsed
            await assert_closed_after(reader)


async def test_http_negotiate_body_that_stops_gets_408_and_is_closed(server, neighbour):
    await assert_incomplete_body_times_out(server, NEGOTIATE, make_token("alice"))
    await neighbour.check()


async def test_http_long_polling_post_that_stops_gets_408_and_is_closed(server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with long_polling_connection(server) as connection_token:
            await assert_incomplete_body_times_out(server, f"{HUB_PATH}?id={connection_token}",
                                                   make_token("alice"))
    await neighbour.check()


# -- chunked bodies over the limit: 413 ---------------------------------------------------------


async def send_chunked(stream: trio.SocketStream, total: int, chunk: int = 64 * 1024) -> None:
    """A chunked body of ``total`` bytes of Ping records (each one valid, so
    only the body's size is at fault); stops quietly if the server hangs up."""
    pings = PING_RECORD * (chunk // len(PING_RECORD))
    piece = f"{len(pings):x}\r\n".encode() + pings + b"\r\n"
    try:
        for _ in range(total // len(pings) + 1):
            await stream.send_all(piece)
        await stream.send_all(b"0\r\n\r\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def chunked_post(server, target: str, total: int) -> HttpResponse:
    headers = [("Transfer-Encoding", "chunked"), bearer(make_token("alice")),
               ("Content-Type", "text/plain;charset=UTF-8")]
    stream = await open_tcp(server)
    async with stream:
        await stream.send_all(request_head("POST", target, server, headers))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_chunked, stream, total)
            response = await HttpResponseReader(stream).read_response()
            nursery.cancel_scope.cancel()
    return response


async def test_http_negotiate_chunked_body_of_10_mb_is_refused_413(server, neighbour):
    with trio.fail_after(TIMEOUT):
        response = await chunked_post(server, NEGOTIATE, 10 * 1024 * 1024)
    assert response.status == 413, response
    await neighbour.check()


async def test_http_long_polling_chunked_post_over_1_mib_is_refused_413(server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with long_polling_connection(server) as connection_token:
            response = await chunked_post(server, f"{HUB_PATH}?id={connection_token}",
                                          2 * 1024 * 1024)
    assert response.status == 413, response
    await neighbour.check()


# -- ambiguous framing: 400, then closed --------------------------------------------------------


def ambiguous_post(server) -> bytes:
    """A negotiate that would succeed, but for its two framings."""
    return request_head("POST", NEGOTIATE, server, [
        bearer(make_token("alice")), ("Connection", "keep-alive"),
        ("Content-Length", "5"), ("Transfer-Encoding", "chunked"),
    ]) + b"0\r\n\r\n"


def two_lengths_post(server) -> bytes:
    return request_head("POST", NEGOTIATE, server, [
        bearer(make_token("alice")), ("Connection", "keep-alive"),
        ("Content-Length", "2"), ("Content-Length", "5"),
    ]) + b"{}\r\n\r\n"


async def assert_refused_400_and_closed(server, request: bytes, *, after_healthz: bool) -> None:
    with trio.fail_after(TIMEOUT):
        stream = await open_tcp(server)
        async with stream:
            reader = HttpResponseReader(stream)
            if after_healthz:
                await stream.send_all(request_head("GET", "/healthz", server,
                                                   [("Connection", "keep-alive")]))
                first = await reader.read_response()
                assert first.status == 200, first
            await stream.send_all(request)
            response = await reader.read_response()
            assert response.status == 400, response
            await assert_closed_after(reader)


@pytest.mark.parametrize("after_healthz", [False, True], ids=["first", "second-on-keep-alive"])
async def test_http_content_length_with_chunked_is_refused_400_and_closed(
        server, neighbour, after_healthz):
    await assert_refused_400_and_closed(server, ambiguous_post(server), after_healthz=after_healthz)
    await neighbour.check()


@pytest.mark.parametrize("after_healthz", [False, True], ids=["first", "second-on-keep-alive"])
async def test_http_two_different_content_lengths_are_refused_400_and_closed(
        server, neighbour, after_healthz):
    await assert_refused_400_and_closed(server, two_lengths_post(server),
                                        after_healthz=after_healthz)
    await neighbour.check()
