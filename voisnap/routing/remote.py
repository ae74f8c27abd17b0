"""What one process's router tells another's, over the backplane. Sans-IO.

Each command is a MessagePack array whose first item is its kind, like the
MessagePack hub protocol's messages and the backplane's own envelopes:

    Fanout      [1, Target, [Arguments], [Exclude], [[Key]...], Index]
    Send        [2, Target, [Arguments]]
    Join        [3, Key]
    Leave       [4, Key]
    Invoke      [5, Target, [Arguments], Timeout]
    Close       [6, Error|nil, AllowReconnect]
    CloseUser   [7, Hub, Tenant, User, Error|nil, AllowReconnect]
    Result      [8, Value]

A ``Fanout`` is published once per message, never once per recipient: the
receiving process serializes it once per hub protocol for its own members, as
the local fan-out does. ``Keys`` and ``Index`` make a message sent to several
groups reach each connection once: the process that receives it on the channel
of ``Keys[Index]`` delivers it to that group's members that are in none of the
groups before it in ``Keys``. ``Send``, ``Join``, ``Leave``, ``Invoke`` and
``Close`` are for one connection, on its own channel; ``CloseUser`` asks a
whole process; ``Result`` is the reply to an ``Invoke``.

``decode`` is total: any bytes give a command or raise ``RemoteCommandError``,
because anything that can publish on the Redis server can put bytes here.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import msgpack

from ..protocol.errors import ENCODER_FAILURES
from .router import GroupKey


class RemoteCommandError(ValueError):
    """Bytes that are not a command; the text says what is wrong, for a log line."""


@attrs.frozen
class Fanout:
    target: str
    arguments: tuple[Any, ...]
    exclude: tuple[str, ...] = ()
    keys: tuple[GroupKey, ...] = ()
    index: int = 0


@attrs.frozen
class Send:
    target: str
    arguments: tuple[Any, ...]


@attrs.frozen
class Join:
    key: GroupKey


@attrs.frozen
class Leave:
    key: GroupKey


@attrs.frozen
class Invoke:
    target: str
    arguments: tuple[Any, ...]
    timeout: float


@attrs.frozen
class Close:
    error: str | None
    allow_reconnect: bool


@attrs.frozen
class CloseUser:
    hub: str
    tenant_id: str
    user_id: str
    error: str | None
    allow_reconnect: bool


@attrs.frozen
class Result:
    value: Any


Command = Fanout | Send | Join | Leave | Invoke | Close | CloseUser | Result

_KINDS: dict[type, int] = {
    Fanout: 1, Send: 2, Join: 3, Leave: 4, Invoke: 5, Close: 6, CloseUser: 7, Result: 8
}


def encode(command: Command) -> bytes:
    """Raises ``ValueError`` for a value MessagePack cannot carry (an integer
    beyond 64 bits, a lone surrogate in a string, a set...)."""
    try:
        return _pack(command)
    except ENCODER_FAILURES as error:
        raise ValueError(f"The value cannot be sent to another process: {error}") from None


def _pack(command: Command) -> bytes:
    match command:
        case Fanout():
            items = [
                command.target,
                list(command.arguments),
                list(command.exclude),
                [list(key) for key in command.keys],
                command.index,
            ]
        case Send() | Invoke():
            items = [command.target, list(command.arguments)]
            if isinstance(command, Invoke):
                items.append(command.timeout)
        case Join() | Leave():
            items = [list(command.key)]
        case Close():
            items = [command.error, command.allow_reconnect]
        case CloseUser():
            items = [command.hub, command.tenant_id, command.user_id, command.error,
                     command.allow_reconnect]
        case Result():
            items = [command.value]
    return msgpack.packb([_KINDS[type(command)], *items], use_bin_type=True)


def decode(data: bytes) -> Command:
    try:
        items = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises several kinds; all mean "not a command"
        raise RemoteCommandError(f"not MessagePack: {error}") from None
    if not isinstance(items, list) or not items:
        raise RemoteCommandError("a command is a non-empty array")
    kind, *rest = items
    reader = _READERS.get(kind) if isinstance(kind, int) else None
    if reader is None:
        raise RemoteCommandError(f"unknown command kind {kind!r}")
    try:
        return reader(rest)
    except (IndexError, TypeError, ValueError) as error:
        raise RemoteCommandError(f"malformed command {kind}: {error}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _array(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return tuple(value)


def _key(value: Any) -> GroupKey:
    return tuple(_text(part) for part in _array(value))


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{value!r} is not a number of seconds")
    return float(value)


def _fanout(items: list[Any]) -> Fanout:
    keys = tuple(_key(key) for key in _array(items[3]))
    index = items[4]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < max(1, len(keys)):
        raise ValueError("the index is not one of the keys")
    exclude = tuple(_text(item) for item in _array(items[2]))
    return Fanout(_text(items[0]), _array(items[1]), exclude, keys, index)


_READERS = {
    1: _fanout,
    2: lambda items: Send(_text(items[0]), _array(items[1])),
    3: lambda items: Join(_key(items[0])),
    4: lambda items: Leave(_key(items[0])),
    5: lambda items: Invoke(_text(items[0]), _array(items[1]), _seconds(items[2])),
    6: lambda items: Close(_optional_text(items[0]), _flag(items[1])),
    7: lambda items: CloseUser(
        _text(items[0]), _text(items[1]), _text(items[2]), _optional_text(items[3]),
        _flag(items[4]),
    ),
    8: lambda items: Result(items[0]),
}
