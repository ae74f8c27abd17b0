"""The notifications hub's events and the checks of what integrations send (issue 13).

``POST /admin/notifications`` takes any event of the hub with a payload checked against
that event's fields (``events.payload_of``): the exact camelCase names of
docs/hubs/notifications.md, each of the right JSON type, nothing missing and nothing else;
times are normalized to ISO-8601 UTC. Its ``audience`` is exactly one of ``{"user": id}``,
``{"tenant": true}``, ``{"role": name}`` (``rest.audience_of``).
"""

from __future__ import annotations

from typing import Any

import pytest

from voisnap.apps.notifications.events import EVENTS, PayloadError, payload_of, wire_fields
from voisnap.apps.notifications.rest import audience_of
from voisnap.storage.base import Audience

AT = "2026-12-01T10:30:00.000Z"
# docs/hubs/notifications.md, "Events": one valid payload of each.
GOLDEN: dict[str, dict[str, Any]] = {
    "InsightCardAdded": {"id": "ins_1", "title": "T", "body": "B", "createdAt": AT},
    "InsightCardDismissed": {"id": "ins_1"},
    "WorkflowRunStarted": {"runId": "r1", "scheduleId": "s1", "taskId": "t1", "at": AT},
    "WorkflowRunCompleted": {"runId": "r1", "durationMs": 1200},
    "WorkflowRunFailed": {"runId": "r1", "error": "boom"},
    "CronFired": {"scheduleId": "s1", "at": AT},
    "CronFailed": {"scheduleId": "s1", "error": "boom", "at": AT},
    "DocumentUploaded": {"documentId": "d1", "name": "a.pdf", "size": 2048},
    "DocumentIndexed": {"documentId": "d1", "chunks": 12},
    "NodeOnline": {"nodeId": "n1", "name": "laptop", "at": AT},
    "NodeOffline": {"nodeId": "n1", "name": "laptop", "at": AT},
    "SystemAnnouncement": {"title": "T", "body": "B", "severity": "warning"},
    "LicenseWarning": {"expiresAt": "2026-12-10", "daysLeft": -2},
}


def test_events_are_the_thirteen_of_the_issue() -> None:
    assert list(EVENTS) == list(GOLDEN)


@pytest.mark.parametrize("event", GOLDEN)
def test_events_golden_payload_is_accepted_as_it_is(event: str) -> None:
    assert wire_fields(event) == list(GOLDEN[event])
    assert payload_of(event, GOLDEN[event]) == GOLDEN[event]


def test_events_times_are_normalized_to_utc() -> None:
    checked = payload_of("CronFired", {"scheduleId": "s1", "at": "2026-12-01T12:30:00+02:00"})
    assert checked == {"scheduleId": "s1", "at": AT}


@pytest.mark.parametrize(
    ("event", "payload", "message"),
    [
        ("Nope", {}, "'event' must be one of InsightCardAdded, "),
        (7, {}, "'event' must be one of "),
        ("CronFired", ["s1"], "The payload of CronFired must be a JSON object."),
        (
            "CronFired",
            {"scheduleId": "s1"},
            "The payload of CronFired needs 'at' (its fields: scheduleId, at).",
        ),
        (
            "CronFired",
            {"scheduleId": "s1", "at": AT, "extra": 1},
            "The payload of CronFired has no field 'extra' (its fields: scheduleId, at).",
        ),
        ("CronFired", {"scheduleid": "s1", "at": AT}, "has no field 'scheduleid'"),
        (
            "CronFired",
            {"scheduleId": 5, "at": AT},
            "'scheduleId' of CronFired: expected a string, got int.",
        ),
        ("CronFired", {"scheduleId": "s1", "at": "yesterday"}, "'at' of CronFired: "),
        (
            "DocumentIndexed",
            {"documentId": "d", "chunks": "12"},
            "'chunks' of DocumentIndexed: expected an integer, got str.",
        ),
        ("DocumentIndexed", {"documentId": "d", "chunks": True}, "expected an integer, got bool"),
        ("DocumentIndexed", {"documentId": "d", "chunks": 1.5}, "expected an integer, got float"),
        (
            "DocumentUploaded",
            {"documentId": "d", "name": "n", "size": -1},
            "'size' must not be negative",
        ),
        (
            "SystemAnnouncement",
            {"title": "T", "body": "B", "severity": "panic"},
            "'severity' must be one of info, warning, critical, not 'panic'",
        ),
        (
            "LicenseWarning",
            {"expiresAt": "soon", "daysLeft": 3},
            "'expiresAt' must be a date (YYYY-MM-DD)",
        ),
    ],
)
def test_events_bad_payload_is_refused_naming_the_problem(
    event: Any, payload: Any, message: str
) -> None:
    with pytest.raises(PayloadError) as refused:
        payload_of(event, payload)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("document", "audience"),
    [
        ({"user": "ada"}, Audience("user", "ada")),
        ({"tenant": True}, Audience("tenant")),
        ({"role": "admin"}, Audience("role", "admin")),
    ],
)
def test_events_audience_names_exactly_one(document: Any, audience: Audience) -> None:
    assert audience_of(document) == audience


@pytest.mark.parametrize(
    "document",
    [
        None,
        "ada",
        [],
        {},
        {"user": "ada", "role": "admin"},
        {"tenant": False},
        {"tenant": "acme"},
        {"user": ""},
        {"user": 5},
        {"role": None},
        {"group": "x"},
    ],
)
def test_events_malformed_audience_is_refused(document: Any) -> None:
    with pytest.raises(PayloadError, match=r"^'audience' must be exactly one of "):
        audience_of(document)
