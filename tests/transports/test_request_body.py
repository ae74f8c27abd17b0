"""Request bodies and framing (issue 8), in-process: limits, deadlines, ambiguity.

``request_body`` reads an ASGI body with a size limit (a declared length over it
is refused before reading) and a deadline on the time spent waiting for the
client; ``http.framing_problem`` spots requests whose end two servers could
disagree on (RFC 9112, 6.3). The real-server cases are in tests/hostile.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from voisnap.server.http import HttpError, framing_problem
from voisnap.server.request_body import body_chunks, read_body


class Body:
    """An ASGI ``receive`` that hands out chunks, then waits forever (a client
    that stopped sending), optionally pausing before each chunk."""

    def __init__(self, *chunks: bytes, more: bool = False, pause: float = 0.0) -> None:
        self.chunks = list(chunks)
        self.more = more
        self.pause = pause

    async def __call__(self) -> dict[str, Any]:
        if not self.chunks:
            await trio.sleep_forever()
        await trio.sleep(self.pause)
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": self.more or bool(self.chunks)}


async def test_request_body_reads_a_whole_body() -> None:
    assert await read_body(Body(b"ab", b"cd"), {}, 10, 5) == b"abcd"


async def test_request_body_refuses_a_declared_length_over_the_limit_before_reading() -> None:
    receive = Body()  # never sends anything: reading would hang
    with trio.fail_after(1), pytest.raises(HttpError) as refused:
        await read_body(receive, {"content-length": "1000000000000"}, 64 * 1024, 10)
    assert refused.value.status == 413
    assert ("connection", "close") in refused.value.headers


async def test_request_body_refuses_a_chunked_body_once_it_grows_past_the_limit() -> None:
    with pytest.raises(HttpError) as refused:
        await read_body(Body(b"x" * 60, b"x" * 60, more=True), {}, 100, 10)
    assert refused.value.status == 413


async def test_request_body_that_never_arrives_is_408_after_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started = trio.current_time()
    with pytest.raises(HttpError) as late:
        await read_body(Body(b"0123456789", more=True), {"content-length": "100"}, 1000, 10)
    assert late.value.status == 408
    assert ("connection", "close") in late.value.headers
    assert trio.current_time() - started == pytest.approx(10)


async def test_request_body_deadline_counts_only_time_spent_waiting_for_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A long-polling POST waits for its hub's reader between chunks; that is
    the server's time, and does not count against the client."""
    chunks = []
    async for chunk in body_chunks(Body(b"a", b"b", b"c", pause=3), {}, 1000, 10):
        chunks.append(chunk)
        await trio.sleep(60)  # the consumer is slow
    assert chunks == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], "both Content-Length"),
        ([("transfer-encoding", "chunked"), ("content-length", "0")], "both Content-Length"),
        ([("Content-Length", "5"), ("Content-Length", "6")], "conflicting Content-Length"),
        ([("Content-Length", "5, 6")], "conflicting Content-Length"),
        ([("Content-Length", "5"), ("Content-Length", "5")], None),
        ([("Content-Length", "5")], None),
        ([("Transfer-Encoding", "chunked")], None),
        ([], None),
    ],
)
def test_framing_problem_finds_ambiguous_bodies(
    headers: list[tuple[str, str]], problem: str | None
) -> None:
    found = framing_problem(headers)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
