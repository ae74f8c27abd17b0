"""The chat hub (``/hubs/chat``) end to end, with the official ``@microsoft/signalr``
client under Node against a real ``voisnap serve`` process on 127.0.0.1.

Seed 000, sections "Chat hub" (SendMessage, CancelTask, JoinSession and the
server-to-client events, their names, payload fields and order), "Session
scoping" (session groups, auto-join on create, ownership checked on join,
legacy clients), "SessionNotification" (user-wide activity), "Groups" (user,
session and tenant scoping) and "Reconnection" (tasks outlive connections,
REST catch-up with ``GET /sessions``, ``GET /sessions/{id}/messages`` and
``GET /tasks/{id}``).

How it runs:

- ``js/chat_devices.mjs`` holds any number of "devices" (HubConnections of the
  official client) and does what the test writes on its stdin, one JSON
  command at a time; every answer is a line the test waits for with a
  deadline (``tests/support/node.py``). The test, not the script, decides.
- One server per module (``chat_server``), its agent writing a word every
  ``TOKEN_DELAY`` s; every test uses its own users, so tests cannot see each
  other's events. The restart tests get their own servers (``start_server``).
  The built-in agent's introduction quotes the user's message, so the length
  of a reply, and with it the time a stream takes, is chosen by the message.
- Nothing waits on the wall clock. "Did not receive" is proven behind a fence:
  the task's last event (the user-wide ``SessionNotification``) on a device of
  the same user, or, for other users, a round trip that arrives behind
  anything sent before it (``fence`` in ``chat_devices.mjs``).
- REST goes through httpx with the same tokens (minted with the data dir's
  secret, exactly as ``voisnap token`` does, without a process per token).
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.node import NodeScenario
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

TOKEN_DELAY = 0.05  # seconds between the built-in agent's words
SETTINGS = {**FAST_SETTINGS, "agent_token_delay": str(TOKEN_DELAY)}
# FAST_SETTINGS close a client silent for 3 s after its first Ping, so the
# client pings every second (as in test_js_client.py).
CLIENT = {"transport": "WebSockets", "protocol": "json", "keepAliveMs": 1000}
TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"]
RECONNECT_DELAYS = [0, 100, 200, 500] + [1000] * 10
WAIT = 10.0  # the longest any one event may take to come
SCENARIO_TIMEOUT = 45.0

TASK_EVENTS = (
    "TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ToolCallStarted",
    "ToolCallCompleted", "ReceiveMessage", "TaskCompleted", "TaskFailed", "TaskCancelled",
)
# Seed 000, "Chat hub", "SessionNotification", "Tasks hub": the payload of each event.
FIELDS = {
    "TaskQueued": {"taskId", "sessionId"},
    "TaskStarted": {"taskId", "startedAt"},
    "AgentStatus": {"taskId", "status", "detail"},
    "StreamChunk": {"taskId", "delta", "isFinal"},
    "ToolCallStarted": {"taskId", "toolName", "argsHash"},
    "ToolCallCompleted": {"taskId", "toolName", "durationMs", "ok"},
    "ReceiveMessage": {"messageId", "sessionId", "role", "content"},  # + toolCalls?
    "TaskCompleted": {"taskId", "durationMs", "tokensUsed"},
    "TaskFailed": {"taskId", "error"},
    "TaskCancelled": {"taskId", "cancelledBy"},
    "SessionUpdated": {"sessionId", "title", "updatedAt"},
    "SessionNotification": {"sessionId", "kind", "refId", "success", "excerpt", "timestamp"},
}
NOT_YOURS = "Session '{}' does not exist or is not yours."
ENDINGS = ["taskCompleted", "taskFailed", "taskCancelled"]  # SessionNotification kinds


def long_message(words: int = 25) -> str:
    """A message the built-in agent answers with its introduction, which
    quotes it: about ``words + 27`` streamed words, TOKEN_DELAY s apart."""
    return "hello there, " + " ".join(f"word{i}" for i in range(words))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- the server, tokens and REST -------------------------------------------------------------


def agents_file(directory: Path) -> Path:
    """``retired``: known but inactive; ``offline``: an OpenAI-compatible agent
    whose endpoint refuses connections (a closed loopback port), so its tasks fail."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    path = directory / "agents.toml"
    path.write_text(
        "[agents.retired]\nbackend = \"builtin\"\nactive = false\n\n"
        "[agents.offline]\nbackend = \"openai\"\n"
        f"base_url = \"http://127.0.0.1:{closed_port}/v1\"\nmodel = \"none\"\n"
    )
    return path


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("chat")
    args = ["--agents-file", str(agents_file(directory))]
    with ServerProcess(directory / "data", SETTINGS, args) as server:
        yield server


def token(server: ServerProcess, user: str, tenant: str = "acme", ttl: float = 3600) -> str:
    """What ``voisnap token --user user --tenant tenant`` prints (same claims,
    same secret from the data dir), without a process per token."""
    secret = (server.data_dir / "jwt-secret").read_bytes().strip()
    now = int(time.time())
    claims = {"sub": user, "tid": tenant, "roles": [], "iat": now, "exp": int(now + ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


def rest(server: ServerProcess, bearer: str | None, path: str, **query: Any) -> httpx.Response:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    return httpx.get(f"{server.url}{path}", headers=headers, params=query, timeout=5.0,
                     trust_env=False)  # 127.0.0.1 directly, whatever proxy the environment names


def rest_ok(server: ServerProcess, bearer: str, path: str, **query: Any) -> Any:
    response = rest(server, bearer, path, **query)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def messages_of(server: ServerProcess, bearer: str, session_id: str) -> list[dict[str, Any]]:
    return rest_ok(server, bearer, f"/sessions/{session_id}/messages", limit=200)


def wait_for_state(
    server: ServerProcess, bearer: str, task_id: str, state: str, timeout: float = WAIT
) -> dict[str, Any]:
    """The task once REST shows it in ``state`` (asked again until then, bounded)."""
    deadline = time.monotonic() + timeout
    while (task := task_of(server, bearer, task_id))["state"] != state:
        assert time.monotonic() < deadline, f"{task_id} is still {task['state']}: {task}"
        time.sleep(0.1)  # a REST poll's interval, not a wait for an event
    return task


def task_of(server: ServerProcess, bearer: str, task_id: str) -> dict[str, Any]:
    return rest_ok(server, bearer, f"/tasks/{task_id}")


def message(content: str, session_id: str | None, **fields: Any) -> dict[str, Any]:
    """SendMessage's argument, as the seed writes it ("Chat hub")."""
    return {"sessionId": session_id, "agentId": "sophon", "content": content,
            "channelId": "webchat", "attachments": [], "isStreaming": True, **fields}


# -- devices ---------------------------------------------------------------------------------


class Devices:
    """The devices of one ``chat_devices.mjs`` run, one command at a time."""

    def __init__(self, scenario: NodeScenario) -> None:
        self.scenario = scenario
        self.killed = False
        self._ids = itertools.count()

    def _do(self, answer: str, timeout: float = WAIT, **command: Any) -> dict[str, Any]:
        self.scenario.send_line(json.dumps(command))
        return self.scenario.wait_for(answer, timeout=timeout + 2)

    def _id(self) -> str:
        return str(next(self._ids))

    def open(self, device: str, bearer: str) -> str:
        opened = self._do(f"opened:{device}", op="open", device=device, token=bearer)
        return opened["connectionId"]

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

    def send(self, device: str, content: str, session_id: str | None = None,
             **fields: Any) -> dict[str, Any]:
        """SendMessage; its result {taskId, sessionId, messageId}."""
        return self.call(device, "SendMessage", message(content, session_id, **fields))

    def send_refused(self, device: str, content: str, session_id: str | None = None,
                     **fields: Any) -> str:
        return self.refused(device, "SendMessage", message(content, session_id, **fields))

    def wait(self, device: str, target: str, count: int = 1, timeout: float = WAIT,
             **match: Any) -> dict[str, Any]:
        """The count-th ``target`` event whose payload has the fields of ``match``."""
        command_id = self._id()
        awaited = self._do(f"awaited:{command_id}", timeout, op="await", id=command_id,
                           device=device, target=target, match=match, count=count,
                           ms=int(timeout * 1000))
        return awaited["payload"]

    def wait_done(self, device: str, task_id: str, kind: str = "taskCompleted") -> dict[str, Any]:
        """The task's last event: the SessionNotification that it ended (user-wide,
        sent after every per-task event, so all of those have arrived too),
        which must say it ended as ``kind``."""
        ended = self.wait(device, "SessionNotification", kind=ENDINGS, refId=task_id)
        assert ended["kind"] == kind, f"task {task_id} ended as {ended['kind']}: {ended}"
        return ended

    def fence(self, *devices: str) -> None:
        command_id = self._id()
        self._do(f"fenced:{command_id}", op="fence", id=command_id, devices=list(devices))

    def log(self, device: str) -> dict[str, Any]:
        command_id = self._id()
        return self._do(f"log:{command_id}", op="log", id=command_id, device=device)

    def events(self, device: str) -> list[dict[str, Any]]:
        """[{target, payload}] in the order the client's handlers saw them."""
        return self.log(device)["events"]

    def stop(self, device: str) -> None:
        self._do(f"stopped:{device}", op="stop", device=device)

    def kill(self) -> None:
        """Every device vanishes at once: the Node process dies, its sockets just end."""
        self.scenario.kill()
        self.killed = True

    def end(self) -> None:
        """Stop every device; the script must then end cleanly."""
        if self.killed:
            return
        self.scenario.send_line(json.dumps({"op": "end"}))
        self.scenario.result()


@contextlib.contextmanager
def devices(server: ServerProcess, timeout: float = SCENARIO_TIMEOUT, client: Any = None,
            **tokens: str) -> Iterator[Devices]:
    """A ``chat_devices.mjs`` run with one device per keyword ({name: token});
    ``client`` overrides CLIENT (transport, protocol)."""
    params = {"url": server.hub_url("chat"), **CLIENT, **(client or {}), "devices": tokens}
    with NodeScenario("chat_devices.mjs", params, timeout) as scenario:
        scenario.wait_for("ready")
        chat = Devices(scenario)
        yield chat
        chat.end()


# -- reading what a device received ----------------------------------------------------------


def of_task(events: list[dict[str, Any]], task_id: str,
            reply_id: str | None = None) -> list[dict[str, Any]]:
    """The per-task events of one task (ReceiveMessage carries the reply's
    message id, not the task's: ``reply_id`` names it)."""
    return [
        event for event in events
        if event["target"] in TASK_EVENTS
        and (event["payload"].get("taskId") == task_id
             or (reply_id is not None and event["payload"].get("messageId") == reply_id))
    ]


def targets(events: list[dict[str, Any]]) -> list[str]:
    return [event["target"] for event in events]


def chunks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event["payload"] for event in events if event["target"] == "StreamChunk"]


def streamed(events: list[dict[str, Any]]) -> str:
    return "".join(chunk["delta"] for chunk in chunks(events))


def notifications(events: list[dict[str, Any]], session_id: str) -> list[dict[str, Any]]:
    return [event["payload"] for event in events
            if event["target"] == "SessionNotification"
            and event["payload"]["sessionId"] == session_id]


def mentions(events: list[dict[str, Any]], *ids: str) -> list[dict[str, Any]]:
    """Events whose payload names any of ``ids`` (task, session or message)."""
    return [event for event in events if set(ids) & set(map(str, event["payload"].values()))]


# Seed order, one letter per event: TaskQueued, TaskStarted, AgentStatus...,
# StreamChunk... (tool calls around them), the final chunk, ReceiveMessage, TaskCompleted.
LETTERS = {"TaskQueued": "Q", "TaskStarted": "S", "AgentStatus": "A", "StreamChunk": "C",
           "ToolCallStarted": "T", "ToolCallCompleted": "D", "ReceiveMessage": "R",
           "TaskCompleted": "F"}
SEED_ORDER = re.compile(r"QSA[ACTD]*CRF")


def assert_seed_order(task_events: list[dict[str, Any]]) -> None:
    word = "".join(LETTERS.get(target, "?") for target in targets(task_events))
    assert SEED_ORDER.fullmatch(word), f"order {targets(task_events)}"
    tools = re.sub("[^TD]", "", word)
    assert tools == "TD" * (len(tools) // 2), f"tool calls not paired: {targets(task_events)}"
    finals = [chunk["isFinal"] for chunk in chunks(task_events)]
    assert finals == [False] * (len(finals) - 1) + [True], finals


# -- session scoping: two devices of one user, and strangers ---------------------------------


@pytest.fixture(scope="module")
def scoping(chat_server: ServerProcess) -> dict[str, Any]:
    """Seed 000, "Session scoping", run once for the tests below. Alice has two
    devices: A joins S1, B joins S2. Then A sends a message in S1. Mallory
    (acme) and alice@globex (another tenant, the same user id) try to join S1
    and watch."""
    server = chat_server
    alice = server.token("alice", "acme")  # from the real `voisnap token` command
    stranger_tokens = {"M": token(server, "mallory"), "G": token(server, "alice", "globex")}
    s1, s2 = new_id("s1"), new_id("s2")
    with devices(server, A=alice, B=alice, **stranger_tokens) as chat:
        first = chat.send("A", "what is 2 + 3", s1)
        chat.wait_done("A", first["taskId"])
        second = chat.send("B", "what is 4 + 5", s2)
        chat.wait_done("B", second["taskId"])
        assert chat.call("A", "JoinSession", s1) is None
        assert chat.call("B", "JoinSession", s2) is None
        joins = {
            name: {"S1": chat.invoke(name, "JoinSession", s1),
                   "unknown": chat.invoke(name, "JoinSession", "sess-nobody-has-this")}
            for name in ("M", "G")
        }
        sent = chat.send("A", "hello there, who are you?", s1)
        chat.wait_done("A", sent["taskId"])
        chat.wait_done("B", sent["taskId"])
        chat.fence("M", "G")
        received = {name: chat.events(name) for name in ("A", "B", "M", "G")}
        wire = chat.log("A")["wire"]
    task = task_of(server, alice, sent["taskId"])
    return {"s1": s1, "s2": s2, "sent": sent, "task": task, "received": received, "wire": wire,
            "joins": joins, "messages": messages_of(server, alice, s1)}


def test_scoping_joined_device_receives_whole_stream(scoping: dict[str, Any]) -> None:
    task = scoping["task"]
    stream = of_task(scoping["received"]["A"], task["taskId"], task["resultMessageId"])
    assert_seed_order(stream)
    reply = scoping["messages"][-1]
    assert reply["role"] == "assistant" and reply["taskId"] == task["taskId"]
    assert streamed(stream) == reply["content"]
    assert "who are you?" in reply["content"]


def test_scoping_device_joined_to_other_session_receives_no_chunks(
    scoping: dict[str, Any],
) -> None:
    """B is joined to S2: none of S1's per-task events reach it (checked once
    its SessionNotification taskCompleted, sent after them all, has come)."""
    task = scoping["task"]
    leaked = of_task(scoping["received"]["B"], task["taskId"], task["resultMessageId"])
    assert chunks(leaked) == []
    assert leaked == []


def test_scoping_device_joined_elsewhere_receives_session_notification(
    scoping: dict[str, Any],
) -> None:
    task_id, s1 = scoping["task"]["taskId"], scoping["s1"]
    seen = [(n["kind"], n["refId"], n["success"]) for n in notifications(
        scoping["received"]["B"], s1) if n["refId"] == task_id]
    assert seen == [("taskStarted", task_id, None), ("taskCompleted", task_id, True)]
    completed = notifications(scoping["received"]["B"], s1)[-1]
    assert completed["excerpt"] and scoping["messages"][-1]["content"].startswith(
        completed["excerpt"].rstrip("…"))


def test_session_updated_reaches_every_device_of_the_user(scoping: dict[str, Any]) -> None:
    """SessionUpdated is user-wide: B (joined to S2 only) hears of S1's activity."""
    for device in ("A", "B"):
        updates = [e["payload"] for e in scoping["received"][device]
                   if e["target"] == "SessionUpdated"
                   and e["payload"]["sessionId"] == scoping["s1"]]
        assert updates, f"{device} got no SessionUpdated for S1"
        assert set(updates[-1]) == FIELDS["SessionUpdated"]
        assert updates[-1]["title"] == "what is 2 + 3"  # the session's first message


@pytest.mark.parametrize("stranger", ["M", "G"], ids=["other-user", "same-user-id-other-tenant"])
def test_scoping_strangers_receive_nothing_of_the_session(
    scoping: dict[str, Any], stranger: str,
) -> None:
    ids = (scoping["s1"], scoping["task"]["taskId"], scoping["sent"]["messageId"])
    assert mentions(scoping["received"][stranger], *ids) == []


@pytest.mark.parametrize("stranger", ["M", "G"], ids=["other-user", "same-user-id-other-tenant"])
def test_join_session_of_stranger_is_refused_like_unknown_session(
    scoping: dict[str, Any], stranger: str,
) -> None:
    """Mallory (acme) and alice@globex cannot join alice@acme's S1, and the
    error is the one for a session that does not exist (ids cannot be probed)."""
    joins = scoping["joins"][stranger]
    assert not joins["S1"]["ok"] and not joins["unknown"]["ok"], joins
    assert NOT_YOURS.format(scoping["s1"]) in joins["S1"]["error"], joins
    assert joins["S1"]["error"].replace(scoping["s1"], "X") == joins["unknown"]["error"].replace(
        "sess-nobody-has-this", "X")


# -- the stream of one task: contents, order, payload fields ----------------------------------


@pytest.fixture(scope="module", params=TRANSPORTS)
def tool_stream(chat_server: ServerProcess, request: pytest.FixtureRequest) -> dict[str, Any]:
    """One legacy device asks "what is 12 * 7": a tool call, then a streamed
    reply; once per transport (seed 000, "Transport selection"), the JSON protocol."""
    bearer = token(chat_server, f"stream-user-{request.param}")
    with devices(chat_server, client={"transport": request.param}, L=bearer) as chat:
        sent = chat.send("L", "what is 12 * 7")
        chat.wait_done("L", sent["taskId"])
        log = chat.log("L")
    task = task_of(chat_server, bearer, sent["taskId"])
    return {"sent": sent, "task": task, "events": log["events"], "wire": log["wire"],
            "messages": messages_of(chat_server, bearer, sent["sessionId"])}


def test_stream_chunks_concatenate_to_received_message_and_rest(
    tool_stream: dict[str, Any],
) -> None:
    task = tool_stream["task"]
    stream = of_task(tool_stream["events"], task["taskId"], task["resultMessageId"])
    received = [e["payload"] for e in stream if e["target"] == "ReceiveMessage"]
    assert len(received) == 1
    user, reply = tool_stream["messages"]
    assert (user["role"], user["content"]) == ("user", "what is 12 * 7")
    assert user["messageId"] == tool_stream["sent"]["messageId"]
    assert reply["messageId"] == received[0]["messageId"] == task["resultMessageId"]
    assert streamed(stream) == received[0]["content"] == reply["content"] == "12 * 7 = 84."
    assert received[0]["role"] == "assistant"
    assert received[0]["sessionId"] == tool_stream["sent"]["sessionId"]


def test_stream_last_chunk_is_final(tool_stream: dict[str, Any]) -> None:
    stream = chunks(of_task(tool_stream["events"], tool_stream["task"]["taskId"]))
    assert len(stream) > 1
    assert stream[-1]["isFinal"] is True
    assert all(chunk["isFinal"] is False for chunk in stream[:-1])


def test_stream_events_arrive_in_seed_order(tool_stream: dict[str, Any]) -> None:
    task = tool_stream["task"]
    stream = of_task(tool_stream["events"], task["taskId"], task["resultMessageId"])
    assert_seed_order(stream)
    tools = [e["payload"] for e in stream if e["target"].startswith("ToolCall")]
    assert [t["toolName"] for t in tools] == ["calculator", "calculator"]
    statuses = [e["payload"]["status"] for e in stream if e["target"] == "AgentStatus"]
    assert statuses[0] == "thinking" and "calling_tool" in statuses


def test_stream_tool_call_recorded_in_received_message(tool_stream: dict[str, Any]) -> None:
    task = tool_stream["task"]
    stream = of_task(tool_stream["events"], task["taskId"], task["resultMessageId"])
    received = next(e["payload"] for e in stream if e["target"] == "ReceiveMessage")
    assert received["toolCalls"] == [
        {"toolName": "calculator", "arguments": {"expression": "12 * 7"}, "ok": True}]
    assert tool_stream["messages"][-1]["toolCalls"] == received["toolCalls"]
    completed = next(e["payload"] for e in stream if e["target"] == "ToolCallCompleted")
    assert completed["ok"] is True and completed["durationMs"] >= 0


def test_send_message_result_comes_after_task_queued(tool_stream: dict[str, Any]) -> None:
    """On the wire: the TaskQueued invocation, then the Completion of SendMessage."""
    task_id = tool_stream["task"]["taskId"]
    wire = tool_stream["wire"]
    queued = [i for i, r in enumerate(wire) if r.get("type") == 1
              and r["target"] == "TaskQueued" and r["arguments"][0]["taskId"] == task_id]
    result = [i for i, r in enumerate(wire) if r.get("type") == 3
              and (r.get("result") or {}).get("taskId") == task_id]
    assert len(queued) == 1 and len(result) == 1, wire
    assert queued[0] < result[0]
    assert wire[result[0]]["result"] == tool_stream["sent"]
    assert set(tool_stream["sent"]) == {"taskId", "sessionId", "messageId"}


def test_chat_events_have_seed_names_and_payload_fields(tool_stream: dict[str, Any]) -> None:
    wire = [r for r in tool_stream["wire"] if r.get("type") == 1]
    assert {r["target"] for r in wire} <= set(FIELDS), {r["target"] for r in wire}
    events = tool_stream["events"]
    assert {e["target"] for e in events} == set(FIELDS) - {"TaskFailed", "TaskCancelled"}
    for event in events:
        fields = set(event["payload"])
        if event["target"] == "ReceiveMessage":
            fields.discard("toolCalls")
        assert fields == FIELDS[event["target"]], event


def test_task_completed_reports_duration_and_tokens(tool_stream: dict[str, Any]) -> None:
    task = tool_stream["task"]
    completed = next(e["payload"] for e in tool_stream["events"]
                     if e["target"] == "TaskCompleted")
    assert completed["taskId"] == task["taskId"]
    assert completed["durationMs"] == task["durationMs"] >= 0
    assert completed["tokensUsed"] == task["tokensUsed"] > 0
    assert task["state"] == "completed"
    started = next(e["payload"] for e in tool_stream["events"] if e["target"] == "TaskStarted")
    assert started["startedAt"] == task["startedAt"]


def test_stream_over_messagepack_has_seed_names_and_fields(chat_server: ServerProcess) -> None:
    """The MessagePack hub protocol carries the same events, with the same
    camelCase fields, as JSON."""
    bearer = token(chat_server, "msgpack-user")
    with devices(chat_server, client={"protocol": "messagepack"}, L=bearer) as chat:
        sent = chat.send("L", "what is 12 * 7")
        chat.wait_done("L", sent["taskId"])
        events = chat.events("L")
    assert set(sent) == {"taskId", "sessionId", "messageId"}
    reply = messages_of(chat_server, bearer, sent["sessionId"])[-1]
    stream = of_task(events, sent["taskId"], reply["messageId"])
    assert_seed_order(stream)
    assert streamed(stream) == stream[-2]["payload"]["content"] == reply["content"]
    for event in events:
        fields = set(event["payload"]) - ({"toolCalls"} if event["target"] == "ReceiveMessage"
                                          else set())
        assert fields == FIELDS[event["target"]], event


def test_send_message_not_streaming_sends_no_chunks(chat_server: ServerProcess) -> None:
    """StreamChunk only "if streaming enabled": the reply still comes whole."""
    bearer = token(chat_server, "no-stream-user")
    with devices(chat_server, L=bearer) as chat:
        sent = chat.send("L", "what is 3 * 3", isStreaming=False)
        chat.wait_done("L", sent["taskId"])
        events = chat.events("L")
    reply = messages_of(chat_server, bearer, sent["sessionId"])[-1]
    stream = of_task(events, sent["taskId"], reply["messageId"])
    assert chunks(stream) == []
    assert targets(stream)[-2:] == ["ReceiveMessage", "TaskCompleted"]
    assert stream[-2]["payload"]["content"] == reply["content"] == "3 * 3 = 9."


def test_agent_failure_sends_task_failed(chat_server: ServerProcess) -> None:
    """An agent whose endpoint cannot be reached: TaskFailed{taskId, error} and
    a taskFailed SessionNotification (success false); REST reads "failed"."""
    bearer = token(chat_server, "failing-user")
    with devices(chat_server, L=bearer) as chat:
        sent = chat.send("L", "are you there?", agentId="offline")
        notification = chat.wait_done("L", sent["taskId"], kind="taskFailed")
        events = chat.events("L")
    failed = [e["payload"] for e in of_task(events, sent["taskId"]) if e["target"] == "TaskFailed"]
    assert len(failed) == 1 and set(failed[0]) == FIELDS["TaskFailed"]
    assert "could not be reached" in failed[0]["error"]
    assert notification["success"] is False
    assert failed[0]["error"].startswith(notification["excerpt"].rstrip("…"))
    task = task_of(chat_server, bearer, sent["taskId"])
    assert task["state"] == "failed" and task["error"] == failed[0]["error"]


# -- legacy clients --------------------------------------------------------------------------


def test_legacy_client_receives_task_of_session_created_on_another_device(
    chat_server: ServerProcess,
) -> None:
    """L never calls JoinSession; P (the same user) creates a session: L gets
    its task's whole stream, user-wide (seed: "Legacy clients ... fall back")."""
    bearer = token(chat_server, "legacy-user")
    with devices(chat_server, L=bearer, P=bearer) as chat:
        sent = chat.send("P", "what is 6 * 7")
        chat.wait_done("L", sent["taskId"])
        events = chat.events("L")
    reply = messages_of(chat_server, bearer, sent["sessionId"])[-1]
    stream = of_task(events, sent["taskId"], reply["messageId"])
    assert_seed_order(stream)
    assert streamed(stream) == reply["content"] == "6 * 7 = 42."


def test_legacy_client_after_join_session_receives_only_joined_sessions(
    chat_server: ServerProcess,
) -> None:
    bearer = token(chat_server, "joining-user")
    with devices(chat_server, J=bearer, P=bearer) as chat:
        before = chat.send("P", "what is 1 + 1")
        chat.wait_done("J", before["taskId"])
        sa = before["sessionId"]
        sb = chat.send("P", "what is 2 + 2", new_id("sb"))["sessionId"]
        chat.call("J", "JoinSession", sb)
        other = chat.send("P", "what is 3 + 3", sa)
        chat.wait_done("J", other["taskId"])
        joined = chat.send("P", "what is 4 + 4", sb)
        chat.wait_done("J", joined["taskId"])
        events = chat.events("J")
    assert targets(of_task(events, before["taskId"]))[:2] == ["TaskQueued", "TaskStarted"], (
        "a client that never joined should get its user's task events")
    assert of_task(events, other["taskId"]) == [], "a joined client got another session's task"
    assert [n["kind"] for n in notifications(events, sa) if n["refId"] == other["taskId"]] == [
        "taskStarted", "taskCompleted"]
    stream = of_task(events, joined["taskId"])
    assert targets(stream)[0] == "TaskQueued" and targets(stream)[-1] == "TaskCompleted"
    assert streamed(stream) == "4 + 4 = 8."


def test_leave_session_stops_its_events(chat_server: ServerProcess) -> None:
    """J joins S, then leaves it: S's next task reaches J only as the
    user-wide SessionNotification."""
    bearer = token(chat_server, "leaving-user")
    with devices(chat_server, J=bearer, P=bearer) as chat:
        session_id = chat.send("P", "what is 1 + 4", new_id("left"))["sessionId"]
        chat.call("J", "JoinSession", session_id)
        watched = chat.send("P", "what is 2 + 4", session_id)
        chat.wait_done("J", watched["taskId"])
        assert chat.call("J", "LeaveSession", session_id) is None
        after = chat.send("P", "what is 3 + 4", session_id)
        chat.wait_done("J", after["taskId"])
        events = chat.events("J")
    assert streamed(of_task(events, watched["taskId"])) == "2 + 4 = 6."
    assert of_task(events, after["taskId"]) == []


# -- SendMessage -----------------------------------------------------------------------------


@pytest.mark.parametrize("named", [False, True], ids=["null-session-id", "new-session-id"])
def test_send_message_new_session_is_created_and_joined(
    chat_server: ServerProcess, named: bool,
) -> None:
    """C first joins a session of its own (so it no longer gets events
    user-wide), then sends to a new session: it is created, listed by REST,
    and C receives its stream (auto-join on create)."""
    bearer = token(chat_server, new_id("creator"))
    with devices(chat_server, C=bearer) as chat:
        first = chat.send("C", "what is 1 + 2")
        chat.wait_done("C", first["taskId"])
        chat.call("C", "JoinSession", first["sessionId"])
        wanted = new_id("sess-named") if named else None
        sent = chat.send("C", "what is 2 + 3", wanted)
        chat.wait_done("C", sent["taskId"])
        events = chat.events("C")
    if named:
        assert sent["sessionId"] == wanted
    assert sent["sessionId"] != first["sessionId"]
    sessions = {s["sessionId"]: s for s in rest_ok(chat_server, bearer, "/sessions")}
    assert set(sessions) == {first["sessionId"], sent["sessionId"]}
    assert sessions[sent["sessionId"]]["title"] == "what is 2 + 3"
    assert next(iter(sessions)) == sent["sessionId"], "most recently active first"
    stream = of_task(events, sent["taskId"])
    assert targets(stream)[:2] == ["TaskQueued", "TaskStarted"], targets(stream)
    assert streamed(stream) == "2 + 3 = 5."


@pytest.mark.parametrize("intruder", [("mallory-2", "acme"), ("owner-2", "globex")],
                         ids=["other-user", "same-user-id-other-tenant"])
def test_send_message_to_session_of_stranger_is_refused(
    chat_server: ServerProcess, intruder: tuple[str, str],
) -> None:
    owner = token(chat_server, "owner-2")
    stranger = token(chat_server, *intruder)
    with devices(chat_server, O=owner, X=stranger) as chat:
        sent = chat.send("O", "what is 5 + 5", new_id("owned"))
        chat.wait_done("O", sent["taskId"])
        error = chat.send_refused("X", "let me in", sent["sessionId"])
        chat.fence("O", "X")
        intruder_events = chat.events("X")
        owner_events = chat.events("O")
    assert sent["sessionId"] in error
    assert intruder_events == []
    assert [e for e in owner_events if e["target"] == "TaskQueued"] == [
        {"target": "TaskQueued", "payload": {"taskId": sent["taskId"],
                                             "sessionId": sent["sessionId"]}}]
    assert [m["content"] for m in messages_of(chat_server, owner, sent["sessionId"])] == [
        "what is 5 + 5", "5 + 5 = 10."]
    assert rest_ok(chat_server, stranger, "/sessions") == []


def test_send_message_retry_with_same_message_id_returns_same_task(
    chat_server: ServerProcess,
) -> None:
    """A retry (the same client messageId) once the task has started, and again
    once it is done: the same {taskId, sessionId, messageId}, no second
    TaskQueued, one user message and one reply."""
    bearer = token(chat_server, "retrying-user")
    client_id = new_id("client-msg")
    with devices(chat_server, R=bearer) as chat:
        sent = chat.send("R", "what is 7 * 7", messageId=client_id)
        chat.wait("R", "TaskStarted", taskId=sent["taskId"])
        again = chat.send("R", "what is 7 * 7", messageId=client_id)
        chat.wait_done("R", sent["taskId"])
        late = chat.send("R", "what is 7 * 7", messageId=client_id)
        chat.fence("R")
        events = chat.events("R")
    assert again == sent and late == sent
    assert len([e for e in events if e["target"] == "TaskQueued"]) == 1
    assert len([e for e in events if e["target"] == "TaskStarted"]) == 1
    messages = messages_of(chat_server, bearer, sent["sessionId"])
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "what is 7 * 7"), ("assistant", "7 * 7 = 49.")]
    assert messages[0]["messageId"] == sent["messageId"]


def test_send_message_same_message_id_from_another_user_is_a_new_task(
    chat_server: ServerProcess,
) -> None:
    """Client message ids belong to their user: another user's is no retry."""
    client_id = new_id("shared-client-msg")
    first, second = token(chat_server, "first-sender"), token(chat_server, "second-sender")
    with devices(chat_server, F=first, S=second) as chat:
        mine = chat.send("F", "what is 8 + 8", messageId=client_id)
        theirs = chat.send("S", "what is 9 + 9", messageId=client_id)
        chat.wait_done("F", mine["taskId"])
        chat.wait_done("S", theirs["taskId"])
    assert theirs["taskId"] != mine["taskId"]
    assert theirs["sessionId"] != mine["sessionId"]
    assert messages_of(chat_server, second, theirs["sessionId"])[-1]["content"] == "9 + 9 = 18."


@pytest.mark.parametrize("agent", ["nobody", "retired"], ids=["unknown", "inactive"])
def test_send_message_unknown_agent_is_refused_with_clear_error(
    chat_server: ServerProcess, agent: str,
) -> None:
    bearer = token(chat_server, f"agentless-{agent}")
    session_id = new_id("never")
    with devices(chat_server, U=bearer) as chat:
        error = chat.send_refused("U", "anyone there?", session_id, agentId=agent)
        chat.fence("U")
        events = chat.events("U")
    assert f"Agent '{agent}' does not exist or is not active." in error, error
    assert events == []
    assert rest(chat_server, bearer, f"/sessions/{session_id}/messages").status_code == 404
    assert rest_ok(chat_server, bearer, "/sessions") == []


# -- CancelTask ------------------------------------------------------------------------------


def test_cancel_task_mid_stream_stops_stream(chat_server: ServerProcess) -> None:
    """CancelTask while StreamChunks flow: TaskCancelled{taskId, cancelledBy},
    no more of the task's events, REST reads "cancelled" and keeps no reply.
    The fence that shows the stream stopped: the same message again, in the
    same session, sent after the cancel, streams to its end."""
    bearer = token(chat_server, "cancelling-user")
    content = long_message()
    with devices(chat_server, C=bearer) as chat:
        sent = chat.send("C", content)
        task_id = sent["taskId"]
        chat.wait("C", "StreamChunk", count=3, taskId=task_id)
        assert chat.call("C", "CancelTask", {"taskId": task_id}) is None
        notification = chat.wait_done("C", task_id, kind="taskCancelled")
        cancelled = chat.wait("C", "TaskCancelled", taskId=task_id)
        follow_up = chat.send("C", content, sent["sessionId"])
        chat.wait_done("C", follow_up["taskId"])
        events = chat.events("C")
    assert cancelled == {"taskId": task_id, "cancelledBy": "cancelling-user"}
    assert notification["success"] is False
    stream = of_task(events, task_id)
    assert targets(stream)[-1] == "TaskCancelled", targets(stream)
    assert "ReceiveMessage" not in targets(stream) and "TaskCompleted" not in targets(stream)
    assert all(not chunk["isFinal"] for chunk in chunks(stream))
    full_reply = streamed(of_task(events, follow_up["taskId"]))
    assert len(streamed(stream)) < len(full_reply) and full_reply.startswith(streamed(stream))
    task = task_of(chat_server, bearer, task_id)
    assert (task["state"], task["cancelledBy"], task["resultMessageId"]) == (
        "cancelled", "cancelling-user", None)
    replies = [m for m in messages_of(chat_server, bearer, sent["sessionId"])
               if m["role"] == "assistant"]
    assert [m["taskId"] for m in replies] == [follow_up["taskId"]]


def test_cancel_task_finished_is_a_no_op(chat_server: ServerProcess) -> None:
    bearer = token(chat_server, "late-canceller")
    with devices(chat_server, C=bearer) as chat:
        sent = chat.send("C", "what is 10 - 4")
        chat.wait_done("C", sent["taskId"])
        assert chat.call("C", "CancelTask", {"taskId": sent["taskId"]}) is None
        chat.fence("C")
        events = chat.events("C")
    assert "TaskCancelled" not in targets(events)
    task = task_of(chat_server, bearer, sent["taskId"])
    assert (task["state"], task["cancelledBy"]) == ("completed", None)


def test_cancel_task_unknown_is_refused(chat_server: ServerProcess) -> None:
    with devices(chat_server, C=token(chat_server, "unknown-canceller")) as chat:
        error = chat.refused("C", "CancelTask", {"taskId": "task_nobody_has_this"})
    assert "Task 'task_nobody_has_this' does not exist." in error, error


def test_cancel_task_of_stranger_is_refused_and_task_runs_on(
    chat_server: ServerProcess,
) -> None:
    owner = token(chat_server, "busy-owner")
    strangers = {"M": token(chat_server, "busy-mallory"),
                 "G": token(chat_server, "busy-owner", "globex")}
    with devices(chat_server, O=owner, **strangers) as chat:
        sent = chat.send("O", long_message(5))
        task_id = sent["taskId"]
        chat.wait("O", "StreamChunk", taskId=task_id)
        errors = {name: chat.refused(name, "CancelTask", {"taskId": task_id})
                  for name in strangers}
        chat.wait_done("O", task_id)
        events = chat.events("O")
    for error in errors.values():
        assert f"Task '{task_id}' does not exist." in error, errors
    assert targets(of_task(events, task_id))[-1] == "TaskCompleted"
    assert task_of(chat_server, owner, task_id)["state"] == "completed"


# -- reconnection ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stop", "drop"])
def test_reconnect_mid_task_then_join_session_receives_rest_of_stream(
    chat_server: ServerProcess, how: str,
) -> None:
    """The device that sent a message goes away mid-stream (``stop``: the
    client closes; ``drop``: its process dies, the socket just ends). A new
    connection of the same user joins the session: the rest of the stream and
    TaskCompleted arrive, and REST has the whole reply (seed "Reconnection")."""
    bearer = token(chat_server, f"roaming-{how}")
    with devices(chat_server, A=bearer) as first:
        sent = first.send("A", long_message())
        task_id = sent["taskId"]
        first.wait("A", "StreamChunk", count=2, taskId=task_id)
        before = first.events("A")
        if how == "stop":
            first.stop("A")
        else:
            first.kill()
    with devices(chat_server) as second:
        second.open("A2", bearer)
        second.call("A2", "JoinSession", sent["sessionId"])
        state = task_of(chat_server, bearer, task_id)["state"]
        assert state == "running", f"the task was {state} when the new connection joined"
        second.wait("A2", "TaskCompleted", taskId=task_id)
        after = second.events("A2")
    reply = messages_of(chat_server, bearer, sent["sessionId"])[-1]
    assert reply["taskId"] == task_id
    head = streamed(of_task(before, task_id))
    tail_stream = of_task(after, task_id, reply["messageId"])
    tail = streamed(tail_stream)
    assert head and reply["content"].startswith(head)
    assert chunks(tail_stream), "no StreamChunk after the rejoin: the task ended too soon"
    assert tail and reply["content"].endswith(tail)
    assert chunks(tail_stream)[-1]["isFinal"] is True
    assert targets(tail_stream)[-2:] == ["ReceiveMessage", "TaskCompleted"]
    assert tail_stream[-2]["payload"]["content"] == reply["content"]
    assert task_of(chat_server, bearer, task_id)["state"] == "completed"


# -- server restarts -------------------------------------------------------------------------


class FakeModel:
    """An OpenAI-compatible streaming chat-completions endpoint on 127.0.0.1
    (what ``agents/openai.py`` talks to): it records the messages of every
    request and streams "You said: <the last message>" a word per chunk."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, str]]] = []
        model = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                model.requests.append(body["messages"])
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                reply = "You said: " + body["messages"][-1]["content"]
                for word in re.findall(r"\S+\s*", reply):
                    chunk = {"choices": [{"delta": {"content": word}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                usage = {"choices": [], "usage": {"total_tokens": 7}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def agents_file(self, directory: Path) -> Path:
        """An agents file with this endpoint as the agent ``model``."""
        port = self._server.server_address[1]
        path = directory / "model-agents.toml"
        path.write_text(f"[agents.model]\nbackend = \"openai\"\n"
                        f"base_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"fake\"\n")
        return path

    def __enter__(self) -> FakeModel:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def test_restart_between_messages_keeps_sessions_history_and_tasks(
    start_server: Callable[..., ServerProcess], tmp_path: Path,
) -> None:
    """SIGTERM between messages, restart on the same port and data dir; the
    device reconnects by itself (withAutomaticReconnect) and joins its session
    again. Sessions, messages and tasks read as before; the session takes
    follow-up messages; the model agent is given the history from before the
    restart, the built-in agent still has its note, and a retry of the first
    message (its client messageId) is still recognised."""
    with FakeModel() as model:
        args = ["--agents-file", str(model.agents_file(tmp_path))]
        server = start_server(settings=SETTINGS, args=args)
        bearer = token(server, "restarting-user")
        session_id, client_id = new_id("kept"), new_id("client-msg")
        reconnecting = {"reconnectDelays": RECONNECT_DELAYS}
        with devices(server, client=reconnecting, A=bearer) as chat:
            first = chat.send("A", "remember to buy oat milk", session_id, messageId=client_id)
            chat.wait_done("A", first["taskId"])
            told = chat.send("A", "my name is Ana", session_id, agentId="model")
            chat.wait_done("A", told["taskId"])
            sessions_before = rest_ok(server, bearer, "/sessions")
            messages_before = messages_of(server, bearer, session_id)
            tasks_before = [task_of(server, bearer, sent["taskId"]) for sent in (first, told)]
            assert server.stop() == 0
            chat.scenario.wait_for("reconnecting:A", timeout=WAIT)
            restarted = start_server(settings=SETTINGS, args=args, port=server.port,
                                     data_dir=server.data_dir)
            chat.scenario.wait_for("reconnected:A", timeout=WAIT)

            assert rest_ok(restarted, bearer, "/sessions") == sessions_before
            assert messages_of(restarted, bearer, session_id) == messages_before
            assert [task_of(restarted, bearer, task["taskId"]) for task in tasks_before] == (
                tasks_before)
            assert chat.call("A", "JoinSession", session_id) is None
            retry = chat.send("A", "remember to buy oat milk", session_id, messageId=client_id)
            assert retry == first
            asked = chat.send("A", "what is my name?", session_id, agentId="model")
            chat.wait_done("A", asked["taskId"])
            notes = chat.send("A", "what are my notes?", session_id)
            chat.wait_done("A", notes["taskId"])
            events = chat.events("A")
    history = [{"role": m["role"], "content": m["content"]} for m in messages_before]
    assert model.requests[-1] == [*history, {"role": "user", "content": "what is my name?"}]
    assert streamed(of_task(events, asked["taskId"])) == "You said: what is my name?"
    messages = messages_of(restarted, bearer, session_id)
    assert messages[:4] == messages_before and len(messages) == 8
    assert "oat milk" in messages[-1]["content"], messages[-1]
    assert task_of(restarted, bearer, notes["taskId"])["state"] == "completed"


def test_restart_after_kill_mid_stream_marks_task_failed_interrupted(
    start_server: Callable[..., ServerProcess],
) -> None:
    """One worker: T1 streams, T2 waits in the queue, T3 is cancelled while
    queued. SIGKILL mid-stream, restart on the same port and data dir: T1 reads
    "failed" with an error saying it was interrupted, T2 runs to its end, T3
    stays cancelled (it is not run again)."""
    settings = {**SETTINGS, "agent_workers": "1"}
    server = start_server(settings=settings)
    bearer = token(server, "killed-user")
    session_id = new_id("killed")
    with devices(server, A=bearer) as chat:
        t1 = chat.send("A", long_message(), session_id)["taskId"]
        chat.wait("A", "StreamChunk", count=2, taskId=t1)
        t2 = chat.send("A", long_message(), session_id)["taskId"]
        t3 = chat.send("A", "what is 1 + 1", session_id)["taskId"]
        assert chat.call("A", "CancelTask", {"taskId": t3}) is None
        chat.wait_done("A", t3, kind="taskCancelled")
        states = {t: task_of(server, bearer, t)["state"] for t in (t1, t2, t3)}
        assert states == {t1: "running", t2: "queued", t3: "cancelled"}
        server.kill()
        assert targets(of_task(chat.events("A"), t3)) == ["TaskQueued", "TaskCancelled"]

    restarted = start_server(settings=settings, port=server.port, data_dir=server.data_dir)
    with devices(restarted, A=bearer) as chat:
        chat.call("A", "JoinSession", session_id)
        chat.wait("A", "TaskCompleted", taskId=t2)
    # T1's lease (the killed process's) lapses task_lease seconds after its
    # last renewal; the restarted process then fails it (issue 11).
    task = wait_for_state(restarted, bearer, t1, "failed")
    assert "interrupted" in (task["error"] or "").lower(), task
    assert task["finishedAt"] is not None and task["resultMessageId"] is None
    assert task_of(restarted, bearer, t2)["state"] == "completed"
    assert task_of(restarted, bearer, t3)["state"] == "cancelled"
    messages = messages_of(restarted, bearer, session_id)
    assert [m["role"] for m in messages] == ["user", "user", "user", "assistant"]
    assert messages[-1]["taskId"] == t2


# -- REST ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(chat_server: ServerProcess) -> dict[str, Any]:
    """One session with three questions and their answers (six messages)."""
    bearer = token(chat_server, "reader")
    session_id = new_id("history")
    task_ids = []
    with devices(chat_server, R=bearer) as chat:
        for question in ("what is 1 + 1", "what is 2 + 2", "what is 3 + 3"):
            sent = chat.send("R", question, session_id)
            chat.wait_done("R", sent["taskId"])
            task_ids.append(sent["taskId"])
    return {"token": bearer, "session_id": session_id, "task_ids": task_ids}


def test_rest_messages_are_oldest_first(chat_server: ServerProcess,
                                        history: dict[str, Any]) -> None:
    messages = messages_of(chat_server, history["token"], history["session_id"])
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "what is 1 + 1"), ("assistant", "1 + 1 = 2."),
        ("user", "what is 2 + 2"), ("assistant", "2 + 2 = 4."),
        ("user", "what is 3 + 3"), ("assistant", "3 + 3 = 6."),
    ]
    assert [m["taskId"] for m in messages[1::2]] == history["task_ids"]


def test_rest_messages_paging_with_limit_and_before(chat_server: ServerProcess,
                                                    history: dict[str, Any]) -> None:
    path = f"/sessions/{history['session_id']}/messages"
    everything = rest_ok(chat_server, history["token"], path)
    pages = []
    page = rest_ok(chat_server, history["token"], path, limit=4)
    while page:
        pages.append(page)
        page = rest_ok(chat_server, history["token"], path, limit=4, before=page[0]["messageId"])
    assert [len(p) for p in pages] == [4, 2]
    assert pages[1] + pages[0] == everything
    newest_two = rest_ok(chat_server, history["token"], path, limit=2)
    assert newest_two == everything[-2:]
    middle = rest_ok(chat_server, history["token"], path, limit=2,
                     before=everything[4]["messageId"])
    assert middle == everything[2:4]


def test_rest_sessions_most_recently_active_first(chat_server: ServerProcess) -> None:
    bearer = token(chat_server, "busy-reader")
    with devices(chat_server, R=bearer) as chat:
        older = chat.send("R", "what is 1 * 1")
        chat.wait_done("R", older["taskId"])
        newer = chat.send("R", "what is 2 * 2")
        chat.wait_done("R", newer["taskId"])
        listed = [s["sessionId"] for s in rest_ok(chat_server, bearer, "/sessions")]
        assert listed == [newer["sessionId"], older["sessionId"]]
        again = chat.send("R", "what is 3 * 3", older["sessionId"])
        chat.wait_done("R", again["taskId"])
        updated = chat.wait("R", "SessionUpdated", count=3)
    sessions = rest_ok(chat_server, bearer, "/sessions")
    assert [s["sessionId"] for s in sessions] == [older["sessionId"], newer["sessionId"]]
    assert updated == {"sessionId": older["sessionId"], "title": "what is 1 * 1",
                       "updatedAt": sessions[0]["updatedAt"]}


@pytest.mark.parametrize("limit", ["0", "201", "ten"])
def test_rest_messages_bad_limit_is_400(chat_server: ServerProcess, history: dict[str, Any],
                                        limit: str) -> None:
    response = rest(chat_server, history["token"],
                    f"/sessions/{history['session_id']}/messages", limit=limit)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("who", [("mallory", "acme"), ("reader", "globex")],
                         ids=["other-user", "same-user-id-other-tenant"])
def test_rest_ids_of_stranger_are_404(chat_server: ServerProcess, history: dict[str, Any],
                                      who: tuple[str, str]) -> None:
    stranger = token(chat_server, *who)
    session_path = f"/sessions/{history['session_id']}/messages"
    assert rest(chat_server, stranger, session_path).status_code == 404
    assert rest(chat_server, stranger, f"/tasks/{history['task_ids'][0]}").status_code == 404
    unknown = rest(chat_server, stranger, "/sessions/sess-nobody-has-this/messages")
    assert unknown.status_code == 404
    assert history["session_id"] not in {s["sessionId"] for s in rest_ok(
        chat_server, stranger, "/sessions")}


@pytest.mark.parametrize("kind", ["missing", "garbage", "other-secret", "expired"])
@pytest.mark.parametrize("path", ["/sessions", "/sessions/{session}/messages", "/tasks/{task}"])
def test_rest_without_valid_token_is_401(chat_server: ServerProcess, history: dict[str, Any],
                                         kind: str, path: str) -> None:
    now = int(time.time())
    claims = {"sub": "reader", "tid": "acme", "roles": [], "iat": now, "exp": now + 3600}
    bearer = {
        "missing": None,
        "garbage": "not-a-token",
        "other-secret": jwt.encode(claims, b"another secret, long enough for HS256", "HS256"),
        "expired": token(chat_server, "reader", ttl=-60),
    }[kind]
    url = path.format(session=history["session_id"], task=history["task_ids"][0])
    response = rest(chat_server, bearer, url)
    assert response.status_code == 401, (response.status_code, response.text)
    assert "reader" not in response.text and "1 + 1" not in response.text
