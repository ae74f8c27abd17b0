"""Small HTTP helpers shared by the ASGI app and the front door."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl


class HttpError(Exception):
    """Answer the request with ``status`` and a plain-text ``text``."""

    def __init__(self, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = list(headers)


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


def text_of(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name, "")
