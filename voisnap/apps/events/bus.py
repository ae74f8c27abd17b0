"""The event bus of ``/v1/events``: voisnap's events and other services', matched to
subscriptions (seed 003, "Event delivery"; docs/v1-events.md).

    producer --publish--> (NATS, or the backplane) --> every process --> match --> deliver

An ``Event`` is serialized once, as the frame its subscribers receive. How it
crosses processes:

- with ``--nats-url``, only through NATS: every process (the publisher too:
  NATS echoes a connection's own messages) receives it from its subscription
  to ``events.>`` and matches it locally, so nobody gets it twice; other
  services on the bus see voisnap's events and may publish their own;
- without, it is matched here at once and published on the tenant's
  backplane channel, which each process holds while it has a subscriber of
  that tenant.

Each process keeps one ``TopicTree`` per tenant: a subscription can only
ever meet its own tenant's events. Within the tenant, an event with an owner
goes only to that user's subscriptions; one without (ingested) to all.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Hashable
from typing import Any, Protocol

import attrs

from ...backplane import BackplaneError, RequestRefused
from ...failures import error_boundary, report_client_error
from ...islands.nats import BusUnavailable, NatsBus
from ...routing import names
from ...routing.cluster import Cluster
from ...transports.frames import Frame
from ...transports.plain import SharedFrames
from .topics import BadTopic, TopicTree, tokens_of

log = logging.getLogger(__name__)

MARK = "voisnap_event"  # a NATS payload of voisnap's own: {MARK: 1, user_id, data, ts}


@attrs.frozen
class Event:
    topic: str
    tenant_id: str
    user_id: str | None
    """Who may see it; None: everybody in the tenant."""
    data: Any
    ts: str
    frame: bytes = attrs.field(eq=False)
    """``{"type": "event", "topic", "data", "ts"}``, as every subscriber gets it."""
    _frames: SharedFrames = attrs.field(eq=False, init=False,
                                        default=attrs.Factory(lambda e: SharedFrames(e.frame),
                                                              takes_self=True))

    def frame_for(self, sock: Any) -> Frame:
        """The frame ``sock`` writes: built once per kind of socket."""
        return self._frames.for_socket(sock)

    @classmethod
    def of(cls, topic: str, tenant_id: str, user_id: str | None, data: Any,
           ts: str | None = None) -> Event:
        ts = ts or now_text()
        frame = {"type": "event", "topic": topic, "data": data, "ts": ts}
        encoded = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        return cls(topic, tenant_id, user_id, data, ts, encoded.encode("utf-8", "replace"))

    def payload(self) -> bytes:
        """On NATS and the backplane: the topic is the subject (or in front)."""
        body = {MARK: 1, "user_id": self.user_id, "data": self.data, "ts": self.ts}
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")

    @classmethod
    def received(cls, topic: str, payload: bytes) -> Event | None:
        """An event off the bus: voisnap's own (``payload``), or another
        service's, whose payload is its data (JSON, else text) for the whole
        tenant the topic names. None for a topic that is not one."""
        try:
            tokens = tokens_of(topic, pattern=False)
        except BadTopic:
            return None
        if len(tokens) < 2:
            return None
        try:
            body = json.loads(payload)
        except ValueError:
            body = payload.decode("utf-8", "replace")
        if isinstance(body, dict) and body.get(MARK) == 1:
            user = body.get("user_id")
            ts = body.get("ts")
            return cls.of(topic, tokens[1], user if isinstance(user, str) else None,
                          body.get("data"), ts if isinstance(ts, str) else None)
        return cls.of(topic, tokens[1], None, body)


def now_text() -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Subscriber(Protocol):
    user_id: str

    def deliver(self, event: Event) -> None:
        """An event one of its subscriptions matches (once, however many); must not block."""


class EventBus:
    def __init__(self, cluster: Cluster, nats: NatsBus | None) -> None:
        self._cluster = cluster
        self._nats = nats
        self._trees: dict[str, TopicTree] = {}
        self.published = 0

    async def run(self, *, task_status: Any = None) -> None:
        """With NATS: the service that receives every event (``NatsBus.run``)."""
        assert self._nats is not None
        await self._nats.run(self._from_nats, task_status=task_status)

    async def check(self) -> None:
        """Readiness (``GET /readyz``): with NATS, the bus must be connected."""
        if self._nats is not None and not self._nats.connected:
            raise BusUnavailable("not connected to NATS")

    # -- subscriptions ----------------------------------------------------------------------------

    async def subscribe(self, tenant_id: str, pattern: list[str], key: Hashable) -> None:
        tree = self._trees.get(tenant_id)
        if tree is None:
            tree = self._trees[tenant_id] = TopicTree()
        first = len(tree) == 0
        tree.add(pattern, key)
        if first and self._nats is None:
            channel = names.events_channel(tenant_id)
            await self._cluster.subscriptions.hold(channel, _TenantListener(self))

    def unsubscribe(self, tenant_id: str, pattern: list[str], key: Hashable) -> None:
        tree = self._trees.get(tenant_id)
        if tree is None:
            return
        tree.remove(pattern, key)
        if len(tree) == 0:
            del self._trees[tenant_id]
            if self._nats is None:
                self._cluster.subscriptions.release(names.events_channel(tenant_id))

    @property
    def subscriptions(self) -> int:
        return sum(len(tree) for tree in self._trees.values())

    def statistics(self) -> dict[str, Any]:
        """For ``GET /stats``: this process's subscriptions, what it published, NATS."""
        nats = None if self._nats is None else self._nats.statistics()
        return {"subscriptions": self.subscriptions, "tenants": len(self._trees),
                "published": self.published, "nats": nats}

    # -- events -----------------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        self.published += 1
        if self._nats is not None:
            try:
                await self._nats.publish(event.topic, event.payload())
            except (BusUnavailable, ValueError) as error:  # down, or more than NATS carries
                report_client_error(log, "an event was not published on NATS", str(error))
            return
        self.deliver(event)
        channel = names.events_channel(event.tenant_id)
        try:
            await self._cluster.backplane.publish(channel, _packed(event))
        except BackplaneError as error:
            report_client_error(log, "an event was not told to other processes", str(error))

    def deliver(self, event: Event) -> None:
        """``event`` to this process's subscribers that match it and may see it."""
        tree = self._trees.get(event.tenant_id)
        if tree is None:
            return
        subscribers = {subscriber for subscriber, _ in tree.match(event.topic.split("."))}
        for subscriber in subscribers:
            if event.user_id is None or subscriber.user_id == event.user_id:
                subscriber.deliver(event)

    def _from_nats(self, subject: str, payload: bytes) -> None:
        # Whatever one message does, the next ones are delivered.
        with error_boundary(log, "an event from NATS"):
            event = Event.received(subject, payload)
            if event is not None:
                self.deliver(event)


def _packed(event: Event) -> bytes:
    return event.topic.encode() + b"\n" + event.payload()


class _TenantListener:
    """A tenant's events from other processes (without NATS)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def message(self, payload: bytes) -> None:
        topic, _, body = payload.partition(b"\n")
        event = Event.received(topic.decode("utf-8", "replace"), body)
        if event is None:
            log.info("a malformed event on an events channel was dropped")
        else:
            self._bus.deliver(event)

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("An events channel takes no requests.")
