"""The node's commands and the checks before them (docs/hubs/node.md, "The
reference node"): unknown commands, scopes, params, and ``shell``'s conditions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest
import trio

from voisnap.node_client.commands import NodeCommands, NodeScopes
from voisnap.node_client.errors import CommandError


def make_commands(
    root: Path, scopes: frozenset[str] | None = None, *, allow_shell: bool = False
) -> NodeCommands:
    return NodeCommands(root, NodeScopes(scopes), allow_shell=allow_shell, uptime=lambda: 12.5)


async def test_commands_echo_returns_params(tmp_path: Path) -> None:
    params = {"text": "hi", "nested": [1, {"a": None}]}
    assert await make_commands(tmp_path).run("echo", params) == params


async def test_commands_unknown_command(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as raised:
        await make_commands(tmp_path).run("format_disk", {})
    assert str(raised.value) == "This node has no command 'format_disk'."


async def test_commands_scope_not_granted(tmp_path: Path) -> None:
    commands = make_commands(tmp_path, frozenset({"read_file"}))
    with pytest.raises(CommandError) as raised:
        await commands.run("echo", {})
    assert str(raised.value) == "The scope 'echo' was not granted to this node."


async def test_commands_adopted_scopes_replace_the_old(tmp_path: Path) -> None:
    scopes = NodeScopes(frozenset({"echo"}))
    commands = NodeCommands(tmp_path, scopes)
    assert await commands.run("echo", 1) == 1
    scopes.adopt(["system_info"])
    with pytest.raises(CommandError, match="scope 'echo' was not granted"):
        await commands.run("echo", 1)


async def test_commands_unknown_scopes_leave_the_check_to_the_gateway(tmp_path: Path) -> None:
    assert await make_commands(tmp_path, None).run("echo", "x") == "x"


def test_scopes_adopt_refuses_what_is_not_a_list_of_strings() -> None:
    with pytest.raises(ValueError, match="list of strings"):
        NodeScopes().adopt("echo")


async def test_commands_system_info(tmp_path: Path) -> None:
    info = await make_commands(tmp_path).run("system_info", None)
    assert info == {
        "hostname": info["hostname"],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "uptime": 12.5,
    }
    assert isinstance(info["hostname"], str)


async def test_commands_list_dir_defaults_to_the_root(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    listing = await make_commands(tmp_path).run("list_dir", {})
    assert listing == {"path": ".", "entries": [{"name": "a.txt", "type": "file", "size": 1}]}


async def test_commands_read_file_through_the_command(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    answer = await make_commands(tmp_path).run("read_file", {"path": "a.txt", "maxBytes": 5})
    assert answer == {"path": "a.txt", "size": 5, "content": "hello"}


@pytest.mark.parametrize(
    ("command", "params", "problem"),
    [
        ("list_dir", ["."], "'params' must be a JSON object"),
        ("list_dir", {"path": 3}, "'params.path' must be a string"),
        ("read_file", {}, "'params.path' is required"),
        ("read_file", {"path": "a", "maxBytes": 0}, "'maxBytes' must be an integer from 1"),
        ("read_file", {"path": "a", "maxBytes": 2**14 + 1}, "to 16384"),
        ("read_file", {"path": "a", "maxBytes": True}, "'maxBytes' must be an integer"),
        ("shell", {}, "'params.command' is required"),
        ("shell", {"command": " "}, "must not be empty"),
        ("shell", {"command": "true", "timeoutSeconds": 601}, "at most 600"),
        ("shell", {"command": "true", "timeoutSeconds": "5"}, "'timeoutSeconds' must be a number"),
    ],
)
async def test_commands_params_of_the_wrong_shape(
    tmp_path: Path, command: str, params: object, problem: str
) -> None:
    commands = make_commands(tmp_path, allow_shell=True)
    with pytest.raises(CommandError, match=problem):
        await commands.run(command, params)


async def test_commands_shell_absent_without_allow_shell(tmp_path: Path) -> None:
    commands = make_commands(tmp_path, frozenset({"shell"}), allow_shell=False)
    assert "shell" not in commands.names()
    with pytest.raises(CommandError) as raised:
        await commands.run("shell", {"command": "echo hi"})
    assert str(raised.value) == "This node has no command 'shell'."


async def test_commands_shell_refused_without_the_scope(tmp_path: Path) -> None:
    commands = make_commands(tmp_path, frozenset({"echo"}), allow_shell=True)
    with pytest.raises(CommandError) as raised:
        await commands.run("shell", {"command": "echo hi"})
    assert str(raised.value) == "The scope 'shell' was not granted to this node."


async def test_commands_shell_runs_with_allow_shell_and_the_scope(tmp_path: Path) -> None:
    commands = make_commands(tmp_path, frozenset({"shell"}), allow_shell=True)
    with trio.fail_after(10):
        answer = await commands.run("shell", {"command": "echo out; echo err >&2; exit 3"})
    assert answer == {"exitCode": 3, "stdout": "out\n", "stderr": "err\n"}


async def test_commands_shell_is_killed_at_its_timeout_seconds(tmp_path: Path) -> None:
    commands = make_commands(tmp_path, frozenset({"shell"}), allow_shell=True)
    started = trio.current_time()
    with trio.fail_after(4), pytest.raises(CommandError, match=r"within 0\.5 seconds; killed"):
        await commands.run("shell", {"command": "sleep 5", "timeoutSeconds": 0.5})
    assert trio.current_time() - started < 4
