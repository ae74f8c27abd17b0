"""Running one connection's hub method calls: queued calls, streams and uploads.

HubProtocol.md, "Invocation", "Streaming", "Upload streaming", "Cancellation";
ASP.NET Core's ``DefaultHubDispatcher`` for the behaviour and the error texts.

- Plain invocations run one at a time per connection by default, in the order
  they arrived (``max_parallel_invocations``, ASP.NET's
  MaximumParallelInvocationsPerClient = 1). They wait in a queue, not in the
  reader: the reader keeps handling Completions and stream items meanwhile, so a
  method awaiting a client result never deadlocks its own connection. Workers
  are started when work arrives and end when the queue is empty, so an idle
  connection has none.
- Streaming invocations, and invocations that receive upload streams, run
  concurrently, each in its own task with its own cancel scope; a
  CancelInvocation cancels that scope and the stream ends with an empty
  Completion.
- Every task lives in the connection's nursery: a disconnect cancels them all.

Errors become Completions with ASP.NET's wording (``error_text``); details are
shown only for ``HubError`` or with detailed errors on. A non-blocking
invocation (no id) never gets an answer, not even an error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import attrs
import trio

from ..errors import HubError
from ..failures import report_client_error, report_unexpected
from ..metrics import INVOCATION_SECONDS, INVOCATIONS, UNKNOWN_METHOD
from ..protocol import (
    CompletionMessage,
    EncodeError,
    HubMessage,
    InvocationMessage,
    StreamInvocationMessage,
    StreamItemMessage,
)
from .binder import BindingError, structure, unstructure
from .methods import HubMethod, methods_key

log = logging.getLogger(__name__)

# Plain invocations a client may have waiting behind the running one before the
# reader stops reading from it (TCP then pushes back on the client).
INVOCATION_QUEUE_SIZE = 64


def error_text(message: str, error: BaseException, detailed: bool) -> str:
    """ASP.NET Core's ErrorMessageHelper: the detail is appended for a HubError,
    or for anything when detailed errors are on. A value that cannot be
    encoded is described too: the text is about the value, not our internals."""
    if isinstance(error, HubError):
        return f"{message} HubException: {error}"
    if isinstance(error, EncodeError) or detailed:
        return f"{message} {type(error).__name__}: {error}"
    return message


def _report(what: str, error: Exception) -> None:
    """A HubError is the method's answer, not a failure; a value the client
    sent that does not bind or does not encode is the client's mistake (one
    line at info); anything else is a bug in the hub (error, traceback)."""
    if isinstance(error, HubError):
        return
    if isinstance(error, BindingError | EncodeError):
        report_client_error(log, what, str(error))
    else:
        report_unexpected(log, what, error)


@attrs.define
class _UploadFailed:
    """Put in an upload stream when the client completes it with an error."""

    error: str


class UploadStream:
    """One client-to-server stream: items arrive by StreamItem, end by Completion."""

    def __init__(self, item_type: Any, capacity: int) -> None:
        self.item_type = item_type
        self.sender, self._receiver = trio.open_memory_channel[Any](capacity)

    async def items(self) -> AsyncIterator[Any]:
        async with self._receiver:
            async for item in self._receiver:
                if isinstance(item, _UploadFailed):
                    raise HubError(item.error)
                yield structure(item, self.item_type)


class Invocations:
    """The calls of one connection. ``start_*`` are called by the reader and
    never wait for a hub method; ``run_queue`` is the queue's worker."""

    def __init__(
        self,
        *,
        methods: dict[str, HubMethod],
        create_hub: Callable[[], Any],
        send: Callable[[HubMessage], Awaitable[None]],
        nursery: trio.Nursery,
        detailed_errors: bool,
        max_parallel: int,
        stream_buffer_capacity: int,
        hub: str = "",
    ) -> None:
        self._hub = hub  # the metrics' label
        self._methods = methods
        self._create_hub = create_hub
        self._send = send
        self._nursery = nursery
        self._detailed = detailed_errors
        self._max_parallel = max_parallel
        self._stream_capacity = stream_buffer_capacity
        self._queue: list[InvocationMessage] = []  # short, and a list is smaller than a deque
        self._workers = 0
        self._room: trio.lowlevel.ParkingLot | None = None  # the reader waits here when full
        self._closed = False
        self._streams: dict[str, trio.CancelScope] = {}
        self._uploads: dict[str, UploadStream] = {}

    # -- queue -----------------------------------------------------------------------------------

    async def start_invocation(self, message: InvocationMessage) -> None:
        """Queue a plain invocation; one with upload streams runs at once, since
        its items must flow while it runs (ASP.NET exempts it from the limit)."""
        if message.stream_ids:
            self._open_uploads(message)
            self._nursery.start_soon(self._invoke, message)
            return
        while len(self._queue) >= INVOCATION_QUEUE_SIZE and not self._closed:
            self._room = self._room or trio.lowlevel.ParkingLot()
            await self._room.park()
        self._queue.append(message)
        if self._workers < self._max_parallel:
            self._workers += 1
            self._nursery.start_soon(self._work)

    async def _work(self) -> None:
        """Run queued invocations in order until none is left."""
        try:
            while self._queue and not self._closed:
                message = self._queue.pop(0)
                if self._room is not None:
                    self._room.unpark()
                await self._invoke(message)
        finally:
            self._workers -= 1

    # -- plain invocations -----------------------------------------------------------------------

    async def _invoke(self, message: InvocationMessage) -> None:
        target = message.target
        method = self._resolve(target, streaming=False)
        if method is None:
            self._close_uploads(message.stream_ids)
            INVOCATIONS.labels(self._hub, UNKNOWN_METHOD, "unknown").inc()
            return await self._fail_resolution(message, streaming=False)
        arguments = self._bind_or_explain(method, message)
        if isinstance(arguments, str):
            self._close_uploads(message.stream_ids)
            INVOCATIONS.labels(self._hub, target, "bad_arguments").inc()
            return await self._complete_error(message.invocation_id, arguments)
        hub = self._create_hub()
        started = trio.current_time()
        try:
            result = await method.function(hub, *arguments)
        except Exception as error:
            self._count(target, "error", started)
            return await self._method_failed(message, error)
        finally:
            self._close_uploads(message.stream_ids)
        self._count(target, "ok", started)
        if message.invocation_id:
            await self._send_result(message, result)
        for work in hub.context.after_reply_work:
            await work()

    def _count(self, method: str, outcome: str, started: float) -> None:
        """One invocation, for the metrics (once per call, never per recipient)."""
        INVOCATIONS.labels(self._hub, method, outcome).inc()
        INVOCATION_SECONDS.labels(self._hub, method).observe(trio.current_time() - started)

    async def _send_result(self, message: InvocationMessage, result: Any) -> None:
        """The result Completion; an error one if the result cannot be encoded
        (a set, NaN...). Encoding happens before anything is written, so the
        client never sees half a message."""
        assert message.invocation_id is not None
        try:
            await self._send(
                CompletionMessage.with_result(message.invocation_id, unstructure(result))
            )
        except EncodeError as error:
            await self._method_failed(message, error)

    async def _method_failed(self, message: InvocationMessage, error: Exception) -> None:
        _report(f"hub method {message.target!r}", error)
        text = error_text(
            f"An unexpected error occurred invoking '{message.target}' on the server.",
            error,
            self._detailed,
        )
        await self._complete_error(message.invocation_id, text)

    # -- server-to-client streams ----------------------------------------------------------------

    async def start_stream(self, message: StreamInvocationMessage) -> None:
        invocation_id = message.invocation_id
        if invocation_id in self._streams:
            return await self._complete_error(
                invocation_id, f"Invocation ID '{invocation_id}' is already in use."
            )
        scope = self._streams[invocation_id] = trio.CancelScope()
        self._open_uploads(message)
        self._nursery.start_soon(self._stream, message, scope)

    async def _stream(self, message: StreamInvocationMessage, scope: trio.CancelScope) -> None:
        invocation_id, target = message.invocation_id, message.target
        error: str | None = None
        try:
            method = self._resolve(target, streaming=True)
            if method is None:
                return await self._fail_resolution(message, streaming=True)
            with scope:
                error = await self._produce(method, message)
        finally:
            self._streams.pop(invocation_id, None)
            self._close_uploads(message.stream_ids)
        # A cancelled stream (CancelInvocation) still ends with a Completion,
        # without an error (DefaultHubDispatcher.StreamAsync).
        await self._send(CompletionMessage(invocation_id=invocation_id, error=error))

    async def _produce(self, method: HubMethod, message: StreamInvocationMessage) -> str | None:
        """Run a streaming method, sending each item; the error text, if any."""
        arguments = self._bind_or_explain(method, message)
        if isinstance(arguments, str):
            return arguments
        try:
            async with aclosing(method.function(self._create_hub(), *arguments)) as items:
                async for item in items:
                    await self._send(
                        StreamItemMessage(
                            invocation_id=message.invocation_id, item=unstructure(item)
                        )
                    )
        except Exception as error:
            _report(f"streaming hub method {message.target!r}", error)
            return error_text(
                "An error occurred on the server while streaming results.", error, self._detailed
            )
        return None

    def cancel(self, invocation_id: str) -> None:
        """CancelInvocation: stop that stream (an unknown id is ignored, as in ASP.NET)."""
        scope = self._streams.get(invocation_id)
        if scope is not None:
            scope.cancel()

    # -- upload streams --------------------------------------------------------------------------

    async def upload_item(self, message: StreamItemMessage) -> bool:
        """Pass an uploaded item on; waits while the method has not taken the
        last ``stream_buffer_capacity`` items (backpressure, as ASP.NET).
        False if no upload has this id."""
        upload = self._uploads.get(message.invocation_id)
        if upload is None:
            return False
        try:
            await upload.sender.send(message.item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the method stopped reading; the item has nowhere to go
        return True

    async def upload_completed(self, message: CompletionMessage) -> bool:
        """A client's Completion that ends an upload; False if it ends none."""
        upload = self._uploads.get(message.invocation_id)
        if upload is None:
            return False
        if message.error is not None:
            try:
                await upload.sender.send(_UploadFailed(message.error))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        upload.sender.close()
        return True

    def _close_uploads(self, stream_ids: tuple[str, ...]) -> None:
        for stream_id in stream_ids:
            upload = self._uploads.pop(stream_id, None)
            if upload is not None:
                upload.sender.close()

    # -- shared ----------------------------------------------------------------------------------

    def _resolve(self, target: str, *, streaming: bool) -> HubMethod | None:
        method = self._methods.get(methods_key(target))
        if method is None or method.is_streaming != streaming:
            return None
        return method

    async def _fail_resolution(
        self, message: InvocationMessage | StreamInvocationMessage, *, streaming: bool
    ) -> None:
        method = self._methods.get(methods_key(message.target))
        if method is None:
            text = (
                f"Failed to invoke '{message.target}' due to an error on the server. "
                "HubException: Method does not exist."
            )
        elif streaming:
            text = (
                f"The client attempted to invoke the non-streaming '{message.target}' "
                "method with a streaming invocation."
            )
        else:
            text = (
                f"The client attempted to invoke the streaming '{message.target}' "
                "method with a non-streaming invocation."
            )
        await self._complete_error(message.invocation_id, text)

    def _open_uploads(self, message: InvocationMessage | StreamInvocationMessage) -> None:
        """Make the upload streams exist before the reader reads their first
        item, which may follow the invocation in the very same packet."""
        method = self._methods.get(methods_key(message.target))
        item_types = [p.item_type for p in method.stream_parameters] if method else []
        for index, stream_id in enumerate(message.stream_ids):
            item_type = item_types[index] if index < len(item_types) else Any
            self._uploads[stream_id] = UploadStream(item_type, self._stream_capacity)

    def _bind_or_explain(
        self, method: HubMethod, message: InvocationMessage | StreamInvocationMessage
    ) -> list | str:
        """The bound arguments, or the error text the client gets (ASP.NET's
        wording: a binding failure, or a stream count that does not match)."""
        try:
            return self._bind(method, message)
        except BindingError as error:
            return error_text(
                f"Failed to invoke '{message.target}' due to an error on the server.",
                error,
                self._detailed,
            )
        except HubError as error:
            return _unexpected(message.target, error)

    def _bind(
        self, method: HubMethod, message: InvocationMessage | StreamInvocationMessage
    ) -> list:
        """Bind the arguments, with the upload streams in their places."""
        streams = method.stream_parameters
        if len(message.stream_ids) != len(streams):
            raise HubError(
                f"Client sent {len(message.stream_ids)} stream(s), "
                f"Hub method expects {len(streams)}."
            )
        values = iter(method.bind(message.arguments))
        uploads = iter(message.stream_ids)
        return [
            self._uploads[next(uploads)].items() if parameter.is_stream else next(values)
            for parameter in method.parameters
        ]

    async def _complete_error(self, invocation_id: str | None, text: str) -> None:
        if invocation_id:
            await self._send(CompletionMessage.with_error(invocation_id, text))
        else:
            report_client_error(log, "non-blocking invocation failed", text)

    def close(self) -> None:
        """The connection is ending: drop queued work."""
        self._closed = True
        self._queue.clear()
        if self._room is not None:
            self._room.unpark_all()
        for stream_id in list(self._uploads):
            self._close_uploads((stream_id,))


def _unexpected(target: str, error: HubError) -> str:
    return f"An unexpected error occurred invoking '{target}' on the server. HubException: {error}"
