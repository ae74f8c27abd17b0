"""The reference node's errors, sorted by what the node does about them.

- ``CommandError``: one command failed; its text goes back to the gateway as
  the command's ``error`` (docs/hubs/node.md, "The hub": ``{ok: false, error}``).
- ``NodeStopped``: the node must stop for good, because retrying cannot help: its
  access was revoked or its token refused (docs/hubs/node.md, "Nodes and their
  credentials": "from then on every use of any of its tokens is refused").
- ``ConnectionLost``: this connection (or poll) is over; the node reconnects
  with backoff (docs/hubs/node.md, "The reference node").
"""

from __future__ import annotations

EXIT_ACCESS_REFUSED = 3
"""The exit status of a node that stopped because its access was revoked or refused."""


class CommandError(Exception):
    """A command failed; ``str(error)`` is the text the gateway records."""


class NodeStopped(Exception):
    """The node stops for good; ``str(error)`` says why, for the person who started it."""

    exit_status = EXIT_ACCESS_REFUSED


class ConnectionLost(Exception):
    """The connection to the gateway ended; a new one may do better."""


def token_refused(status_code: int, body: str) -> NodeStopped:
    """The server answered 401 or 403: say so, with the server's own words."""
    return NodeStopped(f"the server refused the token ({status_code}): {body.strip()}")
