"""The discussion hub's tests' tools: subscribers, a server, REST (issue 13).

``Subscribers`` drives ``tests/conformance/js/discussion.mjs`` (the official
``@microsoft/signalr`` client under Node) one command at a time; every answer is a line
waited for with a deadline. ``start_server`` starts ``voisnap serve`` with the ``AGENTS``
file; ``token``, ``rest``, ``get``, ``start_run`` and ``wait_state`` talk to a server over
REST. ``expected_targets`` is the exact sequence of a run's events (docs/hubs/discussion.md),
``shape`` what of each event the sequence compares; ``sha256`` and ``canonical`` are the
hash rules, written out again so that the tests do not trust the server's code for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.conftest import FAST_SETTINGS
from tests.support.cluster import wait_until
from tests.support.node import NodeScenario
from tests.support.server import ServerProcess

# An agents file: ``slow`` speaks a word every 0.2 s (a turn takes seconds); ``retired``
# is known but inactive.
AGENTS = """
[agents.slow]
backend = "synthetic"
token_delay = 0.2

[agents.retired]
backend = "builtin"
active = false
"""
CLIENT = {"transport": "WebSockets", "protocol": "json", "keepAliveMs": 1000}
WAIT = 30.0
# One agent worker: a slow run holds it, and the next run waits in the queue.
SETTINGS = {**FAST_SETTINGS, "agent_token_delay": "0.03", "agent_workers": "1"}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(verdict: Any) -> str:
    return json.dumps(verdict, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Subscribers:
    """The devices of one ``discussion.mjs`` run, one command at a time."""

    def __init__(self, scenario: NodeScenario) -> None:
        self.scenario = scenario
        self._ids = itertools.count()

    def _do(self, answer: str, timeout: float = WAIT, **command: Any) -> dict[str, Any]:
        self.scenario.send_line(json.dumps(command))
        return self.scenario.wait_for(answer, timeout=timeout + 2)

    def open(self, device: str, bearer: str, url: str | None = None) -> None:
        """``device`` on the discussion hub, or on the hub at ``url``."""
        self._do(f"opened:{device}", op="open", device=device, token=bearer, url=url)

    def invoke(self, device: str, method: str, *args: Any) -> dict[str, Any]:
        number = str(next(self._ids))
        return self._do(f"invoked:{number}", op="invoke", id=number, device=device,
                        method=method, args=list(args))

    def call(self, device: str, method: str, *args: Any) -> Any:
        answer = self.invoke(device, method, *args)
        assert answer["ok"], f"{device}: {method}{args} failed: {answer['error']}"
        return answer["value"]

    def refused(self, device: str, method: str, *args: Any) -> str:
        answer = self.invoke(device, method, *args)
        assert not answer["ok"], f"{device}: {method}{args} was accepted: {answer['value']}"
        return answer["error"]

    def wait(self, device: str, target: str, **match: Any) -> dict[str, Any]:
        number = str(next(self._ids))
        return self._do(f"awaited:{number}", op="await", id=number, device=device,
                        target=target, match=match, ms=int(WAIT * 1000))["payload"]

    def events(self, *devices: str) -> dict[str, list[dict[str, Any]]]:
        number = str(next(self._ids))
        self._do(f"fenced:{number}", op="fence", id=number, devices=list(devices))
        return {device: self._do(f"log:{device}{number}", op="log", id=f"{device}{number}",
                                 device=device)["events"] for device in devices}

    def end(self) -> None:
        self.scenario.send_line(json.dumps({"op": "end"}))
        self.scenario.result()


@contextlib.contextmanager
def subscribers(url: str) -> Iterator[Subscribers]:
    """A ``discussion.mjs`` run whose devices connect to the hub at ``url``."""
    with NodeScenario("discussion.mjs", {"url": url, **CLIENT}, 120.0) as scenario:
        scenario.wait_for("ready")
        devices = Subscribers(scenario)
        yield devices
        devices.end()


def of_run(events: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["payload"].get("runId") == run_id]


def of_task(events: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """A task's chat events, and the ``ReceiveMessage`` of its session's reply."""
    return [e for e in events if e["payload"].get("taskId") == task_id
            or e["target"] == "ReceiveMessage"]


def expected_targets(panelists: int, rounds: int) -> list[tuple[Any, ...]]:
    sequence: list[tuple[Any, ...]] = [("DiscussionStarted",)]
    for round_number in range(1, rounds + 1):
        sequence.append(("RoundStarted", round_number))
        for seat in range(1, panelists + 1):
            sequence += [("TurnStarted", f"p{seat}", round_number),
                         ("TurnCompleted", f"p{seat}")]
    return [*sequence, ("JudgeStarted",), ("Verdict",), ("DiscussionCompleted",)]


def shape(event: dict[str, Any]) -> tuple[Any, ...]:
    target, payload = event["target"], event["payload"]
    if target == "RoundStarted":
        return target, payload["roundNumber"]
    if target == "TurnStarted":
        return target, payload["panelistId"], payload["roundNumber"]
    if target == "TurnCompleted":
        return target, payload["panelistId"]
    return (target,)


# -- a server, tokens, REST -------------------------------------------------------------------


def start_server(root: Path, **settings: str) -> ServerProcess:
    agents_file = root / "agents.toml"
    agents_file.write_text(AGENTS)
    return ServerProcess(root / "data", {**SETTINGS, "agents_file": str(agents_file),
                                         **settings}).start()


def token(server: ServerProcess, user: str, tenant: str = "acme") -> str:
    secret = (server.data_dir / "jwt-secret").read_bytes().strip()
    now = int(time.time())
    claims = {"sub": user, "tid": tenant, "roles": [], "iat": now, "exp": now + 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


def rest(server: ServerProcess, bearer: str, method: str, path: str,
         body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", json=body, timeout=5.0,
                         headers={"Authorization": f"Bearer {bearer}"}, trust_env=False)


def get(server: ServerProcess, bearer: str, path: str) -> Any:
    response = rest(server, bearer, "GET", path)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def start_run(server: ServerProcess, bearer: str, panelists: list[str], rounds: int,
              topic: str = "Tea or coffee?", judge: str = "sophon") -> dict[str, Any]:
    response = rest(server, bearer, "POST", "/discussions",
                    {"topic": topic, "panelists": panelists, "judge": judge, "rounds": rounds})
    assert response.status_code == 201, response.text
    return response.json()


def wait_state(server: ServerProcess, bearer: str, run_id: str, state: str) -> dict[str, Any]:
    return wait_until(
        lambda: (run := get(server, bearer, f"/discussions/{run_id}"))["state"] == state and run,
        WAIT,
        f"run {run_id} to read {state!r}",
    )
