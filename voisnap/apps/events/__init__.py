"""``/v1/events`` (seed 003; docs/v1-events.md): topic subscriptions with wildcards
over a plain WebSocket, fed by voisnap's own events (``face``), by other services
(``POST /v1/events/{topic}``) and by NATS (``--nats-url``)."""

from .bus import Event, EventBus
from .connection import PATH, EventsServices, serve
from .face import EventsFace
from .rest import EventsRest

__all__ = ["PATH", "Event", "EventBus", "EventsFace", "EventsRest", "EventsServices", "serve"]
