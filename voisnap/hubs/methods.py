"""Describing a hub's methods: what a client may call, and how to bind its arguments.

A hub's client-to-server methods are the public ``async def`` methods of its
class (not those of ``Hub`` itself). From each one's signature we learn, once,
when the hub is mounted:

- its wire name: clients call ``SendToGroup``, Python spells it
  ``send_to_group``; as in ASP.NET Core the lookup ignores case, and here it
  ignores underscores too (``methods_key``);
- whether it streams to the client: an async generator (``yield``) does
  (HubProtocol.md, "Streaming");
- which parameters are client-to-server streams: those annotated
  ``AsyncIterator[T]`` (HubProtocol.md, "Upload streaming"); the client sends
  their items separately, named by ``streamIds``;
- the type of every other parameter, for the binder.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Callable
from typing import Any

import attrs

from .binder import BindingError, structure

STREAM_ORIGINS = (collections.abc.AsyncIterator, collections.abc.AsyncIterable)


def methods_key(name: str) -> str:
    """The lookup key of a method name: ``SendToGroup`` and ``send_to_group`` meet."""
    return name.replace("_", "").lower()


REQUIRED = inspect.Parameter.empty


@attrs.frozen
class Parameter:
    name: str
    annotation: Any
    is_stream: bool
    default: Any = REQUIRED
    """The value when the client leaves the argument out (trailing ones only)."""

    @property
    def item_type(self) -> Any:
        """For a stream parameter, the type of each item."""
        (item,) = typing.get_args(self.annotation) or (Any,)
        return item


@attrs.frozen
class HubMethod:
    name: str
    function: Callable[..., Any]
    parameters: tuple[Parameter, ...]
    is_streaming: bool

    @property
    def stream_parameters(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.is_stream)

    @property
    def value_parameters(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if not p.is_stream)

    def bind(self, arguments: tuple[Any, ...]) -> list[Any]:
        """Convert the client's (non-stream) arguments to the declared types.

        The texts are ASP.NET Core's (``JsonHubProtocol.BindTypes``), shown to
        the client only with detailed errors on.
        """
        expected = self.value_parameters
        required = sum(1 for p in expected if p.default is REQUIRED)
        # An argument with a default may be left out at the end (the seed's
        # ``StreamAudio(sessionId, audioChunks, mode?)``); ASP.NET takes none.
        if not required <= len(arguments) <= len(expected):
            raise BindingError(
                f"Invocation provides {len(arguments)} argument(s) "
                f"but target expects {len(expected)}."
            )
        try:
            given = [
                structure(value, p.annotation)
                for value, p in zip(arguments, expected[: len(arguments)], strict=True)
            ]
            return given + [p.default for p in expected[len(arguments) :]]
        except BindingError as error:
            raise BindingError(
                "Error binding arguments. Make sure that the types of the provided values "
                f"match the types of the hub method being invoked. ({error})"
            ) from None


def describe_methods(hub_class: type) -> dict[str, HubMethod]:
    """The client-callable methods of ``hub_class``, by ``methods_key``."""
    from .hub import Hub  # the base class's own methods are not callable

    reserved = set(dir(Hub))
    methods: dict[str, HubMethod] = {}
    for name, function in inspect.getmembers(hub_class, inspect.isfunction):
        if name.startswith("_") or name in reserved:
            continue
        if not (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)):
            continue
        key = methods_key(name)
        if key in methods:
            raise TypeError(f"{hub_class.__name__}: '{name}' and '{methods[key].name}' clash")
        methods[key] = _describe(name, function)
    return methods


def _describe(name: str, function: Callable[..., Any]) -> HubMethod:
    hints = typing.get_type_hints(function)
    signature = inspect.signature(function)
    parameters = tuple(
        Parameter(
            name=p.name,
            annotation=hints.get(p.name, Any),
            is_stream=typing.get_origin(hints.get(p.name)) in STREAM_ORIGINS,
            default=p.default,
        )
        for p in list(signature.parameters.values())[1:]  # skip self
    )
    return HubMethod(
        name=name,
        function=function,
        parameters=parameters,
        is_streaming=inspect.isasyncgenfunction(function),
    )
