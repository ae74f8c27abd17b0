"""The tasks hub (``/hubs/tasks``, issue 12): a user's task ledger across every session,
and ``GET /tasks``, with the official ``@microsoft/signalr`` client under Node against a
real ``voisnap serve`` process on 127.0.0.1.

One scenario (``ledger``), run once, gives the tests below their material. Ana has a chat
device ``C``, two tasks-hub connections ``W`` and ``W2`` and an approvals connection ``A``;
Omar (another user of the tenant) has a chat device ``CO`` and a tasks-hub connection ``X``.

1. Omar's task waits for an approval; Ana's ``T_wait`` (session 1) waits for one too, and
   ``T_done`` (session 1) completes: then ``W``, ``W2`` and ``X`` call ``Watch``.
2. In session 2: ``T2`` completes, ``T_fail`` fails (an agent whose endpoint is closed);
   in session 1 ``T_run`` streams and is cancelled while it runs; then ``T_wait`` is
   cancelled while it waits (its approval resolves as ``cancelled``); in session 2
   ``T_approved`` waits for an approval, is approved, resumes and completes.
3. ``W`` calls ``Unwatch``; ``T_after`` runs. ``W2``, still watching, receives its events:
   the same fan-out would have reached ``W``, and a round trip on ``W`` (a fence) proves
   that nothing did.

Drivers and helpers are test_approvals.py's (``js/approvals_devices.mjs``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.test_approvals import (
    SETTINGS,
    devices,
    new_id,
    rest,
    rest_ok,
    task_of,
    token,
)
from tests.conformance.test_chat import agents_file
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

LEDGER_EVENTS = {"TaskQueued", "TaskStarted", "TaskCompleted", "TaskFailed", "TaskCancelled"}
# docs/hubs/chat.md: the shapes of the chat hub's events.
FIELDS = {
    "TaskQueued": {"taskId", "sessionId"},
    "TaskStarted": {"taskId", "startedAt"},
    "TaskCompleted": {"taskId", "durationMs", "tokensUsed"},
    "TaskFailed": {"taskId", "error"},
    "TaskCancelled": {"taskId", "cancelledBy"},
}
LONG = "hello there, " + " ".join(f"word{i}" for i in range(60))


@pytest.fixture(scope="module")
def tasks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("tasks")
    settings = {**SETTINGS, "agent_token_delay": "0.02"}
    args = ["--agents-file", str(agents_file(directory))]
    with ServerProcess(directory / "data", settings, args) as server:
        yield server


@pytest.fixture(scope="module")
def ledger(tasks_server: ServerProcess) -> dict[str, Any]:
    server = tasks_server
    ana, omar = new_id("ana"), new_id("omar")
    tokens = {"ana": token(server, ana), "omar": token(server, omar)}
    s1, s2 = new_id("s1"), new_id("s2")
    ids: dict[str, str] = {}
    seen: dict[str, Any] = {"ana": ana, "omar": omar, "tokens": tokens, "s1": s1, "s2": s2,
                            "ids": ids}
    with devices(server) as hubs:
        for device, hub, user in (("C", "chat", "ana"), ("W", "tasks", "ana"),
                                  ("W2", "tasks", "ana"), ("A", "approvals", "ana"),
                                  ("CO", "chat", "omar"), ("X", "tasks", "omar")):
            hubs.open(device, hub, tokens[user])
        # 1. what the snapshots are taken of
        ids["T_omar"] = hubs.send("CO", "forget my keys", new_id("so"))["taskId"]
        hubs.wait("CO", "AgentStatus", taskId=ids["T_omar"], status="waiting_approval")
        ids["T_wait"] = hubs.send("C", "forget the milk", s1)["taskId"]
        approval = hubs.wait("A", "ApprovalRequested", taskId=ids["T_wait"])
        ids["T_done"] = hubs.send("C", "what is 1 + 1", s1)["taskId"]
        hubs.wait_done("C", ids["T_done"])
        seen["snapshots"] = {device: hubs.call(device, "Watch") for device in ("W", "W2", "X")}
        seen["rest_wait"] = task_of(server, tokens["ana"], ids["T_wait"])
        seen["rest_omar"] = task_of(server, tokens["omar"], ids["T_omar"])
        # 2. events in both sessions
        ids["T2"] = hubs.send("C", "what is 2 + 3", s2)["taskId"]
        hubs.wait("W", "TaskCompleted", taskId=ids["T2"])
        ids["T_fail"] = hubs.call("C", "SendMessage", {
            "sessionId": s2, "agentId": "offline", "content": "are you there?",
            "channelId": "webchat", "attachments": [], "isStreaming": True})["taskId"]
        hubs.wait("W", "TaskFailed", taskId=ids["T_fail"])
        ids["T_run"] = hubs.send("C", LONG, s1)["taskId"]
        hubs.wait("C", "StreamChunk", taskId=ids["T_run"])
        assert hubs.call("C", "CancelTask", {"taskId": ids["T_run"]}) is None
        hubs.wait("W", "TaskCancelled", taskId=ids["T_run"])
        assert hubs.call("C", "CancelTask", {"taskId": ids["T_wait"]}) is None
        hubs.wait("W", "TaskCancelled", taskId=ids["T_wait"])
        seen["approval_resolved"] = hubs.wait("A", "ApprovalResolved", id=approval["id"])
        seen["approval"] = rest_ok(server, tokens["ana"], f"/approvals/{approval['id']}")
        seen["chat_cancelled"] = hubs.wait("C", "TaskCancelled", taskId=ids["T_wait"])
        seen["late"] = hubs.invoke("A", "Approve", {"approvalId": approval["id"]})
        # a task that waits, is approved, and resumes while watched
        ids["T_approved"] = hubs.send("C", "forget the bread", s2)["taskId"]
        again = hubs.wait("A", "ApprovalRequested", taskId=ids["T_approved"])
        hubs.call("A", "Approve", {"approvalId": again["id"]})
        hubs.wait("W", "TaskCompleted", taskId=ids["T_approved"])
        # 3. Unwatch
        seen["unwatched"] = hubs.invoke("W", "Unwatch")
        ids["T_after"] = hubs.send("C", "what is 3 + 4", s2)["taskId"]
        hubs.wait("W2", "TaskCompleted", taskId=ids["T_after"])
        hubs.fence("W", "X")
        seen["events"] = {device: hubs.events(device) for device in ("W", "W2", "X")}
    seen["tasks"] = {name: task_of(server, tokens["omar" if name == "T_omar" else "ana"], id_)
                     for name, id_ in ids.items()}
    return seen


def ledger_of(seen: dict[str, Any], device: str, name: str) -> list[dict[str, Any]]:
    task_id = seen["ids"][name]
    return [e for e in seen["events"][device] if e["payload"].get("taskId") == task_id]


def test_watch_snapshot_is_unfinished_tasks_as_rest_returns_them(ledger: dict[str, Any]) -> None:
    """Ana's snapshot: T_wait only (T_done has finished; Omar's task is not hers), exactly
    as GET /tasks/{id} returned it; Omar's: his waiting task."""
    assert ledger["snapshots"]["W"] == [ledger["rest_wait"]]
    assert ledger["snapshots"]["W2"] == [ledger["rest_wait"]]
    assert ledger["rest_wait"]["state"] == "waiting"
    assert ledger["snapshots"]["X"] == [ledger["rest_omar"]]


@pytest.mark.parametrize("name", ["T2", "T_fail", "T_approved"])
def test_watch_events_have_chat_hub_shapes(ledger: dict[str, Any], name: str) -> None:
    """Each task once: queued, started, then its end (a task that waited and resumed is
    not queued or started again)."""
    events = ledger_of(ledger, "W", name)
    ending = "TaskFailed" if name == "T_fail" else "TaskCompleted"
    assert [e["target"] for e in events] == ["TaskQueued", "TaskStarted", ending], events
    for event in events:
        assert set(event["payload"]) == FIELDS[event["target"]], event
    task = ledger["tasks"][name]
    queued, started, ended = (e["payload"] for e in events)
    assert queued["sessionId"] == ledger["s2"]
    assert started["startedAt"] == task["startedAt"]
    if ending == "TaskCompleted":
        assert task["state"] == "completed"
        assert (ended["durationMs"], ended["tokensUsed"]) == (task["durationMs"],
                                                              task["tokensUsed"])
    else:
        assert ended["error"] == task["error"] and task["state"] == "failed"


def test_watch_carries_only_the_ledger_events(ledger: dict[str, Any]) -> None:
    """No stream chunks, statuses or tool calls: those are the chat hub's."""
    for device in ("W", "W2", "X"):
        assert {e["target"] for e in ledger["events"][device]} <= LEDGER_EVENTS, device


def test_watch_events_cover_every_session(ledger: dict[str, Any]) -> None:
    sessions = {e["payload"]["sessionId"] for e in ledger["events"]["W2"]
                if e["target"] == "TaskQueued"}
    assert sessions == {ledger["s1"], ledger["s2"]}


def test_cancel_running_task_sends_task_cancelled_with_cancelled_by(
    ledger: dict[str, Any],
) -> None:
    events = ledger_of(ledger, "W", "T_run")
    assert [e["target"] for e in events] == ["TaskQueued", "TaskStarted", "TaskCancelled"]
    assert events[-1]["payload"] == {"taskId": ledger["ids"]["T_run"],
                                     "cancelledBy": ledger["ana"]}
    task = ledger["tasks"]["T_run"]
    assert (task["state"], task["cancelledBy"]) == ("cancelled", ledger["ana"])


def test_cancel_waiting_task_sends_task_cancelled_and_cancels_its_approval(
    ledger: dict[str, Any],
) -> None:
    events = ledger_of(ledger, "W", "T_wait")
    assert [e["payload"] for e in events] == [
        {"taskId": ledger["ids"]["T_wait"], "cancelledBy": ledger["ana"]}]
    task = ledger["tasks"]["T_wait"]
    assert (task["state"], task["cancelledBy"]) == ("cancelled", ledger["ana"])
    resolved = ledger["approval_resolved"]
    assert (resolved["outcome"], resolved["outcomeDetail"]) == ("cancelled", None)
    assert ledger["approval"]["status"] == "cancelled"
    assert ledger["chat_cancelled"] == events[0]["payload"]
    late = ledger["late"]
    assert not late["ok"] and "cancelled" in late["error"], late


def test_unwatch_stops_the_events(ledger: dict[str, Any]) -> None:
    assert ledger["unwatched"]["ok"], ledger["unwatched"]
    assert [e["target"] for e in ledger_of(ledger, "W2", "T_after")] == [
        "TaskQueued", "TaskStarted", "TaskCompleted"]
    assert ledger_of(ledger, "W", "T_after") == []


def test_another_users_tasks_never_appear(ledger: dict[str, Any]) -> None:
    ana_tasks = {id_ for name, id_ in ledger["ids"].items() if name != "T_omar"}
    seen_by_omar = {e["payload"]["taskId"] for e in ledger["events"]["X"]}
    assert not seen_by_omar & ana_tasks
    assert ledger["ids"]["T_omar"] not in str(ledger["events"]["W"])
    assert ledger["ids"]["T_omar"] not in str(ledger["events"]["W2"])
    assert ledger["ids"]["T_omar"] not in str(ledger["snapshots"]["W"])
    assert not ana_tasks & {t["taskId"] for t in ledger["snapshots"]["X"]}


# -- GET /tasks --------------------------------------------------------------------------------


def test_rest_tasks_lists_the_ledger_newest_first(tasks_server: ServerProcess,
                                                  ledger: dict[str, Any]) -> None:
    listed = rest_ok(tasks_server, ledger["tokens"]["ana"], "/tasks")
    order = ["T_after", "T_approved", "T_run", "T_fail", "T2", "T_done", "T_wait"]
    assert [t["taskId"] for t in listed] == [ledger["ids"][name] for name in order]
    assert listed == [ledger["tasks"][name] for name in order]


@pytest.mark.parametrize(("status", "names"), [
    ("cancelled", ["T_run", "T_wait"]), ("completed", ["T_after", "T_approved", "T2", "T_done"]),
    ("failed", ["T_fail"]), ("waiting", []), ("queued", [])])
def test_rest_tasks_filters_by_status(tasks_server: ServerProcess, ledger: dict[str, Any],
                                      status: str, names: list[str]) -> None:
    listed = rest_ok(tasks_server, ledger["tokens"]["ana"], "/tasks", status=status)
    assert [t["taskId"] for t in listed] == [ledger["ids"][name] for name in names]


def test_rest_tasks_pages_with_limit_and_before(tasks_server: ServerProcess,
                                                ledger: dict[str, Any]) -> None:
    bearer = ledger["tokens"]["ana"]
    everything = rest_ok(tasks_server, bearer, "/tasks")
    pages, page = [], rest_ok(tasks_server, bearer, "/tasks", limit=4)
    while page:
        pages.append(page)
        page = rest_ok(tasks_server, bearer, "/tasks", limit=4, before=page[-1]["taskId"])
    assert [len(p) for p in pages] == [4, 3]
    assert pages[0] + pages[1] == everything


def test_rest_tasks_of_another_user(tasks_server: ServerProcess, ledger: dict[str, Any]) -> None:
    omar = ledger["tokens"]["omar"]
    listed = rest_ok(tasks_server, omar, "/tasks")
    assert [t["taskId"] for t in listed] == [ledger["ids"]["T_omar"]]
    assert rest_ok(tasks_server, omar, "/tasks", status="waiting") == listed
    response = rest(tasks_server, omar, "GET", f"/tasks/{ledger['ids']['T2']}")
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("query", [{"status": "sleeping"}, {"limit": "0"}, {"limit": "201"},
                                   {"limit": "ten"}])
def test_rest_tasks_bad_query_is_400(tasks_server: ServerProcess, ledger: dict[str, Any],
                                     query: dict[str, str]) -> None:
    response = rest(tasks_server, ledger["tokens"]["ana"], "GET", "/tasks", **query)
    assert response.status_code == 400, response.text
