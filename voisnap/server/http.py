"""Small HTTP helpers shared by the ASGI app and the front door."""

from __future__ import annotations

import json
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


def redact_query(query: str) -> str:
    """``access_token=...`` replaced by ``access_token=[redacted]``: tokens never reach logs."""
    if "access_token" not in query:
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}=[redacted]" if name == "access_token" and sep else part)
    return "&".join(parts)


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
