"""voisnap: a SignalR-compatible real-time hub server for AI-agent applications, on trio.

The public API is imported lazily, so that ``import voisnap.protocol`` (sans-IO)
does not pull in trio, hypercorn or pyjwt.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Hub", "HubError", "HubServer", "Settings", "create_server", "serve"]

_HOMES = {
    "Hub": "voisnap.hubs.hub",
    "HubError": "voisnap.errors",
    "HubServer": "voisnap.server.hub_server",
    "Settings": "voisnap.config",
    "create_server": "voisnap.server.factory",
    "serve": "voisnap.server.runner",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'voisnap' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
