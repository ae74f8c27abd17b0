"""A person in the loop (issue 12): the approvals hub (``/hubs/approvals``), the chat hub
while a task waits, and the approvals REST routes, with the official ``@microsoft/signalr``
client under Node against a real ``voisnap serve`` process on 127.0.0.1.

The built-in agent ``sophon`` (docs/agents.md) asks for a person's approval before
``delete_note`` ("forget X"), and asks the user which note to delete ("delete a note") or
what to remember ("remember something"). Each test gives one user three kinds of device:

- ``J``: a chat device joined to the session the task runs in (it sends the messages);
- ``N``: a chat device of the same user joined to another session of its own: it hears of
  the waiting task only through the user-wide ``SessionNotification``;
- ``A``: an approvals-hub connection, which receives the requests and decides them.

How it runs: ``js/approvals_devices.mjs`` holds the devices (each on the hub the test
names) and does what the test writes on its stdin, one JSON command at a time; every answer
is a line the test waits for with a deadline. Nothing waits on the wall clock: events are
awaited; "did not receive" is proven behind a fence (a round trip on the same connection,
answered after anything sent to it before); REST is polled (bounded) only for states no event
announces. Timeouts are shrunk (``--approval-timeout 2``) on a server of their own.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.node import NodeScenario
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

SETTINGS = {**FAST_SETTINGS, "agent_token_delay": "0.01"}
SHORT_TIMEOUT = 2.0  # seconds a request waits on the short server
SHORT = {**SETTINGS, "approval_timeout": str(SHORT_TIMEOUT),
         "info_request_timeout": str(SHORT_TIMEOUT), "agent_workers": "1"}
CLIENT = {"transport": "WebSockets", "protocol": "json", "keepAliveMs": 1000}
WAIT = 10.0  # the longest any one event may take to come
SCENARIO_TIMEOUT = 45.0

FIELDS = {
    "ApprovalRequested": {"id", "taskId", "sessionId", "agentId", "toolName", "params",
                          "reason", "status", "createdAt", "expiresAt"},
    "ApprovalResolved": {"id", "outcome", "outcomeDetail"},
    "InfoRequested": {"id", "taskId", "sessionId", "question", "options", "createdAt",
                      "expiresAt"},
    "InfoResolved": {"id", "response"},
    "SessionNotification": {"sessionId", "kind", "refId", "success", "excerpt", "timestamp"},
}
PER_TASK = ("TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ToolCallStarted",
            "ToolCallCompleted", "ReceiveMessage", "TaskCompleted", "TaskFailed", "TaskCancelled")
ENDINGS = ["taskCompleted", "taskFailed", "taskCancelled"]
DOES_NOT_EXIST = "Approval '{}' does not exist."
WHICH_NOTE = "Which note should I delete?"
WHAT_TO_REMEMBER = "What should I remember?"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- servers, tokens and REST ----------------------------------------------------------------


@pytest.fixture(scope="module")
def approvals_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Requests wait 600 s (the default): only a decision ends them."""
    with ServerProcess(tmp_path_factory.mktemp("approvals") / "data", SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Requests time out after SHORT_TIMEOUT s; one agent worker."""
    with ServerProcess(tmp_path_factory.mktemp("short") / "data", SHORT) as server:
        yield server


def token(server: ServerProcess, user: str, tenant: str = "acme",
          roles: Iterable[str] = ()) -> str:
    """What ``voisnap token --user user --tenant tenant [--role r]`` prints (same claims,
    same secret from the data dir), without a process per token."""
    secret = (server.data_dir / "jwt-secret").read_bytes().strip()
    now = int(time.time())
    claims = {"sub": user, "tid": tenant, "roles": list(roles), "iat": now, "exp": now + 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


def rest(server: ServerProcess, bearer: str, method: str, path: str, body: Any = None,
         **query: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", params=query, json=body, timeout=5.0,
                         headers={"Authorization": f"Bearer {bearer}"}, trust_env=False)


def rest_ok(server: ServerProcess, bearer: str, path: str, **query: Any) -> Any:
    response = rest(server, bearer, "GET", path, **query)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def task_of(server: ServerProcess, bearer: str, task_id: str) -> dict[str, Any]:
    return rest_ok(server, bearer, f"/tasks/{task_id}")


def reply_of(server: ServerProcess, bearer: str, session_id: str, task_id: str) -> str:
    """The stored reply of a task (REST)."""
    messages = rest_ok(server, bearer, f"/sessions/{session_id}/messages", limit=200)
    replies = [m["content"] for m in messages
               if m["role"] == "assistant" and m["taskId"] == task_id]
    assert len(replies) == 1, (task_id, messages)
    return replies[0]


def message(content: str, session_id: str | None) -> dict[str, Any]:
    return {"sessionId": session_id, "agentId": "sophon", "content": content,
            "channelId": "webchat", "attachments": [], "isStreaming": True}


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- devices ---------------------------------------------------------------------------------


class Devices:
    """The devices of one ``approvals_devices.mjs`` run, one command at a time."""

    def __init__(self, scenario: NodeScenario) -> None:
        self.scenario = scenario
        self._ids = itertools.count()

    def _do(self, answer: str, timeout: float = WAIT, **command: Any) -> dict[str, Any]:
        self.scenario.send_line(json.dumps(command))
        return self.scenario.wait_for(answer, timeout=timeout + 2)

    def _id(self) -> str:
        return str(next(self._ids))

    def open(self, device: str, hub: str, bearer: str, **client: str) -> str:
        """``client``: transport, protocol (default CLIENT's)."""
        return self._do(f"opened:{device}", op="open", device=device, hub=hub,
                        token=bearer, **client)["connectionId"]

    def invoke(self, device: str, method: str, *args: Any) -> dict[str, Any]:
        """{ok: True, value} or {ok: False, error} (the client's error text)."""
        command_id = self._id()
        return self._do(f"invoked:{command_id}", op="invoke", id=command_id, device=device,
                        method=method, args=list(args))

    def call(self, device: str, method: str, *args: Any) -> Any:
        answer = self.invoke(device, method, *args)
        assert answer["ok"], f"{device}: {method}{args} failed: {answer['error']}"
        return answer["value"]

    def refused(self, device: str, method: str, *args: Any) -> str:
        answer = self.invoke(device, method, *args)
        assert not answer["ok"], f"{device}: {method}{args} was accepted: {answer['value']}"
        return answer["error"]

    def race(self, *calls: tuple[str, str, Any]) -> list[dict[str, Any]]:
        """(device, method, argument) calls sent in the same tick; their answers."""
        command_id = self._id()
        raced = self._do(f"raced:{command_id}", op="race", id=command_id, calls=[
            {"device": device, "method": method, "args": [argument]}
            for device, method, argument in calls])
        return raced["answers"]

    def send(self, device: str, content: str, session_id: str | None = None) -> dict[str, Any]:
        """SendMessage; its result {taskId, sessionId, messageId}."""
        return self.call(device, "SendMessage", message(content, session_id))

    def wait(self, device: str, target: str, count: int = 1, timeout: float = WAIT,
             **match: Any) -> dict[str, Any]:
        """The count-th ``target`` event whose payload has the fields of ``match``."""
        command_id = self._id()
        return self._do(f"awaited:{command_id}", timeout, op="await", id=command_id,
                        device=device, target=target, match=match, count=count,
                        ms=int(timeout * 1000))["payload"]

    def wait_done(self, device: str, task_id: str, kind: str = "taskCompleted",
                  timeout: float = WAIT) -> dict[str, Any]:
        """The task's last event on a chat device: the SessionNotification that it ended
        (sent after its per-task events), which must say it ended as ``kind``."""
        ended = self.wait(device, "SessionNotification", timeout=timeout, kind=ENDINGS,
                          refId=task_id)
        assert ended["kind"] == kind, f"task {task_id} ended as {ended['kind']}: {ended}"
        return ended

    def fence(self, *devices: str) -> None:
        command_id = self._id()
        self._do(f"fenced:{command_id}", op="fence", id=command_id, devices=list(devices))

    def events(self, device: str) -> list[dict[str, Any]]:
        """[{target, payload}] in the order the client's handlers saw them."""
        command_id = self._id()
        return self._do(f"log:{command_id}", op="log", id=command_id, device=device)["events"]

    def end(self) -> None:
        self.scenario.send_line(json.dumps({"op": "end"}))
        self.scenario.result()


@contextlib.contextmanager
def devices(server: ServerProcess, timeout: float = SCENARIO_TIMEOUT) -> Iterator[Devices]:
    urls = {hub: server.hub_url(hub) for hub in ("chat", "approvals", "tasks", "notifications")}
    with NodeScenario("approvals_devices.mjs", {"urls": urls, **CLIENT}, timeout) as scenario:
        scenario.wait_for("ready")
        hubs = Devices(scenario)
        yield hubs
        hubs.end()


def payloads(events: list[dict[str, Any]], target: str, **match: Any) -> list[dict[str, Any]]:
    return [e["payload"] for e in events if e["target"] == target
            and all(e["payload"].get(key) == value for key, value in match.items())]


def of_task(events: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The per-task chat events of one task (ReceiveMessage names its message: it is
    taken when it comes between the task's first and last event)."""
    indexes = [i for i, e in enumerate(events) if e["payload"].get("taskId") == task_id
               and e["target"] in PER_TASK]
    if not indexes:
        return []
    return [e for e in events[indexes[0]:indexes[-1] + 1] if e["target"] in PER_TASK
            and (e["payload"].get("taskId") == task_id or e["target"] == "ReceiveMessage")]


def targets(events: list[dict[str, Any]]) -> list[str]:
    return [e["target"] for e in events]


def mentions(events: list[dict[str, Any]], *ids: str) -> list[dict[str, Any]]:
    """Events whose payload names any of ``ids``."""
    return [e for e in events if set(ids) & set(map(str, e["payload"].values()))]


def notes_of(hubs: Devices, server: ServerProcess, bearer: str, device: str,
             session_id: str) -> str:
    """What the agent answers to "my notes" (its ``list_notes``)."""
    sent = hubs.send(device, "what are my notes?", session_id)
    hubs.wait_done(device, sent["taskId"])
    return reply_of(server, bearer, session_id, sent["taskId"])


def open_user(hubs: Devices, bearer: str) -> str:
    """J (chat), N (chat, joined to a session of its own) and A (approvals) of one user;
    the id of N's session."""
    hubs.open("J", "chat", bearer)
    hubs.open("N", "chat", bearer)
    hubs.open("A", "approvals", bearer)
    own = hubs.send("N", "what is 1 + 1")  # creates N's session
    hubs.wait_done("N", own["taskId"])
    join(hubs, "N", own["sessionId"])
    return own["sessionId"]


def remember(hubs: Devices, device: str, session_id: str, *notes: str) -> None:
    for note in notes:
        sent = hubs.send(device, f"remember {note}", session_id)
        hubs.wait_done(device, sent["taskId"])


def join(hubs: Devices, device: str, session_id: str) -> None:
    """``device`` joins the session: from now on it hears of the session's tasks through
    the session group only (its user-wide fallback ends)."""
    assert hubs.call(device, "JoinSession", session_id) is None


# -- each outcome, end to end ----------------------------------------------------------------

KEPT, OTHER = "buy oat milk", "call the plumber"


def decide(hubs: Devices, outcome: str, approval_id: str) -> dict[str, Any] | None:
    """A's decision over the approvals hub (timeOut: none)."""
    match outcome:
        case "approved":
            return hubs.call("A", "Approve", {"approvalId": approval_id})
        case "rejected":
            return hubs.call("A", "Reject", {"approvalId": approval_id, "reason": "keep it"})
        case "edited":
            return hubs.call("A", "Edit", {"approvalId": approval_id,
                                           "modifiedParams": {"text": OTHER}})
    return None


@pytest.fixture(scope="module", params=["approved", "edited", "rejected", "timeOut"])
def outcome(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One user has the notes KEPT and OTHER and says "forget KEPT"; A decides (or, for
    timeOut, nobody does, on the short server). Everything the devices, REST and the agent
    show, gathered once per outcome."""
    name = request.param
    server = request.getfixturevalue("short_server" if name == "timeOut" else "approvals_server")
    bearer = token(server, new_id(f"user-{name}"))
    session_id = new_id("sess")
    seen: dict[str, Any] = {"outcome": name, "server": server, "token": bearer,
                            "session": session_id}
    with devices(server) as hubs:
        seen["own_session"] = open_user(hubs, bearer)
        remember(hubs, "J", session_id, KEPT, OTHER)
        join(hubs, "J", session_id)
        task_id = hubs.send("J", f"forget {KEPT}", session_id)["taskId"]
        requested = hubs.wait("A", "ApprovalRequested", taskId=task_id)
        approval_id = requested["id"]
        hubs.wait("J", "AgentStatus", taskId=task_id, status="waiting_approval")
        hubs.wait("N", "SessionNotification", kind="approvalPending", refId=approval_id)
        seen["waiting_task"] = task_of(server, bearer, task_id)
        seen["pending"] = rest_ok(server, bearer, "/approvals", status="pending")
        seen["pending_one"] = rest_ok(server, bearer, f"/approvals/{approval_id}")
        seen["decision"] = decide(hubs, name, approval_id)
        seen["resolved"] = hubs.wait("A", "ApprovalResolved", id=approval_id,
                                     timeout=WAIT + (SHORT_TIMEOUT if name == "timeOut" else 0))
        hubs.wait_done("J", task_id)
        seen["late_hub"] = hubs.invoke("A", "Approve", {"approvalId": approval_id})
        seen["late_rest"] = rest(server, bearer, "POST", f"/approvals/{approval_id}/decision",
                                 {"outcome": "rejected", "reason": "too late"})
        seen["notes"] = notes_of(hubs, server, bearer, "J", session_id)
        hubs.fence("J", "N", "A")
        seen["events"] = {device: hubs.events(device) for device in ("J", "N", "A")}
    seen.update(task_id=task_id, approval_id=approval_id, requested=requested,
                task=task_of(server, bearer, task_id),
                reply=reply_of(server, bearer, session_id, task_id),
                stored=rest_ok(server, bearer, f"/approvals/{approval_id}"))
    return seen


REPLIES = {
    "approved": f"Deleted the note “{KEPT}”.",
    "edited": f"Deleted the note “{OTHER}”.",
    "rejected": "I did not delete it: The user rejected this action: keep it",
    "timeOut": "I did not delete it: Nobody approved this action in time.",
}
DETAILS = {"approved": None, "edited": {"text": OTHER}, "rejected": "keep it", "timeOut": None}
LEFT = {"approved": [OTHER], "edited": [KEPT], "rejected": [KEPT, OTHER],
        "timeOut": [KEPT, OTHER]}


def test_approval_requested_has_contract_fields(outcome: dict[str, Any]) -> None:
    requested = outcome["requested"]
    assert set(requested) == FIELDS["ApprovalRequested"], requested
    assert requested["taskId"] == outcome["task_id"]
    assert requested["sessionId"] == outcome["session"]
    assert (requested["agentId"], requested["toolName"], requested["params"]) == (
        "sophon", "delete_note", {"text": KEPT})
    assert requested["status"] == "pending"
    assert isinstance(requested["reason"], str) and requested["reason"]
    lasts = parse_time(requested["expiresAt"]) - parse_time(requested["createdAt"])
    timeout = SHORT_TIMEOUT if outcome["outcome"] == "timeOut" else 600.0
    assert abs(lasts.total_seconds() - timeout) < 1.0, requested


def test_approval_waiting_task_is_waiting_and_listed_pending(outcome: dict[str, Any]) -> None:
    assert outcome["waiting_task"]["state"] == "waiting", outcome["waiting_task"]
    pending = [a for a in outcome["pending"] if a["id"] == outcome["approval_id"]]
    assert len(pending) == 1 and pending[0]["status"] == "pending", outcome["pending"]
    one = outcome["pending_one"]
    assert {k: one[k] for k in outcome["requested"]} == outcome["requested"]


def test_approval_resolved_reaches_approvals_hub_once(outcome: dict[str, Any]) -> None:
    name, approval_id = outcome["outcome"], outcome["approval_id"]
    events = outcome["events"]["A"]
    assert payloads(events, "ApprovalRequested", id=approval_id) == [outcome["requested"]]
    assert payloads(events, "ApprovalResolved", id=approval_id) == [
        {"id": approval_id, "outcome": name, "outcomeDetail": DETAILS[name]}]
    stored = outcome["stored"]
    assert (stored["status"], stored["outcomeDetail"]) == (name, DETAILS[name]), stored


def test_approval_agent_final_message_and_task_completed(outcome: dict[str, Any]) -> None:
    name = outcome["outcome"]
    assert outcome["reply"] == REPLIES[name]
    task = outcome["task"]
    assert task["state"] == "completed", task
    stream = of_task(outcome["events"]["J"], outcome["task_id"])
    received = payloads(stream, "ReceiveMessage")
    assert [r["content"] for r in received] == [REPLIES[name]]
    streamed = "".join(chunk["delta"] for chunk in payloads(stream, "StreamChunk"))
    assert streamed == REPLIES[name]
    assert targets(stream)[-1] == "TaskCompleted" and targets(stream).count("TaskStarted") == 1


def test_approval_tool_runs_only_when_approved_or_edited(outcome: dict[str, Any]) -> None:
    """delete_note runs (once) after approved or edited; never after rejected or timeOut.
    The notes left, as the agent lists them afterwards, say what it really did."""
    name = outcome["outcome"]
    stream = of_task(outcome["events"]["J"], outcome["task_id"])
    ran = [t["toolName"] for t in payloads(stream, "ToolCallStarted")]
    assert ran == (["delete_note"] if name in ("approved", "edited") else []), targets(stream)
    listed = outcome["notes"]
    for note in (KEPT, OTHER):
        assert (note in listed) == (note in LEFT[name]), listed


def test_approval_session_sees_waiting_approval_status(outcome: dict[str, Any]) -> None:
    stream = of_task(outcome["events"]["J"], outcome["task_id"])
    statuses = [s["status"] for s in payloads(stream, "AgentStatus")]
    assert statuses.count("waiting_approval") == 1, statuses
    # Nothing of the decision's effect comes before the wait is announced.
    index = next(i for i, e in enumerate(stream) if e["target"] == "AgentStatus"
                 and e["payload"]["status"] == "waiting_approval")
    assert targets(stream)[:2] == ["TaskQueued", "TaskStarted"], targets(stream)
    assert not {"ToolCallStarted", "StreamChunk", "ReceiveMessage"} & set(
        targets(stream)[:index]), targets(stream)


def test_approval_device_of_other_session_gets_session_notification(
    outcome: dict[str, Any],
) -> None:
    """N (joined to its own session) gets approvalPending, user-wide, and none of the
    task's per-task events."""
    events = outcome["events"]["N"]
    pending = payloads(events, "SessionNotification", kind="approvalPending")
    assert len(pending) == 1, pending
    assert set(pending[0]) == FIELDS["SessionNotification"]
    assert pending[0]["refId"] == outcome["approval_id"]
    assert pending[0]["sessionId"] == outcome["session"]
    assert pending[0]["excerpt"] and "delete_note" in pending[0]["excerpt"]
    assert of_task(events, outcome["task_id"]) == []
    ended = payloads(events, "SessionNotification", refId=outcome["task_id"])
    assert [n["kind"] for n in ended] == ["taskStarted", "taskCompleted"], ended
    on_joined = payloads(outcome["events"]["J"], "SessionNotification", kind="approvalPending")
    assert on_joined == pending, "the joined device is a device of the user too"


def test_approval_decided_twice_names_the_outcome_it_lost_to(outcome: dict[str, Any]) -> None:
    name, approval_id = outcome["outcome"], outcome["approval_id"]
    late = outcome["late_hub"]
    assert not late["ok"], late
    assert approval_id in late["error"] and name in late["error"], late
    response = outcome["late_rest"]
    assert response.status_code == 409, response.text
    assert name in response.json()["error"], response.text
    if outcome["decision"] is not None:
        assert outcome["decision"]["id"] == approval_id


# -- an info request with choices, then the approval ------------------------------------------


def test_info_request_with_choices_then_approval(approvals_server: ServerProcess) -> None:
    """"delete a note" with two notes: InfoRequested (the notes as options); an answer outside
    them is refused (hub and REST), a valid one resumes the task (InfoResolved), then the
    approval of delete_note for the chosen note follows, approved over REST."""
    server = approvals_server
    bearer = token(server, new_id("chooser"))
    stranger = token(server, new_id("mallory"))
    session_id, first, second = new_id("sess"), "water the plants", "book the dentist"
    with devices(server) as hubs:
        open_user(hubs, bearer)
        hubs.open("M", "approvals", stranger)
        remember(hubs, "J", session_id, first, second)
        join(hubs, "J", session_id)
        task_id = hubs.send("J", "delete a note", session_id)["taskId"]
        asked = hubs.wait("A", "InfoRequested", taskId=task_id)
        info_id = asked["id"]
        hubs.wait("J", "AgentStatus", taskId=task_id, status="waiting_user")
        notified = hubs.wait("N", "SessionNotification", kind="infoRequestPending",
                             refId=info_id)
        assert task_of(server, bearer, task_id)["state"] == "waiting"
        listed = rest_ok(server, bearer, "/info-requests", status="pending")
        foreign = {"hub": hubs.refused("M", "RespondInfo", {"infoId": info_id, "response": first}),
                   "rest": rest(server, stranger, "POST", f"/info-requests/{info_id}/response",
                                {"response": first}),
                   "list": rest_ok(server, stranger, "/info-requests", status="pending")}
        refused = hubs.refused("A", "RespondInfo", {"infoId": info_id, "response": "neither"})
        refused_rest = rest(server, bearer, "POST", f"/info-requests/{info_id}/response",
                            {"response": "neither"})
        answered = hubs.call("A", "RespondInfo", {"infoId": info_id, "response": second})
        resolved = hubs.wait("A", "InfoResolved", id=info_id)
        twice = hubs.refused("A", "RespondInfo", {"infoId": info_id, "response": first})
        approval = hubs.wait("A", "ApprovalRequested", taskId=task_id)
        decided = rest(server, bearer, "POST", f"/approvals/{approval['id']}/decision",
                       {"outcome": "approved"})
        hubs.wait_done("J", task_id)
        notes = notes_of(hubs, server, bearer, "J", session_id)
        hubs.fence("A", "M")
        approvals_events = hubs.events("A")
        stranger_events = hubs.events("M")

    assert set(asked) == FIELDS["InfoRequested"], asked
    assert (asked["question"], asked["options"]) == (WHICH_NOTE, [first, second])
    assert asked["sessionId"] == session_id
    assert notified["excerpt"] == WHICH_NOTE and notified["sessionId"] == session_id
    assert [i["id"] for i in listed if i["id"] == info_id] == [info_id], listed
    assert f"Info request '{info_id}' does not exist." in foreign["hub"], foreign
    assert foreign["rest"].status_code == 404, foreign["rest"].text
    assert info_id not in {i["id"] for i in foreign["list"]}
    assert mentions(stranger_events, info_id, task_id) == []
    assert first in refused and second in refused, refused
    assert refused_rest.status_code == 409, refused_rest.text
    assert answered is not None
    assert resolved == {"id": info_id, "response": second}
    assert info_id in twice and "answered" in twice, twice
    assert payloads(approvals_events, "InfoResolved", id=info_id) == [resolved]
    assert approval["params"] == {"text": second} and approval["toolName"] == "delete_note"
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    assert reply_of(server, bearer, session_id, task_id) == f"Deleted the note “{second}”."
    assert first in notes and second not in notes, notes
    assert task_of(server, bearer, task_id)["state"] == "completed"


def test_info_request_without_choices_answered_over_rest(approvals_server: ServerProcess) -> None:
    """"remember something": InfoRequested "What should I remember?" with no options,
    answered with POST /info-requests/{id}/response; the answer becomes a note."""
    server = approvals_server
    bearer = token(server, new_id("rememberer"))
    session_id = new_id("sess")
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("A", "approvals", bearer)
        task_id = hubs.send("J", "remember something", session_id)["taskId"]
        asked = hubs.wait("A", "InfoRequested", taskId=task_id)
        answered = rest(server, bearer, "POST", f"/info-requests/{asked['id']}/response",
                        {"response": "feed the cat"})
        resolved = hubs.wait("A", "InfoResolved", id=asked["id"])
        hubs.wait_done("J", task_id)
        notes = notes_of(hubs, server, bearer, "J", session_id)
    assert (asked["question"], asked["options"]) == (WHAT_TO_REMEMBER, None)
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "answered"
    assert resolved == {"id": asked["id"], "response": "feed the cat"}
    assert reply_of(server, bearer, session_id, task_id) == "Noted: “feed the cat”."
    assert "feed the cat" in notes


def test_info_request_times_out(short_server: ServerProcess) -> None:
    """Nobody answers "What should I remember?": InfoResolved with no response, and the
    agent says it noted nothing."""
    server = short_server
    bearer = token(server, new_id("silent"))
    session_id = new_id("sess")
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("A", "approvals", bearer)
        task_id = hubs.send("J", "remember something", session_id)["taskId"]
        asked = hubs.wait("A", "InfoRequested", taskId=task_id)
        resolved = hubs.wait("A", "InfoResolved", id=asked["id"], timeout=WAIT + SHORT_TIMEOUT)
        hubs.wait_done("J", task_id)
    assert resolved == {"id": asked["id"], "response": None}
    assert reply_of(server, bearer, session_id, task_id) == (
        "I did not note anything: The user did not answer in time.")
    statuses = rest_ok(server, bearer, "/info-requests")
    assert [i["status"] for i in statuses if i["id"] == asked["id"]] == ["timeOut"]


# -- who may see and decide --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenancy(approvals_server: ServerProcess) -> dict[str, Any]:
    """Alice (acme) waits for an approval. On the approvals hub: A (alice), ADM (an acme
    admin), M (mallory, acme, not an admin), G (an admin of globex). M and G try to decide
    it, A tries an unknown id; then ADM approves it."""
    server = approvals_server
    alice, admin_user = new_id("alice"), new_id("admin")
    tokens = {"J": token(server, alice), "A": token(server, alice),
              "ADM": token(server, admin_user, roles=["admin"]),
              "M": token(server, new_id("mallory")),
              "G": token(server, admin_user, "globex", roles=["admin"])}
    session_id = new_id("sess")
    seen: dict[str, Any] = {"tokens": tokens, "session": session_id, "admin": admin_user}
    with devices(server) as hubs:
        hubs.open("J", "chat", tokens["J"])
        for device in ("A", "ADM", "M", "G"):
            hubs.open(device, "approvals", tokens[device])
        remember(hubs, "J", session_id, KEPT)
        task_id = hubs.send("J", f"forget {KEPT}", session_id)["taskId"]
        requested = hubs.wait("A", "ApprovalRequested", taskId=task_id)
        approval_id = requested["id"]
        seen["admin_requested"] = hubs.wait("ADM", "ApprovalRequested", taskId=task_id)
        seen["attempts"] = {
            device: {verb: hubs.invoke(device, verb, argument) for verb, argument in (
                ("Approve", {"approvalId": approval_id}),
                ("Reject", {"approvalId": approval_id, "reason": "mine now"}),
                ("Edit", {"approvalId": approval_id, "modifiedParams": {"text": "x"}}))}
            for device in ("M", "G")}
        seen["unknown"] = hubs.invoke("A", "Approve", {"approvalId": "appr_nobody_has_this"})
        question = hubs.send("J", "remember something", new_id("sess"))["taskId"]
        seen["admin_asked"] = asked = hubs.wait("ADM", "InfoRequested", taskId=question)
        seen["admin_answer"] = hubs.invoke("ADM", "RespondInfo",
                                           {"infoId": asked["id"], "response": "feed the cat"})
        seen["info_resolved"] = hubs.wait("A", "InfoResolved", id=asked["id"])
        hubs.wait_done("J", question)
        seen["rest"] = {device: {
            "get": rest(server, tokens[device], "GET", f"/approvals/{approval_id}"),
            "list": rest_ok(server, tokens[device], "/approvals", status="pending"),
            "decide": rest(server, tokens[device], "POST", f"/approvals/{approval_id}/decision",
                           {"outcome": "rejected", "reason": "mine now"}),
        } for device in ("M", "G")}
        seen["still"] = rest_ok(server, tokens["A"], f"/approvals/{approval_id}")["status"]
        seen["admin_get"] = rest(server, tokens["ADM"], "GET", f"/approvals/{approval_id}")
        seen["admin_list"] = rest_ok(server, tokens["ADM"], "/approvals", status="pending")
        seen["decision"] = hubs.invoke("ADM", "Approve", {"approvalId": approval_id})
        hubs.wait("A", "ApprovalResolved", id=approval_id)
        hubs.wait("ADM", "ApprovalResolved", id=approval_id)
        hubs.wait_done("J", task_id)
        seen["admin_late"] = rest(server, tokens["ADM"], "POST",
                                  f"/approvals/{approval_id}/decision", {"outcome": "rejected"})
        hubs.fence("A", "ADM", "M", "G")
        seen["events"] = {device: hubs.events(device) for device in ("A", "ADM", "M", "G")}
    seen.update(task_id=task_id, approval_id=approval_id, requested=requested,
                stored=rest_ok(server, tokens["A"], f"/approvals/{approval_id}"),
                reply=reply_of(server, tokens["A"], session_id, task_id))
    return seen


def test_admin_receives_requests_of_tenant(tenancy: dict[str, Any]) -> None:
    assert tenancy["admin_requested"] == tenancy["requested"]
    listed = tenancy["admin_list"]
    assert tenancy["approval_id"] in {a["id"] for a in listed}, listed
    response = tenancy["admin_get"]
    assert response.status_code == 200, response.text
    assert response.json()["id"] == tenancy["approval_id"]


def test_admin_may_decide_for_user_of_tenant(tenancy: dict[str, Any]) -> None:
    """The acme admin approves alice's request over the hub; the task completes as
    approved; a later REST decision of the admin's is refused (409, naming "approved")."""
    assert tenancy["still"] == "pending", "M's or G's attempt changed the approval"
    assert tenancy["decision"]["ok"], tenancy["decision"]
    late = tenancy["admin_late"]
    assert late.status_code == 409 and "approved" in late.json()["error"], late.text
    stored = tenancy["stored"]
    assert (stored["status"], stored["resolvedBy"]) == ("approved", tenancy["admin"]), stored
    assert tenancy["reply"] == f"Deleted the note “{KEPT}”."
    for device in ("A", "ADM"):
        resolved = payloads(tenancy["events"][device], "ApprovalResolved",
                            id=tenancy["approval_id"])
        assert resolved == [{"id": tenancy["approval_id"], "outcome": "approved",
                             "outcomeDetail": None}], device


@pytest.mark.parametrize("device", ["M", "G"], ids=["non-admin-same-tenant", "admin-other-tenant"])
def test_stranger_cannot_decide_and_is_told_it_does_not_exist(
    tenancy: dict[str, Any], device: str,
) -> None:
    approval_id = tenancy["approval_id"]
    unknown = tenancy["unknown"]
    assert not unknown["ok"] and DOES_NOT_EXIST.format("appr_nobody_has_this") in unknown["error"]
    for verb, answer in tenancy["attempts"][device].items():
        assert not answer["ok"], (verb, answer)
        assert DOES_NOT_EXIST.format(approval_id) in answer["error"], (verb, answer)
        told = answer["error"].split("HubException: ")[-1].replace(approval_id, "X")
        assert told == unknown["error"].split("HubException: ")[-1].replace(
            "appr_nobody_has_this", "X"), (verb, answer)
    calls = tenancy["rest"][device]
    assert calls["get"].status_code == 404, calls["get"].text
    assert calls["decide"].status_code == 404, calls["decide"].text
    assert calls["get"].json() == {"error": DOES_NOT_EXIST.format(approval_id)}
    assert approval_id not in {a["id"] for a in calls["list"]}


@pytest.mark.parametrize("device", ["M", "G"], ids=["non-admin-same-tenant", "admin-other-tenant"])
def test_stranger_receives_nothing_of_the_request(tenancy: dict[str, Any], device: str) -> None:
    ids = (tenancy["approval_id"], tenancy["task_id"], tenancy["admin_asked"]["id"])
    assert mentions(tenancy["events"][device], *ids) == []


def test_admin_receives_and_answers_info_requests_of_tenant(tenancy: dict[str, Any]) -> None:
    asked = tenancy["admin_asked"]
    assert asked["question"] == WHAT_TO_REMEMBER
    assert tenancy["admin_answer"]["ok"], tenancy["admin_answer"]
    assert tenancy["info_resolved"] == {"id": asked["id"], "response": "feed the cat"}
    assert payloads(tenancy["events"]["ADM"], "InfoResolved", id=asked["id"]) == [
        tenancy["info_resolved"]]


# -- restarts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "via"), [(signal.SIGTERM, "hub"), (signal.SIGKILL, "rest")],
                         ids=["sigterm-approve-over-hub", "sigkill-approve-over-rest"])
def test_restart_while_waiting_then_approve_completes_task(
    start_server: Callable[..., ServerProcess], sig: signal.Signals, via: str,
) -> None:
    """The server stops (SIGTERM, or SIGKILL) while a task waits for approval, and starts
    again on the same port and data dir. The request is still pending; the approval (over
    the approvals hub, or REST) resumes the task from its stored transcript, and its stream
    reaches a device that joined the session after the restart."""
    server = start_server(settings=SETTINGS)
    bearer = token(server, new_id("restarting"))
    session_id = new_id("sess")
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("A", "approvals", bearer)
        remember(hubs, "J", session_id, KEPT)
        task_id = hubs.send("J", f"forget {KEPT}", session_id)["taskId"]
        approval_id = hubs.wait("A", "ApprovalRequested", taskId=task_id)["id"]
        hubs.wait("J", "AgentStatus", taskId=task_id, status="waiting_approval")
        server.stop(sig)
    restarted = start_server(settings=SETTINGS, port=server.port, data_dir=server.data_dir)
    assert task_of(restarted, bearer, task_id)["state"] == "waiting"
    pending = rest_ok(restarted, bearer, "/approvals", status="pending")
    assert [a["id"] for a in pending] == [approval_id], pending
    with devices(restarted) as hubs:
        hubs.open("J2", "chat", bearer)
        hubs.open("A2", "approvals", bearer)
        join(hubs, "J2", session_id)
        if via == "hub":
            hubs.call("A2", "Approve", {"approvalId": approval_id})
        else:
            decided = rest(restarted, bearer, "POST", f"/approvals/{approval_id}/decision",
                           {"outcome": "approved"})
            assert decided.status_code == 200, decided.text
        resolved = hubs.wait("A2", "ApprovalResolved", id=approval_id)
        hubs.wait_done("J2", task_id)
        stream = of_task(hubs.events("J2"), task_id)
    assert resolved == {"id": approval_id, "outcome": "approved", "outcomeDetail": None}
    expected = f"Deleted the note “{KEPT}”."
    assert [t["toolName"] for t in payloads(stream, "ToolCallStarted")] == ["delete_note"]
    assert "".join(c["delta"] for c in payloads(stream, "StreamChunk")) == expected
    assert [r["content"] for r in payloads(stream, "ReceiveMessage")] == [expected]
    assert targets(stream)[-1] == "TaskCompleted"
    assert "TaskStarted" not in targets(stream), "a resumed task is not started again"
    assert reply_of(restarted, bearer, session_id, task_id) == expected
    assert task_of(restarted, bearer, task_id)["state"] == "completed"


# -- a waiting task holds no worker ------------------------------------------------------------


def test_waiting_task_does_not_occupy_the_only_worker(short_server: ServerProcess) -> None:
    """--agent-workers 1: while session 1's task waits for approval, session 2's task runs
    to completion; the first still waits when it has (had the wait held the only worker,
    the second task could only have run after the first's approval timed out)."""
    server = short_server
    bearer = token(server, new_id("one-worker"))
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("A", "approvals", bearer)
        waiting = hubs.send("J", "forget something that is not there", new_id("first"))
        hubs.wait("A", "ApprovalRequested", taskId=waiting["taskId"])
        running = hubs.send("J", "what is 6 * 7", new_id("second"))
        hubs.wait_done("J", running["taskId"])
        state = task_of(server, bearer, waiting["taskId"])["state"]
    assert state == "waiting"
    assert task_of(server, bearer, running["taskId"])["state"] == "completed"
    assert reply_of(server, bearer, running["sessionId"], running["taskId"]) == "6 * 7 = 42."


# -- bad decisions -----------------------------------------------------------------------------


def test_edit_with_params_that_do_not_fit_is_refused_and_stays_pending(
    approvals_server: ServerProcess,
) -> None:
    """An edit whose parameters do not fit delete_note's schema is refused (hub: an error;
    REST: 409) and the request stays pending; an unknown outcome is refused too. Then a
    rejection over the hub ends it."""
    server = approvals_server
    bearer = token(server, new_id("editor"))
    session_id = new_id("sess")
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("A", "approvals", bearer)
        task_id = hubs.send("J", f"forget {KEPT}", session_id)["taskId"]
        approval_id = hubs.wait("A", "ApprovalRequested", taskId=task_id)["id"]
        hub_error = hubs.refused("A", "Edit", {"approvalId": approval_id,
                                                "modifiedParams": {"colour": "blue"}})
        bad_edit = rest(server, bearer, "POST", f"/approvals/{approval_id}/decision",
                        {"outcome": "edited", "modifiedParams": {"text": ""}})
        bad_outcome = rest(server, bearer, "POST", f"/approvals/{approval_id}/decision",
                           {"outcome": "maybe"})
        still = rest_ok(server, bearer, f"/approvals/{approval_id}")["status"]
        hubs.call("A", "Reject", {"approvalId": approval_id})
        resolved = hubs.wait("A", "ApprovalResolved", id=approval_id)
        hubs.wait_done("J", task_id)
    assert "delete_note" in hub_error and "does not exist" not in hub_error, hub_error
    assert bad_edit.status_code == 409, bad_edit.text
    assert bad_outcome.status_code == 400, bad_outcome.text
    assert bad_outcome.json()["error"] == "The outcome must be one of approved, rejected, edited."
    assert still == "pending"
    assert resolved["outcome"] == "rejected"
    assert reply_of(server, bearer, session_id, task_id).startswith(
        "I did not delete it: The user rejected this action")


@pytest.mark.parametrize(("transport", "protocol"), [
    ("ServerSentEvents", "json"), ("LongPolling", "json"), ("WebSockets", "messagepack")])
def test_approvals_hub_on_every_transport_and_protocol(
    approvals_server: ServerProcess, transport: str, protocol: str,
) -> None:
    """The approvals hub's events and methods carry the same payloads, whatever the
    transport and hub protocol: ApprovalRequested as REST shows it, an Edit's
    modifiedParams as the ApprovalResolved's outcomeDetail."""
    server = approvals_server
    bearer = token(server, new_id(f"{transport}-{protocol}"))
    session_id = new_id("sess")
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("A", "approvals", bearer, transport=transport, protocol=protocol)
        remember(hubs, "J", session_id, KEPT, OTHER)
        task_id = hubs.send("J", f"forget {KEPT}", session_id)["taskId"]
        requested = hubs.wait("A", "ApprovalRequested", taskId=task_id)
        edited = hubs.call("A", "Edit", {"approvalId": requested["id"],
                                         "modifiedParams": {"text": OTHER}})
        resolved = hubs.wait("A", "ApprovalResolved", id=requested["id"])
        hubs.wait_done("J", task_id)
    stored = rest_ok(server, bearer, f"/approvals/{requested['id']}")
    assert set(requested) == FIELDS["ApprovalRequested"], requested
    for field in ("id", "taskId", "sessionId", "agentId", "toolName", "params", "reason"):
        assert requested[field] == stored[field], field
    for field in ("createdAt", "expiresAt"):
        assert parse_time(requested[field]) == parse_time(stored[field]), field
    assert edited is not None
    assert resolved == {"id": requested["id"], "outcome": "edited",
                        "outcomeDetail": {"text": OTHER}}
    assert reply_of(server, bearer, session_id, task_id) == f"Deleted the note “{OTHER}”."


def test_rest_approvals_need_a_token(approvals_server: ServerProcess) -> None:
    for method, path in (("GET", "/approvals"), ("GET", "/approvals/appr_x"),
                         ("POST", "/approvals/appr_x/decision"), ("GET", "/info-requests"),
                         ("POST", "/info-requests/info_x/response")):
        response = httpx.request(method, f"{approvals_server.url}{path}", json={},
                                 timeout=5.0, trust_env=False)
        assert response.status_code == 401, (method, path, response.status_code)
