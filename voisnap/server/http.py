"""Small HTTP helpers shared by the ASGI app and the front door, and the one
way voisnap writes a whole response: ``respond`` through ASGI, ``plain_response``
as bytes on a socket the front door refuses before hypercorn sees it."""

from __future__ import annotations

import http
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ..asgi import Send

TEXT = "text/plain; charset=utf-8"
Headers = Iterable[tuple[str, str]]


class HttpError(Exception):
    """Answer the request with ``status`` and a plain-text ``text``; with
    ``close``, close the connection after the response (its request body was
    not read, or its framing cannot be trusted)."""

    def __init__(
        self,
        status: int,
        text: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        close: bool = False,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = list(headers)
        if close:
            self.headers.append(("connection", "close"))


def framing_problem(headers: Iterable[tuple[str, str]]) -> str | None:
    """Why a request's body framing is ambiguous, if it is (RFC 9112, 6.3):
    Content-Length together with Transfer-Encoding (a request smuggler's
    favourite: two servers may disagree on where the body ends), or several
    Content-Length values that differ. Such a request gets 400 and a close."""
    lengths: set[str] = set()
    chunked = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-length":
            lengths.update(part.strip() for part in value.split(","))
        elif lowered == "transfer-encoding":
            chunked = True
    if chunked and lengths:
        return "A request may not have both Content-Length and Transfer-Encoding."
    if len(lengths) > 1:
        return "The request has conflicting Content-Length values."
    return None


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length a request declares, if it declares a valid one."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() and len(value) <= 20 else None


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers = (),
    *,
    content_type: str | None = TEXT,
    websocket: bool = False,
) -> None:
    """A whole response through ASGI. ``websocket``: the denial of a WebSocket
    (the ASGI "websocket.http.response" extension)."""
    raw = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode()))
    raw += [(name.encode(), value.encode()) for name, value in headers]
    kind = "websocket.http.response" if websocket else "http.response"
    await send({"type": f"{kind}.start", "status": status, "headers": raw})
    await send({"type": f"{kind}.body", "body": body})


def plain_response(status: int, text: str, headers: Headers = ()) -> bytes:
    """A whole HTTP/1.1 response that ends the connection, as bytes."""
    body = text.encode()
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"content-type: {TEXT}",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers if name.lower() != "connection"),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_query(query_string: bytes | str) -> dict[str, str]:
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    return dict(parse_qsl(query_string, keep_blank_values=True))


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI-style header pairs as a dict with lower-case names (last one wins)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


def json_body(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s#]*")


def redact_query(text: str) -> str:
    """Every ``access_token=...`` value in ``text`` (a query string, a URL or a
    request line) replaced by ``[redacted]``: tokens never reach logs."""
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


def client_address(headers: Mapping[str, str], peer: str, trust_proxy: bool) -> str:
    """Who made the request: the socket peer, or, behind a trusted reverse proxy
    (``--proxy-headers``), the last address the proxy put in X-Forwarded-For."""
    forwarded = headers.get("x-forwarded-for") if trust_proxy else None
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return peer


def cors_headers(origin: str | None, allowed: Iterable[str]) -> list[tuple[str, str]]:
    """The headers that let a browser at ``origin`` read the response with credentials."""
    if origin is None or origin not in allowed:
        return []
    return [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("vary", "Origin"),
    ]

