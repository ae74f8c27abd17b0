"""Hostile clients of ``/v1/events`` (seed 003; docs/v1-events.md): garbage frames,
topics that reach too far, duplicate ids, subscription storms, clients that vanish
mid-delivery or stop reading, abusive REST ingestion, and clients that answer no ping.

A bad frame gets an ``error`` frame (``BAD_REQUEST``, ``FORBIDDEN``, ``NOT_FOUND``,
``RATE_LIMITED``) and the connection stays; a WebSocket protocol error closes it with its
RFC 6455 code. After every case (the ``events_still_serve`` fixture) the server is alive,
its log holds no traceback and nothing at ERROR, and a fresh client subscribes, an event is
ingested, and the client gets it. Everything waits on the server, with a timeout.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
import trio
import trio_websocket

from tests.hostile.helpers import (
    BINARY,
    CLOSE_FRAME,
    CONTINUATION,
    PING_FRAME,
    PONG_FRAME,
    SECRET,
    TEXT,
    assert_quiet_log,
    claims,
    log_mark,
    make_token,
    nested_json,
    open_tcp,
    request_head,
    strict_loads,
    ws_frame,
)
from tests.hostile.test_v1_stream import (
    GARBAGE,
    PROTOCOL_VIOLATIONS,
    RawStream,
    assert_alive,
    close_code,
    open_raw,
)
from tests.support.server import ServerProcess
from tests.support.stream_client import StreamClient, open_stream
from tests.support.ws_client import HttpResponseReader, get_stats, wait_for_stats

MAX_FRAME = 64 * 1024  # GARBAGE's "type-huge" is sized for it
MAX_SUBSCRIPTIONS = 6
PING_INTERVAL, PONG_TIMEOUT = 0.3, 2.0
SERVER_SETTINGS = {
    "plain_ws_max_frame": str(MAX_FRAME),
    "plain_ws_ping_interval": str(PING_INTERVAL),
    "plain_ws_pong_timeout": str(PONG_TIMEOUT),
    "events_max_subscriptions": str(MAX_SUBSCRIPTIONS),
}
EVENTS = "/v1/events"
TIMEOUT = 15
MAX_ID, MAX_TOPIC, MAX_TOKENS = 128, 256, 16
GOING_AWAY, MESSAGE_TOO_BIG = 1001, 1009

_unique = itertools.count(1)


def fresh(prefix: str) -> str:
    """A topic token no other case uses."""
    return f"{prefix}{next(_unique)}"


def service_token(tenant: str = "acme", user: str = "svc") -> str:
    """A token with the role ``service``, signed with the suite's secret."""
    return jwt.encode({**claims(user, tenant), "roles": ["service"]}, SECRET, algorithm="HS256")


def events_of(server: ServerProcess, token: str, **options: Any) -> Any:
    return open_stream(server, token, path=EVENTS, **options)


async def subscribe(client: StreamClient, sid: str, topic: str) -> dict[str, Any]:
    """Subscribe; the answer with ``sid`` (``subscribed`` or ``error``)."""
    await client.send({"type": "subscribe", "id": sid, "topic": topic})
    return await client.until(lambda e: e.get("id") == sid and e["type"] != "event")


async def ingest(http: httpx.AsyncClient, topic: str, data: Any,
                 token: str | None = None) -> httpx.Response:
    token = token or service_token()
    return await http.post(f"/v1/events/{topic}", json=data,
                           headers={"authorization": f"Bearer {token}"})


@asynccontextmanager
async def rest(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        yield http


async def round_trip(server: ServerProcess, client: StreamClient, tenant: str = "acme") -> None:
    """``client`` (of ``tenant``) still works: a new subscription gets a new event, once."""
    sid, word = fresh("check-"), fresh("check")
    answer = await subscribe(client, sid, f"events.{tenant}.{word}.>")
    assert answer["type"] == "subscribed", answer
    async with rest(server) as http:
        posted = await ingest(http, f"events.{tenant}.{word}.x.y", {"n": word},
                              service_token(tenant))
    assert posted.status_code == 202, posted.text
    event = await client.until_type("event")
    assert event == {"type": "event", "topic": f"events.{tenant}.{word}.x.y",
                     "data": {"n": word}, "ts": posted.json()["ts"]}
    await client.send({"type": "unsubscribe", "id": sid})
    await client.until_type("unsubscribed", id=sid)


async def assert_events_serve(server: ServerProcess) -> None:
    """The server is alive, and a fresh, well-behaved client gets an event it subscribed to."""
    assert_alive(server)
    with trio.fail_after(TIMEOUT):
        async with events_of(server, make_token("bob")) as client:
            await round_trip(server, client)
    assert_alive(server)


@pytest.fixture(autouse=True)
async def events_still_serve(server: ServerProcess) -> AsyncIterator[None]:
    """After each hostile case: a normal client still works, and the log is quiet."""
    mark = log_mark(server)
    yield
    await assert_events_serve(server)
    assert_quiet_log(server, mark)


async def open_raw_events(server: ServerProcess, token: str, *,
                          receive_buffer: int | None = None) -> RawStream:
    """A hand-made WebSocket to ``/v1/events`` (``RawStream``: frames as given).
    It answers no Ping unless told to: keep it short, or see ``answer_pings``."""
    return await open_raw(server, token, receive_buffer=receive_buffer, path=EVENTS)


@asynccontextmanager
async def raw_events(server: ServerProcess, token: str, **options: Any
                     ) -> AsyncIterator[RawStream]:
    raw = await open_raw_events(server, token, **options)
    try:
        yield raw
    finally:
        await raw.aclose()


def frame_of(**fields: Any) -> str:
    return json.dumps(fields)


# -- garbage frames: an error frame, and the connection goes on ----------------------------------

# name -> (message, the error's id: None when the frame has no usable one)
EVENT_GARBAGE: dict[str, tuple[str | bytes, str | None]] = {
    "no-id": ('{"type": "subscribe", "topic": "events.acme.>"}', None),
    "id-number": ('{"type": "subscribe", "id": 5, "topic": "events.acme.>"}', None),
    "id-null": ('{"type": "subscribe", "id": null, "topic": "events.acme.>"}', None),
    "id-list": ('{"type": "subscribe", "id": ["s"], "topic": "events.acme.>"}', None),
    "id-object": ('{"type": "subscribe", "id": {"s": 1}, "topic": "events.acme.>"}', None),
    "id-bool": ('{"type": "subscribe", "id": true, "topic": "events.acme.>"}', None),
    "id-empty": ('{"type": "subscribe", "id": "", "topic": "events.acme.>"}', None),
    "id-too-long": (frame_of(type="subscribe", id="i" * (MAX_ID + 1), topic="events.acme.>"),
                    None),
    "id-huge": (frame_of(type="subscribe", id="i" * (MAX_FRAME - 200), topic="events.acme.>"),
                None),
    "id-huge-number": ('{"type": "subscribe", "id": ' + "9" * 5000 + ', "topic": "events.acme.>"}',
                       None),
    "id-lone-high-surrogate": ('{"type": "subscribe", "id": "\\ud800", "topic": "events.acme.>"}',
                               None),
    "id-lone-low-surrogate": ('{"type": "subscribe", "id": "a\\udfffb", "topic": "events.acme.>"}',
                              None),
    "topic-lone-surrogate": ('{"type": "subscribe", "id": "s", "topic": "events.acme.\\ud800"}',
                             "s"),
    "topic-lone-surrogate-pattern": (
        '{"type": "subscribe", "id": "s", "topic": "events.acme.\\udbff.>"}', "s"),
    "unsubscribe-id-surrogate": ('{"type": "unsubscribe", "id": "\\ud800"}', None),
    "no-type": ('{"id": "s", "topic": "events.acme.>"}', "s"),
    "type-number": ('{"type": 1, "id": "s", "topic": "events.acme.>"}', "s"),
    "type-null": ('{"type": null, "id": "s"}', "s"),
    "type-unknown": ('{"type": "publish", "id": "s", "topic": "events.acme.a.b"}', "s"),
    "type-wrong-case": ('{"type": "SUBSCRIBE", "id": "s", "topic": "events.acme.>"}', "s"),
    "type-event": ('{"type": "event", "id": "s", "topic": "events.acme.a.b", "data": 1}', "s"),
    "type-surrogate": ('{"type": "\\ud800", "id": "s"}', None),
    "no-topic": ('{"type": "subscribe", "id": "s"}', "s"),
    "topic-number": ('{"type": "subscribe", "id": "s", "topic": 7}', "s"),
    "topic-null": ('{"type": "subscribe", "id": "s", "topic": null}', "s"),
    "topic-list": ('{"type": "subscribe", "id": "s", "topic": ["events", "acme", ">"]}', "s"),
    "topic-object": ('{"type": "subscribe", "id": "s", "topic": {"$regex": ".*"}}', "s"),
    "topic-huge": (frame_of(type="subscribe", id="s", topic="events.acme." + "t" * 60000), "s"),
    "unsubscribe-no-id": ('{"type": "unsubscribe"}', None),
    "unsubscribe-id-number": ('{"type": "unsubscribe", "id": 1}', None),
    "nested-in-id": ('{"type": "subscribe", "id": ' + nested_json(20000) + "}", None),
    "nested-in-topic": ('{"type": "subscribe", "id": "s", "topic": ' + nested_json(20000) + "}",
                        None),
    "binary-subscribe": (b'{"type": "subscribe", "id": "s", "topic": "events.acme.>"}', None),
}
ALL_GARBAGE: dict[str, tuple[str | bytes, str | None]] = {
    **{f"stream-{name}": (frame, None) for name, frame in GARBAGE.items()},
    **EVENT_GARBAGE,
}


@pytest.mark.parametrize("name", list(ALL_GARBAGE))
async def test_a_malformed_frame_gets_bad_request_and_the_connection_goes_on(server, name):
    frame, frame_id = ALL_GARBAGE[name]
    async with events_of(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            await client.ws.send_message(frame)
            error = await client.next()
            assert error["type"] == "error" and error["code"] == "BAD_REQUEST", error
            assert isinstance(error["message"], str) and 0 < len(error["message"]) <= 500, error
            if frame_id is None:
                assert set(error) <= {"type", "code", "message", "id"}, error
                assert isinstance(error.get("id", ""), str), error
            else:
                assert error.get("id") == frame_id, error
            await round_trip(server, client)  # the same connection still works


async def test_a_burst_of_garbage_gets_one_error_per_frame_in_order_and_subscribes_nothing(
        server):
    frames = [frame for frame, _ in ALL_GARBAGE.values()]
    async with events_of(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            for frame in frames:
                await client.ws.send_message(frame)
            await client.send({"type": "unsubscribe", "id": "fence"})
            fence = await client.until(lambda e: e.get("id") == "fence")
        assert fence["code"] == "NOT_FOUND" and client.log[-1] is fence
        errors = client.log[:-1]
        assert len(errors) == len(frames), errors[-3:]
        assert {(e["type"], e["code"]) for e in errors} == {("error", "BAD_REQUEST")}
        # None of them subscribed anything: with no subscription, an event of the whole
        # tenant does not come; the round trip's event is the first this client sees.
        async with rest(server) as http:
            assert (await ingest(http, "events.acme.garbage.a.b", 1)).status_code == 202
        with trio.fail_after(TIMEOUT):
            await round_trip(server, client)
        assert len(client.of_type("event")) == 1, client.of_type("event")


# -- topics that are malformed or reach too far --------------------------------------------------

LONG_TOKEN = "t" * 128
BAD_TOPICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "empty": ("", ("BAD_REQUEST",)),
    "only-dots": ("...", ("BAD_REQUEST",)),
    "empty-token-middle": ("events.acme..tasks.>", ("BAD_REQUEST",)),
    "empty-token-end": ("events.acme.tasks.", ("BAD_REQUEST",)),
    "empty-token-start": (".events.acme.>", ("BAD_REQUEST",)),
    "seventeen-tokens": ("events.acme." + ".".join(["x"] * (MAX_TOKENS - 1)), ("BAD_REQUEST",)),
    "many-tokens": ("events.acme." + ".".join(["x"] * 100), ("BAD_REQUEST",)),
    "257-chars": ("events.acme." + LONG_TOKEN + "." + "u" * (MAX_TOPIC - 12 - 129 + 1),
                  ("BAD_REQUEST",)),
    "token-129-chars": ("events.acme." + "t" * 129, ("BAD_REQUEST",)),
    "unicode-letter": ("events.acme.tâches.>", ("BAD_REQUEST",)),
    "unicode-fullwidth": ("events.acme.\uff54asks.>", ("BAD_REQUEST",)),
    "unicode-digits": ("events.acme.١٢٣.>", ("BAD_REQUEST",)),
    "unicode-emoji": ("events.acme.🎉.>", ("BAD_REQUEST",)),
    "unicode-org": ("events.\uff41cme.>", ("BAD_REQUEST", "FORBIDDEN")),
    "space": ("events.acme.a b.>", ("BAD_REQUEST",)),
    "trailing-newline": ("events.acme.>\n", ("BAD_REQUEST",)),
    "nul": ("events.acme.a\u0000b", ("BAD_REQUEST",)),
    "slash": ("events/acme/>", ("BAD_REQUEST",)),
    "rest-in-middle": ("events.acme.>.completed", ("BAD_REQUEST",)),
    "rest-twice": ("events.acme.>.>", ("BAD_REQUEST",)),
    "rest-partial": ("events.acme.tasks>", ("BAD_REQUEST",)),
    "rest-doubled": ("events.acme.>>", ("BAD_REQUEST",)),
    "star-partial-end": ("events.acme.a*", ("BAD_REQUEST",)),
    "star-partial-start": ("events.acme.*a.>", ("BAD_REQUEST",)),
    "star-doubled": ("events.acme.**", ("BAD_REQUEST",)),
    "regex": ("events.acme..*", ("BAD_REQUEST",)),
    "hash-wildcard": ("events.acme.#", ("BAD_REQUEST",)),
    "no-prefix": ("acme.tasks.>", ("BAD_REQUEST",)),
    "prefix-wrong-case": ("EVENTS.acme.>", ("BAD_REQUEST",)),
    "prefix-wildcard": ("*.acme.>", ("BAD_REQUEST",)),
    "prefix-rest": (">", ("BAD_REQUEST",)),
    "prefix-only": ("events", ("BAD_REQUEST", "FORBIDDEN")),
    "all-events": ("events.>", ("FORBIDDEN",)),
    "org-star": ("events.*.>", ("FORBIDDEN",)),
    "org-star-exact": ("events.*.tasks.task.completed.*", ("FORBIDDEN",)),
    "other-org": ("events.globex.>", ("FORBIDDEN",)),
    "other-org-prefix": ("events.acmee.>", ("FORBIDDEN",)),
    "other-org-substring": ("events.acm.>", ("FORBIDDEN",)),
    "org-wrong-case": ("events.ACME.>", ("FORBIDDEN",)),
}


@pytest.mark.parametrize("name", list(BAD_TOPICS))
async def test_a_bad_topic_is_refused_with_its_id_and_the_connection_goes_on(server, name):
    topic, codes = BAD_TOPICS[name]
    async with events_of(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            await client.send({"type": "subscribe", "id": "bad", "topic": topic})
            refused = await client.next()
            assert refused["type"] == "error" and refused["code"] in codes, refused
            assert refused.get("id") == "bad", refused
            assert isinstance(refused["message"], str) and len(refused["message"]) <= 500
            # Refused: the id is free, and the refused pattern holds nothing.
            await client.send({"type": "unsubscribe", "id": "bad"})
            assert (await client.next())["code"] == "NOT_FOUND"
            await round_trip(server, client)


GOOD_EDGES = {
    "sixteen-tokens": "events.acme." + ".".join(["x"] * (MAX_TOKENS - 3)) + ".>",
    "256-chars": "events.acme." + LONG_TOKEN + "." + "u" * (MAX_TOPIC - 12 - 129),
    "colons": "events.acme.x:y.>",
    "org-only": "events.acme",
    "all-stars": "events.acme.*.*.*.*",
}


@pytest.mark.parametrize("name", list(GOOD_EDGES))
async def test_a_pattern_at_the_limits_is_taken(server, name):
    topic = GOOD_EDGES[name]
    assert len(topic) <= MAX_TOPIC and len(topic.split(".")) <= MAX_TOKENS
    async with events_of(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            answer = await subscribe(client, "i" * MAX_ID, topic)
        assert answer == {"type": "subscribed", "id": "i" * MAX_ID, "topic": topic}


async def test_an_id_with_unicode_and_quotes_comes_back_as_sent(server):
    sid = 'é"\\</script>🎉' + "x" * 100
    async with events_of(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            assert (await subscribe(client, sid, "events.acme.uni.>"))["type"] == "subscribed"
            async with rest(server) as http:
                await ingest(http, "events.acme.uni.a", "é🎉")
            assert (await client.until_type("event"))["data"] == "é🎉"
            await client.send({"type": "unsubscribe", "id": sid})
            assert await client.next() == {"type": "unsubscribed", "id": sid}


# -- duplicate ids and the subscription limit ------------------------------------------------------

async def test_a_duplicate_id_is_refused_and_the_first_subscription_stays_alone(server):
    word = fresh("dup")
    async with events_of(server, make_token("alice")) as client, rest(server) as http:
        with trio.fail_after(TIMEOUT):
            assert (await subscribe(client, "d", f"events.acme.{word}.one.>"))["type"] \
                == "subscribed"
            for topic in (f"events.acme.{word}.one.>", f"events.acme.{word}.two.>",
                          "events.globex.>", "events.acme.a*"):
                refused = await subscribe(client, "d", topic)
                assert refused["type"] == "error" and refused["id"] == "d", refused
            # Same pattern under another id: still one event.
            assert (await subscribe(client, "e", f"events.acme.{word}.one.>"))["type"] \
                == "subscribed"
            await ingest(http, f"events.acme.{word}.two.x", "not for me")  # refused pattern
            await ingest(http, f"events.acme.{word}.one.x", "once")
            await subscribe(client, "marker", f"events.acme.{word}.marker")
            await ingest(http, f"events.acme.{word}.marker", "marker")
            await client.until(lambda e: e.get("data") == "marker")
            assert [e["data"] for e in client.of_type("event")] == ["once", "marker"]
            # Unsubscribing "d" leaves "e"; "d" again is NOT_FOUND; then "d" is free.
            await client.send({"type": "unsubscribe", "id": "d"})
            assert await client.next() == {"type": "unsubscribed", "id": "d"}
            await client.send({"type": "unsubscribe", "id": "d"})
            again = await client.next()
            assert again["code"] == "NOT_FOUND" and again["id"] == "d", again
            await ingest(http, f"events.acme.{word}.one.y", "still once")
            assert (await client.until_type("event"))["data"] == "still once"
            assert (await subscribe(client, "d", f"events.acme.{word}.two.>"))["type"] \
                == "subscribed"
            await ingest(http, f"events.acme.{word}.two.y", "two")
            assert (await client.until_type("event"))["data"] == "two"
            await ingest(http, f"events.acme.{word}.marker", "marker 2")
            await client.until(lambda e: e.get("data") == "marker 2")
        datas = [e["data"] for e in client.of_type("event")]
        assert datas == ["once", "marker", "still once", "two", "marker 2"], datas


async def test_the_subscription_limit_holds_and_refused_ones_leave_nothing(server):
    word = fresh("limit")
    async with events_of(server, make_token("alice")) as client, rest(server) as http:
        with trio.fail_after(TIMEOUT):
            for n in range(MAX_SUBSCRIPTIONS):
                answer = await subscribe(client, f"s{n}", f"events.acme.{word}.s{n}")
                assert answer["type"] == "subscribed", answer
            # Refusals of another kind are not counted, and do not hide the limit.
            assert (await subscribe(client, "bad", "events.acme.>.x"))["code"] == "BAD_REQUEST"
            assert (await subscribe(client, "far", "events.globex.>"))["code"] == "FORBIDDEN"
            for n in range(MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTIONS + 20):
                refused = await subscribe(client, f"s{n}", f"events.acme.{word}.s{n}")
                assert refused["code"] == "RATE_LIMITED" and refused["id"] == f"s{n}", refused
            # A refused subscription gets no event; a held one does.
            await ingest(http, f"events.acme.{word}.s{MAX_SUBSCRIPTIONS}", "refused")
            await ingest(http, f"events.acme.{word}.s0", "held")
            assert (await client.until_type("event"))["data"] == "held"
            # One freed, one more taken, and the limit again.
            await client.send({"type": "unsubscribe", "id": "s0"})
            await client.until_type("unsubscribed", id="s0")
            assert (await subscribe(client, "new", f"events.acme.{word}.new"))["type"] \
                == "subscribed"
            assert (await subscribe(client, "over", f"events.acme.{word}.over"))["code"] \
                == "RATE_LIMITED"
            await ingest(http, f"events.acme.{word}.s0", "unsubscribed")
            await ingest(http, f"events.acme.{word}.new", "new")
            assert (await client.until_type("event"))["data"] == "new"
        assert [e["data"] for e in client.of_type("event")] == ["held", "new"]


# -- storms and churn: nothing leaks -----------------------------------------------------------


def events_channels(stats: dict[str, Any]) -> int:
    return stats["cluster"]["subscriptions"]


async def test_a_subscribe_unsubscribe_storm_leaks_nothing(server):
    """Five connections each send 1,200 subscribe+unsubscribe pairs as fast as they can
    (some pairs with ids and patterns reused, some over the limit): each answer comes in
    order, and afterwards an event reaches a final subscription exactly once, and none
    of the storm's connections (now holding nothing) gets it."""
    tenant, pairs, stormers = "stormco", 1200, 5
    before = events_channels(await get_stats(server.url))

    async def storm(client: StreamClient, number: int) -> None:
        async def send() -> None:
            for n in range(pairs):
                sid = f"s{n % 7}"  # ids reused as soon as they are free
                topic = f"events.{tenant}.t{(n * number) % 13}.{'>' if n % 2 else '*'}"
                await client.send({"type": "subscribe", "id": sid, "topic": topic})
                await client.send({"type": "unsubscribe", "id": sid})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            for n in range(pairs):
                sid = f"s{n % 7}"
                first, second = await client.next(), await client.next()
                assert first["type"] == "subscribed" and first["id"] == sid, first
                assert second == {"type": "unsubscribed", "id": sid}, second

    async with events_of(server, make_token("storm", tenant)) as watcher, \
            trio.open_nursery() as nursery:  # several storms at once
        clients = []
        for number in range(stormers):
            client = await nursery.start(_keep_open, server, make_token(f"s{number}", tenant))
            clients.append(client)
        with trio.fail_after(30):
            async with trio.open_nursery() as storms:
                for number, client in enumerate(clients):
                    storms.start_soon(storm, client, number + 1)
            # Nothing is held any more: the final subscription is the only one.
            assert (await subscribe(watcher, "final", f"events.{tenant}.t1.>"))["type"] \
                == "subscribed"
            async with rest(server) as http:
                posted = await ingest(http, f"events.{tenant}.t1.x", "once",
                                      service_token(tenant))
                assert posted.status_code == 202
                await subscribe(watcher, "marker", f"events.{tenant}.marker")
                await ingest(http, f"events.{tenant}.marker", "marker", service_token(tenant))
            await watcher.until(lambda e: e.get("data") == "marker")
            assert [e["data"] for e in watcher.of_type("event")] == ["once", "marker"]
            for client in clients:  # none of the storm's subscriptions is left
                await round_trip(server, client, tenant)
                assert len(client.of_type("event")) == 1, client.of_type("event")
        nursery.cancel_scope.cancel()
    with trio.fail_after(TIMEOUT):  # every connection gone: the tenant's channel let go
        await wait_for_stats(server.url, lambda s: events_channels(s) <= before)


async def _keep_open(server: ServerProcess, token: str,
                     task_status: trio.TaskStatus[StreamClient] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    async with events_of(server, token) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def test_many_connections_closing_abruptly_mid_delivery_hurt_nobody(server):
    """Thirty connections, each with the most subscriptions it may hold (all matching),
    leave while events pour in: by a Close, by the TCP connection's end, or politely;
    a healthy subscriber gets every event exactly once, in order, and nothing is held
    afterwards."""
    tenant, count = "churnco", 300
    service = service_token(tenant)
    before = events_channels(await get_stats(server.url))
    patterns = [f"events.{tenant}.>", f"events.{tenant}.flow.>", f"events.{tenant}.*.*.*",
                f"events.{tenant}.flow.*.*", f"events.{tenant}.flow.a.>",
                f"events.{tenant}.*.a.*"]

    async def churn(number: int) -> None:
        token = make_token(f"churn{number}", tenant)
        if number % 3 == 0:
            async with events_of(server, token) as client:
                for n, topic in enumerate(patterns):
                    await subscribe(client, f"p{n}", topic)
                await client.until_type("event")
            return
        raw = await open_raw_events(server, token, receive_buffer=4096 if number % 2 else None)
        try:
            for n, topic in enumerate(patterns):
                await raw.send_json({"type": "subscribe", "id": f"p{n}", "topic": topic})
            for n in range(len(patterns)):
                await raw.until("subscribed", id=f"p{n}")
            await raw.until("event")
            if number % 3 == 1:  # a Close, then gone without waiting for the answer
                await raw.send(ws_frame(CLOSE_FRAME, struct.pack("!H", 1001)))
        finally:
            await raw.aclose()  # the TCP connection just ends

    async with events_of(server, make_token("healthy", tenant)) as healthy, \
            rest(server) as http:
        with trio.fail_after(40):
            assert (await subscribe(healthy, "all", f"events.{tenant}.flow.>"))["type"] \
                == "subscribed"
            async with trio.open_nursery() as nursery:
                for number in range(30):
                    nursery.start_soon(churn, number)

                async def pour() -> None:
                    for n in range(count):
                        posted = await ingest(http, f"events.{tenant}.flow.a.n{n}", {"n": n},
                                              service)
                        assert posted.status_code == 202, posted.text

                nursery.start_soon(pour)
                while len(healthy.of_type("event")) < count:  # read as they come
                    await healthy.next()
        got = [e["data"]["n"] for e in healthy.of_type("event")]
        assert got == list(range(count)), (len(got), healthy.log[-5:])
    with trio.fail_after(TIMEOUT):
        await wait_for_stats(server.url, lambda s: events_channels(s) <= before)


async def test_connections_gone_before_their_subscribe_is_answered_leak_nothing(server):
    """Sixty connections, each of a tenant of its own (its first subscriber takes the
    tenant's channel), send subscribes and vanish at once, without reading the answers:
    every channel is let go afterwards, and the log stays quiet."""
    before = events_channels(await get_stats(server.url))

    async def hit_and_run(number: int) -> None:
        tenant = f"gone{number}"
        raw = await open_raw_events(server, make_token("runner", tenant))
        try:
            frames = b"".join(
                ws_frame(TEXT, frame_of(type="subscribe", id=f"s{n}",
                                        topic=f"events.{tenant}.t{n}.>").encode())
                for n in range(MAX_SUBSCRIPTIONS + 2))
            if number % 2:
                frames += ws_frame(CLOSE_FRAME, struct.pack("!H", 1000))
            await raw.send(frames)
        finally:
            await raw.aclose()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for number in range(60):
                nursery.start_soon(hit_and_run, number)
        await wait_for_stats(server.url, lambda s: events_channels(s) <= before)


async def test_a_message_over_the_maximum_closes_with_1009_and_its_subscriptions_go(server):
    tenant = "bigco"
    before = events_channels(await get_stats(server.url))
    async with events_of(server, make_token("big", tenant)) as client:
        with trio.fail_after(TIMEOUT):
            assert (await subscribe(client, "s", f"events.{tenant}.>"))["type"] == "subscribed"
            # The tenant's events channel is held while it has a subscriber (what the
            # leak checks of this suite count).
            assert events_channels(await get_stats(server.url)) > before
            await client.ws.send_message(frame_of(type="subscribe", id="x" * MAX_FRAME,
                                                  topic=f"events.{tenant}.>"))
            assert await client.closed_with(TIMEOUT) == MESSAGE_TOO_BIG
    with trio.fail_after(TIMEOUT):
        await wait_for_stats(server.url, lambda s: events_channels(s) <= before)


async def test_a_token_expiring_while_subscribed_closes_with_4001_and_delivers_no_more(server):
    tenant = "expco"
    before = events_channels(await get_stats(server.url))
    async with events_of(server, make_token("brief", tenant, ttl=2)) as client, \
            rest(server) as http:
        with trio.fail_after(TIMEOUT):
            assert (await subscribe(client, "s", f"events.{tenant}.>"))["type"] == "subscribed"
            await ingest(http, f"events.{tenant}.a.b", "before", service_token(tenant))
            assert (await client.until_type("event"))["data"] == "before"
            assert await client.closed_with(TIMEOUT) == 4001
        assert client.log[-1]["type"] == "error" and client.log[-1]["code"] == "UNAUTHORIZED"
    with trio.fail_after(TIMEOUT):
        await wait_for_stats(server.url, lambda s: events_channels(s) <= before)


async def _ponger(raw: RawStream, stop: trio.Event) -> None:
    """Keep a client that reads nothing "heard from": an unsolicited Pong now and then."""
    while not stop.is_set():
        try:
            await raw.send(ws_frame(PONG_FRAME, b"still here"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        with trio.move_on_after(PING_INTERVAL):
            await stop.wait()


async def test_a_subscriber_that_stops_reading_is_evicted_and_others_get_everything_once(
        server):
    """A client subscribes, then reads nothing (but keeps sending Pongs, so the keep-alive
    does not close it) while a flood of big matching events is ingested: the server lets
    it go (it gets far fewer than the flood), and a healthy subscriber with several
    matching subscriptions gets every event exactly once, in order."""
    word, size = fresh("flood"), 30_000
    mark = log_mark(server)
    async with raw_events(server, make_token("sloth"), receive_buffer=4096) as slow, \
            events_of(server, make_token("healthy")) as healthy, rest(server) as http:
        with trio.fail_after(TIMEOUT):
            await slow.send_json({"type": "subscribe", "id": "all",
                                  "topic": f"events.acme.{word}.>"})
            await slow.until("subscribed")
            for sid, topic in (("a", f"events.acme.{word}.>"), ("b", f"events.acme.{word}.*.*"),
                               ("c", "events.acme.>")):
                assert (await subscribe(healthy, sid, topic))["type"] == "subscribed"
        stop = trio.Event()
        received: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ponger, slow, stop)
            with trio.fail_after(40):
                n = 0
                # Pour until the server says it let the slow one go, then some more.
                while not any("too slow" in line for line in server.stderr_lines[mark:]) \
                        or n % 50:
                    posted = await ingest(http, f"events.acme.{word}.ev.n{n}",
                                          {"n": n, "pad": "p" * size})
                    assert posted.status_code == 202, posted.text
                    n += 1
                    while len(received) < n - 20:  # the healthy one keeps up
                        received.append((await healthy.until_type("event"))["data"]["n"])
                    assert n < 2000, "the slow subscriber was never let go"
                while len(received) < n:
                    received.append((await healthy.until_type("event"))["data"]["n"])
            stop.set()
        assert received == list(range(n)), received[:50]
        with trio.fail_after(TIMEOUT):  # evicted: its connection ends without everything
            got = 0
            try:
                while (event := await slow.next_event()) is not None:
                    got += event.get("type") == "event"
            except AssertionError:  # the abort cut a frame short
                pass
        assert got < n, f"the slow subscriber got all {n} events: it was never evicted"
        with trio.fail_after(TIMEOUT):  # and the healthy one goes on
            await round_trip(server, healthy)


# -- the WebSocket protocol itself ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(PROTOCOL_VIOLATIONS))
async def test_a_websocket_protocol_error_closes_with_its_rfc_6455_code(server, name):
    frames, code = PROTOCOL_VIOLATIONS[name]
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(frames)
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == code


async def test_invalid_utf8_in_a_subscribe_closes_with_1007(server):
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(ws_frame(
                TEXT, b'{"type":"subscribe","id":"s","topic":"events.acme.\xed\xa0\x80"}'))
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == 1007


async def test_a_fragmented_subscribe_with_pings_between_is_answered(server):
    message = frame_of(type="subscribe", id="frag", topic="events.acme.frag.>").encode()
    parts = [message[:5], message[5:17], message[17:40], message[40:]]
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(ws_frame(TEXT, parts[0], fin=False))
            for index, part in enumerate(parts[1:], 1):
                await raw.send(ws_frame(PING_FRAME, f"ping {index}".encode()))
                await raw.send(ws_frame(CONTINUATION, part, fin=index == len(parts) - 1))
            answer = await raw.until("subscribed")
            assert answer == {"type": "subscribed", "id": "frag", "topic": "events.acme.frag.>"}
            # A fragmented binary message is still binary: refused, the connection stays.
            await raw.send(ws_frame(BINARY, message[:10], fin=False)
                           + ws_frame(CONTINUATION, message[10:]))
            assert (await raw.until("error"))["code"] == "BAD_REQUEST"
            async with rest(server) as http:
                await ingest(http, "events.acme.frag.x", "frag")
            assert (await raw.until("event"))["data"] == "frag"


async def test_a_fragmented_message_over_the_maximum_closes_with_1009(server):
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            chunk = b"x" * 4096
            await raw.send(ws_frame(TEXT, b'{"type":"subscribe","id":"', fin=False))
            for _ in range(MAX_FRAME // len(chunk) + 1):
                await raw.send(ws_frame(CONTINUATION, chunk, fin=False))
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == MESSAGE_TOO_BIG


async def test_a_ping_flood_does_not_stop_the_events(server):
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            flood = ws_frame(PING_FRAME, b"flood" * 20) * 20_000  # ~2.2 MB of Pings
            subscribe_frame = frame_of(type="subscribe", id="p", topic="events.acme.pings.>")
            answers: list[dict[str, Any]] = []
            subscribed = trio.Event()

            async def read() -> None:  # Pongs are read (and dropped) as they come
                answers.append(await raw.until("subscribed"))
                subscribed.set()
                answers.append(await raw.until("event"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await raw.send(flood + ws_frame(TEXT, subscribe_frame.encode()))
                await subscribed.wait()
                async with rest(server) as http:
                    await ingest(http, "events.acme.pings.x", "after the flood")
            assert answers[1]["data"] == "after the flood"


# -- keep-alive --------------------------------------------------------------------------------

async def test_a_client_that_answers_no_ping_is_closed_and_its_subscriptions_go(server):
    tenant = "silentco"
    before = events_channels(await get_stats(server.url))
    async with raw_events(server, make_token("mute", tenant)) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send_json({"type": "subscribe", "id": "s", "topic": f"events.{tenant}.>"})
            await raw.until("subscribed")
            with trio.fail_after(PONG_TIMEOUT + 5 * PING_INTERVAL + 2):
                assert await raw.next_event() is None  # Pings skipped, never answered
            assert close_code(raw.close_payload) == GOING_AWAY
    with trio.fail_after(TIMEOUT):
        await wait_for_stats(server.url, lambda s: events_channels(s) <= before)


async def test_a_client_that_answers_pings_stays(server):
    """Pings every 0.3 s, a client unheard for 2 s is closed: one that answers twelve
    pings (3.6 s), and says nothing else, is still there and still gets events."""
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send_json({"type": "subscribe", "id": "s", "topic": "events.acme.kept.>"})
            pings = 0
            while pings < 12:
                frame = await raw.next_frame()
                assert frame is not None and frame[1] != CLOSE_FRAME, frame
                if frame[1] == PING_FRAME:
                    pings += 1
                    await raw.send(ws_frame(PONG_FRAME, frame[2]))
            async with rest(server) as http:
                await ingest(http, "events.acme.kept.x", "still here")
            assert (await raw.until("event"))["data"] == "still here"


# -- REST ingestion abuse ------------------------------------------------------------------------

def _service() -> str:
    return service_token()


LONG_TOPIC = "events.acme." + ".".join(["t" * 100] * 3)
# name -> (path after /v1/events/, token or None, body, content type, expected status or None)
REST_ABUSE: dict[str, tuple[str, Any, bytes, str, int | None]] = {
    "no-token": ("events.acme.a.b", None, b"{}", "application/json", 401),
    "garbage-token": ("events.acme.a.b", lambda: "garbage", b"{}", "application/json", 401),
    "expired-service": ("events.acme.a.b",
                        lambda: jwt.encode({**claims("svc", ttl=-60), "roles": ["service"]},
                                           SECRET, algorithm="HS256"),
                        b"{}", "application/json", 401),
    "user-token": ("events.acme.a.b", lambda: make_token("alice"), b"{}", "application/json",
                   403),
    "other-role": ("events.acme.a.b",
                   lambda: jwt.encode({**claims("svc"), "roles": ["admin", "services"]},
                                      SECRET, algorithm="HS256"),
                   b"{}", "application/json", 403),
    "other-tenant-topic": ("events.globex.a.b", _service, b"{}", "application/json", 403),
    "other-tenants-service": ("events.acme.a.b", lambda: service_token("globex"), b"{}",
                              "application/json", 403),
    "org-wildcard": ("events.*.a.b", _service, b"{}", "application/json", None),
    "star": ("events.acme.*.b", _service, b"{}", "application/json", 400),
    "rest": ("events.acme.a.>", _service, b"{}", "application/json", 400),
    "all": ("events.>", _service, b"{}", "application/json", None),
    "partial-star": ("events.acme.a*", _service, b"{}", "application/json", 400),
    "too-long": (LONG_TOPIC, _service, b"{}", "application/json", 400),
    "token-too-long": ("events.acme." + "t" * 129, _service, b"{}", "application/json", 400),
    "too-many-tokens": ("events.acme." + ".".join("x" * 20), _service, b"{}",
                        "application/json", 400),
    "empty-token": ("events.acme..b", _service, b"{}", "application/json", 400),
    "org-only": ("events.acme", _service, b"{}", "application/json", None),
    "no-prefix": ("acme.a.b", _service, b"{}", "application/json", 400),
    "unicode": ("events.acme.%E2%9C%93.b", _service, b"{}", "application/json", None),
    "encoded-surrogate": ("events.acme.%ED%A0%80.b", _service, b"{}", "application/json", None),
    "encoded-invalid-utf8": ("events.acme.%FF%FE.b", _service, b"{}", "application/json", None),
    "encoded-nul": ("events.acme.a%00b", _service, b"{}", "application/json", None),
    "encoded-slash": ("events.acme.a%2Fb", _service, b"{}", "application/json", None),
    "encoded-space": ("events.acme.a%20b", _service, b"{}", "application/json", None),
    "not-json": ("events.acme.a.b", _service, b"{nope", "application/json", 400),
    "truncated-json": ("events.acme.a.b", _service, b'{"a": [1, 2', "application/json", 400),
    "nan": ("events.acme.a.b", _service, b'{"a": NaN}', "application/json", 400),
    "infinity": ("events.acme.a.b", _service, b"-Infinity", "application/json", 400),
    "invalid-utf8-body": ("events.acme.a.b", _service, b'{"a": "\xff\xfe"}',
                          "application/json", 400),
    "lone-surrogate-body": ("events.acme.a.b", _service, b'{"a": "\\ud800"}',
                            "application/json", 400),
    "lone-surrogate-key": ("events.acme.a.b", _service, b'{"\\udfff": 1}', "application/json",
                           400),
    "lone-surrogate-string": ("events.acme.a.b", _service, b'"x\\udbff"', "application/json",
                              400),
    "deeply-nested": ("events.acme.a.b", _service, nested_json(50_000).encode(),
                      "application/json", None),
    "huge-number": ("events.acme.a.b", _service, b"9" * 20_000, "application/json", None),
    "huge-body": ("events.acme.a.b", _service,
                  b'{"pad": "' + b"p" * (2 * 1024 * 1024) + b'"}', "application/json", None),
    "text-body": ("events.acme.a.b", _service, b"hello", "text/plain", 400),
}


async def raw_post(server: ServerProcess, path: str, token: str | None, body: bytes,
                   content_type: str) -> Any:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
               ("Connection", "close")]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    stream = await open_tcp(server)
    async with stream:
        head = request_head("POST", f"/v1/events/{path}", server, headers)
        try:
            await stream.send_all(head + body)
        except trio.BrokenResourceError:  # refused before the whole body was read
            pass
        return await HttpResponseReader(stream).read_response()


@pytest.mark.parametrize("name", list(REST_ABUSE))
async def test_abusive_ingestion_gets_a_4xx_with_a_body_and_delivers_nothing(server, name):
    path, token_of, body, content_type, status = REST_ABUSE[name]
    async with events_of(server, make_token("watcher")) as watcher:
        with trio.fail_after(TIMEOUT):
            assert (await subscribe(watcher, "all", "events.acme.>"))["type"] == "subscribed"
            response = await raw_post(server, path, token_of() if token_of else None, body,
                                      content_type)
        assert 400 <= response.status < 500, response
        if status is not None:
            assert response.status == status, response
        assert response.body, response
        if response.header("content-type") == "application/json":
            assert isinstance(response.json(), dict), response
        with trio.fail_after(TIMEOUT):  # nothing was delivered: the check's event comes first
            await round_trip(server, watcher)
        assert len(watcher.of_type("event")) == 1, watcher.of_type("event")


async def test_ingested_data_reaches_subscribers_as_strict_json(server):
    """Unusual but valid bodies come out as they went in: strict JSON, one event each."""
    bodies = [b"", b"null", b"0", b'"\\u0000"', b'"\\ud83d\\ude00"', b'{"a": "\\u2028"}',
              b"[[[[[[[[[[1]]]]]]]]]]", b'{"a": 1e308}', b"-0"]
    word = fresh("strict")
    async with raw_events(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send_json({"type": "subscribe", "id": "s", "topic": f"events.acme.{word}.>"})
            await raw.until("subscribed")
            for n, body in enumerate(bodies):
                response = await raw_post(server, f"events.acme.{word}.n{n}", _service(), body,
                                          "application/json")
                assert response.status in (202, 400), response
                if response.status == 202:
                    sent = json.loads(body) if body else None
                    while True:
                        frame = await raw.next_frame()
                        assert frame is not None and frame[1] != CLOSE_FRAME
                        if frame[1] == TEXT:
                            event = strict_loads(frame[2].decode())
                            break
                        if frame[1] == PING_FRAME:
                            await raw.send(ws_frame(PONG_FRAME, frame[2]))
                    assert event["topic"] == f"events.acme.{word}.n{n}", event
                    assert event["data"] == sent, (body, event)


async def test_a_bad_token_on_the_websocket_gets_4001(server):
    for token in ("garbage", make_token("alice", ttl=-30), service_token()[:-3] + "abc"):
        async with events_of(server, token) as client:
            try:
                await client.ws.send_message(frame_of(type="subscribe", id="s",
                                                      topic="events.acme.>"))
            except trio_websocket.ConnectionClosed:
                pass
            assert await client.closed_with(TIMEOUT) == 4001
        assert [e.get("code") for e in client.log] == ["UNAUTHORIZED"], client.log
