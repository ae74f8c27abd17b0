"""ChatEvents over a real LocalRouter: who receives each chat event, and its wire shape.

Seed 000, "Chat hub", "Session scoping" and "SessionNotification": per-task
events go to the task's session group and to the user's legacy group (a
connection in both gets one copy; another session, user or tenant gets none);
``SessionNotification`` and ``SessionUpdated`` go to every connection of the
user. Recipients are small fakes (as in ``tests/routing/test_router.py``) that
frame what the router hands them for a JSON text WebSocket; the tests parse
those bytes back, so the field names checked are the camelCase the seed gives,
and timestamps are ISO-8601 UTC strings ending in ``Z``.

Issue 12: a task that waits for a person sends ``AgentStatus`` ``waiting_approval``
(detail: the tool) or ``waiting_user`` (detail: the question) to the session, and
``SessionNotification`` ``approvalPending`` / ``infoRequestPending`` (``refId``: the
request's id, the excerpt: the tool and its parameters, or the question) to every
device of the user. ``Faces`` hands each runtime report to every face that shows it.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import attrs
import pytest
import trio

from voisnap.apps.chat.audience import legacy_group, session_group
from voisnap.apps.chat.notifier import ChatEvents, args_hash
from voisnap.apps.faces import Faces
from voisnap.protocol import CloseMessage, JsonHubProtocol
from voisnap.routing.router import LocalRouter, group_key
from voisnap.routing.serialized import SerializedMessage
from voisnap.storage.base import (
    PENDING,
    Approval,
    InfoRequest,
    Message,
    Owner,
    Session,
    Task,
    TaskState,
)
from voisnap.transports.frames import wire_for
from voisnap.transports.outbox import Lag
from voisnap.transports.ws_frames import TEXT_FRAMER

CEILING = 5
ADA = Owner("acme", "ada")
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
RS = b"\x1e"

# Seed 000, "Chat hub" (TaskCancelled: "Tasks hub"). "toolCalls?" may be omitted.
SEED_FIELDS = {
    "TaskQueued": {"taskId", "sessionId"},
    "TaskStarted": {"taskId", "startedAt"},
    "AgentStatus": {"taskId", "status", "detail"},
    "StreamChunk": {"taskId", "delta", "isFinal"},
    "ToolCallStarted": {"taskId", "toolName", "argsHash"},
    "ToolCallCompleted": {"taskId", "toolName", "durationMs", "ok"},
    "ReceiveMessage": {"messageId", "sessionId", "role", "content", "toolCalls"},
    "TaskCompleted": {"taskId", "durationMs", "tokensUsed"},
    "TaskFailed": {"taskId", "error"},
    "TaskCancelled": {"taskId", "cancelledBy"},
    "SessionUpdated": {"sessionId", "title", "updatedAt"},
    "SessionNotification": {"sessionId", "kind", "refId", "success", "excerpt", "timestamp"},
}
PER_TASK = set(SEED_FIELDS) - {"SessionUpdated", "SessionNotification"}


class FakeRecipient:
    """A connection on a JSON text WebSocket: keeps the bytes the router framed for it."""

    def __init__(self, connection_id: str, *, user_id: str = "ada", tenant_id: str = "acme"):
        self.connection_id = connection_id
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.wire = wire_for(JsonHubProtocol(), TEXT_FRAMER)
        self.records: list[bytes] = []

    def send_nowait(self, message: SerializedMessage) -> None:
        self.records.append(bytes(message.frame_for(self.wire).payload))

    def evict_slow_consumer(self) -> None:
        raise AssertionError("nobody is slow here")

    def lag(self) -> Lag:
        return Lag(0.0, 0.0)

    def request_close(self, message: CloseMessage) -> None:
        raise AssertionError("nobody is closed here")

    async def invoke_client(self, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        raise AssertionError("no client results here")

    def invocations(self) -> list[dict[str, Any]]:
        """Each delivered record, parsed back from its JSON text."""
        parsed = []
        for record in self.records:
            assert record.endswith(RS) and record.count(RS) == 1
            parsed.append(json.loads(record[:-1]))
        return parsed

    def targets(self) -> list[str]:
        return [invocation["target"] for invocation in self.invocations()]

    def payloads(self, target: str) -> list[dict[str, Any]]:
        return [i["arguments"][0] for i in self.invocations() if i["target"] == target]


class Audience:
    """Connections in every position relative to ada's session ``sess_1``."""

    def __init__(self) -> None:
        self.router = LocalRouter()
        self.joined = FakeRecipient("joined")  # JoinSession("sess_1"): left the legacy group
        self.legacy = FakeRecipient("legacy")  # never joined a session
        self.both = FakeRecipient("both")  # created sess_1 and never called JoinSession
        self.elsewhere = FakeRecipient("elsewhere")  # joined ada's other session
        self.bob = FakeRecipient("bob", user_id="bob")  # same tenant, another user, legacy
        self.globex = FakeRecipient("globex", tenant_id="globex")  # a namesake in another tenant
        self.everyone = [self.joined, self.legacy, self.both, self.elsewhere, self.bob,
                         self.globex]

    async def join(self) -> None:
        memberships = [
            (self.joined, session_group("sess_1")),
            (self.legacy, legacy_group("ada")),
            (self.both, session_group("sess_1")),
            (self.both, legacy_group("ada")),
            (self.elsewhere, session_group("sess_2")),
            (self.bob, legacy_group("bob")),
            (self.globex, session_group("sess_1")),
            (self.globex, legacy_group("ada")),
        ]
        for recipient in self.everyone:
            self.router.register(recipient)
        for recipient, group in memberships:
            await self.router.add_to_group(
                recipient.tenant_id, recipient.connection_id, group_key(recipient.tenant_id, group)
            )

    @property
    def task_audience(self) -> list[FakeRecipient]:
        return [self.joined, self.legacy, self.both]

    @property
    def outsiders(self) -> list[FakeRecipient]:
        return [self.elsewhere, self.bob, self.globex]


def task(**changes: Any) -> Task:
    base = Task(
        task_id="task_1",
        session_id="sess_1",
        owner=ADA,
        agent_id="sophon",
        message_id="msg_1",
        state=TaskState.RUNNING,
        created_at=T0,
        started_at=T0 + datetime.timedelta(seconds=1),
    )
    return attrs.evolve(base, **changes)


REPLY = Message("msg_r", "sess_1", ADA, "assistant", "The answer is 42.", T0,
                ({"toolName": "calculator", "arguments": {"expression": "6*7"}, "ok": True},),
                "task_1")


async def every_event(events: ChatEvents) -> None:
    """One of each event, as the runtime and the hub send them for one task."""
    await events.queued(task(state=TaskState.QUEUED))
    await events.started(task())
    await events.status(task(), "thinking", None)
    await events.tool_started(task(), "calculator", {"expression": "6*7"})
    await events.tool_completed(task(), "calculator", 3, True)
    await events.chunk(task(), "The answer ", False)
    await events.chunk(task(), "", True)
    await events.message(task(), REPLY)
    await events.completed(task(state=TaskState.COMPLETED, duration_ms=1500, tokens_used=9))
    await events.failed(task(state=TaskState.FAILED), "The model is on fire.")
    await events.cancelled(task(state=TaskState.CANCELLED), "ada")
    await events.session_updated(Session("sess_1", ADA, "Arithmetic", T0, T0))


@pytest.fixture
async def audience() -> Audience:
    with trio.fail_after(CEILING):
        joined = Audience()
        await joined.join()
        return joined


# -- who receives what -----------------------------------------------------------------------------


async def test_chat_events_per_task_events_reach_session_and_legacy_groups_once(
    audience: Audience,
) -> None:
    with trio.fail_after(CEILING):
        await every_event(ChatEvents(audience.router))
    expected = [
        "TaskQueued", "TaskStarted", "AgentStatus", "ToolCallStarted", "ToolCallCompleted",
        "StreamChunk", "StreamChunk", "ReceiveMessage", "TaskCompleted", "TaskFailed",
        "TaskCancelled",
    ]
    for recipient in audience.task_audience:
        per_task = [t for t in recipient.targets() if t in PER_TASK]
        assert per_task == expected, recipient.connection_id


async def test_chat_events_per_task_events_reach_nobody_else(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        await every_event(ChatEvents(audience.router))
    for recipient in audience.outsiders:
        assert not PER_TASK & set(recipient.targets()), recipient.connection_id


async def test_chat_events_user_wide_events_reach_every_device_of_the_user(
    audience: Audience,
) -> None:
    with trio.fail_after(CEILING):
        await every_event(ChatEvents(audience.router))
    # started, completed, failed and cancelled notify; queued and the stream do not.
    kinds = ["taskStarted", "taskCompleted", "taskFailed", "taskCancelled"]
    for recipient in [*audience.task_audience, audience.elsewhere]:
        notifications = recipient.payloads("SessionNotification")
        assert [n["kind"] for n in notifications] == kinds, recipient.connection_id
        assert len(recipient.payloads("SessionUpdated")) == 1
    for recipient in (audience.bob, audience.globex):
        assert recipient.records == [], recipient.connection_id


async def test_chat_events_user_wide_events_skip_session_and_legacy_groups() -> None:
    """A connection of ada's that is in ada's groups but not in her user group
    (impossible through the hub; here to show the user group is the audience)."""
    router = LocalRouter()
    stray = FakeRecipient("stray", user_id="someone-else")
    router.register(stray)
    with trio.fail_after(CEILING):
        for group in (session_group("sess_1"), legacy_group("ada")):
            await router.add_to_group("acme", "stray", group_key("acme", group))
        events = ChatEvents(router)
        await events.started(task())
        await events.session_updated(Session("sess_1", ADA, "Arithmetic", T0, T0))
    assert stray.targets() == ["TaskStarted"]


# -- the wire shape --------------------------------------------------------------------------------


async def test_chat_events_payloads_use_the_seeds_field_names(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        await every_event(ChatEvents(audience.router))
    seen = set()
    for invocation in audience.both.invocations():
        assert invocation["type"] == 1
        assert "invocationId" not in invocation  # events expect no answer
        [payload] = invocation["arguments"]
        target = invocation["target"]
        fields = set(payload)
        expected = SEED_FIELDS[target]
        if target == "ReceiveMessage":
            assert {"messageId", "sessionId", "role", "content"} <= fields <= expected
        else:
            assert fields == expected, target
        seen.add(target)
    assert seen == set(SEED_FIELDS)


async def test_chat_events_payload_values(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        await every_event(ChatEvents(audience.router))
    both = audience.both
    assert both.payloads("TaskQueued") == [{"taskId": "task_1", "sessionId": "sess_1"}]
    assert both.payloads("AgentStatus") == [
        {"taskId": "task_1", "status": "thinking", "detail": None}
    ]
    assert both.payloads("StreamChunk") == [
        {"taskId": "task_1", "delta": "The answer ", "isFinal": False},
        {"taskId": "task_1", "delta": "", "isFinal": True},
    ]
    assert both.payloads("ToolCallCompleted") == [
        {"taskId": "task_1", "toolName": "calculator", "durationMs": 3, "ok": True}
    ]
    [message] = both.payloads("ReceiveMessage")
    assert message["messageId"] == "msg_r" and message["content"] == "The answer is 42."
    assert message["role"] == "assistant"
    assert message["toolCalls"] == [
        {"toolName": "calculator", "arguments": {"expression": "6*7"}, "ok": True}
    ]
    assert both.payloads("TaskCompleted") == [
        {"taskId": "task_1", "durationMs": 1500, "tokensUsed": 9}
    ]
    assert both.payloads("TaskFailed") == [{"taskId": "task_1", "error": "The model is on fire."}]
    assert both.payloads("TaskCancelled") == [{"taskId": "task_1", "cancelledBy": "ada"}]
    notifications = {n["kind"]: n for n in both.payloads("SessionNotification")}
    assert notifications["taskStarted"]["success"] is None
    assert notifications["taskCompleted"]["success"] is True
    assert notifications["taskCompleted"]["excerpt"] == "The answer is 42."
    assert notifications["taskFailed"]["success"] is False
    assert notifications["taskFailed"]["excerpt"] == "The model is on fire."
    assert notifications["taskCancelled"]["success"] is False
    assert all(n["refId"] == "task_1" and n["sessionId"] == "sess_1"
               for n in notifications.values())
    assert both.payloads("SessionUpdated")[0]["title"] == "Arithmetic"


async def test_chat_events_timestamps_are_iso_utc_with_z(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        await every_event(ChatEvents(audience.router))
    both = audience.both
    [started] = both.payloads("TaskStarted")
    [updated] = both.payloads("SessionUpdated")
    stamps = [started["startedAt"], updated["updatedAt"]]
    stamps += [n["timestamp"] for n in both.payloads("SessionNotification")]
    for stamp in stamps:
        assert ISO_UTC.fullmatch(stamp), stamp
    assert datetime.datetime.fromisoformat(started["startedAt"].replace("Z", "+00:00")) == (
        T0 + datetime.timedelta(seconds=1)
    )
    assert updated["updatedAt"].startswith("2024-05-01T12:00:00")


async def test_chat_events_timestamps_of_other_zones_are_sent_in_utc(audience: Audience) -> None:
    paris = datetime.timezone(datetime.timedelta(hours=2))
    with trio.fail_after(CEILING):
        events = ChatEvents(audience.router)
        await events.started(task(started_at=datetime.datetime(2024, 5, 1, 14, 0, tzinfo=paris)))
    [started] = audience.both.payloads("TaskStarted")
    assert ISO_UTC.fullmatch(started["startedAt"])
    assert started["startedAt"].startswith("2024-05-01T12:00:00")


async def test_chat_events_notification_excerpt_is_short_and_single_line(
    audience: Audience,
) -> None:
    long_reply = Message("msg_r", "sess_1", ADA, "assistant", "word\n" * 100, T0, None, "task_1")
    with trio.fail_after(CEILING):
        events = ChatEvents(audience.router)
        await events.message(task(), long_reply)
        await events.completed(task(state=TaskState.COMPLETED, duration_ms=1, tokens_used=1))
    [notification] = audience.both.payloads("SessionNotification")
    excerpt = notification["excerpt"]
    assert "\n" not in excerpt and len(excerpt) <= 140 and excerpt.endswith("…")


# -- argsHash --------------------------------------------------------------------------------------


def test_chat_events_args_hash_is_stable_for_equal_arguments() -> None:
    first = args_hash({"expression": "6*7", "options": {"exact": True, "base": 10}})
    same = args_hash({"options": {"base": 10, "exact": True}, "expression": "6*7"})
    assert first == same
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert args_hash({"expression": "6*8"}) != args_hash({"expression": "6*7"})
    assert args_hash({}) == args_hash({})


async def test_chat_events_tool_call_started_carries_the_args_hash(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        events = ChatEvents(audience.router)
        await events.tool_started(task(), "calculator", {"a": 1, "b": 2})
        await events.tool_started(task(), "calculator", {"b": 2, "a": 1})
        await events.tool_started(task(), "calculator", {"a": 2, "b": 1})
    hashes = [p["argsHash"] for p in audience.both.payloads("ToolCallStarted")]
    assert hashes[0] == hashes[1] == args_hash({"a": 1, "b": 2})
    assert hashes[2] != hashes[0]


# -- a task waiting for a person -------------------------------------------------------------------

APPROVAL = Approval(
    approval_id="appr_1", task_id="task_1", session_id="sess_1", owner=ADA, agent_id="sophon",
    call_id="call_1", tool_name="delete_note", params={"text": "call Ana"},
    reason="The agent wants to run delete_note.", status=PENDING, created_at=T0,
    expires_at=T0 + datetime.timedelta(minutes=10),
)
QUESTION = InfoRequest(
    info_id="info_1", task_id="task_1", session_id="sess_1", owner=ADA, agent_id="sophon",
    call_id="call_2", question="Which note should I delete?", options=("a", "b"),
    status=PENDING, created_at=T0, expires_at=T0 + datetime.timedelta(minutes=10),
)


async def test_chat_events_waiting_for_an_approval(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        await ChatEvents(audience.router).waiting(task(state=TaskState.WAITING), APPROVAL)
    for recipient in audience.task_audience:
        assert recipient.payloads("AgentStatus") == [
            {"taskId": "task_1", "status": "waiting_approval", "detail": "delete_note"}
        ], recipient.connection_id
    for recipient in [*audience.task_audience, audience.elsewhere]:
        [notification] = recipient.payloads("SessionNotification")
        assert set(notification) == SEED_FIELDS["SessionNotification"]
        assert notification["kind"] == "approvalPending"
        assert notification["refId"] == "appr_1"
        assert notification["sessionId"] == "sess_1"
        assert notification["success"] is None
        assert notification["excerpt"] == 'delete_note {"text": "call Ana"}'
        assert ISO_UTC.fullmatch(notification["timestamp"])
    assert audience.elsewhere.payloads("AgentStatus") == []
    for recipient in (audience.bob, audience.globex):
        assert recipient.records == [], recipient.connection_id


async def test_chat_events_waiting_for_an_answer(audience: Audience) -> None:
    with trio.fail_after(CEILING):
        await ChatEvents(audience.router).waiting(task(state=TaskState.WAITING), QUESTION)
    assert audience.both.payloads("AgentStatus") == [
        {"taskId": "task_1", "status": "waiting_user", "detail": "Which note should I delete?"}
    ]
    for recipient in [*audience.task_audience, audience.elsewhere]:
        [notification] = recipient.payloads("SessionNotification")
        assert (notification["kind"], notification["refId"]) == ("infoRequestPending", "info_1")
        assert notification["excerpt"] == "Which note should I delete?"
    for recipient in (audience.bob, audience.globex):
        assert recipient.records == [], recipient.connection_id


async def test_chat_events_waiting_excerpt_of_long_parameters_is_short(
    audience: Audience,
) -> None:
    long = attrs.evolve(APPROVAL, params={"text": "word\n" * 100})
    with trio.fail_after(CEILING):
        await ChatEvents(audience.router).waiting(task(), long)
    [notification] = audience.both.payloads("SessionNotification")
    excerpt = notification["excerpt"]
    assert excerpt.startswith("delete_note ")
    assert "\n" not in excerpt and len(excerpt) <= 140 and excerpt.endswith("…")


class PartialFace:
    """A face that shows only some events: it is handed those, and only those."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    async def waiting(self, task: Task, request: Any) -> None:
        self.seen.append(("waiting", request))

    async def request_resolved(self, request: Any) -> None:
        self.seen.append(("request_resolved", request))


async def test_faces_hand_each_event_to_every_face_that_shows_it(audience: Audience) -> None:
    face = PartialFace()
    faces = Faces(ChatEvents(audience.router), face)
    with trio.fail_after(CEILING):
        await faces.started(task())
        await faces.waiting(task(), APPROVAL)
        await faces.request_resolved(attrs.evolve(APPROVAL, status="approved"))
        await faces.completed(task(state=TaskState.COMPLETED, duration_ms=1, tokens_used=1))
    assert face.seen == [
        ("waiting", APPROVAL), ("request_resolved", attrs.evolve(APPROVAL, status="approved"))
    ]
    assert [t for t in audience.both.targets() if t in PER_TASK] == [
        "TaskStarted", "AgentStatus", "TaskCompleted"
    ]
