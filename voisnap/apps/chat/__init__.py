"""``/hubs/chat`` and what stands behind it: the store, the agents, the task
runtime, and the REST catch-up routes."""

from __future__ import annotations

from functools import partial

import trio

from ...agents.registry import load_agents
from ...agents.runtime import Leases, TaskRuntime
from ...config import Settings
from ...server.hub_server import HubServer
from ...storage.base import Store
from ...storage.sqlite import SqliteStore
from .hub import ChatHub, ChatServices
from .notifier import ChatEvents
from .rest import ChatRest
from .signals import BackplaneTaskSignals

DATABASE = "voisnap.db"


def open_store(settings: Settings) -> Store:
    """PostgreSQL when ``--database`` names one (shared by hosts), else the
    SQLite file in the data dir (shared by the processes of one host)."""
    if settings.database_url:
        from ...storage.postgres import PostgresStore  # loads psycopg only when it is used

        return PostgresStore(settings.database_url)
    return SqliteStore(settings.data_dir / DATABASE)


def mount_chat(server: HubServer) -> ChatServices:
    settings = server.settings
    store = open_store(settings)
    agents = load_agents(settings.agents_file, store, settings.agent_token_delay)
    endpoint = server.mount("/hubs/chat", ChatHub)
    events = ChatEvents(endpoint.router)
    runtime = TaskRuntime(
        store,
        agents,
        events,
        workers=settings.agent_workers,
        queue_limit=settings.agent_queue_limit,
        node=server.cluster.node_id,
        leases=Leases(settings.task_lease, settings.task_lease_renewal),
        signals=BackplaneTaskSignals(server.cluster),
    )
    services = ChatServices(store=store, agents=agents, runtime=runtime, events=events)
    endpoint.services = services
    server.add_service(partial(keep_open, store))
    server.add_service(runtime.run)
    server.readiness_checks["store"] = store.ping
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
