"""``shell``: bounded output, and killed (with what it started) at its timeout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from voisnap.node_client.errors import CommandError
from voisnap.node_client.shell import run_shell

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the commands are POSIX shell")


async def test_shell_timeout_kills_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = trio.current_time()
    with trio.fail_after(4), pytest.raises(CommandError, match=r"within 0\.5 seconds; killed"):
        await run_shell(f"echo $$ > {pid_file}; exec sleep 5", timeout=0.5)
    assert trio.current_time() - started < 4
    pid = int(pid_file.read_text())
    # run_process reaps its child after killing it: the pid is gone.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="tells zombies by /proc")
async def test_shell_timeout_kills_what_the_shell_started(tmp_path: Path) -> None:
    """``sleep`` as a child of the shell holds the pipes open: the whole group must die."""
    pid_file = tmp_path / "pid"
    with trio.fail_after(4), pytest.raises(CommandError, match="killed"):
        await run_shell(f"sleep 5 & echo $! > {pid_file}; wait", timeout=0.5)
    pid = int(pid_file.read_text())
    with trio.fail_after(4):
        while _alive(pid):  # killed, but reaped by init: wait for it, not for a fixed time
            await trio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie still answers kill(0)
        return stat.read().split(") ")[-1][0] != "Z"


async def test_shell_output_is_bounded_with_a_note() -> None:
    with trio.fail_after(10):
        answer = await run_shell("printf '%05000d' 0", timeout=5, output_limit=1000)
    assert answer["stdout"].startswith("0" * 1000 + "\n[output truncated: 4000 more bytes")
    assert answer["exitCode"] == 0


async def test_shell_undecodable_output_is_replaced() -> None:
    with trio.fail_after(10):
        answer = await run_shell("printf 'a\\377b'", timeout=5)
    assert answer["stdout"] == "a\ufffdb"
