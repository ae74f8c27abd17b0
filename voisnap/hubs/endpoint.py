"""A hub mounted at a path: its class, its methods, its router, its settings.

ASP.NET Core's ``MapHub<T>(path)`` in one object. Everything the connections of
one hub share lives here: the method table (described once, at mount time), the
router (one per hub, like ``HubLifetimeManager<THub>``), the counter of the
server's client-result ids, and the hub protocols clients may ask for.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from ..config import Settings
from ..protocol import HubProtocol, JsonHubProtocol
from ..protocol.limits import DecodeLimits
from ..protocol.msgpack_codec import MessagePackHubProtocol
from ..routing.router import LocalRouter, Router
from ..transports.base import ALL_TRANSPORTS, TransportType
from .methods import HubMethod, describe_methods

# One instance of each codec for the whole server: a SerializedMessage caches
# records per codec instance, so sharing them is what makes "once per protocol".
JSON = JsonHubProtocol()
MESSAGEPACK = MessagePackHubProtocol()


def default_protocols() -> dict[str, HubProtocol]:
    return {JSON.name: JSON, MESSAGEPACK.name: MESSAGEPACK}


@attrs.define
class HubEndpoint:
    path: str
    hub_class: type
    settings: Settings
    services: Any = None
    router: Router = attrs.Factory(LocalRouter)
    protocols: dict[str, HubProtocol] = attrs.Factory(default_protocols)
    transports: tuple[TransportType, ...] = ALL_TRANSPORTS
    methods: dict[str, HubMethod] = attrs.field(init=False)
    limits: DecodeLimits = attrs.field(init=False)
    result_ids: itertools.count = attrs.field(init=False, factory=lambda: itertools.count(1))

    def __attrs_post_init__(self) -> None:
        self.methods = describe_methods(self.hub_class)
        self.limits = DecodeLimits(max_depth=self.settings.max_nesting_depth)
