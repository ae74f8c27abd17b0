"""The reference node's commands, and the checks every command passes first.

docs/hubs/node.md, "The reference node": the node has ``echo``,
``system_info``, ``list_dir``, ``read_file`` and, only when started with
``--allow-shell``, ``shell``. Before a command runs, the node checks, in order:

1. that it has the command ("This node has no command 'x'.");
2. that the command is in its current scopes ("The scope 'x' was not granted
   to this node."): the gateway checks scopes too, but the node does not rely
   on it; while the node does not know its scopes (its token has no ``scopes``
   claim and the gateway has not said yet) it leaves that check to the gateway;
3. that ``params`` has the command's shape (an error names the problem).

Every failure is a ``CommandError`` whose text becomes the command's ``error``.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from . import files, shell
from .errors import CommandError

SHELL = "shell"


class NodeScopes:
    """The scopes the node holds now: from its token, then from the gateway.

    ``current`` is None while unknown. ``RefreshScopes`` (hub) and each poll's
    ``scopes`` replace them (docs/hubs/node.md, "The hub", "Polling").
    """

    def __init__(self, initial: frozenset[str] | None = None) -> None:
        self.current = initial

    def adopt(self, scopes: Any) -> frozenset[str]:
        if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("'scopes' must be a list of strings.")
        self.current = frozenset(scopes)
        return self.current

    def allows(self, command: str) -> bool:
        return self.current is None or command in self.current


class NodeCommands:
    """Runs one command by name: ``await commands.run("echo", {"text": "hi"})``."""

    def __init__(
        self,
        root: Path,
        scopes: NodeScopes,
        *,
        allow_shell: bool = False,
        uptime: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._root = root
        self._scopes = scopes
        self._allow_shell = allow_shell
        self._uptime = uptime
        self._table: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "echo": self._echo,
            "system_info": self._system_info,
            "list_dir": self._list_dir,
            "read_file": self._read_file,
        }
        if allow_shell:
            self._table[SHELL] = self._shell

    def names(self) -> list[str]:
        """The commands this node has, whatever its scopes."""
        return sorted(self._table)

    async def run(self, command: str, params: Any) -> Any:
        """The command's result; CommandError if it is refused or fails."""
        handler = self._table.get(command)
        if handler is None:
            raise CommandError(f"This node has no command {command!r}.")
        if not self._scopes.allows(command):
            raise CommandError(f"The scope {command!r} was not granted to this node.")
        return await handler(params)

    async def _echo(self, params: Any) -> Any:
        return params

    async def _system_info(self, params: Any) -> dict[str, Any]:
        _object_params(params)
        return {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "uptime": round(self._uptime(), 3),
        }

    async def _list_dir(self, params: Any) -> dict[str, Any]:
        path = _string_param(_object_params(params), "path", default=".")
        return await trio.to_thread.run_sync(files.list_dir, self._root, path)

    async def _read_file(self, params: Any) -> dict[str, Any]:
        params = _object_params(params)
        path = _string_param(params, "path")
        limit = params.get("maxBytes", files.READ_LIMIT)
        if not _is_int(limit) or not 1 <= limit <= files.READ_LIMIT:
            raise CommandError(f"'maxBytes' must be an integer from 1 to {files.READ_LIMIT}.")
        return await trio.to_thread.run_sync(files.read_file, self._root, path, limit)

    async def _shell(self, params: Any) -> dict[str, Any]:
        params = _object_params(params)
        command = _string_param(params, "command")
        if not command.strip():
            raise CommandError("'params.command' must not be empty.")
        timeout = params.get("timeoutSeconds", shell.DEFAULT_TIMEOUT)
        is_number = _is_int(timeout) or isinstance(timeout, float)
        if not is_number or not 0 < timeout <= shell.MAX_TIMEOUT:
            raise CommandError(
                f"'timeoutSeconds' must be a number above 0 and at most {shell.MAX_TIMEOUT:g}."
            )
        return await shell.run_shell(command, float(timeout), cwd=self._root)


def _object_params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise CommandError(f"'params' must be a JSON object, not {type(params).__name__}.")
    return params


def _string_param(params: dict[str, Any], name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if value is None:
        raise CommandError(f"'params.{name}' is required.")
    if not isinstance(value, str):
        raise CommandError(f"'params.{name}' must be a string.")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
