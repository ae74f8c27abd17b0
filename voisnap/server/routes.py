"""REST routes beside the hubs: a method, a path template, an async handler.

The product's apps add theirs (``HubServer.add_routes``); the ASGI app matches
them, authenticates the request with the same JWT as the hubs, and answers
with the handler's JSON. Path parameters are written ``{name}`` and match one
path segment.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from ..principal import Principal
from ..protocol.errors import RemoteProtocolError
from ..protocol.limits import DEFAULT_LIMITS, load_json
from ..protocol.unicode import UNSTORABLE, json_is_storable
from .http import HttpError


@attrs.frozen
class RestRequest:
    principal: Principal
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes = b""
    """The body as received (raw bytes: a route may take any type, not only JSON)."""
    content_type: str = ""
    """The request's ``Content-Type`` header, for a route that takes more than JSON."""

    def json(self) -> Any:
        """The body as JSON (None when there is none), within the decode limits
        of hub messages; HttpError 400 for anything that is not JSON."""
        if not self.body.strip():
            return None
        try:
            value = load_json(self.body, DEFAULT_LIMITS)
        except RemoteProtocolError as error:
            raise HttpError(400, f"The body is not valid JSON: {error}") from None
        if not json_is_storable(self.body, value):
            raise HttpError(400, f"The body {UNSTORABLE}.")
        return value


Handler = Callable[[RestRequest], Awaitable[tuple[int, Any]]]


@attrs.frozen
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    max_body: int | None = None
    """The largest body the route takes, in bytes; None: the server's REST limit."""

    @classmethod
    def of(
        cls, method: str, template: str, handler: Handler, *, max_body: int | None = None
    ) -> Route:
        # "/sessions/{session_id}" -> ["/sessions/", "session_id", ""]: text, name, text...
        parts = re.split(r"\{(\w+)\}", template)
        regex = "".join(
            re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
            for index, part in enumerate(parts)
        )
        return cls(method.upper(), re.compile(f"^{regex}$"), handler, max_body)


def match(
    routes: list[Route], method: str, path: str
) -> tuple[Route, dict[str, str]] | bool | None:
    """The route and its parameters; False if the path is known but not the
    method (405); None if no route has this path."""
    path_known = False
    for route in routes:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        path_known = True
    return False if path_known else None


def body_limit(routes: list[Route], method: str, path: str, default: int) -> int:
    """The most the request's body may hold: its route's own limit (an upload
    route's is larger), or ``default`` for every other request."""
    found = match(routes, method, path)
    if isinstance(found, tuple) and found[0].max_body is not None:
        return found[0].max_body
    return default
