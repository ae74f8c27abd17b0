"""Tasks waiting for something named by a key, woken by whoever sees it happen."""

from __future__ import annotations

from collections.abc import Hashable

import trio


class Wakeups:
    """``wait(key, timeout)`` returns when ``wake(key)`` is called or the
    timeout passes (the caller then looks for itself); waiters of one key share
    one event, and it is forgotten once nobody waits on it."""

    def __init__(self) -> None:
        self._events: dict[Hashable, trio.Event] = {}
        self._waiting: dict[Hashable, int] = {}

    async def wait(self, key: Hashable, timeout: float) -> None:
        event = self._events.setdefault(key, trio.Event())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                if self._events.get(key) is event:
                    del self._events[key]

    def wake(self, key: Hashable) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()
