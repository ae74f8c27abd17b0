"""The ``voisnap`` command: ``serve``, ``token``, ``node`` (the reference node) and ``status``.

Every ``serve`` flag comes from a field of ``config.Settings``, with its help
text and its ``VOISNAP_<NAME>`` variable, so the three never disagree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from .config import Settings, env_name, flag_name, is_repeatable, settings_from
from .logs import configure_logging
from .node_client.cli import add_node_parser, run_node
from .server.factory import token_authority
from .server.secrets import SECRET_ENV
from .status import add_status_parser, run_status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voisnap", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the hub server",
        description=f"Run the hub server. The JWT secret comes from ${SECRET_ENV}, "
        "or from <data-dir>/jwt-secret (created on first use).",
    )
    for field in attrs.fields(Settings):
        _add_setting(serve, field)
    # One worker of ``serve --workers N``, started by its supervisor (server.workers).
    commands.add_parser("worker")
    token = commands.add_parser(
        "token",
        help="print an access token for a user, make an API token (--api), "
        "or register a node and print its token",
    )
    token.add_argument("--user", required=True, help="user id (the 'sub' claim)")
    token.add_argument("--tenant", required=True, help="tenant id (the 'tid' claim)")
    token.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    token.add_argument(
        "--ttl", type=float, default=None, help="seconds until it expires (user 3600, node 90 days)"
    )
    token.add_argument("--data-dir", type=Path, default=None, help="where the JWT secret lives")
    token.add_argument(
        "--node", metavar="NAME", default=None, help="register a node of the user's by this name"
    )
    token.add_argument(
        "--scope", action="append", default=[], help="a command the node may run (repeatable)"
    )
    token.add_argument(
        "--database", default=None,
        help="the PostgreSQL store to register the node (or API token) in",
    )
    token.add_argument(
        "--api", metavar="NAME", default=None,
        help="make an API token (rc_...) of the user's by this name, for REST and /v1/*",
    )
    add_node_parser(commands)
    add_status_parser(commands)
    return parser


def _add_setting(parser: argparse.ArgumentParser, field: attrs.Attribute) -> None:
    help_text = f"{field.metadata['help']} (${env_name(field.name)}; default: {field.default!r})"
    flag = flag_name(field.name)
    if field.type in ("bool", bool):
        parser.add_argument(
            flag,
            dest=field.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    elif is_repeatable(field):
        parser.add_argument(flag, dest=field.name, action="append", default=None, help=help_text)
    else:
        kind = {"int": int, "float": float}.get(str(field.type), str)
        parser.add_argument(flag, dest=field.name, type=kind, default=None, help=help_text)


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "token":
        return _token(arguments)
    if arguments.command == "node":
        return run_node(arguments)
    if arguments.command == "status":
        return run_status(arguments)
    if arguments.command == "worker":
        from .server.workers import die_with_supervisor, settings_of_worker

        if not die_with_supervisor():
            return 0  # the supervisor that started it is gone already
        return _serve(settings_of_worker(), reuse_port=True)
    overrides = {field.name: getattr(arguments, field.name) for field in attrs.fields(Settings)}
    try:
        settings = settings_from(overrides)
    except ValueError as error:
        print(f"voisnap serve: {error}", file=sys.stderr)
        return 2
    return _serve(settings)


def _serve(settings: Settings, *, reuse_port: bool = False) -> int:
    from .apps import create_product
    from .server.runner import serve

    configure_logging(settings.log_format, settings.log_level)
    try:
        # Under --workers N this only checks what the workers will read (the
        # agents file, the schedules file): a file that stops one worker would
        # stop every worker, again and again, under the supervisor.
        server = create_product(attrs.evolve(settings, workers=1))
    except ValueError as error:
        print(f"voisnap serve: {error}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from .server.workers import Supervisor

        return Supervisor(settings, _print_ready).run()
    trio.run(partial(serve, server, ready=_print_ready, reuse_port=reuse_port))
    return 0


def _print_ready(line: str) -> None:
    print(line, flush=True)


def _token(arguments: argparse.Namespace) -> int:
    data_dir = arguments.data_dir or settings_from({}).data_dir
    settings = settings_from({"data_dir": data_dir, "database_url": arguments.database})
    try:
        authority = token_authority(settings)
    except ValueError as error:
        print(f"voisnap token: {error}", file=sys.stderr)
        return 2
    if not authority.issues_tokens and arguments.api is None:
        print(
            "voisnap token: with --jwt-jwks-url, access tokens come from the identity "
            "provider; this server issues none",
            file=sys.stderr,
        )
        return 2
    if arguments.node is not None:
        return _node_token(arguments, settings)
    if arguments.api is not None:
        return _api_token(arguments, settings)
    ttl = 3600 if arguments.ttl is None else arguments.ttl
    print(authority.issue(arguments.user, arguments.tenant, arguments.role, ttl))
    return 0


def _api_token(arguments: argparse.Namespace, settings: Settings) -> int:
    """``token --api NAME``: store an API token in the server's store, print its secret."""
    from .apps.api_tokens import ApiTokens, TokenRefused
    from .clock import SystemClock
    from .storage.base import Owner

    async def issue(store: Any) -> str:
        owner = Owner(arguments.tenant, arguments.user)
        tokens = ApiTokens(store, SystemClock())
        _, secret = await tokens.issue(owner, arguments.api, arguments.role, arguments.ttl)
        return secret

    return _print_from_store(settings, issue, TokenRefused)


def _node_token(arguments: argparse.Namespace, settings: Settings) -> int:
    """``token --node``: register the node in the server's store, print its token."""
    from .clock import SystemClock
    from .nodes.credentials import NodeError, checked_name, checked_scopes, checked_ttl
    from .nodes.registration import register_node
    from .storage.base import Owner

    async def register(store: Any) -> str:
        _, token = await register_node(
            store,
            token_authority(settings),
            Owner(arguments.tenant, arguments.user),
            checked_name(arguments.node),
            checked_scopes(arguments.scope),
            ttl=checked_ttl(arguments.ttl),
            now=SystemClock().now(),
        )
        return token

    return _print_from_store(settings, register, NodeError)


def _print_from_store(
    settings: Settings, work: Callable[[Any], Awaitable[str]], refusal: type[Exception]
) -> int:
    """Open the server's store, print what ``work`` makes in it; exit 2 on ``refusal``."""
    from .apps import open_store

    async def run() -> str:
        store = open_store(settings)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        print(trio.run(run))
    except refusal as error:
        print(f"voisnap token: {error}", file=sys.stderr)
        return 2
    return 0
