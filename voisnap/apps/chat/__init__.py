"""``/hubs/chat`` and what stands behind it: the store, the agents, the task
runtime, and the REST catch-up routes."""

from __future__ import annotations

from functools import partial

import trio

from ...agents.registry import load_agents
from ...agents.runtime import TaskRuntime
from ...server.hub_server import HubServer
from ...storage.base import Store
from ...storage.sqlite import SqliteStore
from .hub import ChatHub, ChatServices
from .notifier import ChatEvents
from .rest import ChatRest

DATABASE = "voisnap.db"


def mount_chat(server: HubServer) -> ChatServices:
    settings = server.settings
    store = SqliteStore(settings.data_dir / DATABASE)
    agents = load_agents(settings.agents_file, store, settings.agent_token_delay)
    endpoint = server.mount("/hubs/chat", ChatHub)
    events = ChatEvents(endpoint.router)
    runtime = TaskRuntime(
        store,
        agents,
        events,
        workers=settings.agent_workers,
        queue_limit=settings.agent_queue_limit,
    )
    services = ChatServices(store=store, agents=agents, runtime=runtime, events=events)
    endpoint.services = services
    server.add_service(partial(keep_open, store))
    server.add_service(runtime.run)
    server.add_routes(ChatRest(store).routes())
    return services


async def keep_open(store: Store, *, task_status: trio.TaskStatus[None]) -> None:
    """Open the store before the server listens; close it when the server ends."""
    await store.open()
    try:
        task_status.started()
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
