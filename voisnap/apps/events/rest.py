"""``POST /v1/events/{topic}``: another service's event, into voisnap's bus (seed 003,
"external event ingestion"; docs/v1-events.md).

The whole topic is the path's last segment; the JSON body is the event's
``data`` (any JSON value; no body is ``null``; at most 64 KiB). The caller's token must have
the role ``service``, and the topic's ``orgId`` must be its tenant. Such an
event is for the whole tenant (no owner): every subscription that matches it
gets it. ``202 {topic, ts}``: published, on NATS too when voisnap is on it.
"""

from __future__ import annotations

from typing import Any

from ...server.routes import RestRequest, Route
from .bus import Event, EventBus
from .topics import BadTopic, tokens_of

SERVICE = "service"
MAX_DATA = 64 * 1024  # an event is a notice, not a payload store (and NATS carries 1 MiB)


class EventsRest:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/v1/events/{topic}", self.ingest)]

    async def ingest(self, request: RestRequest) -> tuple[int, Any]:
        principal = request.principal
        if not principal.has_role(SERVICE):
            return 403, {"error": "Only a token with the role 'service' may publish events."}
        topic = request.params["topic"]
        try:
            tokens = tokens_of(topic, pattern=False)
        except BadTopic as bad:
            return 400, {"error": str(bad)}
        if len(tokens) < 3 or tokens[1] != principal.tenant_id:
            return 403, {"error": f"A topic begins with events.{principal.tenant_id}. and names "
                                  "what happened: your org's events only."}
        if len(request.body) > MAX_DATA:
            return 413, {"error": f"An event's data may have {MAX_DATA} bytes."}
        event = Event.of(topic, principal.tenant_id, None, request.json())
        await self._bus.publish(event)
        return 202, {"topic": topic, "ts": event.ts}
