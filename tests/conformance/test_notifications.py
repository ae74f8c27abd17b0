"""The notifications hub (``/hubs/notifications``, issue 13), its producers and its feed, with
the official ``@microsoft/signalr`` client under Node against a real ``voisnap serve``
process on 127.0.0.1, started with ``--license-expires`` five days from today.

One scenario (``delivered``), run once, gives the tests below their material:

- ``A1`` and ``A2``: two connections of Ana (tenant acme, role ``admin``); ``B``: Bob (acme,
  role ``auditor``); ``G``: Gil (tenant globex, role ``admin``); ``C``: Ana's chat device
  (``CLIENTS``: not all of them on WebSockets and JSON);
- Ana adds a card over REST, the built-in agent adds one for her over chat ("add an insight
  card: ..."), Ana dismisses the first; Ana announces to her tenant; Ana sends every other
  event of the hub through ``POST /admin/notifications`` to a user, the tenant or a role;
  Gil announces to his tenant.

Who received what is read after a fence on every connection (a round trip answered after
anything sent to it before: ``approvals_devices.mjs``), so "did not receive" needs no wait.
The refusals (403, 400) are checked on the same server, as is the feed, newest first.
Drivers and helpers are test_approvals.py's.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.test_approvals import SETTINGS, devices, new_id, rest, token
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

DAYS_LEFT = 5
# Besides WebSockets and JSON (the default): the fan-out encodes once per protocol, and each
# transport carries it.
CLIENTS = {
    "A2": {"transport": "ServerSentEvents"},
    "B": {"transport": "LongPolling", "protocol": "messagepack"},
    "G": {"protocol": "messagepack"},
}
AT = "2026-12-01T10:30:00.000Z"
ANNOUNCEMENT = {"title": "Maintenance", "body": "Tonight at 22:00", "severity": "warning"}
# (event, payload, audience) sent by Ana through POST /admin/notifications, in this order.
SENT: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "WorkflowRunStarted",
        {"runId": "r1", "scheduleId": "s1", "taskId": "t1", "at": AT},
        {"tenant": True},
    ),
    ("WorkflowRunCompleted", {"runId": "r1", "durationMs": 1500}, {"tenant": True}),
    ("WorkflowRunFailed", {"runId": "r2", "error": "boom"}, {"tenant": True}),
    ("CronFired", {"scheduleId": "s1", "at": AT}, {"tenant": True}),
    ("CronFailed", {"scheduleId": "s2", "error": "boom", "at": AT}, {"tenant": True}),
    ("DocumentUploaded", {"documentId": "d1", "name": "plan.pdf", "size": 2048}, {"user": "BOB"}),
    ("DocumentIndexed", {"documentId": "d1", "chunks": 7}, {"user": "ANA"}),
    ("NodeOnline", {"nodeId": "n1", "name": "laptop", "at": AT}, {"role": "auditor"}),
    ("NodeOffline", {"nodeId": "n1", "name": "laptop", "at": AT}, {"role": "admin"}),
    ("LicenseWarning", {"expiresAt": "2030-01-01", "daysLeft": 1}, {"role": "admin"}),
]


def license_date() -> str:
    return (
        datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=DAYS_LEFT)
    ).isoformat()


@pytest.fixture(scope="module")
def notifications_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**SETTINGS, "license_expires": license_date()}
    with ServerProcess(tmp_path_factory.mktemp("notifications") / "data", settings) as server:
        yield server


def resolve(audience: dict[str, Any], users: dict[str, str]) -> dict[str, Any]:
    """``{"user": "ANA"}`` with Ana's real id."""
    return {
        kind: users.get(value, value) if isinstance(value, str) else value
        for kind, value in audience.items()
    }


@pytest.fixture(scope="module")
def delivered(notifications_server: ServerProcess) -> dict[str, Any]:
    server = notifications_server
    users = {"ANA": new_id("ana"), "BOB": new_id("bob"), "GIL": new_id("gil")}
    tokens = {
        "ana": token(server, users["ANA"], "acme", ["admin"]),
        "bob": token(server, users["BOB"], "acme", ["auditor"]),
        "gil": token(server, users["GIL"], "globex", ["admin"]),
    }
    seen: dict[str, Any] = {"server": server, "users": users, "tokens": tokens}
    with devices(server) as hubs:
        for device, hub, user in (
            ("A1", "notifications", "ana"),
            ("A2", "notifications", "ana"),
            ("B", "notifications", "bob"),
            ("G", "notifications", "gil"),
            ("C", "chat", "ana"),
        ):
            hubs.open(device, hub, tokens[user], **CLIENTS.get(device, {}))
        # insight cards: over REST, by the agent over chat, then one dismissed
        added = rest(
            server,
            tokens["ana"],
            "POST",
            "/insights",
            {"title": "Q3 revenue", "body": "Up 12% on Q2."},
        )
        seen["added"] = (added.status_code, added.json())
        sent = hubs.send("C", "add an insight card: Call the supplier")
        hubs.wait_done("C", sent["taskId"])
        seen["agent_card"] = hubs.wait("A1", "InsightCardAdded", title="Call the supplier")
        seen["cards"] = rest(server, tokens["ana"], "GET", "/insights").json()
        dismissed = rest(server, tokens["ana"], "DELETE", f"/insights/{added.json()['id']}")
        seen["dismissed"] = (dismissed.status_code, dismissed.content)
        seen["dismissed_again"] = rest(
            server, tokens["ana"], "DELETE", f"/insights/{added.json()['id']}"
        ).status_code
        seen["cards_after"] = rest(server, tokens["ana"], "GET", "/insights").json()
        # announcements and every other event
        announced = rest(server, tokens["ana"], "POST", "/admin/announcements", ANNOUNCEMENT)
        seen["announced"] = (announced.status_code, announced.json())
        seen["notified"] = [
            rest(
                server,
                tokens["ana"],
                "POST",
                "/admin/notifications",
                {"event": event, "payload": payload, "audience": resolve(audience, users)},
            )
            for event, payload, audience in SENT
        ]
        gil = rest(
            server,
            tokens["gil"],
            "POST",
            "/admin/announcements",
            {"title": "Globex only", "body": "Hi", "severity": "info"},
        )
        seen["gil_announced"] = gil.status_code
        hubs.fence("A1", "A2", "B", "G")
        seen["events"] = {device: hubs.events(device) for device in ("A1", "A2", "B", "G")}
    seen["feeds"] = {
        user: rest(server, tokens[user], "GET", "/notifications", limit=200).json()
        for user in tokens
    }
    return seen


def targets(events: list[dict[str, Any]]) -> list[str]:
    return [event["target"] for event in events]


def test_notifications_license_warning_on_connect_to_admins_only(
    delivered: dict[str, Any],
) -> None:
    events = delivered["events"]
    warning = {
        "target": "LicenseWarning",
        "payload": {"expiresAt": license_date(), "daysLeft": DAYS_LEFT},
    }
    for admin in ("A1", "A2", "G"):
        assert events[admin][0] == warning, events[admin]
    assert "LicenseWarning" not in targets(events["B"]), events["B"]
    # Sent to the connection alone: not in anyone's feed (only the admin-sent one is).
    for feed in delivered["feeds"].values():
        assert [n["payload"] for n in feed if n["event"] == "LicenseWarning"] in ([], [SENT[-1][1]])


def test_notifications_insight_cards_reach_their_owner_only(delivered: dict[str, Any]) -> None:
    events = delivered["events"]
    status, card = delivered["added"]
    assert status == 201 and set(card) == {"id", "title", "body", "createdAt"}
    agent_card = delivered["agent_card"]
    expected = [
        ("InsightCardAdded", card),
        ("InsightCardAdded", agent_card),
        ("InsightCardDismissed", {"id": card["id"]}),
    ]
    for device in ("A1", "A2"):
        got = [
            (e["target"], e["payload"])
            for e in events[device]
            if e["target"].startswith("InsightCard")
        ]
        assert got == expected, got
    for device in ("B", "G"):
        assert not [t for t in targets(events[device]) if t.startswith("InsightCard")]
    assert agent_card["body"] == "Added by sophon from your chat."
    assert delivered["cards"] == [agent_card, card]  # newest first
    assert delivered["dismissed"] == (204, b"")
    assert delivered["dismissed_again"] == 404
    assert delivered["cards_after"] == [agent_card]


def test_notifications_each_event_reaches_its_audience_and_no_other(
    delivered: dict[str, Any],
) -> None:
    """User events to that user's connections (both of Ana's), tenant events to the tenant,
    role events to the role's holders; nothing crosses to globex, whose own announcement
    stays there."""
    assert [r.status_code for r in delivered["notified"]] == [201] * len(SENT)
    assert delivered["announced"][0] == 201 and delivered["gil_announced"] == 201
    events = delivered["events"]
    tenant = [event for event, _, audience in SENT if "tenant" in audience]
    expected = {
        "A1": ["SystemAnnouncement", *tenant, "DocumentIndexed", "NodeOffline", "LicenseWarning"],
        "B": ["SystemAnnouncement", *tenant, "DocumentUploaded", "NodeOnline"],
        "G": ["SystemAnnouncement"],
    }
    expected["A2"] = expected["A1"]
    for device, wanted in expected.items():
        got = [e for e in events[device] if not e["target"].startswith("InsightCard")]
        if device != "B":
            got = got[1:]  # the LicenseWarning on connect (test above)
        assert targets(got) == wanted, (device, targets(got))
    payloads = {event: payload for event, payload, _ in SENT}
    for event in events["A1"][1:]:
        if event["target"] in payloads and event["target"] != "LicenseWarning":
            assert event["payload"] == payloads[event["target"]]
    assert events["G"][-1]["payload"] == {"title": "Globex only", "body": "Hi", "severity": "info"}


def test_notifications_feed_newest_first_for_each_reader(delivered: dict[str, Any]) -> None:
    feeds = delivered["feeds"]
    for items in feeds.values():
        assert all(set(item) == {"id", "event", "payload", "createdAt"} for item in items)
        stamps = [item["createdAt"] for item in items]
        assert stamps == sorted(stamps, reverse=True)
    ana = [item["event"] for item in feeds["ana"]]
    expected = [
        *[
            event
            for event, _, audience in SENT
            if "tenant" in audience or audience in ({"user": "ANA"}, {"role": "admin"})
        ][::-1],
        "SystemAnnouncement",
        "InsightCardDismissed",
        "InsightCardAdded",
        "InsightCardAdded",
    ]
    assert ana == expected
    assert [item["event"] for item in feeds["gil"]] == ["SystemAnnouncement"]
    assert "LicenseWarning" not in [item["event"] for item in feeds["bob"]]
    assert {"DocumentUploaded", "NodeOnline"} <= {item["event"] for item in feeds["bob"]}
    page = rest(
        delivered["server"],
        delivered["tokens"]["ana"],
        "GET",
        "/notifications",
        limit=2,
        before=feeds["ana"][1]["id"],
    ).json()
    assert page == feeds["ana"][2:4]


def test_notifications_refusals(delivered: dict[str, Any]) -> None:
    server, tokens = delivered["server"], delivered["tokens"]
    for path in ("/admin/announcements", "/admin/notifications"):
        refused = rest(server, tokens["bob"], "POST", path, ANNOUNCEMENT)
        assert refused.status_code == 403, refused.text
        assert refused.json() == {"error": "Only a user with the role 'admin' may do this."}
    bad = [
        {"event": "Nope", "payload": {}, "audience": {"tenant": True}},
        {"event": "CronFired", "payload": {"scheduleId": "s"}, "audience": {"tenant": True}},
        {"event": "CronFired", "payload": {"scheduleId": "s", "at": AT}, "audience": {}},
        {"event": "CronFired", "payload": {"scheduleId": 1, "at": AT}, "audience": {"role": "x"}},
        {
            "event": "LicenseWarning",
            "payload": {"expiresAt": "2030-01-01", "daysLeft": 1},
            "audience": {"tenant": True},
        },
    ]
    for body in bad:
        answer = rest(server, tokens["ana"], "POST", "/admin/notifications", body)
        assert answer.status_code == 400, (body, answer.text)
        assert isinstance(answer.json()["error"], str)
    bad_announcement = dict(ANNOUNCEMENT, severity="panic")
    answer = rest(server, tokens["ana"], "POST", "/admin/announcements", bad_announcement)
    assert answer.status_code == 400 and "severity" in answer.json()["error"]
    assert rest(server, tokens["ana"], "GET", "/notifications", limit=0).status_code == 400
    assert (
        rest(server, tokens["ana"], "GET", "/notifications", before="ntf_nope").status_code == 400
    )
    assert rest(server, tokens["ana"], "POST", "/insights", {"title": ""}).status_code == 400
    foreign = rest(server, tokens["gil"], "DELETE", f"/insights/{delivered['agent_card']['id']}")
    assert foreign.status_code == 404
