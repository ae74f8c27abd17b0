"""``/hubs/node`` and command dispatch, against a real server, with a node by hand (issue 15).

The node here is the test's own hub client, so each test sees exactly what the
gateway sends and answers as a conforming node would, or as a broken one
would: garbage, an error, no answer, a disconnect mid-command, a result twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio_websocket

from tests.support.server import ServerProcess
from tests.support.ws_client import CLOSE, COMPLETION, open_hub_client

from .support import (
    dispatch_soon,
    hand_node,
    http,
    node_status,
    register,
    wait_for_polls,
    wait_for_status,
)

TIMEOUT = 30


async def online_node(
    hub: ServerProcess, user: str, name: str, scopes: list[str] | None = None
) -> tuple[str, str]:
    return await register(hub, user, name, scopes or ["echo", "slow"])


async def test_node_hub_execute_command_is_a_client_result(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "round-trip")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(hub, user, node_id, "online")
            pending = dispatch_soon(
                nursery, hub, user, node_id, {"command": "echo", "params": {"text": "hi"}}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            assert invocation["invocationId"]  # a client result: the gateway waits for it
            [payload] = invocation["arguments"]
            assert payload == {
                "commandId": payload["commandId"],
                "command": "echo",
                "params": {"text": "hi"},
            }
            await node.answer(invocation, {"ok": True, "result": {"text": "hi"}})
            response = await pending.result()
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["result"], body["deliveries"]) == ("succeeded", {"text": "hi"}, 1)
    assert body["commandId"] == payload["commandId"]


async def test_node_hub_accepted_then_command_result_is_recorded_once(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "accepted")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(hub, user, node_id, "online")
            pending = dispatch_soon(nursery, hub, user, node_id, {"command": "slow"})
            invocation = await node.next_invocation("ExecuteCommand")
            command_id = invocation["arguments"][0]["commandId"]
            await node.answer(invocation, {"accepted": True})
            history = await http("GET", hub, f"/api/nodes/{node_id}/commands", user)
            while history.json()[0]["status"] != "accepted":
                await trio.sleep(0.05)
                history = await http("GET", hub, f"/api/nodes/{node_id}/commands", user)
            first = await node.client.invoke(
                "CommandResult", {"commandId": command_id, "ok": True, "result": 42}
            )
            again = await node.client.invoke(
                "CommandResult", {"commandId": command_id, "ok": False, "error": "late"}
            )
            unknown = await node.client.invoke(
                "CommandResult", {"commandId": "cmd_nobody", "ok": True, "result": 1}
            )
            response = await pending.result()
    assert "error" not in first
    assert "answered already" in again["error"]
    assert "unknown" in unknown["error"]
    assert response.status_code == 200 and response.json()["result"] == 42


@pytest.mark.parametrize(
    "garbage",
    ["lol", None, 7, {"ok": "yes"}, {"accepted": False}, {"ok": False, "error": 5}, []],
)
async def test_node_hub_a_garbage_answer_fails_the_command_and_the_connection_stays(
    hub: ServerProcess, garbage: object
) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, f"garbage-{garbage!r}"[:60])
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(hub, user, node_id, "online")
            pending = dispatch_soon(nursery, hub, user, node_id, {"command": "echo"})
            await node.answer(await node.next_invocation("ExecuteCommand"), garbage)
            failed = await pending.result()
            # The same connection still works.
            second = dispatch_soon(nursery, hub, user, node_id, {"command": "echo"})
            await node.answer(await node.next_invocation("ExecuteCommand"), {"ok": True})
            worked = await second.result()
    assert failed.status_code == 502, failed.text
    assert "not valid" in failed.json()["error"]
    assert failed.json()["command"]["status"] == "failed"
    assert worked.status_code == 200, worked.text


async def test_node_hub_a_node_that_throws_fails_the_command_with_its_error(
    hub: ServerProcess,
) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "throws")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(hub, user, node_id, "online")
            pending = dispatch_soon(nursery, hub, user, node_id, {"command": "echo"})
            await node.fail(await node.next_invocation("ExecuteCommand"), "disk on fire")
            response = await pending.result()
            declined = dispatch_soon(nursery, hub, user, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            await node.answer(invocation, {"ok": False, "error": "no such file"})
            refused = await declined.result()
    assert response.status_code == 502 and "disk on fire" in response.json()["error"]
    assert refused.status_code == 502 and refused.json()["error"] == "no such file"


async def test_node_hub_disconnect_mid_command_fails_it_or_redelivers_it_when_queued(
    hub: ServerProcess,
) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "drops")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            async with hand_node(hub, token) as node:
                await wait_for_status(hub, user, node_id, "online")
                plain = dispatch_soon(nursery, hub, user, node_id, {"command": "echo"})
                first = await node.next_invocation("ExecuteCommand")
                queued = dispatch_soon(
                    nursery, hub, user, node_id, {"command": "slow", "queue": True}
                )
                second = await node.next_invocation("ExecuteCommand")
            # The node left without answering either.
            unqueued = await plain.result()
            async with hand_node(hub, token) as node:
                again = await node.next_invocation("ExecuteCommand")
                await node.answer(again, {"ok": True, "result": "done"})
                redelivered = await queued.result()
    assert first["arguments"][0]["command"] == "echo"
    assert unqueued.status_code == 502 and unqueued.json()["error"] == "node disconnected"
    assert again["arguments"][0]["commandId"] == second["arguments"][0]["commandId"]
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["deliveries"] == 2


async def test_node_hub_offline_is_409_and_a_queued_command_waits_for_the_node(
    hub: ServerProcess,
) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "offline")
    refused = await http("POST", hub, f"/api/nodes/{node_id}/commands", user, {"command": "echo"})
    expired = await http(
        "POST",
        hub,
        f"/api/nodes/{node_id}/commands",
        user,
        {"command": "echo", "queue": True, "timeoutSeconds": 0.3},
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            waiting = dispatch_soon(
                nursery, hub, user, node_id, {"command": "echo", "queue": True, "params": [1]}
            )
            while len((await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json()) < 2:
                await trio.sleep(0.05)
            async with hand_node(hub, token) as node:
                invocation = await node.next_invocation("ExecuteCommand")
                await node.answer(invocation, {"ok": True, "result": [1]})
                delivered = await waiting.result()
    assert refused.status_code == 409 and "offline" in refused.json()["error"]
    assert expired.status_code == 504, expired.text
    assert expired.json()["command"]["status"] == "timedOut"
    assert invocation["arguments"][0]["params"] == [1]  # the expired one was never sent
    assert delivered.status_code == 200 and delivered.json()["result"] == [1]


async def test_node_hub_no_answer_in_time_is_504_and_a_late_answer_changes_nothing(
    hub: ServerProcess,
) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "silent")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(hub, user, node_id, "online")
            pending = dispatch_soon(
                nursery, hub, user, node_id, {"command": "echo", "timeoutSeconds": 0.5}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            response = await pending.result()
            await node.answer(invocation, {"ok": True, "result": "too late"})
            late = await node.client.invoke(
                "CommandResult",
                {"commandId": invocation["arguments"][0]["commandId"], "ok": True, "result": 1},
            )
    assert response.status_code == 504, response.text
    assert "0.5 seconds" in response.json()["error"]
    assert "answered already" in late["error"]
    history = (await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json()
    assert [(c["status"], c["result"]) for c in history] == [("timedOut", None)]


async def test_node_hub_scope_not_granted_is_403_and_nothing_is_sent(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "scoped", ["echo"])
    async with hand_node(hub, token):
        await wait_for_status(hub, user, node_id, "online")
        response = await http(
            "POST", hub, f"/api/nodes/{node_id}/commands", user, {"command": "shell"}
        )
    assert response.status_code == 403 and "'shell' is not granted" in response.json()["error"]
    assert (await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json() == []


async def test_node_hub_refresh_scopes_then_scope_changed(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "rescoped", ["echo"])
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node:
            await wait_for_status(hub, user, node_id, "online")
            patched = await http(
                "PATCH", hub, f"/api/nodes/{node_id}", user, {"scopes": ["echo", "read_file"]}
            )
            refresh = await node.next_invocation("RefreshScopes")
            ack = await node.client.invoke("ScopeChanged", refresh["arguments"][0])
            found = await node_status(hub, user, node_id)
    assert patched.status_code == 200 and patched.json()["scopes"] == ["echo", "read_file"]
    assert refresh["arguments"] == [{"scopes": ["echo", "read_file"]}]
    assert "invocationId" not in refresh  # a plain call: the node answers by ScopeChanged
    assert "error" not in ack
    assert found["acknowledgedScopes"] == ["echo", "read_file"]


async def test_node_hub_revoke_access_cuts_the_node_off_on_every_path(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "revoked")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node:
            await wait_for_status(hub, user, node_id, "online")
            deleted = await http("DELETE", hub, f"/api/nodes/{node_id}", user)
            revoke = await node.next_invocation("RevokeAccess")
            close = await node.client.receive_message()
    assert deleted.status_code == 204
    assert revoke["arguments"] == [{}]
    assert close["type"] == CLOSE and close["error"] == "This node's access has been revoked."
    negotiate = await http("POST", hub, "/hubs/node/negotiate?negotiateVersion=1", token)
    polled = await http("GET", hub, "/api/nodes/me/commands", token, wait="0")
    beat = await http("POST", hub, "/api/nodes/me/heartbeat", token, {})
    assert (negotiate.status_code, polled.status_code, beat.status_code) == (401, 401, 401)
    assert "revoked" in negotiate.text
    with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
        async with open_hub_client(f"{hub.ws_url}/hubs/node", token=token):
            pass
    assert rejected.value.status_code == 401
    assert (await http("GET", hub, f"/api/nodes/{node_id}", user)).status_code == 404


async def test_node_hub_a_waiting_poll_of_a_revoked_node_answers_401(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "revoked-poller")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            answers: list[int] = []

            async def poll() -> None:
                answers.append(
                    (await http("GET", hub, "/api/nodes/me/commands", token)).status_code
                )

            nursery.start_soon(poll)
            await wait_for_polls(hub)
            assert (await http("DELETE", hub, f"/api/nodes/{node_id}", user)).status_code == 204
    assert answers == [401]


async def test_node_hub_who_may_use_what(hub: ServerProcess) -> None:
    ada, bob, ada_elsewhere = hub.token("ada"), hub.token("bob"), hub.token("ada", "globex")
    node_id, token = await online_node(hub, ada, "mine")
    # A user's token on the node paths; a node's token on the user paths.
    user_on_hub = await http("POST", hub, "/hubs/node/negotiate?negotiateVersion=1", ada)
    user_polls = await http("GET", hub, "/api/nodes/me/commands", ada, wait="0")
    node_on_chat = await http("POST", hub, "/hubs/chat/negotiate?negotiateVersion=1", token)
    node_on_rest = await http("GET", hub, "/api/nodes", token)
    node_dispatches = await http(
        "POST", hub, f"/api/nodes/{node_id}/commands", token, {"command": "echo"}
    )
    assert [r.status_code for r in (user_on_hub, user_polls, node_on_chat, node_on_rest)] == [
        403,
        403,
        403,
        403,
    ]
    assert node_dispatches.status_code == 403
    with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
        async with open_hub_client(f"{hub.ws_url}/hubs/node", token=ada):
            pass
    assert rejected.value.status_code == 403
    # Another user's, or another tenant's, node: as if it did not exist.
    for other in (bob, ada_elsewhere):
        for method, path, body in (
            ("GET", f"/api/nodes/{node_id}", None),
            ("POST", f"/api/nodes/{node_id}/commands", {"command": "echo"}),
            ("GET", f"/api/nodes/{node_id}/commands", None),
            ("PATCH", f"/api/nodes/{node_id}", {"scopes": ["echo"]}),
            ("DELETE", f"/api/nodes/{node_id}", None),
        ):
            response = await http(method, hub, path, other, body)
            assert response.status_code == 404, (method, path, response.text)
    assert [n["nodeId"] for n in (await http("GET", hub, "/api/nodes", bob)).json()] == []


async def test_node_hub_heartbeat_for_another_node_is_refused(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "beats")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node:
            wrong = await node.client.invoke("Heartbeat", {"nodeId": "nod_other", "uptime": 1})
            right = await node.client.invoke(
                "Heartbeat", {"nodeId": node_id, "status": "ready", "uptime": 12.5}
            )
    assert "not 'nod_other'" in wrong["error"]
    assert right == {"type": COMPLETION, "invocationId": right["invocationId"], "result": None}
    found = await node_status(hub, user, node_id)
    assert found["uptime"] == 12.5 and found["lastHeartbeat"] is not None


async def test_node_hub_bad_requests_get_clear_errors(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "bad-input")
    cases = [
        ("POST", "/api/nodes", {"name": "", "scopes": ["echo"]}, "'name'"),
        ("POST", "/api/nodes", {"name": "x", "scopes": []}, "'scopes'"),
        ("POST", "/api/nodes", {"name": "x", "scopes": ["no spaces"]}, "scope"),
        ("POST", "/api/nodes", [1], "JSON object"),
        ("POST", "/api/nodes", {"name": "bad-input", "scopes": ["echo"]}, "already"),
        ("POST", f"/api/nodes/{node_id}/commands", {"command": ""}, "'command'"),
        (
            "POST",
            f"/api/nodes/{node_id}/commands",
            {"command": "echo", "timeoutSeconds": 0},
            "'timeoutSeconds'",
        ),
        ("POST", f"/api/nodes/{node_id}/commands", {"command": "echo", "queue": "yes"}, "'queue'"),
        ("PATCH", f"/api/nodes/{node_id}", {"scopes": "echo"}, "'scopes'"),
    ]
    for method, path, body, says in cases:
        response = await http(method, hub, path, user, body)
        assert response.status_code in (400, 409), (path, body, response.text)
        assert says in response.json()["error"], (path, body, response.text)
    history = await http("GET", hub, f"/api/nodes/{node_id}/commands", user, limit="0")
    waited = await http("GET", hub, "/api/nodes/me/commands", token, wait="forever")
    unknown = await http("POST", hub, "/api/nodes/me/commands/cmd_x/result", token, {"ok": True})
    malformed = await http("POST", hub, "/api/nodes/me/commands/cmd_x/result", token, {"ok": 1})
    beat = await http("POST", hub, "/api/nodes/me/heartbeat", token, {"uptime": "long"})
    assert [r.status_code for r in (history, waited, unknown, malformed, beat)] == [
        400,
        400,
        404,
        400,
        400,
    ]


async def test_node_hub_a_poll_waits_for_a_command_and_its_result_is_recorded_once(
    hub: ServerProcess,
) -> None:
    user = hub.token("ada")
    node_id, token = await online_node(hub, user, "poller")
    beat = await http("POST", hub, "/api/nodes/me/heartbeat", token, {"uptime": 3})
    assert beat.status_code == 200 and beat.json() == {"intervalSeconds": 30.0}
    found = await node_status(hub, user, node_id)
    assert (found["status"], found["transport"]) == ("online", "polling")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            polled: list[dict] = []

            async def poll() -> None:
                polled.append((await http("GET", hub, "/api/nodes/me/commands", token)).json())

            nursery.start_soon(poll)
            await wait_for_polls(hub)  # the poll is waiting: the command must wake it
            pending = dispatch_soon(
                nursery, hub, user, node_id, {"command": "echo", "params": {"a": 1}}
            )
            while not polled:
                await trio.sleep(0.02)
            [delivery] = polled[0]["commands"]
            path = f"/api/nodes/me/commands/{delivery['commandId']}/result"
            first = await http("POST", hub, path, token, {"ok": True, "result": {"a": 1}})
            second = await http("POST", hub, path, token, {"ok": True, "result": "again"})
            response = await pending.result()
    assert polled[0]["scopes"] == ["echo", "slow"]
    assert delivery == {"commandId": delivery["commandId"], "command": "echo", "params": {"a": 1}}
    assert first.status_code == 200 and first.json()["status"] == "succeeded"
    assert second.status_code == 409
    assert response.status_code == 200 and response.json()["result"] == {"a": 1}
    quiet = await http("GET", hub, "/api/nodes/me/commands", token, wait="0")
    assert quiet.json()["commands"] == []


async def test_node_hub_a_node_of_another_user_cannot_answer_for_mine(hub: ServerProcess) -> None:
    ada, bob = hub.token("ada"), hub.token("bob")
    node_id, token = await online_node(hub, ada, "answered-by-me")
    _, intruder = await online_node(hub, bob, "intruder")
    with trio.fail_after(TIMEOUT):
        async with hand_node(hub, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(hub, ada, node_id, "online")
            pending = dispatch_soon(nursery, hub, ada, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            command_id = invocation["arguments"][0]["commandId"]
            forged = await http(
                "POST", hub, f"/api/nodes/me/commands/{command_id}/result", intruder, {"ok": True}
            )
            await node.answer(invocation, {"ok": True, "result": "mine"})
            response = await pending.result()
    assert forged.status_code == 404
    assert response.json()["result"] == "mine"


def test_node_hub_token_cli_registers_a_node(hub: ServerProcess, tmp_path: Path) -> None:
    """``voisnap token --node`` registers the node in the server's own store."""
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "voisnap", "token", "--user", "cli-user", "--tenant", "acme",
        "--node", "from-cli", "--scope", "echo", "--scope", "list_dir",
        "--data-dir", str(hub.data_dir),
    ]  # fmt: skip
    token = subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
    assert token.stdout.count(".") == 2  # a JWT
    again = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "already" in again.stderr
    listed = trio.run(http, "GET", hub, "/api/nodes", hub.token("cli-user")).json()
    assert [(n["name"], n["scopes"]) for n in listed] == [("from-cli", ["echo", "list_dir"])]
    negotiated = trio.run(
        http, "POST", hub, "/hubs/node/negotiate?negotiateVersion=1", token.stdout.strip()
    )
    assert negotiated.status_code == 200, negotiated.text
