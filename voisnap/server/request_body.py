"""Reading an HTTP request body with a size limit and a deadline.

A body is the one part of a request the client controls the pace of. Two
attacks follow, and both are cheap to refuse:

- a huge ``Content-Length``: refused with 413 before a byte is read (and the
  connection is closed, since its body is left unread);
- a body that never arrives (``Content-Length: 1000000``, then silence, a
  "slow POST"): the time spent *waiting for the client* is bounded by
  ``request_body_timeout``; past it the answer is 408 and the connection is
  closed. Time the server spends processing what arrived does not count, so a
  long-polling POST that waits for its hub's reader is not cut off.

Bodies sent chunked have no declared length; they are cut off with 413 as soon
as they grow past the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import trio

from ..asgi import Receive
from .http import HttpError, declared_length

KIB = 1024
REST_BODY_LIMIT = 64 * KIB
"""Negotiate and REST bodies: small JSON documents. A route that takes more (an
upload) declares its own limit (``routes.Route.max_body``)."""
HUB_POST_LIMIT = 1024 * KIB
"""One POST of a Server-Sent Events or long-polling connection: hub records."""


def too_large(limit: int) -> HttpError:
    return HttpError(413, f"The request body is larger than {limit} bytes.", close=True)


def check_declared_length(headers: Mapping[str, str], limit: int) -> None:
    """413 at once for a declared length over ``limit``."""
    length = declared_length(headers)
    if length is not None and length > limit:
        raise too_large(limit)


async def body_chunks(
    receive: Receive, headers: Mapping[str, str], limit: int, timeout: float
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; HttpError 413 or 408 as described above."""
    check_declared_length(headers, limit)
    received = 0
    waited = 0.0
    while True:
        started = trio.current_time()
        with trio.move_on_after(timeout - waited) as deadline:
            message = await receive()
        if deadline.cancelled_caught:
            raise HttpError(
                408, f"The request body did not arrive within {timeout:g} seconds.", close=True
            )
        waited += trio.current_time() - started
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        if chunk:
            yield chunk
        if not message.get("more_body"):
            return


async def read_body(
    receive: Receive, headers: Mapping[str, str], limit: int, timeout: float
) -> bytes:
    """The whole body, within ``limit`` bytes and ``timeout`` seconds of waiting."""
    body = bytearray()
    async for chunk in body_chunks(receive, headers, limit, timeout):
        body += chunk
    return bytes(body)
