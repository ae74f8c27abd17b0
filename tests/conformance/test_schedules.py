"""Schedules (issue 14, docs/schedules.md) against a real ``voisnap serve`` process, with the
official ``@microsoft/signalr`` client under Node for the events.

One server for the module, started with an agents file (``writer``, another built-in agent)
and a schedules file (one schedule of Fay's, every two seconds). Cron expressions with
seconds (``*/2 * * * * *``) make slots come every two seconds, so nothing waits for minutes;
every event is awaited with a deadline (``approvals_devices.mjs`` and its driver, from
test_approvals.py), never slept for.

- the REST routes refuse what cannot be a schedule (400), another user's schedule (404, as
  an unknown one), and changes to the file's schedule (409);
- a schedule fires: Ana's notifications connection receives ``CronFired``,
  ``WorkflowRunStarted`` and ``WorkflowRunCompleted`` for it, and her chat device, in the
  session the schedule names, receives the task's events and the agent's reply; a schedule
  that names no session gets one at its first fire, which a device can then join;
- the schedules file's schedule fires for its user; a file that cannot be used stops the
  server with exit status 2 and a line naming the entry;
- a slot missed while the server was down fires once after the restart, and a schedule whose
  agent was removed from the agents file meanwhile fires ``CronFailed``.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.test_approvals import SETTINGS, devices, new_id, rest, token
from tests.support.cluster import wait_until
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

EVERY_2S = "*/2 * * * * *"
WAIT = 15.0
AGENTS = '[agents.writer]\nbackend = "builtin"\n'
FAY = "fay-scheduled"
FILE = f"""
[[schedules]]
id = "sum"
tenant = "acme"
user = "{FAY}"
cron = "{EVERY_2S}"
agent = "writer"
prompt = "what is 2 + 3"
"""


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def schedules_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("schedules")
    args = [
        "--agents-file",
        str(write(root / "agents.toml", AGENTS)),
        "--schedules-file",
        str(write(root / "schedules.toml", FILE)),
    ]
    with ServerProcess(root / "data", SETTINGS, args) as server:
        yield server


def create(server: ServerProcess, bearer: str, **body: Any) -> dict[str, Any]:
    response = rest(
        server,
        bearer,
        "POST",
        "/schedules",
        {"agentId": "sophon", "prompt": "what is 12 * 7", **body},
    )
    assert response.status_code == 201, response.text
    return response.json()


def pause(server: ServerProcess, bearer: str, schedule_id: str) -> None:
    response = rest(server, bearer, "PATCH", f"/schedules/{schedule_id}", {"paused": True})
    assert response.status_code == 200 and response.json()["paused"] is True, response.text


def runs(server: ServerProcess, bearer: str, schedule_id: str) -> list[dict[str, Any]]:
    response = rest(server, bearer, "GET", f"/schedules/{schedule_id}/runs", limit=200)
    assert response.status_code == 200, response.text
    return response.json()


# -- REST ------------------------------------------------------------------------------------


def test_schedules_rest_refuses_what_cannot_be_a_schedule(
    schedules_server: ServerProcess,
) -> None:
    server = schedules_server
    ana, bob = token(server, new_id("ana")), token(server, new_id("bob"))
    good = {"cron": "0 9 * * *", "agentId": "sophon", "prompt": "hello"}
    refusals = [
        ([1, 2], "The body must be a JSON object with a 'cron', an 'agentId' and a 'prompt'."),
        ({"agentId": "sophon", "prompt": "p"}, "'cron' is required."),
        (
            {**good, "color": "red"},
            "'color' is not a field of a schedule (its fields: cron, "
            "timezone, agentId, prompt, sessionId).",
        ),
        (
            {**good, "cron": "* * *"},
            "'cron' must have 5 fields (minute hour day month weekday) "
            "or 6 (seconds first), not 3: '* * *'.",
        ),
        ({**good, "cron": "99 * * * *"}, "'cron' is not a valid cron expression: '99 * * * *'"),
        ({**good, "cron": 9}, "'cron' must be a string."),
        (
            {**good, "timezone": "Mars/Olympus"},
            "'timezone' must be an IANA time zone name such "
            "as 'Europe/Berlin', not 'Mars/Olympus'.",
        ),
        ({**good, "agentId": "nobody"}, "Agent 'nobody' does not exist or is not active."),
        ({**good, "prompt": "  "}, "'prompt' must be a non-empty string."),
        (
            {**good, "sessionId": "sess-not-there"},
            "Session 'sess-not-there' does not exist or is not yours.",
        ),
        ({**good, "sessionId": 5}, "'sessionId' must be null or a string of 1 to 128 characters."),
    ]
    for body, error in refusals:
        response = rest(server, ana, "POST", "/schedules", body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"].startswith(error), (body, response.json())

    made = create(server, ana, cron="0 9 * * mon-fri", timezone="Europe/Berlin")
    schedule_id = made["scheduleId"]
    assert set(made) == {
        "scheduleId",
        "cron",
        "timezone",
        "agentId",
        "prompt",
        "sessionId",
        "paused",
        "source",
        "nextDueAt",
        "createdAt",
        "updatedAt",
    }
    assert (made["source"], made["paused"], made["sessionId"]) == ("api", False, None)
    due = parse_time(made["nextDueAt"]).astimezone(datetime.timezone(datetime.timedelta(0)))
    assert due.weekday() < 5 and due.hour in (7, 8) and due.minute == 0  # 09:00 in Berlin
    path = f"/schedules/{schedule_id}"
    assert rest(server, ana, "GET", "/schedules").json() == [made]
    assert rest(server, ana, "GET", path).json() == made
    # Bob sees nothing of Ana's: the same answers as for an unknown id.
    missing = {"error": f"Schedule '{schedule_id}' does not exist."}
    for method, body in (("GET", None), ("PATCH", {"paused": True}), ("DELETE", None)):
        response = rest(server, bob, method, path, body)
        assert (response.status_code, response.json()) == (404, missing), method
    assert rest(server, bob, "GET", f"{path}/runs").status_code == 404
    assert rest(server, bob, "GET", "/schedules").json() == []
    # PATCH: bad changes are refused, good ones answered with the schedule.
    for body, error in (
        ({}, "Nothing to change"),
        ({"paused": "yes"}, "'paused' must be"),
        ({"cron": "bad"}, "'cron' must have 5 fields"),
    ):
        response = rest(server, ana, "PATCH", path, body)
        assert response.status_code == 400 and error in response.json()["error"], response.text
    paused = rest(server, ana, "PATCH", path, {"paused": True}).json()
    assert paused["paused"] is True and paused["nextDueAt"] is None
    resumed = rest(server, ana, "PATCH", path, {"paused": False, "timezone": "UTC"}).json()
    assert resumed["nextDueAt"].endswith("T09:00:00.000Z"), resumed
    assert rest(server, ana, "GET", f"{path}/runs", limit=0).status_code == 400
    deleted = rest(server, ana, "DELETE", path)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert rest(server, ana, "GET", path).status_code == 404


# -- firing, seen by the official client --------------------------------------------------------


def test_schedules_fire_to_the_users_notifications_and_the_sessions_devices(
    schedules_server: ServerProcess,
) -> None:
    server = schedules_server
    user = new_id("ana")
    bearer = token(server, user)
    with devices(server, timeout=90) as hubs:
        hubs.open("N", "notifications", bearer)
        hubs.open("C", "chat", bearer)
        hubs.open("D", "chat", bearer)
        sent = hubs.send("C", "what is 1 + 1")  # C makes the session, and so watches it
        hubs.wait_done("C", sent["taskId"])
        hubs.call("D", "JoinSession", sent["sessionId"])  # D: session events only, from now on
        made = create(server, bearer, cron=EVERY_2S, sessionId=sent["sessionId"])
        schedule_id = made["scheduleId"]
        fired = hubs.wait("N", "CronFired", timeout=WAIT, scheduleId=schedule_id)
        started = hubs.wait("N", "WorkflowRunStarted", timeout=WAIT, scheduleId=schedule_id)
        completed = hubs.wait("N", "WorkflowRunCompleted", timeout=WAIT, runId=started["runId"])
        hubs.wait("C", "TaskCompleted", timeout=WAIT, taskId=started["taskId"])
        reply = hubs.wait("C", "ReceiveMessage", timeout=WAIT, content="12 * 7 = 84.")
        pause(server, bearer, schedule_id)

        # No session named: the first fire makes one; a device that joins it sees the next.
        other = create(server, bearer, cron=EVERY_2S, prompt="what is 6 * 7")
        first = hubs.wait("N", "WorkflowRunStarted", timeout=WAIT, scheduleId=other["scheduleId"])
        session_id = wait_until(
            lambda: rest(server, bearer, "GET", f"/schedules/{other['scheduleId']}").json()[
                "sessionId"
            ],
            WAIT,
            "the schedule's session",
        )
        hubs.call("D", "JoinSession", session_id)
        later = hubs.wait("D", "ReceiveMessage", timeout=WAIT, content="6 * 7 = 42.")
        pause(server, bearer, other["scheduleId"])
        hubs.fence("N", "C")
        events = {device: hubs.events(device) for device in ("N", "C")}

    assert fired == {"scheduleId": schedule_id, "at": fired["at"]}
    assert parse_time(fired["at"]).second % 2 == 0 and parse_time(fired["at"]).microsecond == 0
    assert set(started) == {"runId", "scheduleId", "taskId", "at"}
    assert set(completed) == {"runId", "durationMs"} and completed["durationMs"] >= 0
    assert reply["sessionId"] == sent["sessionId"] and reply["role"] == "assistant"
    assert later["sessionId"] == session_id and first["scheduleId"] == other["scheduleId"]
    # Only its user's devices hear of a schedule; the workflow events are the user's feed's.
    [run] = [r for r in runs(server, bearer, schedule_id) if r["runId"] == started["runId"]]
    assert (run["state"], run["taskId"], run["slot"]) == (
        "completed",
        started["taskId"],
        fired["at"],
    )
    feed = rest(server, bearer, "GET", "/notifications", limit=200).json()
    assert {"CronFired", "WorkflowRunStarted", "WorkflowRunCompleted"} <= {n["event"] for n in feed}
    notified = [e["target"] for e in events["N"]]
    assert "CronFailed" not in notified and "WorkflowRunFailed" not in notified
    task = rest(server, bearer, "GET", f"/tasks/{started['taskId']}").json()
    assert (task["sessionId"], task["state"]) == (sent["sessionId"], "completed")


def test_schedules_the_files_schedule_fires_for_its_user(
    schedules_server: ServerProcess,
) -> None:
    server = schedules_server
    bearer = token(server, FAY)
    with devices(server, timeout=60) as hubs:
        hubs.open("N", "notifications", bearer)
        completed = hubs.wait("N", "WorkflowRunCompleted", timeout=WAIT)
        started = hubs.wait("N", "WorkflowRunStarted", timeout=WAIT, runId=completed["runId"])
    assert started["scheduleId"] == "file-sum"
    [listed] = rest(server, bearer, "GET", "/schedules").json()
    assert (listed["scheduleId"], listed["source"], listed["agentId"]) == (
        "file-sum",
        "file",
        "writer",
    )
    refused = rest(server, bearer, "PATCH", "/schedules/file-sum", {"paused": True})
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "Schedule 'file-sum' comes from the schedules file: change it there."
    }
    assert rest(server, bearer, "DELETE", "/schedules/file-sum").status_code == 409


def test_schedules_a_file_that_cannot_be_used_stops_the_server(tmp_path: Path) -> None:
    bad = write(tmp_path / "schedules.toml", FILE.replace("writer", "nobody"))
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "voisnap",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--schedules-file",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines()[-1] == (
        f"voisnap serve: schedules file {bad}: schedule 1 ('sum'): "
        "Agent 'nobody' does not exist or is not active."
    )


# -- restarts ------------------------------------------------------------------------------------


def test_schedules_missed_slots_fire_once_and_a_removed_agent_fails(tmp_path: Path) -> None:
    """Down for more than two slots: the schedule fires once for the latest of them. Its
    twin, whose agent the new agents file no longer has, fires ``CronFailed``."""
    agents = write(tmp_path / "agents.toml", AGENTS)
    server = ServerProcess(tmp_path / "data", SETTINGS, ["--agents-file", str(agents)]).start()
    bearer = token(server, "ana-restarts")
    try:
        kept = create(server, bearer, cron=EVERY_2S)["scheduleId"]
        orphan = create(server, bearer, cron=EVERY_2S, agentId="writer")["scheduleId"]
        wait_until(
            lambda: any(r["state"] == "completed" for r in runs(server, bearer, kept)),
            WAIT,
            "a first run",
        )
    finally:
        server.stop()
    stopped = datetime.datetime.now(datetime.UTC)
    deadline = time.monotonic() + 6.0  # three slots pass while no server runs
    wait_until(lambda: time.monotonic() > deadline, 10.0, "slots to pass")
    write(agents, "")  # writer is gone
    server = ServerProcess(tmp_path / "data", SETTINGS, ["--agents-file", str(agents)]).start()
    try:
        with devices(server, timeout=60) as hubs:
            hubs.open("N", "notifications", token(server, "ana-restarts"))
            failed = hubs.wait("N", "CronFailed", timeout=WAIT, scheduleId=orphan)
        late = wait_until(
            lambda: [
                r
                for r in runs(server, bearer, kept)
                if parse_time(r["slot"]) > stopped and r["state"] == "completed"
            ],
            WAIT,
            "a run after the restart",
        )
        # The next regular slot fires too; then count what fired for the slots missed.
        first_late = min(parse_time(r["slot"]) for r in late)
        wait_until(
            lambda: any(parse_time(r["slot"]) > first_late for r in runs(server, bearer, kept)),
            WAIT,
            "the next slot",
        )
        pause(server, bearer, kept)
        pause(server, bearer, orphan)
        missed = [
            r for r in runs(server, bearer, kept) if stopped < parse_time(r["slot"]) <= first_late
        ]
    finally:
        server.stop()
    assert failed["error"] == "Agent 'writer' does not exist or is not active."
    # Slots are 2 s apart: at least two of them passed after the stop up to first_late
    # (first_late and the one before it); one of them fired.
    assert (first_late - stopped).total_seconds() > 2.0
    assert len(missed) == 1, missed
    assert parse_time(missed[0]["firedAt"]) > parse_time(missed[0]["slot"])
