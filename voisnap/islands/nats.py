"""The NATS event bus of ``/v1/events``, seen from trio: nats-py in a thread of its own.

nats-py runs only on asyncio, so it lives here, on an island: a thread with its own
asyncio event loop, started by ``NatsBus.run`` and joined when that service ends. Nothing
outside ``voisnap.islands`` sees asyncio; the rest of voisnap sees four things:
``run(deliver)``, ``publish(subject, payload)``, ``connected`` and ``statistics()``.

Theory of operation. Two mailboxes cross the border between the threads, one each way:

- *inbox* (asyncio -> trio): every message NATS delivers on ``subject`` is put there by the
  subscription's callback, which never waits for trio; ``run``'s task takes whole batches
  and calls ``deliver(subject, payload)`` for each, in order. A mailbox wakes its taker only
  when it goes from empty to non-empty, so a busy bus costs one wake-up per batch, not one
  per message. It is bounded: when trio falls behind, new messages are dropped, counted and
  logged rather than kept without limit (centrifuge's answer to a slow consumer).
- *outbox* (trio -> asyncio): ``publish`` checks what it can check in trio (connected, a
  valid subject, a payload within the server's limit), puts the message there and returns;
  one publisher task hands each batch to nats-py (one write point, so one order). Waiting
  for each message to cross back would cost two thread wake-ups per message, and buy
  nothing: a message nats-py has taken can still be lost with the connection (core NATS
  delivers at most once). What fails after the handoff is counted and logged.

The connection is the island's own loop: connect, subscribe, flush (so the server has the
subscription before we say we are connected), wait until the connection closes, back off,
start again. nats-py's reconnection is turned off so that the first connect and every
later one are the same code with the same backoff; core NATS keeps nothing for a client
that is away, so nothing is lost by starting afresh.

NATS echoes a connection's publications to its own subscriptions, and voisnap relies on it:
every process, the publisher included, delivers each event once, from NATS.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import trio
from nats import errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger(__name__)

FIRST_CONNECT_TIMEOUT = 2.0  # run() reports started after this even if NATS is down
CONNECT_TIMEOUT = 2.0
RETRY_FIRST = 0.1  # backoff between connect attempts: doubled up to RETRY_MAX
RETRY_MAX = 5.0
PING_INTERVAL = 20  # a silent dead server is noticed after about 3 pings
CLOSE_TIMEOUT = 5.0  # draining the connection and joining the thread, each
INBOX_LIMIT = 10_000  # messages waiting for trio before new ones are dropped
OUTBOX_LIMIT = 10_000  # messages waiting for the loop before publish refuses
BAD_SUBJECT = re.compile(r"\s|^$")  # what NATS cannot carry (CRLF would inject)

T = TypeVar("T")


class BusUnavailable(Exception):
    """The bus is not connected to NATS now (the text says why)."""


class _Mailbox(Generic[T]):
    """A bounded queue from one thread to another that wakes its taker once per batch.

    ``put`` wakes the other side (``wake``, which must be thread-safe) only when the
    mailbox was empty or already taken from; ``take_all`` empties it and re-arms the wake.
    """

    def __init__(self, limit: int, wake: Callable[[], None]) -> None:
        self.limit = limit
        self.closed = False
        self._wake = wake
        self._lock = threading.Lock()
        self._items: collections.deque[T] = collections.deque()
        self._woken = False

    def put(self, item: T) -> bool:
        """False when the mailbox is full or closed: the item was not taken."""
        with self._lock:
            if self.closed or len(self._items) >= self.limit:
                return False
            self._items.append(item)
            if self._woken:
                return True
            self._woken = True
        self._wake()  # outside the lock: waking may take the other loop's own locks
        return True

    def take_all(self) -> collections.deque[T]:
        with self._lock:
            items, self._items = self._items, collections.deque()
            self._woken = False
        return items

    def close(self) -> None:
        with self._lock:
            self.closed = True


class NatsBus:
    """The trio side of the NATS island: a service (``run``) and a door (``publish``)."""

    def __init__(self, url: str, subject: str = "events.>") -> None:
        self.url = url
        self.subject = subject
        self._island: _Island | None = None
        self._last: dict[str, int] = {}  # the statistics of the island that ended

    @property
    def connected(self) -> bool:
        return self._island is not None and self._island.connected

    def statistics(self) -> dict[str, int]:
        """Counters since ``run`` started: published, received, dropped, reconnects.

        ``received`` counts what NATS delivered to us; ``dropped`` the part of it that
        trio never saw because it was ``INBOX_LIMIT`` messages behind."""
        return self._island.statistics() if self._island is not None else dict(self._last)

    async def run(
        self,
        deliver: Callable[[str, bytes], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, subscribe and call ``deliver(subject, payload)`` in trio for every
        message, until cancelled; ``deliver`` must not raise (an error ends ``run``)."""
        island = _Island(self.url, self.subject, trio.lowlevel.current_trio_token())
        thread = threading.Thread(target=island.run, name="voisnap-nats", daemon=True)
        self._island = island
        thread.start()
        try:
            with trio.move_on_after(FIRST_CONNECT_TIMEOUT):
                await island.first_connect.wait()
            if not island.connected:
                log.warning("NATS at %s is not reachable yet (%s); retrying in the background",
                            self.url, island.why_not)
            task_status.started()
            await self._deliver_forever(island, deliver)
        finally:
            island.stop()
            # Shielded but bounded: a thread that will not end is left behind (it is a
            # daemon), which is better than a server that cannot stop.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join, 2 * CLOSE_TIMEOUT)
            if thread.is_alive():
                log.error("the NATS thread did not end in time; it is left behind")
            self._last, self._island = island.statistics(), None

    async def publish(self, subject: str, payload: bytes) -> None:
        """Hand one message to the island, in the order of the calls, and return: it is
        on its way to NATS (at most once, like everything in core NATS)."""
        await trio.lowlevel.checkpoint()
        island = self._island
        if island is None or not island.connected:
            raise BusUnavailable(self._why_not(island))
        if BAD_SUBJECT.search(subject):
            raise ValueError(f"not a NATS subject: {subject!r}")
        if len(payload) > island.max_payload:
            raise ValueError(f"{len(payload)} bytes is more than NATS takes "
                             f"({island.max_payload})")
        if not island.outbox.put((subject, payload)):
            if island.outbox.closed:
                raise BusUnavailable("The event bus has stopped.")
            raise BusUnavailable(f"The event bus is {island.outbox.limit} messages behind.")

    def _why_not(self, island: _Island | None) -> str:
        if island is None:
            return "The event bus is not running."
        return f"Not connected to NATS at {self.url}: {island.why_not}"

    async def _deliver_forever(
        self, island: _Island, deliver: Callable[[str, bytes], None]
    ) -> None:
        while True:
            await island.inbox_ready.wait()
            island.inbox_ready = trio.Event()
            for subject, payload in island.inbox.take_all():
                deliver(subject, payload)
            if island.ended:
                raise RuntimeError(f"the NATS thread ended: {island.why_not}")


class _Island:
    """The asyncio side: the thread's loop, the connection and the publisher.

    Attributes written here and read by trio (``connected``, the counters) are single
    values; the GIL makes each read and write whole, and nothing needs two at once."""

    def __init__(self, url: str, subject: str, token: trio.lowlevel.TrioToken) -> None:
        self.url = url
        self.subject = subject
        self.connected = False
        self.ended = False
        self.why_not = "not connected yet"
        self.published = self.received = self.dropped = self.reconnects = 0
        self.lost = 0  # published in trio, but never taken by nats-py (logged)
        self.max_payload = 0  # the server's, once connected
        self._token = token
        self._nc: Client | None = None
        self._last_error: Exception | None = None  # the last one nats-py reported
        self._dropping = 0  # dropped in the current run of drops, for the log
        # Made here, in trio's thread, so that stop() works before the loop runs.
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        # trio's side of the border: set only in trio's thread, through _to_trio.
        self.first_connect = trio.Event()
        self.inbox_ready = trio.Event()
        self.inbox: _Mailbox[tuple[str, bytes]] = _Mailbox(
            INBOX_LIMIT, lambda: self._to_trio(self._inbox_ready_set))
        self.outbox: _Mailbox[tuple[str, bytes]] = _Mailbox(
            OUTBOX_LIMIT, lambda: self._loop.call_soon_threadsafe(self._outbox_ready.set))

    def statistics(self) -> dict[str, int]:
        return {"published": self.published, "received": self.received,
                "dropped": self.dropped, "reconnects": self.reconnects}

    # -- the thread -----------------------------------------------------------------------------

    def run(self) -> None:
        """The thread's body: the loop runs until ``stop``."""
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as error:
            self.why_not = f"{type(error).__name__}: {error}"
            log.exception("the NATS island failed")
        finally:
            self.connected = False
            self.outbox.close()
            self._lost(len(self.outbox.take_all()), "the event bus stopped")
            self._loop.close()
            self.ended = True
            self._to_trio(self._inbox_ready_set)

    def stop(self) -> None:
        """From trio: end the loop (a no-op when it has ended already)."""
        try:
            self._loop.call_soon_threadsafe(self._stopping.set)
        except RuntimeError:
            pass  # the loop is closed: the thread is over

    def _to_trio(self, function: Callable[..., object], *args: object) -> None:
        try:
            self._token.run_sync_soon(function, *args)
        except trio.RunFinishedError:
            pass  # trio is gone; so is whoever waited

    def _inbox_ready_set(self) -> None:
        self.inbox_ready.set()

    async def _main(self) -> None:
        connector = asyncio.create_task(self._connect_forever())
        publisher = asyncio.create_task(self._publish_forever())
        for task in (connector, publisher):
            task.add_done_callback(self._check)
        await self._stopping.wait()
        # What was published before the stop still goes out; then the connection drains.
        self.outbox.close()
        self._outbox_ready.set()
        try:
            await asyncio.wait_for(publisher, CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("NATS messages were still waiting at stop; they are lost")
        if self._nc is not None:
            await self._close(self._nc)  # the connector sees it closed, and stopping
        await self._cancel(connector)  # or was connecting, or waiting to retry

    def _check(self, task: asyncio.Task[None]) -> None:
        """A task that fails is a bug: stop the island, and run() raises in trio."""
        if not task.cancelled() and (error := task.exception()) is not None:
            self.why_not = f"{type(error).__name__}: {error}"
            log.error("the NATS island failed", exc_info=error)
            self._stopping.set()

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        """Cancel ``task`` until it ends, within CLOSE_TIMEOUT.

        Once is not enough: nats-py connects through ``asyncio.wait_for``, which in
        Python 3.11 can lose a cancellation that arrives as the attempt fails (then
        nats-py waits and tries again, gh-86296)."""
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT
        while not task.done() and asyncio.get_running_loop().time() < deadline:
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)

    # -- the connection -------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        delay, first = RETRY_FIRST, True
        while not self._stopping.is_set():
            closed = asyncio.Event()
            nc = await self._connect(closed)
            if nc is None:
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            if not first:
                self.reconnects += 1
                log.info("reconnected to NATS at %s", self.url)
            first = False
            self.max_payload = nc.max_payload
            self._nc, self.connected = nc, True
            self._to_trio(self.first_connect.set)
            try:
                await closed.wait()
            finally:
                self._nc, self.connected = None, False
                await self._close(nc)
            if not self._stopping.is_set():
                log.warning("the connection to NATS at %s was lost; reconnecting", self.url)

    async def _connect(self, closed: asyncio.Event) -> Client | None:
        """A connection with our subscription in place, or None (and ``why_not``)."""

        async def disconnected() -> None:
            self.connected = False  # at once: publish must refuse from now on

        async def on_closed() -> None:
            closed.set()

        nc = Client()
        try:
            await nc.connect(
                self.url, name="voisnap", connect_timeout=CONNECT_TIMEOUT,
                # Our loop reconnects, with its backoff. nats-py retries inside connect()
                # whatever allow_reconnect says; 1 (not 0, which is "forever") with no
                # wait makes that one immediate retry.
                allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
                ping_interval=PING_INTERVAL, max_outstanding_pings=3,
                no_echo=False,  # voisnap delivers its own events back from NATS
                error_cb=self._error, disconnected_cb=disconnected, closed_cb=on_closed,
            )
            await nc.subscribe(self.subject, cb=self._received)
            # The server answers PING after it has taken our SUB: from here on, what we
            # publish comes back to us.
            await nc.flush(timeout=CONNECT_TIMEOUT)
        except (TimeoutError, OSError, nats_errors.Error) as error:
            if isinstance(error, nats_errors.NoServersError) and self._last_error is not None:
                error = self._last_error  # "no servers available" hides the reason why
            self.why_not = f"{type(error).__name__}: {error}".rstrip(": ")
            log.debug("cannot connect to NATS at %s: %s", self.url, self.why_not)
            await self._close(nc)
            return None
        self.why_not = "the connection was lost"
        return nc

    async def _close(self, nc: Client) -> None:
        """Drain a live connection (our subscription's last messages, our last
        publications), else close it; bounded either way."""
        try:
            if nc.is_connected:
                await asyncio.wait_for(nc.drain(), CLOSE_TIMEOUT)
        except (TimeoutError, OSError, nats_errors.Error) as error:
            log.debug("draining the NATS connection failed: %s", error)
        finally:
            if not nc.is_closed:
                await nc.close()

    async def _error(self, error: Exception) -> None:
        self._last_error = error
        # Connection errors are logged by _connect; what else nats-py reports (a slow
        # consumer, a server's -ERR) is worth a warning.
        if isinstance(error, OSError | TimeoutError | nats_errors.UnexpectedEOF):
            log.debug("NATS: %r", error)
        else:
            log.warning("NATS: %r", error)

    async def _received(self, msg: Msg) -> None:
        self.received += 1
        if self.inbox.put((msg.subject, msg.data)):
            if self._dropping:
                log.warning("NATS delivery caught up after dropping %d messages", self._dropping)
                self._dropping = 0
            return
        self.dropped += 1
        self._dropping += 1
        if self._dropping == 1:
            log.warning("trio is %d NATS messages behind: dropping new ones", self.inbox.limit)

    # -- the publisher --------------------------------------------------------------------------

    async def _publish_forever(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            # Read before taking: nothing is put after the close, so this batch is the last.
            last = self.outbox.closed
            lost, why = 0, ""
            for subject, payload in self.outbox.take_all():
                if (error := await self._publish(subject, payload)) is not None:
                    lost, why = lost + 1, error
            self._lost(lost, why)  # once a batch: a lost connection loses many at once
            if last:
                return

    async def _publish(self, subject: str, payload: bytes) -> str | None:
        """Why nats-py did not take the message, or None when it did."""
        if self._nc is None:
            return self.why_not
        try:
            await self._nc.publish(subject, payload)
        except (OSError, nats_errors.Error) as error:
            return repr(error)
        self.published += 1
        return None

    def _lost(self, count: int, why: str) -> None:
        if count:
            self.lost += count
            log.warning("%d NATS message(s) lost after publish (%d in all): %s",
                        count, self.lost, why)
