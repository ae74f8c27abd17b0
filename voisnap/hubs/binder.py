"""The binder: hub method arguments in, payloads out, strictly, with cattrs.

HubProtocol.md leaves argument types to the hub: the protocol carries plain JSON
(or MessagePack) values, and the server converts them to the types its method
declares. In ASP.NET Core that is the "binder" handed to ``TryParseMessage``;
here it is this module, used by the dispatcher after parsing.

Two rules make it strict, as System.Text.Json is:

- no silent coercion: ``"5"`` is not an ``int``, ``1`` is not a ``bool``, a
  string is not a list of characters. A wrong type is a binding error, which
  becomes an error Completion, never a crashed connection;
- payload objects are attrs classes whose fields are camelCase on the wire and
  matched case-insensitively on read (ASP.NET's web defaults). Unknown
  properties are ignored, so newer clients can send more than we know.

Server-to-client payloads go the other way through ``unstructure``: attrs
classes to camelCase dicts, datetimes to ISO-8601 UTC strings, enums to values.
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import types
import typing
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ..protocol.errors import ENCODER_FAILURES, EncodeError
from ..protocol.unicode import UNSTORABLE, is_storable


def camel_case(name: str) -> str:
    """``tokens_used`` -> ``tokensUsed``: ASP.NET's payload names
    (docs/protocol/hub-protocols.md, "Binding arguments")."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class BindingError(Exception):
    """An argument did not convert to the declared type. ``str()`` names the problem."""


def _strict(kind: type, name: str) -> typing.Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise BindingError(f"expected {name}, got {type(value).__name__}")
        return value

    return structure


def _structure_text(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise BindingError(f"expected a string, got {type(value).__name__}")
    if not is_storable(value):  # such a string cannot be stored (protocol.unicode)
        raise BindingError(f"the string {UNSTORABLE}")
    return value


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BindingError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _structure_datetime(value: Any, _: Any) -> datetime.datetime:
    if not isinstance(value, str):
        raise BindingError(f"expected an ISO-8601 timestamp, got {type(value).__name__}")
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _unstructure_datetime(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    text = value.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def _is_list(kind: Any) -> bool:
    return typing.get_origin(kind) in (list, collections.abc.Sequence, tuple)


def _is_dict(kind: Any) -> bool:
    return typing.get_origin(kind) in (dict, collections.abc.Mapping)


PRIMITIVES = (str, int, float, bool, type(None))


def _is_primitive_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and all(
        member in PRIMITIVES for member in typing.get_args(kind)
    )


def _strict_union(kind: Any) -> typing.Callable[[Any, Any], Any]:
    """``int | float``, ``str | None``...: the value must already be one of them."""
    members = typing.get_args(kind)

    def structure(value: Any, _: Any) -> Any:
        if type(value) is str and str in members:
            return _structure_text(value, str)
        for member in members:
            if type(value) is member or (member is float and type(value) is int):
                return value
        names = " or ".join(m.__name__ for m in members)
        raise BindingError(f"expected {names}, got {type(value).__name__}")

    return structure


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_structure_hook(str, _structure_text)
    converter.register_structure_hook(int, _strict(int, "an integer"))
    converter.register_structure_hook(bool, _strict(bool, "true or false"))
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(datetime.datetime, _structure_datetime)
    converter.register_unstructure_hook(datetime.datetime, _unstructure_datetime)
    converter.register_structure_hook_factory(_is_primitive_union, _strict_union)
    converter.register_structure_hook_factory(_is_list, lambda kind: _strict_list(converter, kind))
    converter.register_structure_hook_factory(_is_dict, lambda kind: _strict_dict(converter, kind))
    converter.register_structure_hook_factory(
        attrs.has, lambda cls: _case_insensitive(cls, converter)
    )
    converter.register_unstructure_hook_factory(
        attrs.has,
        lambda cls: make_dict_unstructure_fn(
            cls,
            converter,
            **{f.name: override(rename=camel_case(f.name)) for f in attrs.fields(cls)},
        ),
    )
    converter.register_unstructure_hook(enum.Enum, lambda member: member.value)
    return converter


def _strict_list(converter: cattrs.Converter, kind: Any) -> typing.Callable[[Any, Any], Any]:
    (item_type, *_) = typing.get_args(kind) or (Any,)
    container = tuple if typing.get_origin(kind) is tuple else list

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, list):
            raise BindingError(f"expected an array, got {type(value).__name__}")
        return container(converter.structure(item, item_type) for item in value)

    return structure


def _strict_dict(converter: cattrs.Converter, kind: Any) -> typing.Callable[[Any, Any], Any]:
    _, value_type = typing.get_args(kind) or (str, Any)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise BindingError(f"expected an object, got {type(value).__name__}")
        return {str(key): converter.structure(item, value_type) for key, item in value.items()}

    return structure


def _case_insensitive(cls: type, converter: cattrs.Converter) -> typing.Callable[[Any, Any], Any]:
    fields = attrs.fields(cls)
    wire_names = {camel_case(f.name).lower(): camel_case(f.name) for f in fields}
    structure_fields = make_dict_structure_fn(
        cls, converter, **{f.name: override(rename=camel_case(f.name)) for f in fields}
    )

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise BindingError(f"expected an object for {cls.__name__}, got {type(value).__name__}")
        canonical = {wire_names.get(str(key).lower(), key): item for key, item in value.items()}
        return structure_fields(canonical, cls)

    return structure


converter = make_converter()


def structure(value: Any, kind: Any) -> Any:
    """``value`` (plain data from a codec) as ``kind``; BindingError if it is not one."""
    if kind is Any or kind is typing.Any:
        return value
    try:
        return converter.structure(value, kind)
    except BindingError:
        raise
    except Exception as error:
        raise BindingError(_describe(error)) from None


def unstructure(value: Any) -> Any:
    """An application value as plain data for a codec; EncodeError if it has none."""
    try:
        return converter.unstructure(value)
    except ENCODER_FAILURES as error:
        raise EncodeError(f"The value cannot be converted to plain data: {error}") from None


def _describe(error: BaseException) -> str:
    """The first concrete cause inside a cattrs validation error group."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            return _describe(inner)
    return str(error) or type(error).__name__
