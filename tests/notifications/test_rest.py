"""The notifications' REST routes (docs/rest.md, "Notifications"), called as the ASGI app
calls them, on a real store: the feed and its pages, the insight cards, the admin routes,
and every refusal, each a status with ``{"error": ...}`` that says why.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from voisnap.principal import Principal
from voisnap.storage.base import Audience

from .conftest import CEILING, App
from .test_delivery import ADA, BOB, ELSEWHERE

ANNOUNCEMENT = {"title": "Maintenance", "body": "Tonight", "severity": "critical"}


async def publish_many(app: App, count: int) -> list[str]:
    ids = []
    for n in range(count):
        audience = (
            Audience("user", "ada"),
            Audience("tenant"),
            Audience("role", "admin"),
            Audience("user", "bob"),
        )[n % 4]
        sent = await app.notifications.publish(
            "acme", audience, "InsightCardDismissed", {"id": f"ins_{n}"}
        )
        ids.append(sent.notification_id)
    return ids


async def test_rest_feed_newest_first_in_pages(app: App) -> None:
    with trio.fail_after(CEILING):
        ids = await publish_many(app, 10)
        status, everything = await app.call(ADA, "GET", "/notifications")
        _, first = await app.call(ADA, "GET", "/notifications", limit="3")
        _, second = await app.call(ADA, "GET", "/notifications", limit="3", before=first[-1]["id"])
        _, bobs = await app.call(BOB, "GET", "/notifications")
        _, elsewhere = await app.call(ELSEWHERE, "GET", "/notifications")
    ada_ids = [i for n, i in enumerate(ids) if n % 4 != 3][::-1]  # not Bob's
    assert status == 200 and [item["id"] for item in everything] == ada_ids
    assert [item["id"] for item in first + second] == ada_ids[:6]
    assert [item["id"] for item in bobs] == [i for n, i in enumerate(ids) if n % 4 in (1, 3)][::-1]
    assert elsewhere == []
    assert everything[0] == {
        "id": ids[-1],
        "event": "InsightCardDismissed",
        "payload": {"id": "ins_9"},
        "createdAt": "2026-12-01T10:30:00.000Z",
    }


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"before": "ntf_unknown"}]
)
async def test_rest_feed_bad_page_is_400(app: App, query: dict[str, str]) -> None:
    with trio.fail_after(CEILING):
        status, body = await app.call(ADA, "GET", "/notifications", **query)
    assert status == 400 and isinstance(body["error"], str), body


async def test_rest_feed_cursor_of_another_user_is_unknown(app: App) -> None:
    with trio.fail_after(CEILING):
        ids = await publish_many(app, 4)
        status, body = await app.call(ADA, "GET", "/notifications", before=ids[3])  # Bob's
    assert (status, body) == (
        400,
        {"error": f"'before' names no notification of yours: '{ids[3]}'."},
    )


async def test_rest_insights_add_list_dismiss(app: App) -> None:
    with trio.fail_after(CEILING):
        status, card = await app.call(BOB, "POST", "/insights", {"title": "T", "body": "B"})
        _, listed = await app.call(BOB, "GET", "/insights")
        _, adas = await app.call(ADA, "GET", "/insights")
        foreign = await app.call(ADA, "DELETE", f"/insights/{card['id']}")
        dismissed = await app.call(BOB, "DELETE", f"/insights/{card['id']}")
        twice = await app.call(BOB, "DELETE", f"/insights/{card['id']}")
        unknown = await app.call(BOB, "DELETE", "/insights/ins_nope")
        _, after = await app.call(BOB, "GET", "/insights")
    assert status == 201 and set(card) == {"id", "title", "body", "createdAt"}
    assert listed == [card] and adas == [] and after == []
    assert dismissed == (204, None)
    gone = {"error": f"Insight card '{card['id']}' does not exist."}
    assert foreign == (404, gone) and twice == (404, gone)
    assert unknown == (404, {"error": "Insight card 'ins_nope' does not exist."})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "The body must be a JSON object with a 'title' and a 'body'."),
        ([], "The body must be a JSON object with a 'title' and a 'body'."),
        ({"body": "B"}, "'title' must be a non-empty string."),
        ({"title": "  ", "body": "B"}, "'title' must be a non-empty string."),
        ({"title": "T", "body": 5}, "'body' must be a non-empty string."),
        ({"title": "x" * 201, "body": "B"}, "'title' must be at most 200 characters."),
        ({"title": "T", "body": "x" * 4001}, "'body' must be at most 4000 characters."),
    ],
)
async def test_rest_insights_bad_card_is_400(app: App, body: Any, message: str) -> None:
    with trio.fail_after(CEILING):
        assert await app.call(BOB, "POST", "/insights", body) == (400, {"error": message})
        assert await app.call(BOB, "GET", "/insights") == (200, [])


async def test_rest_announcement_by_admin_to_the_tenant(app: App) -> None:
    with trio.fail_after(CEILING):
        status, sent = await app.call(ADA, "POST", "/admin/announcements", ANNOUNCEMENT)
        _, bobs = await app.call(BOB, "GET", "/notifications")
        _, elsewhere = await app.call(ELSEWHERE, "GET", "/notifications")
    assert status == 201 and sent["event"] == "SystemAnnouncement"
    assert sent["payload"] == ANNOUNCEMENT and bobs == [sent] and elsewhere == []


@pytest.mark.parametrize("path", ["/admin/announcements", "/admin/notifications"])
async def test_rest_admin_routes_refuse_others_with_403(app: App, path: str) -> None:
    with trio.fail_after(CEILING):
        status, body = await app.call(BOB, "POST", path, {"whatever": 1})
        _, feed = await app.call(BOB, "GET", "/notifications")
    assert (status, body) == (403, {"error": "Only a user with the role 'admin' may do this."})
    assert feed == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "The body must be a JSON object: {event, payload, audience}."),
        ({"event": "CronFired", "payload": {}}, "The body must be a JSON object: "),
        ({"event": "Nope", "payload": {}, "audience": {"tenant": True}}, "'event' must be one of "),
        (
            {"event": "CronFired", "payload": {"scheduleId": "s"}, "audience": {"tenant": True}},
            "needs 'at'",
        ),
        (
            {
                "event": "CronFired",
                "payload": {"scheduleId": "s", "at": "2026-12-01T00:00:00Z"},
                "audience": {"everyone": True},
            },
            "'audience' must be exactly one of ",
        ),
        (
            {
                "event": "CronFired",
                "payload": {"scheduleId": "s", "at": "2026-12-01T00:00:00Z"},
                "audience": {"user": "bob", "tenant": True},
            },
            "'audience' must be exactly one of ",
        ),
        (
            {
                "event": "LicenseWarning",
                "payload": {"expiresAt": "2026-12-10", "daysLeft": 3},
                "audience": {"tenant": True},
            },
            'LicenseWarning is for admins only: its audience must be {"role": "admin"}.',
        ),
    ],
)
async def test_rest_admin_notification_bad_body_is_400(app: App, body: Any, message: str) -> None:
    with trio.fail_after(CEILING):
        status, answer = await app.call(ADA, "POST", "/admin/notifications", body)
        _, feed = await app.call(ADA, "GET", "/notifications")
    assert status == 400 and message in answer["error"], answer
    assert feed == []


async def test_rest_admin_notification_within_the_admins_tenant(app: App) -> None:
    body = {
        "event": "DocumentIndexed",
        "payload": {"documentId": "d1", "chunks": 3},
        "audience": {"user": "bob"},
    }
    with trio.fail_after(CEILING):
        status, sent = await app.call(ELSEWHERE, "POST", "/admin/notifications", body)
        _, acme_bob = await app.call(BOB, "GET", "/notifications")
        _, globex_feed = await app.call(ELSEWHERE, "GET", "/notifications")
        _, globex_bob = await app.call(Principal("bob", "globex"), "GET", "/notifications")
    assert status == 201 and acme_bob == [] and globex_feed == []
    assert globex_bob == [sent]
