"""The ``shell`` command: one shell command line, bounded in time and in output.

docs/hubs/node.md, "The reference node": ``shell {command, timeoutSeconds?}``
answers ``{exitCode, stdout, stderr}``. The command runs through the system
shell (``trio.run_process(..., shell=True)``) in a session of its own, so that
at its timeout the whole process group is killed, not only the shell: a
``sleep`` the shell started would otherwise keep the output pipes open.

Each stream keeps its first ``OUTPUT_LIMIT`` bytes; the rest is read and
dropped (a full pipe would stall the command), and the kept text ends with a
note saying how much was dropped.
"""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import trio

from .errors import CommandError

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
OUTPUT_LIMIT = 1024 * 1024


class BoundedOutput:
    """The first ``limit`` bytes of a stream, and a count of the bytes dropped."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self._kept = bytearray()
        self._limit = limit
        self.dropped = 0

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some():
            room = self._limit - len(self._kept)
            self._kept += chunk[:room]
            self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self._kept.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[output truncated: {self.dropped} more bytes were dropped]"
        return text


async def _kill_process_group(process: trio.Process) -> None:
    """``run_process``'s ``deliver_cancel``: the shell and everything it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


async def run_shell(
    command: str, timeout: float, output_limit: int = OUTPUT_LIMIT, *, cwd: Path | None = None
) -> dict[str, Any]:
    """Run ``command`` in ``cwd`` (the node's root: where its files are);
    ``{exitCode, stdout, stderr}``, or CommandError at its timeout."""
    stdout, stderr = BoundedOutput(output_limit), BoundedOutput(output_limit)
    own_group = {"start_new_session": True} if os.name == "posix" else {}
    kill = _kill_process_group if os.name == "posix" else None
    start = partial(
        trio.run_process,
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
        cwd=cwd,
        deliver_cancel=kill,
        **own_group,
    )
    with trio.move_on_after(timeout) as deadline:
        async with trio.open_nursery() as nursery:
            process = await nursery.start(start)
            nursery.start_soon(stdout.drain, process.stdout)
            nursery.start_soon(stderr.drain, process.stderr)
    if deadline.cancelled_caught:
        raise CommandError(f"The command did not finish within {timeout:g} seconds; killed.")
    return {"exitCode": process.returncode, "stdout": stdout.text(), "stderr": stderr.text()}
