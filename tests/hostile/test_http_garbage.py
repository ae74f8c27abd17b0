"""What arrives on the port that is not a decent HTTP request (issue 8, case 7).

A request head sent a byte at a time is cut off at ``request_head_timeout``
while everyone else is served; bytes that are not HTTP at all (random bytes,
a TLS ClientHello on the plain port, zeros) are closed (or answered 400)
promptly, before that timeout; paths that climb out of the tree are 404 or
400, never a file.
"""

from __future__ import annotations

import random
import ssl

import pytest
import trio

from tests.hostile.helpers import TIMEOUT, open_tcp, read_to_end

HEAD_TIMEOUT = 2.0
SERVER_SETTINGS = {"request_head_timeout": str(HEAD_TIMEOUT)}
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
PROMPTLY = HEAD_TIMEOUT * 0.75


def tls_client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl, in memory)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def send_slowly(stream: trio.SocketStream, interval: float) -> None:
    """The slowloris: one byte of a never-ending head every ``interval``
    seconds (the pacing of the attack, not a wait for an event), until the
    server hangs up."""
    try:
        for byte in SLOW_HEAD:
            await stream.send_all(bytes((byte,)))
            await trio.sleep(interval)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def test_slowloris_head_is_closed_after_request_head_timeout(server, neighbour):
    with trio.fail_after(HEAD_TIMEOUT + 5):
        stream = await open_tcp(server)
        async with stream:
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_slowly, stream, 0.5)
                # Meanwhile everybody else is served.
                await neighbour.check()
                answer = await read_to_end(stream)
                elapsed = trio.current_time() - started
                nursery.cancel_scope.cancel()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEAD_TIMEOUT * 0.75 <= elapsed <= HEAD_TIMEOUT + 3, elapsed
    await neighbour.check()


@pytest.mark.parametrize("garbage", [
    pytest.param(random.Random(8).randbytes(2048), id="random-bytes"),
    pytest.param(tls_client_hello(), id="tls-client-hello"),
    pytest.param(b"\x00" * 1000, id="zeros"),
])
async def test_bytes_that_are_not_http_are_closed_promptly(server, neighbour, garbage):
    with trio.fail_after(HEAD_TIMEOUT + 3):
        stream = await open_tcp(server)
        async with stream:
            started = trio.current_time()
            await stream.send_all(garbage)
            answer = await read_to_end(stream)
            elapsed = trio.current_time() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert elapsed < PROMPTLY, elapsed
    await neighbour.check()


@pytest.mark.parametrize("target", [
    "/../../etc/passwd",
    "/hubs/../healthz",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/hubs/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc%2fpasswd",
])
async def test_path_traversal_is_404_or_400_never_a_file(server, neighbour, target):
    request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               "Connection: close\r\n\r\n").encode()
    with trio.fail_after(TIMEOUT):
        stream = await open_tcp(server)
        async with stream:
            await stream.send_all(request)
            answer = await read_to_end(stream)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split(b" ")[1:2] in ([b"404"], [b"400"]), answer[:300]
    assert b"root:" not in answer
    await neighbour.check()
