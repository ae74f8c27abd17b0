"""What a process that received a transport request tells the connection's owner. Sans-IO.

When a request for a connection arrives at a process that does not own it
(``server.shared``), it is relayed on the connection's relay channel
(``names.relay_channel``); a relayed WebSocket's output comes back on a channel
of its own (``names.relay_back_channel``). MessagePack arrays, first item the kind:

    Poll      [1, Hub, User, Tenant]                 request; reply Answer
    Post      [2, Hub, User, Tenant, Body]           request; reply Answer
    Delete    [3, Hub, User, Tenant]                 request; reply Answer
    Attach    [4, Hub, User, Tenant, RelayId]        request; reply Answer
    Data      [5, RelayId, Bytes]                    the relayed client's bytes
    Detach    [6, RelayId]                           the relayed client is gone
    EndPoll   [7]                                    the relayed poll's client is gone
    Frames    [8, [[Opcode, Payload]...]]            the owner's output, for the client
    End       [9]                                    the owner closed the connection
    Answer    [10, Status, Body]                     an HTTP status and body to answer with
    Probe     [11, Hub, User, Tenant]                request; reply Answer (200: you may use it)

``Hub``, ``User`` and ``Tenant`` say who asks, so that the owner checks the
request as it checks its own (``connections.check_owner``). ``decode`` is total.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack


class RelayCommandError(ValueError):
    """Bytes that are not a relay command."""


@attrs.frozen
class Asker:
    hub: str
    user_id: str
    tenant_id: str


@attrs.frozen
class Poll:
    asker: Asker


@attrs.frozen
class Post:
    asker: Asker
    body: bytes


@attrs.frozen
class Delete:
    asker: Asker


@attrs.frozen
class Attach:
    asker: Asker
    relay_id: str


@attrs.frozen
class Data:
    relay_id: str
    data: bytes


@attrs.frozen
class Detach:
    relay_id: str


@attrs.frozen
class EndPoll:
    pass


@attrs.frozen
class Frames:
    frames: tuple[tuple[int, bytes], ...]


@attrs.frozen
class End:
    pass


@attrs.frozen
class Probe:
    """Does a process own this connection, and may the asker use it?"""

    asker: Asker


@attrs.frozen
class Answer:
    status: int
    body: bytes = b""


RelayCommand = (
    Poll | Post | Delete | Attach | Data | Detach | EndPoll | Frames | End | Answer | Probe
)


def _asker_items(asker: Asker) -> list[Any]:
    return [asker.hub, asker.user_id, asker.tenant_id]


def encode(command: RelayCommand) -> bytes:
    match command:
        case Poll(asker=asker):
            items = [1, *_asker_items(asker)]
        case Post(asker=asker, body=body):
            items = [2, *_asker_items(asker), body]
        case Delete(asker=asker):
            items = [3, *_asker_items(asker)]
        case Attach(asker=asker, relay_id=relay_id):
            items = [4, *_asker_items(asker), relay_id]
        case Data(relay_id=relay_id, data=data):
            items = [5, relay_id, data]
        case Detach(relay_id=relay_id):
            items = [6, relay_id]
        case EndPoll():
            items = [7]
        case Frames(frames=frames):
            items = [8, [[opcode, payload] for opcode, payload in frames]]
        case End():
            items = [9]
        case Answer(status=status, body=body):
            items = [10, status, body]
        case Probe(asker=asker):
            items = [11, *_asker_items(asker)]
    return msgpack.packb(items, use_bin_type=True)


def decode(data: bytes) -> RelayCommand:
    try:
        items = msgpack.unpackb(data, raw=False)
    except Exception as error:  # msgpack raises several kinds; all mean "not a command"
        raise RelayCommandError(f"not MessagePack: {error}") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], int):
        raise RelayCommandError("a relay command is an array that starts with its kind")
    kind, *rest = items
    try:
        return _read(kind, rest)
    except (IndexError, TypeError, ValueError) as error:
        raise RelayCommandError(f"malformed relay command {kind}: {error}") from None


def _read(kind: int, items: list[Any]) -> RelayCommand:
    match kind:
        case 1:
            return Poll(_asker(items))
        case 2:
            return Post(_asker(items), _bytes(items[3]))
        case 3:
            return Delete(_asker(items))
        case 4:
            return Attach(_asker(items), _text(items[3]))
        case 5:
            return Data(_text(items[0]), _bytes(items[1]))
        case 6:
            return Detach(_text(items[0]))
        case 7:
            return EndPoll()
        case 8:
            return Frames(tuple(_frame(item) for item in _list(items[0])))
        case 9:
            return End()
        case 10:
            return Answer(_int(items[0]), _bytes(items[1]))
        case 11:
            return Probe(_asker(items))
    raise ValueError(f"unknown kind {kind}")


def _asker(items: list[Any]) -> Asker:
    return Asker(_text(items[0]), _text(items[1]), _text(items[2]))


def _frame(item: Any) -> tuple[int, bytes]:
    opcode, payload = _list(item)[:2]
    return _int(opcode), _bytes(payload)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return value
