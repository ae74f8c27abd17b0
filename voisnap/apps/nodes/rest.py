"""Nodes over REST (docs/hubs/node.md): the owner's routes and the node's own.

The owner (a user's token):

- ``POST /api/nodes`` ``{name, scopes, ttlSeconds?}``: 201, the node with its ``token``;
- ``GET /api/nodes``, ``GET /api/nodes/{id}``, ``PATCH /api/nodes/{id}`` ``{scopes}``,
  ``DELETE /api/nodes/{id}`` (revoke: 204);
- ``POST /api/nodes/{id}/commands`` ``{command, params?, timeoutSeconds?, queue?}``:
  the command's outcome (200, 502, 504; 403 scope, 409 offline);
- ``GET /api/nodes/{id}/commands?limit=``: the history, newest first.

The node (its node token), for when WebSockets are blocked:

- ``GET /api/nodes/me/commands?wait=``: a long poll for its commands;
- ``POST /api/nodes/me/commands/{commandId}/result`` ``{ok, result?, error?}``;
- ``POST /api/nodes/me/heartbeat`` ``{status?, uptime?}``.

Which token may use which route is the gate's business (``gate``); here a node
route reads the node id from the token.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...nodes import NodeError, Nodes, node_id_of
from ...nodes.credentials import SCOPE, checked_name, checked_scopes, checked_ttl
from ...nodes.service import DEFAULT_TIMEOUT, MAX_POLL_WAIT, MAX_TIMEOUT, POLLING
from ...server.routes import RestRequest, Route
from ...storage.base import COMMAND_SUCCEEDED, COMMAND_TIMED_OUT, Owner
from .views import command_view, delivery, node_view

DEFAULT_POLL_WAIT = 25.0
DEFAULT_HISTORY, MAX_HISTORY = 100, 500
ME = "/api/nodes/me/"


class NodesRest:
    def __init__(self, nodes: Nodes) -> None:
        self._nodes = nodes

    def routes(self) -> list[Route]:
        # The node's own routes first: "me" would otherwise match "{node_id}".
        return [
            Route.of("GET", ME + "commands", self.poll),
            Route.of("POST", ME + "commands/{command_id}/result", self.result),
            Route.of("POST", ME + "heartbeat", self.heartbeat),
            Route.of("POST", "/api/nodes", self.register),
            Route.of("GET", "/api/nodes", self.list),
            Route.of("GET", "/api/nodes/{node_id}", self.get),
            Route.of("PATCH", "/api/nodes/{node_id}", self.set_scopes),
            Route.of("DELETE", "/api/nodes/{node_id}", self.revoke),
            Route.of("POST", "/api/nodes/{node_id}/commands", self.dispatch),
            Route.of("GET", "/api/nodes/{node_id}/commands", self.history),
        ]

    # -- the owner's routes ------------------------------------------------------------------------

    async def register(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            body = _object(request)
            name = checked_name(body.get("name"))
            scopes = checked_scopes(body.get("scopes"))
            ttl = checked_ttl(body.get("ttlSeconds"))
            node, token = await self._nodes.register(_owner(request), name, scopes, ttl)
            return 201, {**unstructure(node_view(node)), "token": token}
        return refused.answer

    async def list(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            nodes = await self._nodes.list(_owner(request))
            return 200, [unstructure(node_view(node)) for node in nodes]
        return refused.answer

    async def get(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            node = await self._nodes.get(_owner(request), request.params["node_id"])
            return 200, unstructure(node_view(node))
        return refused.answer

    async def set_scopes(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            body = _object(request)
            scopes = checked_scopes(body.get("scopes"))
            node = await self._nodes.set_scopes(_owner(request), request.params["node_id"], scopes)
            return 200, unstructure(node_view(node))
        return refused.answer

    async def revoke(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            await self._nodes.revoke(_owner(request), request.params["node_id"])
            return 204, None
        return refused.answer

    async def dispatch(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            body = _object(request)
            command = body.get("command")
            if not isinstance(command, str) or SCOPE.fullmatch(command) is None:
                raise NodeError(400, "'command' must be a command name (1 to 64 characters).")
            timeout = _number(body.get("timeoutSeconds"), "timeoutSeconds", DEFAULT_TIMEOUT)
            if not 0 < timeout <= MAX_TIMEOUT:
                raise NodeError(
                    400, f"'timeoutSeconds' must be more than 0, at most {MAX_TIMEOUT:g}."
                )
            queue = body.get("queue", False)
            if not isinstance(queue, bool):
                raise NodeError(400, "'queue' must be true or false.")
            params = body.get("params", {})
            finished = await self._nodes.dispatch(
                _owner(request),
                request.params["node_id"],
                command,
                params,
                timeout=timeout,
                queue=queue,
            )
            view = unstructure(command_view(finished))
            if finished.status == COMMAND_SUCCEEDED:
                return 200, view
            status = 504 if finished.status == COMMAND_TIMED_OUT else 502
            return status, {"error": finished.error, "command": view}
        return refused.answer

    async def history(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            limit = _integer(request.query.get("limit"), "limit", DEFAULT_HISTORY, MAX_HISTORY)
            commands = await self._nodes.history(_owner(request), request.params["node_id"], limit)
            return 200, [unstructure(command_view(command)) for command in commands]
        return refused.answer

    # -- the node's routes -------------------------------------------------------------------------

    async def poll(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            wait = _wait(request.query.get("wait"))
            commands, scopes = await self._nodes.poll(_node(request), wait)
            return 200, {
                "commands": [unstructure(delivery(command)) for command in commands],
                "scopes": list(scopes),
            }
        return refused.answer

    async def result(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            body = _object(request)
            payload = {**body, "commandId": request.params["command_id"]}
            finished = await self._nodes.record_result(_node(request), payload)
            return 200, {"commandId": finished.command_id, "status": finished.status}
        return refused.answer

    async def heartbeat(self, request: RestRequest) -> tuple[int, Any]:
        with _refusal() as refused:
            body = _object(request)
            uptime = body.get("uptime")
            if uptime is not None and (
                isinstance(uptime, bool) or not isinstance(uptime, int | float)
            ):
                raise NodeError(400, "'uptime' must be a number of seconds.")
            await self._nodes.heard(_node(request), POLLING, None, uptime)
            return 200, {"intervalSeconds": self._nodes.heartbeat_interval}
        return refused.answer


# -- reading requests ---------------------------------------------------------------------------


def _owner(request: RestRequest) -> Owner:
    """The owner who asks; a node's token is not an owner (403), whatever the
    path looks like (``/api/nodes/me/commands`` is the owner's dispatch route too)."""
    if node_id_of(request.principal) is not None:
        raise NodeError(403, "A node's token may only be used on /hubs/node and /api/nodes/me/.")
    return Owner(request.principal.tenant_id, request.principal.user_id)


def _node(request: RestRequest) -> str:
    node_id = node_id_of(request.principal)
    if node_id is None:  # the gate lets only node tokens in here
        raise NodeError(403, "Only a node's token may use this route.")
    return node_id


def _object(request: RestRequest) -> dict[str, Any]:
    body = request.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _BadBody()
    return body


def _number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NodeError(400, f"'{name}' must be a number.")
    return float(value)


def _integer(text: str | None, name: str, default: int, most: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise NodeError(400, f"'{name}' must be a whole number from 1 to {most}.")
    return int(text)


def _wait(text: str | None) -> float:
    if text is None:
        return DEFAULT_POLL_WAIT
    try:
        wait = float(text)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_POLL_WAIT:
        raise NodeError(400, f"'wait' must be a number of seconds from 0 to {MAX_POLL_WAIT:g}.")
    return wait


class _BadBody(NodeError):
    def __init__(self) -> None:
        super().__init__(400, "The body must be a JSON object.")


class _refusal:
    """A ``NodeError`` inside becomes the route's answer: its status and ``{error}``."""

    answer: tuple[int, Any]

    def __enter__(self) -> _refusal:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: Any) -> bool:
        if isinstance(error, NodeError):
            self.answer = (error.status, {"error": str(error)})
            return True
        return False
