"""Run a conformance scenario (``tests/conformance/js/<name>.mjs``) under Node.

The scenarios drive the official ``@microsoft/signalr`` client. The contract
with them (see ``lib.mjs``):

- input: one JSON object in the ``CONFORMANCE_INPUT`` environment variable
  (server URL, tokens, scenario fields), plus ``timeoutMs``, the script's own
  limit, set a little below ours so that it can report what it was waiting for;
- output: one JSON object per line on stdout, ``{"event": ..., ...}``, ending
  with ``{"event": "result", ...}`` (exit 0) or ``{"event": "error", ...}`` (exit 1);
- commands: lines the test writes to the script's stdin (``send_line("go")``).

Every wait has a deadline; a scenario still running at the end is killed.
Node and the npm packages are prerequisites of the conformance suite: when one
is missing the test *fails* and says how to install it; it is never skipped
(STYLE.md, "Tests").
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "conformance" / "js"
SIGNALR_PACKAGE = JS_DIR / "node_modules" / "@microsoft" / "signalr" / "package.json"
DEFAULT_TIMEOUT = 30.0
# The script gives up this much earlier than the test, so it can say why.
SCRIPT_MARGIN = 3.0
_EXITED = object()


def node_executable() -> str:
    """The ``node`` binary; fails the test (never skips) if it or the npm
    packages are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "Node.js is required for the conformance tests but `node` is not on PATH. "
            "Install Node.js 20 or later, then run `npm ci` in " + str(JS_DIR),
            pytrace=False,
        )
    if not SIGNALR_PACKAGE.is_file():
        pytest.fail(
            f"The npm package @microsoft/signalr is not installed ({SIGNALR_PACKAGE} is "
            f"missing). Run `npm ci` in {JS_DIR}.",
            pytrace=False,
        )
    return node


class NodeScenario:
    """One running scenario script; use as a context manager (it is killed on exit)."""

    def __init__(self, script: str, params: Mapping[str, Any], timeout: float = DEFAULT_TIMEOUT):
        self.script = JS_DIR / script
        self.params = dict(params)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self.stderr_lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[Any] = queue.Queue()
        self._deadline = 0.0
        self._exited = False

    def start(self) -> NodeScenario:
        node = node_executable()
        if not self.script.is_file():
            pytest.fail(f"no such conformance scenario: {self.script}", pytrace=False)
        script_timeout = max(1.0, self.timeout - SCRIPT_MARGIN)
        document = {**self.params, "timeoutMs": int(script_timeout * 1000)}
        env = {**os.environ, "CONFORMANCE_INPUT": json.dumps(document)}
        self._deadline = time.monotonic() + self.timeout
        self.process = subprocess.Popen(
            [node, str(self.script)], cwd=JS_DIR, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "stdout", "text": line.rstrip("\n")}
            self._lines.put(event)
        self._lines.put(_EXITED)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for(self, event: str, timeout: float | None = None) -> dict[str, Any]:
        """The next line whose ``event`` is ``event``; earlier lines are kept in
        ``events``. Fails on an ``error`` line, on exit, or at the deadline."""
        deadline = self._deadline if timeout is None else min(
            self._deadline, time.monotonic() + timeout
        )
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._exited:
                self._fail(f"timed out waiting for {event!r}" if left <= 0
                           else f"the script exited before {event!r}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is _EXITED:
                self._exited = True
                continue
            self.events.append(line)
            if line["event"] == event:
                return line
            if line["event"] == "error":
                self._fail(f"the script failed while waiting for {event!r}: {line['error']}")

    def result(self) -> dict[str, Any]:
        """The final ``result`` line; the script must then exit with status 0."""
        result = self.wait_for("result")
        assert self.process is not None
        try:
            code = self.process.wait(max(0.1, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._fail("the script printed its result but did not exit")
        if code != 0:
            self._fail(f"the script exited with status {code}")
        return result

    def send_line(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    # -- ending ----------------------------------------------------------------------------------

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> NodeScenario:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def _fail(self, why: str) -> None:
        self.kill()
        events = "\n".join(json.dumps(event) for event in self.events[-20:])
        stderr = "".join(self.stderr_lines[-40:])
        pytest.fail(
            f"{self.script.name}: {why}\n--- events ---\n{events}\n--- stderr ---\n{stderr}",
            pytrace=False,
        )


def run_scenario(script: str, timeout: float = DEFAULT_TIMEOUT, **params: Any) -> dict[str, Any]:
    """Run ``script`` to the end and return its ``result`` line."""
    with NodeScenario(script, params, timeout) as scenario:
        return scenario.result()
