"""A node that moves from WebSockets to polling mid-command runs each command once (issue 15).

The reference node runs in this process (``ReferenceNode``), against a real
server. Six queued commands are delivered over the hub and are running when
the node switches to polling: the server sends them back to the queue (their
connection closed), the poll hands them out again with the same ``commandId``
(at least once), and the node answers each from the run already under way
(at most once). Each command appends a line to a file: six lines, one each.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.support.server import ServerProcess
from voisnap.node_client import NodeConfig, ReferenceNode

from .support import dispatch_soon, http, register, wait_for_status

TIMEOUT = 40
COMMANDS = 6


async def test_switching_transports_mid_command_runs_each_command_once(
    hub: ServerProcess, tmp_path: Path
) -> None:
    user = hub.token("switcher")
    node_id, token = await register(hub, user, "roamer", ["shell"])
    # The commands wait for this file before they end, so that all six are
    # running on the node when it switches.
    release = tmp_path / "release"
    config = NodeConfig(
        url=hub.url, token=token, root=tmp_path, allow_shell=True, heartbeat_interval=1,
        backoff_delays=(0.0, 0.2), poll_wait=5,
    )  # fmt: skip
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            node: ReferenceNode = await nursery.start(ReferenceNode(config).run)
            await wait_for_status(hub, user, node_id, "online")
            pending = [
                dispatch_soon(
                    nursery,
                    hub,
                    user,
                    node_id,
                    {
                        "command": "shell",
                        "params": {
                            "command": f"echo {n} >> ran.txt; "
                            f"while [ ! -e {release} ]; do sleep 0.05; done",
                            "timeoutSeconds": 30,
                        },
                        "queue": True,
                        "timeoutSeconds": 30,
                    },
                )
                for n in range(COMMANDS)
            ]
            ran = tmp_path / "ran.txt"
            while not ran.exists() or len(ran.read_text().splitlines()) < COMMANDS:
                await trio.sleep(0.05)
            node.switch_transport("polling")
            await wait_for_status(hub, user, node_id, "online")
            history = (await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json()
            while any(c["deliveries"] < 2 for c in history):  # handed out again by a poll
                await trio.sleep(0.05)
                history = (await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json()
            release.write_text("go")
            responses = [await dispatch.result() for dispatch in pending]
            transport = (await wait_for_status(hub, user, node_id, "online"))["transport"]
            nursery.cancel_scope.cancel()
    assert [r.status_code for r in responses] == [200] * COMMANDS, [r.text for r in responses]
    assert sorted(ran.read_text().split()) == [str(n) for n in range(COMMANDS)]
    assert transport == "polling"
    final = (await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json()
    assert {c["status"] for c in final} == {"succeeded"}
    assert all(c["deliveries"] == 2 for c in final)
