"""``voisnap status``: a running server's ``/readyz`` and ``/stats``, as a table.

One shot by default (totals); ``--watch [SECONDS]`` refreshes until Ctrl-C and
shows deliveries per second, computed between two refreshes. ``--count N``
stops after N tables (scripts, tests). A server that cannot be reached is a
clear one-line message on stderr and exit status 1.

Both endpoints need no token: ``/stats`` holds counts only (docs/rest.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_INTERVAL = 2.0
TIMEOUT = 5.0
# /stats sections with a row of their own; any other section is shown as key=value.
KNOWN = {"connections", "negotiated", "gc", "cluster", "hubs"}


class Unreachable(Exception):
    pass


def add_status_parser(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="show a running server's readiness and counters (/readyz, /stats)",
        description=__doc__.splitlines()[0],
    )
    status.add_argument(
        "--url", default=DEFAULT_URL, help=f"the server's base URL (default: {DEFAULT_URL})"
    )
    status.add_argument(
        "--watch",
        metavar="SECONDS",
        nargs="?",
        type=float,
        const=DEFAULT_INTERVAL,
        default=None,
        help=f"refresh every SECONDS (default {DEFAULT_INTERVAL:g}) until Ctrl-C",
    )
    status.add_argument(
        "--count", type=int, default=None, help="with --watch: stop after this many tables"
    )


def fetch(client: httpx.Client, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(readiness, stats)``; Unreachable if the server does not answer them."""
    base = url.rstrip("/")
    try:
        ready = client.get(f"{base}/readyz")
        stats = client.get(f"{base}/stats")
    except httpx.HTTPError as error:
        raise Unreachable(f"cannot reach {base}: {error or type(error).__name__}") from None
    if stats.status_code != 200:
        raise Unreachable(f"{base}/stats answered {stats.status_code}")
    try:
        readiness = ready.json() if ready.status_code in (200, 503) else {}
        return readiness, stats.json()
    except ValueError:
        raise Unreachable(f"{base} did not answer with JSON: is it a voisnap server?") from None


def deliveries_of(stats: Mapping[str, Any]) -> dict[str, int]:
    return {path: hub.get("deliveries", 0) for path, hub in stats.get("hubs", {}).items()}


def render(
    url: str,
    readiness: Mapping[str, Any],
    stats: Mapping[str, Any],
    rates: Mapping[str, float] | None = None,
) -> str:
    """The table; ``rates`` (deliveries/s per hub) once two refreshes are known."""
    lines = [f"voisnap at {url}"]
    state = readiness.get("status", "unknown")
    problems = readiness.get("unavailable") or {}
    detail = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
    lines.append(f"readiness     {state}{f' ({detail})' if detail else ''}")
    negotiated = stats.get("negotiated") or {}
    lines.append(
        f"connections   {stats.get('connections', 0)}"
        f" (negotiated: {negotiated.get('pending', 0)} pending, "
        f"{negotiated.get('active', 0)} active)"
    )
    lines.append("")
    hubs: Mapping[str, Mapping[str, Any]] = stats.get("hubs", {})
    width = max([len("hub"), *map(len, hubs)])
    header = f"{'hub':<{width}}  {'conns':>6}  {'groups':>6}  {'sent':>9}  {'deliveries':>10}"
    header += f"  {'deliv/s':>8}  {'evictions':>9}"
    lines += [header, "-" * len(header)]
    for path, hub in hubs.items():
        rate = "-" if rates is None else f"{rates.get(path, 0.0):.1f}"
        lines.append(
            f"{path:<{width}}  {hub.get('connections', 0):>6}  {hub.get('groups', 0):>6}"
            f"  {hub.get('messages_sent', 0):>9}  {hub.get('deliveries', 0):>10}"
            f"  {rate:>8}  {hub.get('evictions', 0):>9}"
        )
    total_rate = "-" if rates is None else f"{sum(rates.values()):.1f}"
    lines.append(
        f"{'total':<{width}}  {stats.get('connections', 0):>6}  {'':>6}"
        f"  {sum(h.get('messages_sent', 0) for h in hubs.values()):>9}"
        f"  {sum(deliveries_of(stats).values()):>10}  {total_rate:>8}"
        f"  {sum(h.get('evictions', 0) for h in hubs.values()):>9}"
    )
    lines.append("")
    cluster = stats.get("cluster") or {}
    backplane = cluster.get("backplane") or {}
    if backplane:
        lines.append("backplane     " + _pairs(backplane))
    for name, section in stats.items():
        if name in KNOWN or section is None:
            continue
        text = _pairs(section) if isinstance(section, Mapping) else str(section)
        lines.append(f"{name:<13} {text}")
    return "\n".join(lines) + "\n"


def _pairs(section: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{key}={_pairs(value) if isinstance(value, Mapping) else value}"
        for key, value in section.items()
    )


def rates_between(
    before: Mapping[str, int], after: Mapping[str, int], seconds: float
) -> dict[str, float]:
    if seconds <= 0:
        return {path: 0.0 for path in after}
    return {path: max(0, count - before.get(path, 0)) / seconds for path, count in after.items()}


def run_status(arguments: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    url = arguments.url.rstrip("/")
    shown = 0
    previous: tuple[float, dict[str, int]] | None = None
    with httpx.Client(timeout=TIMEOUT) as client:
        try:
            while True:
                try:
                    readiness, stats = fetch(client, url)
                except Unreachable as error:
                    print(f"voisnap status: {error}", file=sys.stderr)
                    return 1
                now = time.monotonic()
                rates = None
                if previous is not None:
                    rates = rates_between(previous[1], deliveries_of(stats), now - previous[0])
                previous = (now, deliveries_of(stats))
                if arguments.watch is not None and shown and out.isatty():
                    out.write("\033[H\033[2J")  # clear the screen between refreshes
                out.write(render(url, readiness, stats, rates))
                if arguments.watch is not None:
                    out.write(f"(every {arguments.watch:g} s; Ctrl-C to stop)\n\n")
                out.flush()
                shown += 1
                if arguments.watch is None or (
                    arguments.count is not None and shown >= arguments.count
                ):
                    return 0
                time.sleep(max(0.0, arguments.watch))
        except KeyboardInterrupt:
            return 0
