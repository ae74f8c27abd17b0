"""The backplane: what lets several voisnap processes serve one application (see ``base``).

``MemoryBackplane`` is the default; ``RedisBackplane`` lives in ``voisnap.backplane.redis``
and is imported from there, so that a single process never loads the Redis client.
"""

from .base import (
    Backplane,
    BackplaneError,
    BackplaneStatistics,
    BackplaneUnavailable,
    Listener,
    NoSubscriber,
    RequestRefused,
    RequestTimeout,
)
from .memory import MemoryBackplane, MemoryBroker

__all__ = [
    "Backplane",
    "BackplaneError",
    "BackplaneStatistics",
    "BackplaneUnavailable",
    "Listener",
    "MemoryBackplane",
    "MemoryBroker",
    "NoSubscriber",
    "RequestRefused",
    "RequestTimeout",
]
