"""The reference node's settings: one frozen value, built by the CLI or by tests.

docs/hubs/node.md, "The reference node": ``--url``, ``--token``, ``--transport``,
``--root``, ``--allow-shell`` and ``--heartbeat-interval`` are fields here; the
timings the page fixes (backoff 0, 2, 10, 30 s; a Ping every 15 s; 30 s of
silence means a dead connection; polls of 25 s) are fields too, so that tests
can shrink them instead of sleeping.
"""

from __future__ import annotations

from pathlib import Path

import attrs

TRANSPORTS = ("websockets", "polling")
BACKOFF_DELAYS = (0.0, 2.0, 10.0, 30.0)
"""Seconds before each reconnection attempt; the last repeats (docs/hubs/node.md)."""


def _check_url(instance: object, attribute: attrs.Attribute, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"The url must start with http:// or https://, not {url!r}.")


def _check_positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be greater than 0, not {value!r}.")


@attrs.frozen(kw_only=True)
class NodeConfig:
    url: str = attrs.field(validator=_check_url, converter=lambda url: url.rstrip("/"))
    """The server's base URL, http:// or https://, without the hub path."""
    token: str = attrs.field(repr=False)
    transport: str = attrs.field(default="websockets", validator=attrs.validators.in_(TRANSPORTS))
    root: Path = attrs.field(default=Path("."), converter=Path)
    """``list_dir`` and ``read_file`` see only what lies under it."""
    allow_shell: bool = False
    heartbeat_interval: float = attrs.field(default=30.0, validator=_check_positive)
    backoff_delays: tuple[float, ...] = attrs.field(default=BACKOFF_DELAYS, converter=tuple)
    ping_interval: float = attrs.field(default=15.0, validator=_check_positive)
    server_timeout: float = attrs.field(default=30.0, validator=_check_positive)
    """A hub connection with no message from the server for this long is dead."""
    poll_wait: float = 25.0
    """The ``wait`` of each ``GET /api/nodes/me/commands``."""
    request_timeout: float = attrs.field(default=30.0, validator=_check_positive)
    """Connect and read time allowed to each HTTP request (a poll adds its wait)."""
