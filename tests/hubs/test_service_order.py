"""The server's services start in order and stop in the reverse order.

A service may use the ones started before it (the task runtime claims work from
the store): stopping them all at once let the store close under a runtime still
claiming, and ``voisnap serve`` exited 1 on SIGTERM."""

from __future__ import annotations

import pytest
import trio

from voisnap.server.runner import services_running


class Store:
    """A stand-in service that refuses use after it closed, as the real store does."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.open = False

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        self.open = True
        self.log.append("store started")
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.open = False
            self.log.append("store stopped")

    def use(self) -> None:
        assert self.open, "the store was used after it closed"


def user_of(store: Store, name: str, log: list[str]):
    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        store.use()
        log.append(f"{name} started")
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            store.use()  # its last words still need the store
            log.append(f"{name} stopped")

    return run


async def test_services_stop_in_reverse_order() -> None:
    log: list[str] = []
    store = Store(log)
    services = [store.run, user_of(store, "runtime", log), user_of(store, "scheduler", log)]
    async with services_running(services):
        assert log == ["store started", "runtime started", "scheduler started"]
    assert log[3:] == ["scheduler stopped", "runtime stopped", "store stopped"]


async def test_a_failing_service_stops_the_others_and_is_raised() -> None:
    log: list[str] = []
    store = Store(log)

    async def failing(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(0)
        raise RuntimeError("broken")

    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="broken"), flatten_subgroups=True):
        async with services_running([store.run, user_of(store, "runtime", log), failing]):
            await trio.sleep_forever()
    assert log[-2:] == ["runtime stopped", "store stopped"]
