"""Reminders and heartbeat runs (issue 14) with the official ``@microsoft/signalr`` client under
Node against a real ``voisnap serve`` process on 127.0.0.1, with ``--heartbeat-interval 0.2``.

One user, Ana, whose token says her zone is ``Asia/Tokyo`` (the OIDC ``zoneinfo`` claim),
has three chat devices (``approvals_devices.mjs``, driven as test_approvals.py drives it):

- ``J`` sends "remind me in 1 second to stretch": the reminder is set in J's new session, and
  J is in that session's group;
- ``N`` joined another session of Ana's: it must hear of the reminder only through the
  user-wide ``SessionNotification`` (``heartbeatActioned``), never the message itself;
- ``B`` is Bob's device: nothing of Ana's reaches it.

Then the heartbeat actions the reminder: J receives ``ReceiveMessage`` "Reminder: stretch"
(stored in the session, read back over REST), J and N receive ``SessionNotification``
``heartbeatActioned`` with the reminder's id. Set, listed and cancelled through chat, a
reminder "at 15:30" is read in Tokyo time and never actioned. Every wait is for an event;
"did not receive" is proven behind a fence.

An agent backed by an OpenAI-compatible endpoint (the fake one of
``tests/support/openai_endpoint.py``) gets the same tools: its model calls ``set_reminder``,
and the heartbeat posts the reminder into the task's session.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio

from tests.conformance.test_approvals import (
    SETTINGS,
    Devices,
    devices,
    join,
    new_id,
    payloads,
    reply_of,
    rest,
    rest_ok,
)
from tests.support.openai_endpoint import (
    Endpoint,
    call_spec,
    in_turn,
    reply_answer,
    serving,
    tool_calls_answer,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

HEARTBEAT = {**SETTINGS, "heartbeat_interval": "0.2"}
ZONE = "Asia/Tokyo"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("reminders") / "data", HEARTBEAT) as started:
        yield started


def token(server: ServerProcess, user: str, **claims: Any) -> str:
    """A token as ``voisnap token`` makes, with more claims (``zoneinfo``)."""
    secret = (server.data_dir / "jwt-secret").read_bytes().strip()
    now = int(time.time())
    base = {"sub": user, "tid": "acme", "roles": [], "iat": now, "exp": now + 3600}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def ask(
    hubs: Devices,
    server: ServerProcess,
    bearer: str,
    device: str,
    content: str,
    session_id: str | None,
) -> tuple[str, str]:
    """Send ``content``; once the task is done, its session and the agent's stored reply."""
    sent = hubs.send(device, content, session_id)
    hubs.wait_done(device, sent["taskId"])
    return sent["sessionId"], reply_of(server, bearer, sent["sessionId"], sent["taskId"])


@pytest.fixture(scope="module")
def actioned(server: ServerProcess) -> dict[str, Any]:
    """The scenario of the module docstring, run once; what each device and REST showed."""
    ana, bob = token(server, new_id("ana"), zoneinfo=ZONE), token(server, new_id("bob"))
    seen: dict[str, Any] = {"token": ana}
    with devices(server) as hubs:
        for device, bearer in (("J", ana), ("N", ana), ("B", bob)):
            hubs.open(device, "chat", bearer)
        own, _ = ask(hubs, server, ana, "N", "what is 1 + 1", None)
        join(hubs, "N", own)
        session_id, seen["set_reply"] = ask(
            hubs, server, ana, "J", "remind me in 1 second to stretch", None
        )
        seen["session"] = session_id
        seen["message"] = hubs.wait(
            "J", "ReceiveMessage", sessionId=session_id, content="Reminder: stretch"
        )
        seen["notification"] = hubs.wait("N", "SessionNotification", kind="heartbeatActioned")
        hubs.fence("J", "N", "B")
        seen["events"] = {device: hubs.events(device) for device in ("J", "N", "B")}
        seen["messages"] = rest_ok(server, ana, f"/sessions/{session_id}/messages")
        # A reminder at a time of day, in Ana's zone; listed, then cancelled by its text.
        _, seen["at_reply"] = ask(
            hubs, server, ana, "J", "remind me at 15:30 to call Ana", session_id
        )
        seen["listed"] = rest_ok(server, ana, "/reminders")
        _, seen["list_reply"] = ask(hubs, server, ana, "J", "what are my reminders?", session_id)
        _, seen["cancel_reply"] = ask(
            hubs, server, ana, "J", "cancel my reminder to call Ana", session_id
        )
        seen["after_cancel"] = rest_ok(server, ana, "/reminders")
    return seen


def test_reminders_set_through_chat_in_the_users_zone(actioned: dict[str, Any]) -> None:
    assert re.fullmatch(
        r"Reminder set for \d\d:\d\d:\d\d on \w+ \d\d \w+ \(Asia/Tokyo\): “stretch”\.",
        actioned["set_reply"],
    ), actioned["set_reply"]
    assert re.fullmatch(
        r"Reminder set for 15:30 on \w+ \d\d \w+ \(Asia/Tokyo\): “call Ana”\.",
        actioned["at_reply"],
    ), actioned["at_reply"]
    [listed] = actioned["listed"]
    assert (listed["text"], listed["timeZone"], listed["sessionId"]) == (
        "call Ana",
        ZONE,
        actioned["session"],
    )
    # 15:30 in Tokyo (UTC+9, no daylight saving) is 06:30 UTC.
    assert listed["dueAt"].endswith("T06:30:00+00:00") and listed["status"] == "pending"
    assert listed["reminderId"] in actioned["list_reply"]
    assert actioned["list_reply"].startswith("Your reminders, soonest first:\n- 15:30 on ")
    assert actioned["cancel_reply"].startswith("Cancelled the reminder “call Ana” (15:30 on ")
    assert actioned["after_cancel"] == []


def test_reminders_the_sessions_device_receives_the_message(actioned: dict[str, Any]) -> None:
    message = actioned["message"]
    assert message["role"] == "assistant" and message["content"] == "Reminder: stretch"
    stored = [m for m in actioned["messages"] if m["content"] == "Reminder: stretch"]
    assert len(stored) == 1
    assert stored[0]["messageId"] == message["messageId"]
    assert stored[0]["role"] == "assistant" and stored[0]["taskId"] is None
    received = payloads(actioned["events"]["J"], "ReceiveMessage", content="Reminder: stretch")
    assert received == [message]


def test_reminders_every_device_of_the_user_gets_heartbeat_actioned(
    actioned: dict[str, Any],
) -> None:
    notification = actioned["notification"]
    assert notification["sessionId"] == actioned["session"]
    assert notification["refId"].startswith("rem_")
    assert notification["success"] is True and notification["excerpt"] == "Reminder: stretch"
    for device in ("J", "N"):
        assert payloads(
            actioned["events"][device], "SessionNotification", kind="heartbeatActioned"
        ) == [notification], device
    # N never joined the reminder's session: the notification, not the message.
    assert not payloads(actioned["events"]["N"], "ReceiveMessage", sessionId=actioned["session"])
    assert actioned["events"]["B"] == []


def test_reminders_rest_refuses_what_is_not_the_callers(
    server: ServerProcess, actioned: dict[str, Any]
) -> None:
    ana = actioned["token"]
    refId = actioned["notification"]["refId"]
    gone = rest(server, ana, "DELETE", f"/reminders/{refId}")  # actioned: no longer pending
    assert gone.status_code == 404 and "does not exist or is not pending" in gone.json()["error"]
    stranger = token(server, new_id("eve"))
    assert rest(server, stranger, "DELETE", f"/reminders/{refId}").status_code == 404


def test_reminders_a_token_with_a_zone_that_does_not_exist_is_refused(
    server: ServerProcess,
) -> None:
    bad = token(server, new_id("ana"), zoneinfo="Mars/Olympus")
    response = httpx.get(
        f"{server.url}/reminders",
        timeout=5.0,
        trust_env=False,
        headers={"Authorization": f"Bearer {bad}"},
    )
    assert response.status_code == 401
    assert "zoneinfo" in response.text


# -- an OpenAI-compatible agent ------------------------------------------------------------------


def reminded_by_model(server: ServerProcess, bearer: str) -> dict[str, Any]:
    """J asks the ``writer`` agent; its model sets a reminder; the heartbeat posts it."""
    seen: dict[str, Any] = {}
    with devices(server) as hubs:
        hubs.open("J", "chat", bearer)
        hubs.open("N", "chat", bearer)
        own, _ = ask(hubs, server, bearer, "N", "what is 1 + 1", None)
        join(hubs, "N", own)
        sent = hubs.call(
            "J",
            "SendMessage",
            {"agentId": "writer", "content": "Nudge me soon.", "isStreaming": True},
        )
        hubs.wait_done("J", sent["taskId"])
        seen["session"] = sent["sessionId"]
        seen["message"] = hubs.wait(
            "J", "ReceiveMessage", sessionId=sent["sessionId"], content="Reminder: stand up"
        )
        seen["notification"] = hubs.wait("N", "SessionNotification", kind="heartbeatActioned")
    return seen


async def test_reminders_an_openai_compatible_agent_sets_one_through_its_tools(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    arguments = {"text": "stand up", "inSeconds": 1}
    endpoint = Endpoint(
        in_turn(
            tool_calls_answer(call_spec("call_1", "set_reminder", arguments)),
            reply_answer("I will nudge you."),
        )
    )
    with trio.fail_after(60):
        async with serving(endpoint) as base_url:
            agents = tmp_path / "agents.toml"
            agents.write_text(
                f'[agents.writer]\nbackend = "openai"\nbase_url = "{base_url}"\n'
                'model = "tiny-model"\n'
            )
            server = start_server(settings={**HEARTBEAT, "agents_file": str(agents)})
            bearer = token(server, new_id("ana"), zoneinfo="Europe/Lisbon")
            seen = await trio.to_thread.run_sync(partial(reminded_by_model, server, bearer))
    first, second = endpoint.bodies()
    offered = {tool["function"]["name"] for tool in first["tools"]}
    assert {"set_reminder", "list_reminders", "cancel_reminder"} <= offered
    [result] = [m for m in second["messages"] if m["role"] == "tool"]
    reminder = json.loads(result["content"])
    assert (reminder["text"], reminder["timeZone"]) == ("stand up", "Europe/Lisbon")
    assert reminder["sessionId"] == seen["session"]
    assert seen["message"]["role"] == "assistant"
    assert seen["notification"]["refId"] == reminder["reminderId"]
    assert seen["notification"]["sessionId"] == seen["session"]
