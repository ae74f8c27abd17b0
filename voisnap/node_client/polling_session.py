"""The node over plain HTTP polling, for networks that block WebSockets.

docs/hubs/node.md, "Polling": with its token as a Bearer header, the node

- polls ``GET /api/nodes/me/commands?wait=25``: ``{commands: [{commandId,
  command, params}], scopes}``, at once if commands wait, else after ``wait``;
  it adopts ``scopes`` and answers each command from a task of its own;
- posts each outcome to ``POST /api/nodes/me/commands/{commandId}/result``
  (``{ok, result?, error?}``); 409 "answered already" and 404 mean the gateway
  has settled that command, so the node is done with it too;
- heartbeats with ``POST /api/nodes/me/heartbeat`` ``{status, uptime}``, at once
  and every ``heartbeat_interval`` seconds: that is what keeps it online.

A 401 or 403 on any of them stops the node for good ("A revoked node's poll,
even one already waiting, answers 401"). Any other failure ends the session
with ``ConnectionLost``, and the node polls again after its backoff; outcomes
not yet posted are posted by the next session's late reporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import trio

from .commands import NodeScopes
from .config import NodeConfig
from .errors import ConnectionLost, token_refused
from .executor import CommandExecutor
from .results import Outcome, command_result_to_wire

logger = logging.getLogger(__name__)

SETTLED = (200, 404, 409)
"""Answers to a posted result after which the node forgets about reporting it."""


class PollingSession:
    """``await session.run()`` polls until something fails; it always ends by raising."""

    def __init__(
        self,
        config: NodeConfig,
        scopes: NodeScopes,
        executor: CommandExecutor,
        *,
        uptime: Callable[[], float],
        on_connected: Callable[[], None],
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._http_transport = http_transport
        self._scopes = scopes
        self._executor = executor
        self._uptime = uptime
        self._on_connected = on_connected
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        timeout = httpx.Timeout(
            self._config.request_timeout, read=self._config.request_timeout + self._config.poll_wait
        )
        headers = {"Authorization": f"Bearer {self._config.token}"}
        base_url = f"{self._config.url}/api/nodes/me"
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=self._http_transport
        ) as client:
            self._client = client
            await self._heartbeat()
            self._on_connected()
            logger.info("polling %s", base_url)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeats)
                nursery.start_soon(self._report_late_results)
                await self._poll_loop(nursery)

    async def _poll_loop(self, nursery: trio.Nursery) -> None:
        while True:
            wait = f"{self._config.poll_wait:g}"  # "25", not "25.0": the route reads an integer
            body = await self._request("GET", "/commands", params={"wait": wait})
            if "scopes" in body:
                self._adopt_scopes(body["scopes"])
            for command in body.get("commands") or []:
                nursery.start_soon(self._answer, command)

    def _adopt_scopes(self, scopes: Any) -> None:
        try:
            self._scopes.adopt(scopes)
        except ValueError as error:
            logger.warning("a poll's scopes were ignored: %s", error)

    async def _answer(self, command: Any) -> None:
        if not (isinstance(command, dict) and isinstance(command.get("commandId"), str)):
            logger.warning("a poll handed out a command without a commandId; ignored")
            return
        command_id = command["commandId"]
        name = command.get("command")
        if not isinstance(name, str):
            name = repr(name)  # not a command the node has: it fails with that error
        async with self._executor.answer(command_id, name, command.get("params")) as outcome:
            await self._post_result(command_id, outcome)

    async def _post_result(self, command_id: str, outcome: Outcome) -> None:
        body = command_result_to_wire(command_id, outcome)
        del body["commandId"]  # the route names it
        path = f"/commands/{quote(command_id, safe='')}/result"
        await self._request("POST", path, json=body, ok=SETTLED)

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self._config.heartbeat_interval)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        body = {"status": "ready", "uptime": round(self._uptime(), 3)}
        await self._request("POST", "/heartbeat", json=body)

    async def _report_late_results(self) -> None:
        while True:
            for run in await self._executor.wait_unreported():
                assert run.outcome is not None
                await self._post_result(run.command_id, run.outcome)
                run.reported = True

    async def _request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **options: Any
    ) -> dict[str, Any]:
        """The one door to the server: refusals stop the node, other failures end the session."""
        assert self._client is not None
        try:
            response = await self._client.request(method, path, **options)
        except httpx.HTTPError as error:
            raise ConnectionLost(f"{method} {path} failed: {error!r}") from None
        if response.status_code in (401, 403):
            raise token_refused(response.status_code, response.text)
        if response.status_code not in ok:
            raise ConnectionLost(f"{method} {path} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}
