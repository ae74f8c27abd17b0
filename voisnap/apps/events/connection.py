"""One ``/v1/events`` connection (seed 003; docs/v1-events.md).

Its door and life are every plain WebSocket protocol's (``apps.plain``:
tokens and 4001, one frame at a time, keep-alive, expiry). Its part: the
subscriptions it holds, by the client's ids, in the bus's topic tree
(``bus``), and the events they match, each once, whatever the number of its
subscriptions that match it. A pattern names the caller's own tenant as its
``orgId``, literally: another org's, or a wildcard there, is refused.
"""

from __future__ import annotations

import attrs

from ...principal import Principal
from ...server.hub_server import HubServer
from ...transports.plain import MessageSocket, Upgrade
from ..plain import PlainConnection, PlainSettings, admit, error
from .bus import Event, EventBus
from .protocol import BAD_REQUEST, FORBIDDEN, NOT_FOUND, RATE_LIMITED, Refusal, Subscribe, parse
from .topics import BadTopic, tokens_of

PATH = "/v1/events"


@attrs.frozen
class EventsServices:
    hubs: HubServer
    bus: EventBus
    settings: PlainSettings
    max_subscriptions: int


async def serve(services: EventsServices, upgrade: Upgrade) -> None:
    """Answer a ``/v1/events`` upgrade, and serve the connection to its end."""
    admitted = await admit(services.hubs, PATH, upgrade)
    if admitted is not None:
        await EventsConnection(services, *admitted).run()


class EventsConnection(PlainConnection):
    what = "a /v1/events frame"
    refusals = (Refusal,)

    def __init__(self, services: EventsServices, sock: MessageSocket, principal: Principal) -> None:
        super().__init__(sock, principal, services.settings)
        self._bus = services.bus
        self._most = services.max_subscriptions
        self.tenant_id, self.user_id = principal.tenant_id, principal.user_id
        self._subscriptions: dict[str, list[str]] = {}  # id -> pattern tokens

    def refusal_frame(self, refusal: Exception) -> dict[str, object]:
        assert isinstance(refusal, Refusal)
        extra = {} if refusal.frame_id is None else {"id": refusal.frame_id}
        return error(refusal.code, str(refusal), **extra)

    async def handle(self, message: str | bytes) -> None:
        frame = parse(message)
        if isinstance(frame, Subscribe):
            await self._subscribe(frame.id, frame.topic)
        else:
            self._unsubscribe(frame.id)
            await self.send({"type": "unsubscribed", "id": frame.id})

    async def _subscribe(self, frame_id: str, topic: str) -> None:
        try:
            pattern = tokens_of(topic, pattern=True)
        except BadTopic as bad:
            raise Refusal(BAD_REQUEST, str(bad), frame_id) from None
        if len(pattern) < 2 or pattern[1] != self.tenant_id:
            raise Refusal(FORBIDDEN, f"A topic begins with events.{self.tenant_id}: your org's "
                          "events only.", frame_id)
        if frame_id in self._subscriptions:
            raise Refusal(BAD_REQUEST, f"The id '{frame_id}' names a subscription already.",
                          frame_id)
        if len(self._subscriptions) >= self._most:
            raise Refusal(RATE_LIMITED, f"A connection may hold {self._most} subscriptions.",
                          frame_id)
        self._subscriptions[frame_id] = pattern
        await self._bus.subscribe(self.tenant_id, pattern, (self, frame_id))
        await self.send({"type": "subscribed", "id": frame_id, "topic": topic})

    def _unsubscribe(self, frame_id: str) -> None:
        pattern = self._subscriptions.pop(frame_id, None)
        if pattern is None:
            raise Refusal(NOT_FOUND, f"No subscription has the id '{frame_id}'.", frame_id)
        self._bus.unsubscribe(self.tenant_id, pattern, (self, frame_id))

    def deliver(self, event: Event) -> None:
        """An event one of the subscriptions matches (``bus.Subscriber``)."""
        self.show_now(event.frame_for(self.sock))

    def ended(self) -> None:
        for frame_id in list(self._subscriptions):
            self._unsubscribe(frame_id)
