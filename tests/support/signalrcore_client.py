"""signalrcore (threads) driven from a plain pytest test: connect, invoke, stop,
each bound in time.

signalrcore calls back on its own threads, so answers travel through
``queue.Queue`` and every wait has a deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from signalrcore.hub.base_hub_connection import BaseHubConnection
from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.types import HttpTransportType, HubProtocolEncoding

from tests.support.server import ServerProcess

TIMEOUT = 10.0


def wait_open(connection: BaseHubConnection, opened: threading.Event) -> None:
    """Until the connection opens; fails at once if its transport gave up."""
    deadline = time.monotonic() + TIMEOUT
    while not opened.wait(0.05):
        transport = connection.transport
        if transport is not None and transport.is_disconnected():
            raise AssertionError("signalrcore could not connect (its transport gave up)")
        if time.monotonic() > deadline:
            raise AssertionError("signalrcore did not connect")


@contextmanager
def signalrcore_connection(
    server: ServerProcess, token: str,
    transport: HttpTransportType | None = None,
    protocol: HubProtocolEncoding = HubProtocolEncoding.text, *, token_in_url: bool = False,
) -> Iterator[BaseHubConnection]:
    """A started signalrcore connection on ``transport`` (None: the client's
    own choice from negotiate), stopped (within a deadline) on exit. The token
    is an ``Authorization`` header (its ``access_token_factory``), or with
    ``token_in_url`` the URL's ``access_token``."""
    url, options = server.hub_url(), {} if transport is None else {"transport": transport}
    if token_in_url:
        url += f"?access_token={token}"
    else:
        options["access_token_factory"] = lambda: token
    connection = (
        HubConnectionBuilder()
        .with_url(url, options=options)
        .with_hub_protocol(protocol)
        .configure_logging(logging.WARNING)
        .build()
    )
    opened = threading.Event()
    connection.on_open(opened.set)
    connection.start()
    try:
        wait_open(connection, opened)
        yield connection
    finally:
        stopper = threading.Thread(target=connection.stop, daemon=True)
        stopper.start()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive(), "signalrcore's stop() did not return"


def signalrcore_invoke(connection: BaseHubConnection, method: str, *args: Any) -> Any:
    """The result of a blocking invocation (signalrcore reports errors to on_error)."""
    answers: queue.Queue[Any] = queue.Queue()
    connection.on_error(lambda message: answers.put(("error", message.error)))
    connection.invoke(
        method, list(args), on_invocation=lambda message: answers.put(("ok", message))
    )
    kind, answer = answers.get(timeout=TIMEOUT)
    assert kind == "ok", answer
    return answer.result
