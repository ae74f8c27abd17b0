"""``voisnap node``: the reference node's command line.

docs/hubs/node.md, "The reference node":

    voisnap node --url http://127.0.0.1:8080 --token NODE_TOKEN
                 [--transport websockets|polling] [--root DIR] [--allow-shell]
                 [--heartbeat-interval 30]

The token may come from ``$VOISNAP_NODE_TOKEN`` instead of ``--token``, which
keeps it out of the process list. Exit status: 0 when stopped (Ctrl-C), 2 for
bad arguments, 3 when the node's access was revoked or its token refused.
The log has one line per command (its name, ``commandId`` and ``ok``), never
its params or its result: those may be private.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import trio

from .config import TRANSPORTS, NodeConfig
from .node import ReferenceNode
from .token import read_node_identity

TOKEN_ENV = "VOISNAP_NODE_TOKEN"


def add_node_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``node`` to the ``voisnap`` subcommands; returns its parser."""
    node = commands.add_parser(
        "node",
        help="run the reference node: run commands sent by the gateway",
        description="Connect to a voisnap server as a node and run the commands it sends "
        "(docs/hubs/node.md).",
    )
    node.add_argument(
        "--url", required=True, help="the server's base URL, http://HOST:PORT or https://..."
    )
    node.add_argument("--token", default=None, help=f"the node token (or ${TOKEN_ENV})")
    node.add_argument(
        "--transport", choices=TRANSPORTS, default="websockets", help="default: websockets"
    )
    node.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="list_dir and read_file see only this directory (default: the current one)",
    )
    node.add_argument(
        "--allow-shell",
        action="store_true",
        help="have the shell command (it runs only while the node's scopes include 'shell')",
    )
    node.add_argument(
        "--heartbeat-interval", type=float, default=30.0, help="seconds (default: 30)"
    )
    return node


def run_node(arguments: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """Run the node the parsed ``arguments`` describe; returns the exit status."""
    token = arguments.token or environ.get(TOKEN_ENV)
    if not token:
        return _usage_error(f"give the node token with --token or ${TOKEN_ENV}.")
    try:
        config = NodeConfig(
            url=arguments.url,
            token=token,
            transport=arguments.transport,
            root=arguments.root,
            allow_shell=arguments.allow_shell,
            heartbeat_interval=arguments.heartbeat_interval,
        )
        identity = read_node_identity(token)
    except ValueError as error:
        return _usage_error(str(error))
    if not config.root.is_dir():
        return _usage_error(f"the root {str(config.root)!r} is not a directory.")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: one line per poll says nothing worth reading.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    node = ReferenceNode(config, identity)
    try:
        status = trio.run(node.run)
    except KeyboardInterrupt:
        return 0
    if node.stop_reason is not None:
        print(f"voisnap node: {node.stop_reason}", file=sys.stderr)
    return status


def _usage_error(text: str) -> int:
    print(f"voisnap node: {text}", file=sys.stderr)
    return 2
