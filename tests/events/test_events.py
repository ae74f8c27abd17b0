"""``/v1/events`` (issue 20, seed 003; docs/v1-events.md) against a real ``voisnap serve``:
subscribe and unsubscribe, wildcards, the events a chat task produces, tenant and user
isolation, ingestion over REST, limits, bad frames, and keep-alive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from wsproto.events import Ping

from tests.conftest import FAST_SETTINGS
from tests.nodes.support import hand_node, register
from tests.support.server import ServerProcess
from tests.support.stream_client import StreamClient, open_stream
from tests.support.ws_client import open_raw_websocket

PING_INTERVAL, PONG_TIMEOUT = 0.3, 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.002",
                "plain_ws_ping_interval": str(PING_INTERVAL),
                "plain_ws_pong_timeout": str(PONG_TIMEOUT), "events_max_subscriptions": "5"}
    with ServerProcess(tmp_path_factory.mktemp("v1-events") / "data", settings) as started:
        yield started


def events_of(server: ServerProcess, token: str, **options: Any) -> Any:
    return open_stream(server, token, path="/v1/events", **options)


async def subscribe(client: StreamClient, sid: str, topic: str) -> dict[str, Any]:
    await client.send({"type": "subscribe", "id": sid, "topic": topic})
    return await client.until(lambda e: e.get("id") == sid)


async def ingest(server: ServerProcess, token: str, topic: str, data: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.post(f"/v1/events/{topic}", json=data,
                               headers={"authorization": f"Bearer {token}"})


async def chat(server: ServerProcess, token: str, prompt: str) -> None:
    """One turn, through ``/v1/stream``, to its end."""
    async with open_stream(server, token) as stream:
        await stream.send({"type": "task.submit", "prompt": prompt})
        await stream.until(lambda e: e["type"] in ("task:done", "task:failed"))


# -- subscriptions -----------------------------------------------------------------------------


async def test_subscribe_then_events_then_unsubscribe(server: ServerProcess) -> None:
    service = server.token(user="svc", roles=["service"])
    async with events_of(server, server.token()) as client:
        answer = await subscribe(client, "s1", "events.acme.billing.invoice.paid.*")
        assert answer == {"type": "subscribed", "id": "s1",
                          "topic": "events.acme.billing.invoice.paid.*"}
        posted = await ingest(server, service, "events.acme.billing.invoice.paid.inv_1",
                              {"amount": 42})
        assert posted.status_code == 202
        event = await client.until_type("event")
        assert event == {"type": "event", "topic": "events.acme.billing.invoice.paid.inv_1",
                         "data": {"amount": 42}, "ts": posted.json()["ts"]}
        assert event["ts"].endswith("Z")
        await client.send({"type": "unsubscribe", "id": "s1"})
        assert await client.next() == {"type": "unsubscribed", "id": "s1"}
        # Unsubscribed: the next event is not delivered; a marker subscription shows the order.
        await subscribe(client, "marker", "events.acme.marker.>")
        await ingest(server, service, "events.acme.billing.invoice.paid.inv_2", {})
        await ingest(server, service, "events.acme.marker.x.y.z", {})
        assert (await client.until_type("event"))["topic"] == "events.acme.marker.x.y.z"


async def test_an_event_matching_several_subscriptions_comes_once(server: ServerProcess) -> None:
    service = server.token(user="svc", roles=["service"])
    async with events_of(server, server.token()) as client:
        for sid, topic in (("a", "events.acme.>"), ("b", "events.acme.x.*.*.*"),
                           ("c", "events.acme.x.y.z.w")):
            await subscribe(client, sid, topic)
        await ingest(server, service, "events.acme.x.y.z.w", 1)
        await ingest(server, service, "events.acme.last.a.b.c", 2)
        first = await client.until_type("event")
        second = await client.until_type("event")
    assert (first["data"], second["data"]) == (1, 2)


async def test_a_chat_task_produces_its_events(server: ServerProcess) -> None:
    token = server.token(user="chatty")
    async with events_of(server, token) as client:
        await subscribe(client, "tasks", "events.acme.tasks.task.*.*")
        await subscribe(client, "posted", "events.acme.conversations.conversation.message_posted.*")
        await subscribe(client, "stream", "events.acme.conversations.conversation.message_stream.>")
        await chat(server, token, "what is 6 * 7")
        # The reply is posted before the task is completed (stored, then announced).
        await client.until(lambda e: ".tasks.task.completed." in e.get("topic", ""))
    shown = [e for e in client.log if e["type"] == "event"]
    states = [e["data"]["status"] for e in shown if ".tasks.task." in e["topic"]]
    assert states == ["queued", "started", "completed"]
    task_id = shown[0]["data"]["task_id"]
    assert shown[0]["topic"] == f"events.acme.tasks.task.queued.{task_id}"
    posted = [e["data"] for e in shown if "message_posted" in e["topic"]]
    assert [(m["role"], m["content"]) for m in posted] == [("user", "what is 6 * 7"),
                                                          ("assistant", "6 * 7 = 42.")]
    session_id = posted[0]["session_id"]
    deltas = [e for e in shown if "message_stream" in e["topic"]]
    assert all(e["topic"].endswith(session_id) for e in deltas)
    assert "".join(e["data"]["delta"] for e in deltas) == "6 * 7 = 42."
    assert deltas[-1]["data"]["is_final"] is True


async def test_an_approval_is_requested_then_resolved(server: ServerProcess) -> None:
    token = server.token(user="approver")
    async with events_of(server, token) as client:
        await subscribe(client, "a", "events.acme.approvals.approval.>")
        async with open_stream(server, token) as stream:
            await stream.send({"type": "task.submit", "prompt": "forget milk"})
            requested = await client.until_type("event")
            first_token = await stream.until_type("task:tool_use")
            await stream.send({"type": "task.cancel", "task_id": first_token["task_id"]})
            resolved = await client.until_type("event")
    approval_id = requested["data"]["approval_id"]
    assert requested["topic"] == f"events.acme.approvals.approval.requested.{approval_id}"
    assert requested["data"]["tool_name"] == "delete_note"
    assert resolved["topic"] == f"events.acme.approvals.approval.resolved.{approval_id}"
    assert resolved["data"]["status"] == "cancelled"


# -- isolation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["events.other.>", "events.*.tasks.>", "events.>",
                                   "events.acmee.>"])
async def test_another_orgs_topics_are_forbidden(server: ServerProcess, topic: str) -> None:
    async with events_of(server, server.token()) as client:
        refused = await subscribe(client, "x", topic)
    assert refused["type"] == "error" and refused["code"] == "FORBIDDEN"


async def test_a_users_events_reach_only_that_user_and_ingested_ones_everybody(
    server: ServerProcess,
) -> None:
    owner, neighbour = server.token(user="owner"), server.token(user="neighbour")
    stranger = server.token(user="owner", tenant="other")
    service = server.token(user="svc", roles=["service"])
    async with events_of(server, owner) as mine, events_of(server, neighbour) as theirs, \
            events_of(server, stranger) as far:
        await subscribe(mine, "all", "events.acme.>")
        await subscribe(theirs, "all", "events.acme.>")
        await subscribe(far, "all", "events.other.>")
        await chat(server, owner, "hello")
        await mine.until(lambda e: ".tasks.task.completed." in e.get("topic", ""))
        await ingest(server, service, "events.acme.notice.board.posted.n1", "for everybody")
        await mine.until(lambda e: e.get("data") == "for everybody")
        notice = await theirs.until_type("event")  # the first the neighbour gets
        await ingest(server, server.token(user="svc", tenant="other", roles=["service"]),
                     "events.other.notice.board.posted.n2", "far")
        far_event = await far.until_type("event")
    assert notice["data"] == "for everybody"
    assert far_event["data"] == "far"
    assert [e for e in far.log if e["type"] == "event"] == [far_event]


async def test_ingestion_needs_the_service_role_and_the_callers_org(
    server: ServerProcess,
) -> None:
    service = server.token(user="svc", roles=["service"])
    assert (await ingest(server, server.token(), "events.acme.a.b.c.d", {})).status_code == 403
    assert (await ingest(server, service, "events.other.a.b.c.d", {})).status_code == 403
    assert (await ingest(server, service, "events.acme.*.b.c.d", {})).status_code == 400
    assert (await ingest(server, service, "tasks.acme.a", {})).status_code == 400
    assert (await ingest(server, service, "events.acme", {})).status_code == 403
    async with httpx.AsyncClient(base_url=server.url) as http:
        garbage = await http.post("/v1/events/events.acme.a.b", content=b"{nope",
                                  headers={"authorization": f"Bearer {service}"})
        anonymous = await http.post("/v1/events/events.acme.a.b", json={})
    assert garbage.status_code == 400 and anonymous.status_code == 401


# -- limits and bad frames ---------------------------------------------------------------------


async def test_subscriptions_per_connection_are_limited(server: ServerProcess) -> None:
    async with events_of(server, server.token()) as client:
        for n in range(5):
            assert (await subscribe(client, f"s{n}", f"events.acme.s{n}.>"))["type"] == "subscribed"
        refused = await subscribe(client, "s5", "events.acme.s5.>")
        assert refused["code"] == "RATE_LIMITED"
        await client.send({"type": "unsubscribe", "id": "s0"})
        await client.until_type("unsubscribed")
        assert (await subscribe(client, "s5", "events.acme.s5.>"))["type"] == "subscribed"


BAD = [
    ("nope", None, "BAD_REQUEST"),
    ('{"type": "subscribe", "topic": "events.acme.>"}', None, "BAD_REQUEST"),
    ('{"type": "subscribe", "id": 5, "topic": "events.acme.>"}', None, "BAD_REQUEST"),
    ('{"type": "listen", "id": "x"}', "x", "BAD_REQUEST"),
    ('{"type": "subscribe", "id": "x"}', "x", "BAD_REQUEST"),
    ('{"type": "subscribe", "id": "x", "topic": "events.acme.>.x"}', "x", "BAD_REQUEST"),
    ('{"type": "subscribe", "id": "x", "topic": "events.acme.a b"}', "x", "BAD_REQUEST"),
    ('{"type": "subscribe", "id": "\\ud800", "topic": "events.acme.>"}', None, "BAD_REQUEST"),
    ('{"type": "unsubscribe", "id": "never"}', "never", "NOT_FOUND"),
]


async def test_bad_frames_get_an_error_with_their_id(server: ServerProcess) -> None:
    async with events_of(server, server.token()) as client:
        for frame, frame_id, code in BAD:
            await client.ws.send_message(frame)
            refused = await client.next()
            assert refused["type"] == "error" and refused["code"] == code, frame
            assert refused.get("id") == frame_id, frame
        await subscribe(client, "dup", "events.acme.>")
        assert (await subscribe(client, "dup", "events.acme.x.>"))["code"] == "BAD_REQUEST"


async def test_a_bad_token_gets_4001(server: ServerProcess) -> None:
    async with events_of(server, "forged") as client:
        assert await client.closed_with() == 4001
    assert client.log[0]["code"] == "UNAUTHORIZED"


# -- keep-alive --------------------------------------------------------------------------------


async def test_a_client_that_answers_no_ping_is_closed(server: ServerProcess) -> None:
    raw = await open_raw_websocket("127.0.0.1", server.port,
                                   f"/v1/events?token={server.token()}")
    await raw.send_message('{"type": "subscribe", "id": "s", "topic": "events.acme.>"}')
    with trio.fail_after(15):  # RawWebSocket sends no Pong
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await raw.get_message()
    assert raw.close_event is not None and raw.close_event.code == 1001
    await raw.aclose()


async def test_a_client_that_answers_pings_stays(server: ServerProcess) -> None:
    """Pings every 0.3 s, a client unheard for 1.5 s is closed: one that answers
    ten pings (3 s) is still there."""
    raw = await open_raw_websocket("127.0.0.1", server.port,
                                   f"/v1/events?token={server.token()}")
    pings = 0
    with trio.fail_after(15):
        while pings < 10:
            for event in await raw._events():
                if isinstance(event, Ping):
                    pings += 1
                    await raw.stream.send_all(raw.ws.send(event.response()))
                else:
                    raw._handle(event)
            assert raw.close_event is None
        await raw.send_message('{"type": "subscribe", "id": "s", "topic": "events.acme.>"}')
        assert '"subscribed"' in await raw.get_message()
    await raw.aclose()


# -- flows and nodes ---------------------------------------------------------------------------


async def test_a_schedules_runs_are_flow_events(server: ServerProcess) -> None:
    token = server.token(user="planner")
    async with events_of(server, token) as client, httpx.AsyncClient(base_url=server.url) as http:
        await subscribe(client, "flows", "events.acme.flows.flow.run.*")
        made = await http.post("/schedules", headers={"authorization": f"Bearer {token}"},
                               json={"cron": "* * * * * *", "agentId": "sophon",
                                     "prompt": "what time is it"})
        assert made.status_code == 201, made.text
        schedule_id = made.json()["scheduleId"]
        running = await client.until(lambda e: e.get("data", {}).get("status") == "running")
        run_id = running["data"]["run_id"]
        done = await client.until(lambda e: e.get("data", {}).get("run_id") == run_id
                                  and e["data"]["status"] != "running")
        await http.delete(f"/schedules/{schedule_id}",
                          headers={"authorization": f"Bearer {token}"})
    assert running["topic"] == f"events.acme.flows.flow.run.{run_id}"
    assert running["data"]["schedule_id"] == schedule_id
    assert done["data"]["status"] == "completed"


async def test_a_nodes_coming_and_going_are_node_events(server: ServerProcess) -> None:
    owner = server.token(user="machinist")
    node_id, node_token = await register(server, owner, "laptop", ["echo"])
    async with events_of(server, owner) as client:
        await subscribe(client, "nodes", "events.acme.nodes.node.>")
        async with hand_node(server, node_token):
            online = await client.until_type("event")
        offline = await client.until_type("event")
    assert online["topic"] == f"events.acme.nodes.node.online.{node_id}"
    assert offline["topic"] == f"events.acme.nodes.node.offline.{node_id}"
    assert (online["data"]["name"], offline["data"]["status"]) == ("laptop", "offline")
