"""The notifications hub's events, exactly as docs/hubs/notifications.md names them.

Python fields are snake_case; on the wire (hub protocols, REST) they are
camelCase (``created_at`` -> ``createdAt``), times ISO-8601 UTC strings, as
everywhere in voisnap (``hubs.binder``). ``EVENTS`` maps each event name to its
payload class; ``payload_of`` checks a payload that comes from outside (``POST
/admin/notifications``) against it: the exact fields, each of the right JSON
type, nothing else.
"""

from __future__ import annotations

import datetime
import typing
from typing import Any

import attrs

from ...hubs.binder import BindingError, camel_case, structure, unstructure

SEVERITIES = ("info", "warning", "critical")


def _severity(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in SEVERITIES:
        raise ValueError(f"'severity' must be one of {', '.join(SEVERITIES)}, not {value!r}")


def _not_negative(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"'{camel_case(attribute.name)}' must not be negative")


def _iso_date(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{camel_case(attribute.name)}' must be a date (YYYY-MM-DD)") from None


# -- insight cards (apps.notifications.insights) -----------------------------------------------


@attrs.frozen
class InsightCardAdded:
    id: str
    title: str
    body: str
    created_at: datetime.datetime


@attrs.frozen
class InsightCardDismissed:
    id: str


# -- workflows and schedules (their producers come with schedules) ------------------------------


@attrs.frozen
class WorkflowRunStarted:
    run_id: str
    schedule_id: str
    task_id: str
    at: datetime.datetime


@attrs.frozen
class WorkflowRunCompleted:
    run_id: str
    duration_ms: int = attrs.field(validator=_not_negative)


@attrs.frozen
class WorkflowRunFailed:
    run_id: str
    error: str


@attrs.frozen
class CronFired:
    schedule_id: str
    at: datetime.datetime


@attrs.frozen
class CronFailed:
    schedule_id: str
    error: str
    at: datetime.datetime


# -- documents (their producers come with documents) --------------------------------------------


@attrs.frozen
class DocumentUploaded:
    document_id: str
    name: str
    size: int = attrs.field(validator=_not_negative)


@attrs.frozen
class DocumentIndexed:
    document_id: str
    chunks: int = attrs.field(validator=_not_negative)


# -- nodes (their producers come with the node hub) ---------------------------------------------


@attrs.frozen
class NodeOnline:
    node_id: str
    name: str
    at: datetime.datetime


@attrs.frozen
class NodeOffline:
    node_id: str
    name: str
    at: datetime.datetime


# -- the system ---------------------------------------------------------------------------------


@attrs.frozen
class SystemAnnouncement:
    title: str
    body: str
    severity: str = attrs.field(validator=_severity)


@attrs.frozen
class LicenseWarning:
    """Admins only (apps.notifications.license). ``expires_at`` is a date;
    ``days_left`` is 0 on the day itself and negative once it has passed."""

    expires_at: str = attrs.field(validator=_iso_date)
    days_left: int


EVENTS: dict[str, type] = {
    kind.__name__: kind
    for kind in (
        InsightCardAdded,
        InsightCardDismissed,
        WorkflowRunStarted,
        WorkflowRunCompleted,
        WorkflowRunFailed,
        CronFired,
        CronFailed,
        DocumentUploaded,
        DocumentIndexed,
        NodeOnline,
        NodeOffline,
        SystemAnnouncement,
        LicenseWarning,
    )
}


class PayloadError(ValueError):
    """An event name or payload that is not one of the hub's; the text says why."""


def wire_fields(event: str) -> list[str]:
    """The payload's field names on the wire, in order."""
    return [camel_case(field.name) for field in attrs.fields(EVENTS[event])]


def payload_of(event: Any, payload: Any) -> dict[str, Any]:
    """``payload`` checked against ``event``'s fields, in its wire form (times
    normalized to UTC); PayloadError naming the first problem."""
    kind = EVENTS.get(event) if isinstance(event, str) else None
    if kind is None:
        raise PayloadError(f"'event' must be one of {', '.join(EVENTS)}.")
    if not isinstance(payload, dict):
        raise PayloadError(f"The payload of {event} must be a JSON object.")
    names = wire_fields(event)
    unknown = sorted(set(payload) - set(names))
    missing = [name for name in names if name not in payload]
    if unknown or missing:
        problem = f"has no field {unknown[0]!r}" if unknown else f"needs {missing[0]!r}"
        raise PayloadError(f"The payload of {event} {problem} (its fields: {', '.join(names)}).")
    types = typing.get_type_hints(kind)
    values: dict[str, Any] = {}
    for field in attrs.fields(kind):
        name = camel_case(field.name)
        try:
            values[field.name] = structure(payload[name], types[field.name])
        except BindingError as error:
            raise PayloadError(f"{name!r} of {event}: {error}.") from None
    try:
        return unstructure(kind(**values))
    except ValueError as error:
        raise PayloadError(f"The payload of {event}: {error}.") from None
