"""The product: its hubs, stores and agents, mounted on the framework's server.

One runtime, many faces: the store, the agents and the task runtime exist
once; each hub is a rendering of the runtime's domain events (``faces``).
"""

from __future__ import annotations

from functools import partial

import trio

from ..agents.registry import load_agents
from ..agents.reminder_times import UserZones
from ..agents.reminder_tools import ReminderTools
from ..agents.runtime import Leases, RequestTimeouts, TaskRuntime
from ..agents.tools import Toolbox
from ..clock import SystemClock
from ..config import Settings
from ..islands.nats import NatsBus
from ..islands.webrtc import MediaWorker, parse_ice_server
from ..nodes import Nodes, NodeSignals
from ..server.factory import create_server
from ..server.hub_server import HubServer
from ..storage.base import Owner, Store, VoicePreferences
from ..storage.sqlite import SqliteStore
from .api_tokens import ApiTokens, ApiTokensRest
from .approvals import ApprovalsEvents, ApprovalsHub, ApprovalsRest
from .chat import ChatEvents, ChatHub, ChatRest, ChatServices
from .chat.signals import BackplaneTaskSignals
from .discussion import DiscussionFace, DiscussionHub, DiscussionRest, Runs
from .documents import DocumentsRest, Indexer
from .events import PATH as EVENTS_PATH
from .events import EventBus, EventsFace, EventsRest, EventsServices
from .events import serve as serve_events
from .faces import Faces
from .metrics_face import MetricsFace
from .nodes import NodeGate, NodeHub, NodesRest, NotifiedPresence, Presences
from .nodes.tool import NodeTool
from .notifications import (
    Insights,
    LicenseWatch,
    Notifications,
    NotificationsHub,
    NotificationsRest,
)
from .plain import PlainSettings
from .playground import PlaygroundHub
from .reminders import Heartbeat, RemindersRest
from .schedules import (
    Firing,
    Scheduler,
    Schedules,
    SchedulesRest,
    WorkflowFace,
    load_schedules_file,
)
from .stream import PATH as STREAM_PATH
from .stream import StreamFace, StreamServices, StreamSessions, TurnLogs, V1TasksRest
from .stream import serve as serve_stream
from .tasks import TasksEvents, TasksHub
from .voice import Listening, VoiceLimits, VoiceRest, providers_of
from .voisnap import (
    Calls,
    CallSettings,
    Conversations,
    SophonOnly,
    VoisnapChatHub,
    VoisnapFace,
    VoisnapServices,
    VoisnapVoiceHub,
    VoisnapWebRtcHub,
    WebRtcMedia,
)

DATABASE = "voisnap.db"


def create_product(settings: Settings) -> HubServer:
    """A server with every hub of the product mounted: what ``voisnap serve`` runs.
    The Sophon hubs (seed 000) under ``--sophon-hubs-prefix``, the Voisnap hubs
    (seeds 001, 002) under ``--voisnap-hubs-prefix``."""
    server = create_server(settings)
    sophon, voisnap = settings.sophon_hubs_prefix, settings.voisnap_hubs_prefix
    server.mount(f"{sophon}/playground", PlaygroundHub)
    store = open_store(settings)
    # Services stop in the reverse order of their start: the store, which the
    # others use, opens first and closes last.
    server.add_service(partial(keep_open, store))
    agents = load_agents(settings.agents_file, settings.agent_token_delay)
    chat = server.mount(f"{sophon}/chat", ChatHub)
    tasks = server.mount(f"{sophon}/tasks", TasksHub, services=store)
    approvals = server.mount(f"{sophon}/approvals", ApprovalsHub)
    discussion = server.mount(f"{sophon}/discussion", DiscussionHub)
    notify = server.mount(f"{sophon}/notifications", NotificationsHub)
    voisnap_chat = server.mount(f"{voisnap}/chat", VoisnapChatHub)
    voisnap_voice = server.mount(f"{voisnap}/voice", VoisnapVoiceHub)
    voisnap_webrtc = server.mount(f"{voisnap}/webrtc", VoisnapWebRtcHub)
    notifications = Notifications(store, notify.router)
    insights = Insights(store, notifications)
    license_watch = LicenseWatch(
        settings.license_expires, notifications, store, server.cluster.node_id
    )
    notify.services = license_watch
    chat_events = ChatEvents(chat.router)
    calls = Calls(server.cluster, None, None)  # completed below, once the chat's services exist
    stream_sessions, turn_logs = StreamSessions(server.cluster), TurnLogs(server.cluster)
    server.add_service(turn_logs.run)
    nats = None if settings.nats_url is None else NatsBus(settings.nats_url)
    event_bus = EventBus(server.cluster, nats)
    if nats is not None:
        server.add_service(event_bus.run)
        server.readiness_checks["nats"] = event_bus.check
    events_face = EventsFace(event_bus, store)
    server.statistics_sources["events"] = event_bus.statistics
    server.statistics_sources["stream"] = lambda: {
        "watchedSessions": stream_sessions.watched, "turnLogs": turn_logs.held,
    }
    faces = Faces(
        SophonOnly(chat_events),
        SophonOnly(TasksEvents(tasks.router)),
        SophonOnly(ApprovalsEvents(approvals.router)),
        DiscussionFace(discussion.router),
        WorkflowFace(store, notifications),
        VoisnapFace(voisnap_chat.router, (voisnap_voice.router, voisnap_webrtc.router), calls),
        SophonOnly(StreamFace(store, stream_sessions, turn_logs)),
        SophonOnly(events_face),
        MetricsFace(),
    )
    clock = SystemClock()
    api_tokens = ApiTokens(store, clock)
    server.api_tokens = api_tokens.principal_of  # REST and /v1/* take them; hubs do not
    server.add_routes(ApiTokensRest(api_tokens, store, clock).routes())
    nodes = Nodes(
        store,
        server.authority,
        NodeSignals(server.cluster),
        Presences(NotifiedPresence(notifications), events_face),
        clock,
        settings.node_heartbeat_interval,
    )
    server.mount(f"{sophon}/node", NodeHub, services=nodes)
    server.principal_checks.append(NodeGate(nodes, f"{sophon}/node"))
    server.statistics_sources["nodes"] = nodes.statistics
    zones = UserZones()  # the chat hub fills it, the reminder tools read it
    runtime = TaskRuntime(
        store,
        agents,
        faces,
        workers=settings.agent_workers,
        queue_limit=settings.agent_queue_limit,
        node=server.cluster.node_id,
        leases=Leases(settings.task_lease, settings.task_lease_renewal),
        signals=BackplaneTaskSignals(server.cluster),
        timeouts=RequestTimeouts(settings.approval_timeout, settings.info_request_timeout),
        max_steps=settings.agent_max_steps,
        toolbox=Toolbox(store, insights, ReminderTools(store, zones), NodeTool(nodes)),
    )
    sphinx, providers = providers_of(settings)
    voice_defaults = VoicePreferences(
        Owner("", ""), settings.stt_provider, "Auto", settings.voice_pause
    )
    chat_services = chat.services = ChatServices(
        store=store, agents=agents, runtime=runtime, events=faces, zones=zones
    )
    chat_services.listening = Listening(
        chat_services,
        providers,
        voice_defaults,
        VoiceLimits(settings.voice_max_chunk_bytes, settings.voice_max_utterance),
    )
    calls.complete(
        chat_services,
        CallSettings(
            providers, voice_defaults, settings.stt_timeout, settings.voice_max_chunk_bytes
        ),
    )
    conversations = Conversations(
        store,
        agents,
        clock,
        node=server.cluster.node_id,
        limit=settings.max_sessions_per_tenant,
        resume_window=settings.voisnap_resume_window,
        lease=settings.task_lease,
        renewal=settings.task_lease_renewal,
    )
    webrtc = WebRtcMedia(
        MediaWorker(
            [parse_ice_server(url) for url in settings.ice_servers], settings.webrtc_host
        ),
        most=settings.max_webrtc_sessions,
        connect_timeout=settings.webrtc_connect_timeout,
    )
    server.add_service(webrtc.worker.run)
    server.statistics_sources["webrtc"] = webrtc.statistics
    voisnap_services = VoisnapServices(conversations, chat_services, agents, calls, webrtc)
    voisnap_chat.services = voisnap_voice.services = voisnap_webrtc.services = voisnap_services
    server.add_service(calls.run)
    server.add_service(conversations.run)
    server.add_service(sphinx.run)
    server.statistics_sources["voice"] = sphinx.statistics
    server.add_routes(VoiceRest(store, voice_defaults).routes())
    approvals.services = runtime.decisions
    runs = discussion.services = Runs(store, agents, runtime, faces)
    server.add_service(runtime.run)
    server.add_service(nodes.run)
    server.add_service(license_watch.run)
    server.readiness_checks["store"] = store.ping
    server.add_routes(ChatRest(store).routes())
    server.add_routes(V1TasksRest(chat_services).routes())
    plain = PlainSettings(
        settings.plain_ws_max_frame, settings.plain_ws_ping_interval,
        settings.plain_ws_pong_timeout,
    )
    stream = StreamServices(server, chat_services, stream_sessions, turn_logs, plain)
    server.add_websocket_route(STREAM_PATH, partial(serve_stream, stream))
    events = EventsServices(server, event_bus, plain, settings.events_max_subscriptions)
    server.add_websocket_route(EVENTS_PATH, partial(serve_events, events))
    server.add_routes(EventsRest(event_bus).routes())
    server.add_routes(ApprovalsRest(store, runtime.decisions).routes())
    server.add_routes(DiscussionRest(runs).routes())
    server.add_routes(NotificationsRest(store, notifications, insights).routes())
    server.add_routes(NodesRest(nodes).routes())
    file_schedules = None
    if settings.schedules_file is not None:  # a file that cannot be used stops the start
        file_schedules = load_schedules_file(settings.schedules_file, agents, clock.now())
    firing = Firing(store, agents, runtime, faces, notifications, clock)
    scheduler = Scheduler(store, firing, clock, file_schedules=file_schedules)
    server.add_service(scheduler.run)
    server.add_routes(SchedulesRest(Schedules(store, agents, clock, scheduler.changed)).routes())
    indexer = Indexer(store, notifications, server.cluster.node_id)
    server.add_service(indexer.run)
    server.add_routes(
        DocumentsRest(store, notifications, indexer, settings.max_document_size).routes()
    )
    heartbeat = Heartbeat(store, chat_events, server.cluster.node_id, settings.heartbeat_interval)
    server.add_service(heartbeat.run)
    server.add_routes(RemindersRest(store).routes())
    return server


def open_store(settings: Settings) -> Store:
    """PostgreSQL when ``--database`` names one (shared by hosts), else the
    SQLite file in the data dir (shared by the processes of one host)."""
    if settings.database_url:
        from ..storage.postgres import PostgresStore  # loads psycopg only when it is used

        return PostgresStore(settings.database_url)
    return SqliteStore(settings.data_dir / DATABASE)


async def keep_open(store: Store, *, task_status: trio.TaskStatus[None]) -> None:
    """Open the store before the server listens; close it when the server ends."""
    await store.open()
    try:
        task_status.started()
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
