"""Every name voisnap gives the backplane, built in one place.

The router's keys (``router.group_key`` and friends) are tuples that always
carry a tenant. On the backplane (Redis channels and keys, shared by every
process and every hub) they become strings, and the mapping must be one to one:
two different keys must never meet on one channel, whatever a client names its
groups (``a:b`` in tenant ``t`` and ``b`` in tenant ``t:a`` included). So every
part is percent-encoded and the parts are joined with ``:``, which an encoded
part cannot contain. As ASP.NET's ``RedisChannels`` does, the hub is part of
every name, so that two hubs' groups of the same name stay apart too.

Names:

- ``channel(hub, key)``: fan-out to a group, a user or a tenant ("all");
- ``connection_channel(hub, tenant, connection_id)``: one connection (commands
  for it: join a group, invoke a client result, close...);
- ``node_channel(node)``: one process (close a user's connections there);
- ``tasks_channel()``: the task runtimes of every process;
- ``negotiation_key(token)``: a negotiated connection token, valid on every process;
- ``claim_key(token)``: which process owns a connection (the first transport
  request's); ``early_key(token)``: bytes POSTed before any process claimed it;
- ``relay_channel(token)`` and ``relay_back_channel(relay)``: a connection's
  transport, relayed from the process a request arrived at to its owner;
- ``speech_channel(session)``: what the agent says in a Voisnap call, for the
  process that holds the call;
- ``stream_channel(tenant, session)``: a session's ``/v1/stream`` events, for the
  processes whose connections watch it; ``turn_channel(task)``: the process
  running a task, asked for the turn's events so far (a resume's replay);
- ``events_channel(tenant)``: a tenant's ``/v1/events`` events (without NATS);
- ``nodes_key()`` and ``node_presence_key(node)``: the live processes, and
  which connections each holds.
"""

from __future__ import annotations

from urllib.parse import quote

from .router import GroupKey


def _join(*parts: str) -> str:
    # surrogatepass: a lone surrogate (valid in a JSON string) is still one name
    return ":".join(quote(part, safe="", errors="surrogatepass") for part in parts)


def channel(hub: str, key: GroupKey) -> str:
    """The channel of a router key (``group_key``, ``user_key``, ``tenant_key``)."""
    return _join("hub", hub, *key)


def connection_channel(hub: str, tenant_id: str, connection_id: str) -> str:
    return _join("hub", hub, "connection", tenant_id, connection_id)


def node_channel(node_id: str) -> str:
    """One process: what concerns it as a whole (closing a user's connections)."""
    return _join("node", node_id)


def negotiation_key(token: str) -> str:
    return _join("negotiation", token)


def claim_key(token: str) -> str:
    return _join("claim", token)


def early_key(token: str) -> str:
    """Bytes POSTed to a connection before any process claimed it."""
    return _join("early", token)


def relay_channel(token: str) -> str:
    """The transport of a connection, for requests that arrive at another process."""
    return _join("relay", token)


def relay_back_channel(relay_id: str) -> str:
    """What the owner of a relayed WebSocket sends back to the relaying process."""
    return _join("relayed", relay_id)


def tasks_channel() -> str:
    """Every process's task runtime: a task was queued, a task is to be cancelled."""
    return _join("tasks")


def machines_channel() -> str:
    """Every process's node dispatch (docs/hubs/node.md): commands waiting for a
    user's machine, outcomes, scope changes, revocations. ("Node" here means a
    process, so a user's nodes are called machines in the backplane's names.)"""
    return _join("machines")


def stream_channel(tenant_id: str, session_id: str) -> str:
    """A session's ``/v1/stream`` events (docs/v1-stream.md)."""
    return _join("stream", tenant_id, session_id)


def events_channel(tenant_id: str) -> str:
    """A tenant's ``/v1/events`` events, without NATS (docs/v1-events.md)."""
    return _join("events", tenant_id)


def turn_channel(task_id: str) -> str:
    """The runner of a task: asked for its turn's events so far."""
    return _join("turn", task_id)


def speech_channel(session_id: str) -> str:
    """A Voisnap call's replies, to be spoken (docs/hubs/voisnap.md, "VoiceHub")."""
    return _join("speech", session_id)


def nodes_key() -> str:
    return _join("presence", "nodes")


def node_presence_key(node_id: str) -> str:
    return _join("presence", "node", node_id)
