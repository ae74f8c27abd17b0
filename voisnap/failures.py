"""Error boundaries: what one connection or task does wrong stays with it.

A server built on structured concurrency has one failure mode worth a module of
its own: an exception nobody expected, raised in a task of a server-wide nursery,
cancels that nursery, and with it every other connection. So every connection,
request and background task the server starts runs inside ``error_boundary``:

- an ``Exception`` that reaches the boundary is reported (``report_unexpected``)
  and then handled by the boundary's owner (close that one connection, fail that
  one task); nothing outside the boundary sees it;
- ``trio.Cancelled``, ``KeyboardInterrupt`` and ``SystemExit`` are not
  ``Exception``\\ s and pass through, also out of exception groups: cancellation
  is control flow, and Ctrl-C must still stop the server.

Two kinds of trouble, two kinds of log line:

- ``report_unexpected``: a server bug. Error level, with the traceback, at most
  ``BURST`` per ``PERIOD`` seconds: one client that finds a bug must not be able
  to fill the disk with tracebacks. What was suppressed is counted and said.
- ``report_client_error``: a client sent something wrong (bad JSON, a value of
  the wrong type). Info level, one line, rate-limited the same way. Neither ever
  logs the client's payload or token: the text says what was wrong, not what
  was sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PERIOD = 60.0
BURST = 20


class RateLimit:
    """At most ``burst`` events per ``period`` seconds; counts the rest."""

    def __init__(self, burst: int = BURST, period: float = PERIOD) -> None:
        self._burst = burst
        self._period = period
        self._window_start = -period
        self._used = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= self._period:
            self._window_start = now
            self._used = 0
        if self._used < self._burst:
            self._used += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


_unexpected_limit = RateLimit()
_client_limit = RateLimit()


def report_unexpected(log: logging.Logger, what: str, error: BaseException) -> None:
    """A server bug: error level with the traceback, rate-limited."""
    if not _unexpected_limit.allow():
        return
    skipped = _unexpected_limit.take_suppressed()
    note = f" ({skipped} similar reports suppressed)" if skipped else ""
    log.error("unexpected error in %s%s", what, note, exc_info=error)


def report_client_error(log: logging.Logger, what: str, text: str) -> None:
    """A client's mistake: info level, one line, rate-limited."""
    if not _client_limit.allow():
        return
    skipped = _client_limit.take_suppressed()
    note = f" ({skipped} similar lines suppressed)" if skipped else ""
    log.info("%s: %s%s", what, text, note)


@contextmanager
def error_boundary(
    log: logging.Logger, what: str, on_error: Callable[[Exception], None] | None = None
) -> Iterator[None]:
    """Contain any ``Exception`` raised inside: report it, then ``on_error(error)``.

    Cancellation and interrupts pass through, also when they share an
    exception group with errors (the errors are reported, the rest re-raised).
    """
    try:
        yield
    except Exception as error:  # an ExceptionGroup of Exceptions only lands here too
        _contain(log, what, error, on_error)
    except BaseExceptionGroup as group:
        errors, rest = group.split(Exception)
        if errors is not None:
            _contain(log, what, errors, on_error)
        if rest is not None:
            raise rest from None


def _contain(
    log: logging.Logger,
    what: str,
    error: Exception,
    on_error: Callable[[Exception], None] | None,
) -> None:
    report_unexpected(log, what, error)
    if on_error is not None:
        try:
            on_error(error)
        except Exception as second:  # the clean-up itself must not escape either
            report_unexpected(log, f"{what} (while handling an error)", second)
