"""Every setting of ``voisnap serve``, in one frozen attrs class.

Each field is also a command-line flag (``--keep-alive-interval``) and an
environment variable (``VOISNAP_KEEP_ALIVE_INTERVAL``); the flag wins over the
variable, the variable over the default. ``--help`` and the README list them
from this one table, so the three can never disagree.

The defaults are ASP.NET Core SignalR's where it has one (its ``HubOptions``;
docs/settings.md, "Hub protocol timings"), so that official clients see the
timings they were tuned for.
The JWT secret is deliberately *not* a setting: it comes from
``VOISNAP_JWT_SECRET`` or a file in the data dir (``server/secrets.py``), so it
never appears in ``ps`` output.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .logs import check_log_settings

KIB = 1024
MIB = 1024 * KIB


def setting(default: Any, help: str, *, flag: str | None = None, **kwargs: Any) -> Any:
    metadata = {"help": help} if flag is None else {"help": help, "flag": flag}
    return attrs.field(default=default, metadata=metadata, **kwargs)


def repeatable(help: str, flag: str, separator: str) -> Any:
    """A list setting: the flag is given once per value, the variable joins the
    values with ``separator``."""
    return attrs.field(
        default=(),
        converter=tuple,
        metadata={"help": help, "flag": flag, "separator": separator},
    )


@attrs.frozen
class Settings:
    # -- where to listen and keep data --
    host: str = setting("127.0.0.1", "interface to listen on")
    port: int = setting(8080, "port to listen on; 0 picks a free one")
    data_dir: Path = setting(
        Path("./voisnap-data"), "directory for the JWT secret and stored data", converter=Path
    )

    # -- security --
    jwt_algorithm: str = setting("HS256", "JWT signing algorithm (HS256, HS384 or HS512)")
    jwt_jwks_url: str | None = setting(
        None,
        "JWKS URL of an identity provider: verify its RS256/ES256 tokens instead of "
        "an HS256 secret",
        validator=lambda _, __, value: check_jwks_url(value),
    )
    jwt_issuer: str | None = setting(None, "the 'iss' access tokens must have (checked when set)")
    jwt_audience: str | None = setting(
        None, "the 'aud' access tokens must have (checked when set)"
    )
    jwt_user_claim: str = setting("sub", "the token claim that names the user")
    jwt_tenant_claim: str = setting("tid", "the token claim that names the tenant")
    jwt_roles_claim: str = setting(
        "roles", "the token claim that lists the roles (a list or a space-separated string)"
    )
    cors_origins: tuple[str, ...] = repeatable(
        "browser origin allowed for CORS and WebSocket upgrades (repeatable)",
        flag="--cors-origin",
        separator=",",
    )
    certfile: str | None = setting(None, "TLS certificate (PEM); with --keyfile, serve HTTPS/WSS")
    keyfile: str | None = setting(None, "TLS private key (PEM)")
    proxy_headers: bool = setting(False, "trust X-Forwarded-For and X-Forwarded-Proto")
    detailed_errors: bool = setting(False, "send exception details to clients (development)")
    access_log: bool = setting(False, "log every HTTP request and WebSocket (tokens redacted)")
    log_format: str = setting(
        "text", "log lines on stderr: text, or json (one object per line, with context)"
    )
    log_level: str = setting("info", "least severe level logged: debug, info, warning or error")

    # -- scale-out (several processes) --
    redis_url: str | None = setting(
        None, "Redis server for the backplane between processes (redis://host:port/db)"
    )
    workers: int = setting(1, "worker processes serving one port (more than one needs --redis-url)")
    cross_process_timeout: float = setting(
        5.0, "seconds an operation on a connection held by another process may take"
    )
    database_url: str | None = setting(
        None,
        "PostgreSQL for the shared store (postgresql://user:password@host:port/db); "
        "default: SQLite in the data dir",
        flag="--database",
    )

    # -- hub protocol timings (ASP.NET Core defaults) --
    keep_alive_interval: float = setting(
        15.0, "seconds without sending before the server sends a Ping"
    )
    client_timeout: float = setting(
        30.0, "seconds without hearing from a client (after its first Ping) before closing it"
    )
    handshake_timeout: float = setting(
        15.0, "seconds a new connection has to complete its handshake"
    )
    disconnect_timeout: float = setting(
        15.0, "seconds a negotiated connection token stays valid before a transport uses it"
    )
    client_result_timeout: float = setting(
        30.0, "seconds a hub method waits for a client result before giving up"
    )

    # -- transports (TransportProtocols.md) --
    hub_transports: tuple[str, ...] = repeatable(
        "PATH=TRANSPORT,...: the transports a hub offers, of WebSockets, ServerSentEvents "
        "and LongPolling (repeatable; a hub not named offers all three)",
        flag="--hub-transports",
        separator=";",
    )
    long_polling_timeout: float = setting(
        90.0, "seconds a long poll waits for messages before it returns empty"
    )
    stateful_reconnect: bool = setting(
        True, "let clients that ask for it resume a dropped WebSocket (stateful reconnect)"
    )
    stateful_reconnect_buffer_size: int = setting(
        100_000, "bytes of unacknowledged messages kept per connection for stateful reconnect"
    )

    # -- agents and tasks (the chat hub) --
    agents_file: Path | None = setting(
        None,
        "TOML file configuring agents by id (the built-in agent 'sophon' always exists)",
        converter=lambda value: None if value in (None, "") else Path(value),
    )
    schedules_file: Path | None = setting(
        None,
        "TOML file of schedules (cron jobs an agent answers), read at start",
        converter=lambda value: None if value in (None, "") else Path(value),
    )
    agent_workers: int = setting(16, "tasks that run at once; the others wait in the queue")
    agent_queue_limit: int = setting(1000, "tasks that may wait before new messages are refused")
    agent_token_delay: float = setting(
        0.03, "seconds between the built-in agent's streamed words (its writing pace)"
    )
    agent_max_steps: int = setting(
        8, "steps in which an agent may call tools before its task fails (its step budget)"
    )
    approval_timeout: float = setting(
        600.0, "seconds an approval request waits for a decision before it times out"
    )
    info_request_timeout: float = setting(
        600.0, "seconds a question to the user waits for an answer before it times out"
    )
    license_expires: datetime.date | None = setting(
        None,
        "the date (YYYY-MM-DD) the license expires; from 14 days before, admins are warned",
        converter=lambda value: iso_date(value, "--license-expires"),
    )
    heartbeat_interval: float = setting(
        60.0,
        "seconds between heartbeat runs, which post the reminders that came due",
        validator=attrs.validators.gt(0),
    )
    stt_provider: str = setting(
        "sphinx",
        "speech-to-text for StreamAudio: sphinx (offline, PocketSphinx) or openai",
        validator=attrs.validators.in_(("sphinx", "openai")),
    )
    stt_workers: int = setting(
        1,
        "PocketSphinx decoder processes (each serves several streams)",
        validator=attrs.validators.ge(1),
    )
    stt_streams_per_worker: int = setting(
        4,
        "voice streams one decoder process serves at once; beyond all of them: STT_BUSY",
        validator=attrs.validators.ge(1),
    )
    stt_openai_url: str | None = setting(
        None, "base URL of an OpenAI-compatible API for --stt-provider openai"
    )
    stt_openai_model: str = setting("whisper-1", "the transcription model of --stt-openai-url")
    stt_openai_key: str | None = setting(None, "the API key of --stt-openai-url, if it needs one")
    voice_pause: float = setting(
        0.5,
        "seconds of silence that end an utterance in Auto mode",
        validator=attrs.validators.gt(0),
    )
    voice_max_chunk_bytes: int = setting(
        16 * KIB,
        "largest decoded audio chunk of StreamAudio, in bytes (16 KiB: half a second)",
        validator=attrs.validators.gt(0),
    )
    voice_max_utterance: float = setting(
        60.0, "longest utterance of StreamAudio, in seconds", validator=attrs.validators.gt(0)
    )
    stt_timeout: float = setting(
        10.0,
        "seconds the speech provider has to answer on the Voisnap hubs; then STT_PROVIDER_TIMEOUT",
        validator=attrs.validators.gt(0),
    )
    sophon_hubs_prefix: str = setting(
        "/hubs", "path prefix of the Sophon hubs (/hubs/chat, /hubs/tasks, ...)"
    )
    voisnap_hubs_prefix: str = setting(
        "/voisnap/hubs",
        "path prefix of the Voisnap hubs (/voisnap/hubs/chat, /voisnap/hubs/voice); "
        "/hubs gives the Voisnap documents' URLs, with --sophon-hubs-prefix set elsewhere",
    )
    max_sessions_per_tenant: int = setting(
        1000,
        "concurrent Voisnap sessions of one tenant, across every process; "
        "beyond it: SESSION_LIMIT_REACHED",
        validator=attrs.validators.ge(1),
    )
    voisnap_resume_window: float = setting(
        3600.0,
        "seconds a Voisnap session with no connection may still be resumed with ?sessionId=",
        validator=attrs.validators.gt(0),
    )
    plain_ws_max_frame: int = setting(
        1024 * 1024,
        "bytes a /v1/stream or /v1/events client message may have; a longer one closes the "
        "connection (1009)",
        validator=attrs.validators.ge(1024),
    )
    plain_ws_ping_interval: float = setting(
        15.0,
        "seconds between the server's WebSocket pings on /v1/stream and /v1/events",
        validator=attrs.validators.gt(0),
    )
    plain_ws_pong_timeout: float = setting(
        30.0,
        "seconds a /v1/stream or /v1/events client may go unheard (no pong) before it is closed",
        validator=attrs.validators.gt(0),
    )
    events_max_subscriptions: int = setting(
        100, "subscriptions one /v1/events connection may hold", validator=attrs.validators.ge(1)
    )
    metrics_token: str | None = setting(
        None, "a token GET /metrics requires (Authorization: Bearer or ?access_token=); none: open"
    )
    nats_url: str | None = setting(
        None, "NATS server of the event bus (nats://host:port): /v1/events' events go through it"
    )
    ice_servers: tuple[str, ...] = repeatable(
        "STUN or TURN server for WebRtcHub calls: stun:HOST:PORT or "
        "turn:USER:CREDENTIAL@HOST:PORT (repeatable)",
        flag="--ice-server",
        separator=",",
    )
    webrtc_host: str | None = setting(
        None, "the one address of voisnap's WebRTC host candidates (default: every address)"
    )
    webrtc_connect_timeout: float = setting(
        20.0,
        "seconds a WebRtcHub peer connection has from the answer to connect; then WEBRTC_FAILED",
        validator=attrs.validators.gt(0),
    )
    max_webrtc_sessions: int = setting(
        100,
        "WebRtcHub peer connections at once in one process; beyond it: SESSION_LIMIT_REACHED",
        validator=attrs.validators.ge(1),
    )
    node_heartbeat_interval: float = setting(
        30.0,
        "seconds between a node's heartbeats; a node that misses two is offline",
        validator=attrs.validators.gt(0),
    )
    task_lease: float = setting(
        15.0, "seconds a running task stays its process's without a renewal; then it fails"
    )
    task_lease_renewal: float = setting(
        5.0, "seconds between renewals of a running task's lease (and polls for queued tasks)"
    )

    # -- limits --
    max_message_size: int = setting(32 * KIB, "largest hub message a client may send, in bytes")
    max_nesting_depth: int = setting(
        64, "deepest nesting of arrays and objects in one hub message or handshake"
    )
    outbox_capacity: int = setting(
        100, "messages queued per connection before a fan-out evicts it as too slow"
    )
    outbox_max_bytes: int = setting(
        1 * MIB, "bytes queued per connection before a fan-out evicts it as too slow"
    )
    max_parallel_invocations: int = setting(
        1, "hub method invocations one client may run at once (streams are not counted)"
    )
    stream_buffer_capacity: int = setting(
        10, "items buffered per client-to-server stream before the server stops reading"
    )
    request_head_timeout: float = setting(
        10.0, "seconds a new TCP connection has to send its request head"
    )
    request_head_max_size: int = setting(16 * KIB, "largest HTTP request head accepted, in bytes")
    max_document_size: int = setting(
        5 * MIB, "largest document POST /documents accepts (plain text or Markdown), in bytes"
    )
    request_body_timeout: float = setting(
        10.0, "seconds an HTTP request body has to arrive before the server answers 408"
    )
    shutdown_timeout: float = setting(
        5.0, "seconds a graceful shutdown waits for connections to close"
    )

    def __attrs_post_init__(self) -> None:
        if not 0 < self.task_lease_renewal < self.task_lease:
            raise ValueError("--task-lease-renewal must be positive and less than --task-lease")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        check_log_settings(self.log_format, self.log_level)
        check_prefixes(self.sophon_hubs_prefix, self.voisnap_hubs_prefix)
        if self.workers > 1 and not self.redis_url:
            raise ValueError(
                f"--workers {self.workers} needs a backplane between the workers: add "
                "--redis-url redis://HOST:PORT (or set VOISNAP_REDIS_URL)"
            )

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The defaults, changed by any ``VOISNAP_*`` variables that are set."""
        return settings_from({}, environ)


def check_prefixes(sophon: str, voisnap: str) -> None:
    """Both hub prefixes are paths like ``/hubs``, and they differ: the
    products' hubs share names (``chat``)."""
    for flag, prefix in (("--sophon-hubs-prefix", sophon), ("--voisnap-hubs-prefix", voisnap)):
        if not prefix.startswith("/") or prefix.endswith("/") or "?" in prefix or "//" in prefix:
            raise ValueError(
                f"{flag} must be a path like /hubs (no trailing slash), not {prefix!r}"
            )
    if sophon == voisnap:
        raise ValueError(
            f"--sophon-hubs-prefix and --voisnap-hubs-prefix are both {sophon!r}: the two "
            "products' hubs share names (chat), so they need different prefixes"
        )


def check_jwks_url(url: str | None) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"--jwt-jwks-url must be an http:// or https:// URL, not {url!r}")


def iso_date(value: Any, flag: str) -> datetime.date | None:
    """A date setting: None, a ``datetime.date``, or its ISO text (from a flag,
    a variable, or a worker's JSON settings)."""
    if value is None or value == "" or isinstance(value, datetime.date):
        return value or None
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{flag} must be a date as YYYY-MM-DD, not {value!r}") from None


def env_name(field_name: str) -> str:
    return "VOISNAP_" + field_name.upper()


def flag_name(field_name: str) -> str:
    field = attrs.fields_dict(Settings)[field_name]
    return field.metadata.get("flag") or "--" + field_name.replace("_", "-")


def is_repeatable(field: attrs.Attribute) -> bool:
    return "separator" in field.metadata


def settings_from(
    overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from command-line ``overrides`` (None = not given), then the
    environment, then the defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in attrs.fields(Settings):
        given = overrides.get(field.name)
        if given is not None and given != ():
            values[field.name] = given
        elif env_name(field.name) in environ:
            values[field.name] = parse_env(field, environ[env_name(field.name)])
    return Settings(**values)


def parse_env(field: attrs.Attribute, text: str) -> Any:
    kind = field.type
    if kind in ("bool", bool):
        lowered = text.strip().lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"{env_name(field.name)}={text!r} is not a boolean")
        return lowered in ("1", "true", "yes", "on")
    try:
        if kind in ("int", int):
            return int(text)
        if kind in ("float", float):
            return float(text)
    except ValueError:
        raise ValueError(f"{env_name(field.name)}={text!r} is not a valid {kind}") from None
    if is_repeatable(field):
        values = text.split(field.metadata["separator"])
        return tuple(value.strip() for value in values if value.strip())
    return text
