"""The seven scenarios, each run against every target with the same load generator.

- fanout: N subscribers in one group, ~200-byte payloads, a ramp of publish
  rates; the figure of merit is the highest deliveries/s whose p99 < 100 ms.
- wide: many connections, few broadcasts a second: latency, and server memory
  per connection.
- slow-consumer: some subscribers stop reading; how fast they are evicted, what
  it does to everybody else's p99, and whether server memory stays flat.
- chat: sessions with two devices each, an agent streaming tokens; token latency
  from the agent to every device (voisnap only).
- stream: sessions on ``/v1/stream`` (seed 004's plain JSON WebSocket), one
  connection each, the same agent; token latency from the agent to the
  connection, beside the chat hub's in the same run (voisnap only).
- topics: ``/v1/events`` connections holding mixed wildcard subscriptions, tenant
  events produced on NATS (or over REST) at a ramp of rates: the highest events/s (and
  deliveries/s) whose p99 < 100 ms; and, in-process, ``TopicTree.match``'s cost
  per event at 1k, 10k and 100k subscriptions (voisnap only).
- churn: steady subscribers of a group at a steady publish rate while other
  clients join the group and leave, a few a second: the steady subscribers'
  p99.9, and the server's garbage-collector pauses (voisnap only: the peers
  have no groups to join).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import attrs
import psutil
from tqdm import tqdm

from .gcwatch import GcWatch
from .harness import (
    ChatLoad,
    ClusterUnderTest,
    Latency,
    LoadGenerator,
    ServerUnderTest,
    StreamLoad,
)
from .topics import Plan, TopicsLoad, matching_cost

P99_TARGET_MS = 100.0
QUIET_MS = 300  # a step ends once no delivery arrived for this long
GROUP = "bench"


@attrs.frozen
class Step:
    rate: float
    published: int
    received: int
    expected: int
    seconds: float
    latency: Latency
    elapsed: float
    """Seconds from the first publish to the last delivery."""
    server_cpu: float
    loadgen_cpu: float
    machine_cpu: float
    """CPU seconds used on all cores, by every process, during the step."""

    @property
    def deliveries_per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.elapsed if self.elapsed > 0 else math.nan

    def as_dict(self) -> dict:
        return {
            **attrs.asdict(self),
            "deliveries_per_second": self.deliveries_per_second,
            "lost": self.lost,
            "server_cores": self.cores(self.server_cpu),
            "loadgen_cores": self.cores(self.loadgen_cpu),
            "machine_cores": self.cores(self.machine_cpu),
        }


def run_step(
    server: ServerUnderTest,
    load: LoadGenerator,
    subscribers: int,
    rate: float,
    duration: float,
    size: int,
    expect: Callable[[int, int], int] | None = None,
) -> Step:
    """One step of a ramp. ``expect(published, open connections)`` is the deliveries
    due; by default every open subscriber gets every message."""
    load.begin()
    cpu_before = server.cpu_seconds()
    machine_before = psutil.cpu_times()
    started = time.monotonic()
    published = load.publish(rate, duration, size)
    reports = load.end(quiet_ms=QUIET_MS)
    elapsed = time.monotonic() - started - QUIET_MS / 1000
    machine_cpu = _busy_seconds(machine_before, psutil.cpu_times())
    open_subscribers = sum(report["open"] for report in reports)
    expect = expect or (lambda count, open_: count * min(subscribers, open_))
    return Step(
        rate=rate,
        published=published["count"],
        received=sum(report["received"] for report in reports),
        expected=expect(published["count"], open_subscribers),
        seconds=published["seconds"],
        latency=Latency.from_reports(reports),
        elapsed=elapsed,
        server_cpu=server.cpu_seconds() - cpu_before,
        loadgen_cpu=sum(report["cpu_seconds"] for report in reports),
        machine_cpu=machine_cpu,
    )


def _busy_seconds(before: Any, after: Any) -> float:
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return sum(after) - sum(before) - idle


def _passes(step: Step) -> bool:
    return step.latency.p99 < P99_TARGET_MS and step.lost == 0


def _sustained(
    steps: list[Step], passes: Callable[[Step], bool], figure: Callable[[Step], float]
) -> float:
    """On a shared machine one step can fail for a reason outside the server;
    "sustained" is the ``figure`` of the highest rate below which no step failed."""
    sustained = 0.0
    for step in steps:
        if not passes(step):
            break
        sustained = figure(step)
    return sustained


def saturated(step: Step) -> bool:
    """Past this point the server only falls further behind: stop the ramp."""
    return step.latency.p99 > 10 * P99_TARGET_MS or step.lost > 0.1 * step.expected


def fanout(server: ServerUnderTest, load: LoadGenerator, options: dict) -> dict:
    subscribers = options["subscribers"]
    connected = load.connect(server, server.protocol, subscribers, GROUP)
    steps: list[Step] = []
    for rate in tqdm(options["rates"], desc=f"fanout {server.name}", unit="step", leave=False):
        step = run_step(server, load, connected, rate, options["duration"], options["size"])
        steps.append(step)
        if saturated(step):
            break
    passing = [s for s in steps if _passes(s)]
    best = max(passing, key=lambda s: s.deliveries_per_second, default=None)
    sustained = _sustained(steps, _passes, lambda step: step.deliveries_per_second)
    return {
        "connected": connected,
        "steps": [s.as_dict() for s in steps],
        "best_deliveries_per_second": best.deliveries_per_second if best else 0.0,
        "sustained_deliveries_per_second": sustained,
        "best_step": best.as_dict() if best else None,
        "server_cpu_us_per_delivery": _cpu_per_delivery(steps),
        "hop": hop(server, options) if isinstance(server, ClusterUnderTest) else None,
    }


HOP_SUBSCRIBERS = 20
HOP_RATE = 50


def hop(server: ClusterUnderTest, options: dict) -> dict | None:
    """What a cross-process hop adds: the same light load, delivered to
    subscribers on the publisher's own process, then on another one (the
    publish crosses Redis). A light load, so that queueing does not hide it."""
    placements = {
        "same_process": [server.publisher_port()],
        "across_processes": server.subscriber_ports(),
    }
    if placements["same_process"] == placements["across_processes"]:
        return None  # one process: nothing to cross
    latency: dict[str, Latency] = {}
    for placement, ports in placements.items():
        load = LoadGenerator(1)
        try:
            group = f"{GROUP}-hop-{placement}"
            connected = load.connect(server, server.protocol, HOP_SUBSCRIBERS, group, ports)
            step = run_step(server, load, connected, HOP_RATE, options["duration"], options["size"])
        finally:
            load.close()
        latency[placement] = step.latency
    same, across = latency["same_process"], latency["across_processes"]
    return {
        **{placement: attrs.asdict(figures) for placement, figures in latency.items()},
        "added_p50_ms": across.p50 - same.p50,
        "added_p99_ms": across.p99 - same.p99,
    }


def wide(server: ServerUnderTest, load: LoadGenerator, options: dict) -> dict:
    rss_before = server.rss()
    connected = load.connect(server, server.protocol, options["subscribers"], GROUP)
    _wait_settled(server)
    rss_connected = server.rss()
    step = run_step(server, load, connected, options["rate"], options["duration"], options["size"])
    return {
        "connected": connected,
        "step": step.as_dict(),
        "rss_before": rss_before,
        "rss_connected": rss_connected,
        "rss_per_connection": (rss_connected - rss_before) / max(1, connected),
    }


def slow_consumer(server: ServerUnderTest, load: LoadGenerator, options: dict) -> dict:
    subscribers, stalled = options["subscribers"], options["stalled"]
    connected = load.connect(server, server.protocol, subscribers, GROUP)
    baseline = run_step(
        server, load, connected, options["rate"], options["baseline_duration"], options["size"]
    )
    evictions_before = _evictions(server)
    load.begin()
    watch = EvictionWatch(server, evictions_before + stalled)
    load.stall(stalled)
    watch.start()
    rss_at_stall = server.rss()
    published = load.publish(options["rate"], options["duration"], options["size"])
    reports = load.end()
    evicted_after = watch.result(timeout=5.0)
    healthy = connected - stalled
    others = Latency.from_reports(reports)
    return {
        "connected": connected,
        "baseline": baseline.as_dict(),
        "with_stalled": {
            "published": published["count"],
            "received": sum(r["received"] for r in reports),
            "latency": attrs.asdict(others),
            "p99_ratio_to_baseline": others.p99 / baseline.latency.p99,
            "expected_for_healthy": published["count"] * healthy,
        },
        "evicted": None if evicted_after is None else evicted_after["count"] - evictions_before,
        "seconds_from_stall_to_evictions": None
        if evicted_after is None
        else evicted_after["after"],
        "eviction_lags": evicted_after["backlog"] if evicted_after else None,
        "rss_at_stall": rss_at_stall,
        "rss_at_end": server.rss(),
    }


def _cpu_per_delivery(steps: list[Step]) -> float:
    cpu = sum(s.server_cpu for s in steps)
    deliveries = sum(s.received for s in steps)
    return 1e6 * cpu / deliveries if deliveries else math.nan


def _stats(server: ServerUnderTest) -> dict | None:
    if server.name != "voisnap":
        return None
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/stats", timeout=5) as reply:
        return json.load(reply)


def _evictions(server: ServerUnderTest) -> int:
    stats = _stats(server)
    return 0 if stats is None else stats["hubs"]["/hubs/playground"]["evictions"]


class EvictionWatch:
    """Polls voisnap's /stats from the moment of the stall until ``count``
    evictions have happened (peers do not evict, so they report None)."""

    def __init__(self, server: ServerUnderTest, count: int) -> None:
        self._server = server
        self._count = count
        self._outcome: dict | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._started = time.monotonic()
        if self._server.name == "voisnap":
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            stats = _stats(self._server)["hubs"]["/hubs/playground"]
            if stats["evictions"] >= self._count:
                self._outcome = {
                    "count": stats["evictions"],
                    "after": time.monotonic() - self._started,
                    "backlog": stats["recent_evictions"],
                }
                return
            time.sleep(0.05)

    def result(self, timeout: float) -> dict | None:
        if self._server.name != "voisnap":
            return None
        self._thread.join(timeout)
        self._stop.set()
        if self._outcome is None:
            stats = _stats(self._server)["hubs"]["/hubs/playground"]
            return {
                "count": stats["evictions"],
                "after": None,
                "backlog": stats["recent_evictions"],
            }
        return self._outcome


def _wait_settled(server: ServerUnderTest, quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the server's CPU use settles after a connection storm."""
    deadline = time.monotonic() + timeout
    last = server.cpu_seconds()
    if math.isnan(last):
        return  # not sampled (a server at a URL, without its pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = server.cpu_seconds()
        if now - last < 0.05 * quiet:
            return
        last = now


def chat(server: ServerUnderTest, load: ChatLoad, options: dict) -> dict:
    """Sessions streaming agent tokens to their session groups, two devices each."""
    return _token_run(server, load, options)


def stream(server: ServerUnderTest, load: StreamLoad, options: dict) -> dict:
    """The same sessions and agent on ``/v1/stream``, then on the chat hub, on
    the same server in one run: the ratio of the two faces' token latency is
    the figure, since on a shared 2-core machine only a ratio measured side by
    side means anything. The chat hub gets ``devices`` per session (1: as many
    connections and deliveries as the stream)."""
    measured = {"stream": _token_run(server, load, options)}
    load.close()  # the stream's connections go before the chat hub's come
    chat_load = ChatLoad(len(load.workers))
    try:
        measured["chat"] = _token_run(server, chat_load, options)
    finally:
        chat_load.close()
    return {**measured, "ratio": _ratios(measured["stream"], measured["chat"])}


def _token_run(server: ServerUnderTest, load: ChatLoad, options: dict) -> dict:
    """Set up the sessions, then every session's reply at once, timed token by token."""
    devices = load.setup(server, options["sessions"], options["devices"], SETUP_AGENT)
    _wait_settled(server)
    cpu_before = server.cpu_seconds()
    reports = load.run(CHAT_AGENT, timeout=options["tokens"] * options["token_delay"] + 60)
    server_cpu = server.cpu_seconds() - cpu_before
    elapsed = max(report["elapsed"] for report in reports)
    received = sum(report["received"] for report in reports)
    expected = devices * options["tokens"]
    return {
        "sessions": options["sessions"],
        "devices": devices,
        "tokens_per_reply": options["tokens"],
        "token_deliveries": received,
        "expected_deliveries": expected,
        "lost": max(0, expected - received),
        "completed": sum(report["completed"] for report in reports),
        "failed": sum(report.get("failed", 0) for report in reports),
        "error": next((report["error"] for report in reports if report.get("error")), None),
        "elapsed": elapsed,
        "token_deliveries_per_second": received / elapsed if elapsed else 0.0,
        "latency": attrs.asdict(Latency.from_reports(reports)),
        "server_cpu": server_cpu,
        "server_cpu_us_per_token": 1e6 * server_cpu / received if received else math.nan,
        "loadgen_cpu": sum(report["cpu_seconds"] for report in reports),
        "rss": server.rss(),
    }


def _ratios(stream: dict, chat: dict) -> dict:
    """Stream over chat hub: below 1, the stream is the faster (or cheaper) face."""
    cpu = "server_cpu_us_per_token"
    pairs = {
        "p50": (stream["latency"]["p50"], chat["latency"]["p50"]),
        "p99": (stream["latency"]["p99"], chat["latency"]["p99"]),
        "server_cpu_per_token": (stream[cpu], chat[cpu]),
    }
    return {name: ours / theirs if theirs else math.nan for name, (ours, theirs) in pairs.items()}


def churn(server: ServerUnderTest, load: LoadGenerator, options: dict) -> dict:
    """Issue 9's soak, shortened: connections that come and go leave the cyclic
    garbage collector work, and its full collections stall every connection."""
    connected = load.connect(server, server.protocol, options["subscribers"], GROUP)
    _wait_settled(server)
    churners = load.start_churn(options["churners"], options["churn_rate"])
    load.begin(timeline=True)
    gc_watch = GcWatch(lambda: _stats(server))
    gc_watch.start()
    cpu_before, rss_before = server.cpu_seconds(), server.rss()
    machine_before = psutil.cpu_times()
    started = time.monotonic()
    published = load.publish(options["rate"], options["duration"], options["size"])
    reports = load.end(quiet_ms=QUIET_MS)
    elapsed = time.monotonic() - started - QUIET_MS / 1000
    machine_cores = _busy_seconds(machine_before, psutil.cpu_times()) / elapsed
    churned = load.stop_churn()
    return {
        "connected": connected,
        "churners_at_start": churners,
        "published": published["count"],
        "received": sum(report["received"] for report in reports),
        "expected": published["count"] * connected,
        "latency": attrs.asdict(Latency.from_reports(reports)),
        "timeline_max_ms": _timeline(reports),
        "churn": _churn_tally(churned),
        "gc": gc_watch.stop(),
        "server_cores": (server.cpu_seconds() - cpu_before) / elapsed,
        "loadgen_cores": sum(report["cpu_seconds"] for report in reports) / elapsed,
        "machine_cores": machine_cores,
        "rss_before": rss_before,
        "rss_after": server.rss(),
    }


def _timeline(reports: list[dict]) -> list[float]:
    """The steady subscribers' highest latency in each second, in ms."""
    columns = [report["timeline_max_us"] or [] for report in reports]
    seconds = max(map(len, columns), default=0)
    return [
        max((column[s] for column in columns if s < len(column)), default=0) / 1000
        for s in range(seconds)
    ]


def _churn_tally(reports: list[dict]) -> dict:
    counts = ("opened", "failed", "left", "dropped", "still_here", "received")
    return {
        **{name: sum(report[name] for report in reports) for name in counts},
        "error": next((report["error"] for report in reports if report["error"]), None),
        "join_latency": attrs.asdict(Latency.from_reports([r["join"] for r in reports])),
    }


SETUP_AGENT = "bench-setup"
CHAT_AGENT = "bench"


def chat_agents_file(options: dict) -> str:
    """The agents the chat and stream scenarios talk to (synthetic: timestamped tokens)."""
    return (
        f'[agents.{SETUP_AGENT}]\nbackend = "synthetic"\ntokens = 0\n\n'
        f'[agents.{CHAT_AGENT}]\nbackend = "synthetic"\ntokens = {options["tokens"]}\n'
        f"token_delay = {options['token_delay']}\n"
    )


def topics(server: ServerUnderTest, load: TopicsLoad, options: dict) -> dict:
    """Connections with mixed wildcard subscriptions, a ramp of event rates produced
    on NATS or over REST (``options["producer"]``): each step's deliveries are
    checked against the reference matcher's count, and a step passes only if the
    producer's rate was also taken (by NATS, or by voisnap's REST endpoint). The
    matching cost is measured first, in this process, while the server is idle."""
    matching = matching_cost(options["sizes"], options["depths"])
    plan = Plan.of(options["connections"], options["per_connection"], options["topics"])
    patterns, published = plan.texts()
    subscribed = load.subscribe(server, patterns)
    load.produce(server, published, options)
    _wait_settled(server)
    def step_at(rate: float) -> Step:
        return run_step(server, load, subscribed["connections"], rate, options["duration"], 0,
                        expect=plan.expected)

    # Unmeasured: the producer's connections open, first events' costs paid.
    warmup = step_at(options["rates"][0])
    steps: list[Step] = []
    for rate in tqdm(options["rates"], desc=f"topics {server.name}", unit="step", leave=False):
        steps.append(step_at(rate))
        if saturated(steps[-1]) or not _took_rate(steps[-1]):
            break  # past the rate the server takes
    best = max(filter(_event_step_passes, steps), key=_events_per_second, default=None)
    return {
        **subscribed,
        "deliveries_per_event": plan.deliveries_per_event,
        "warmup": warmup.as_dict(),
        "steps": [s.as_dict() | {"events_per_second": _events_per_second(s)} for s in steps],
        "best_events_per_second": _events_per_second(best) if best else 0.0,
        "best_deliveries_per_second": best.deliveries_per_second if best else 0.0,
        "best_step": best.as_dict() if best else None,
        "sustained_events_per_second": _sustained(steps, _event_step_passes, _events_per_second),
        "server_cpu_us_per_event": _cpu_per_event(steps),
        "server_cpu_us_per_delivery": _cpu_per_delivery(steps),
        "matching": matching,
    }


TOOK_RATE = 0.9
"""A step whose producer could not get this share of its rate in is past the limit."""


def _events_per_second(step: Step) -> float:
    return step.published / step.seconds if step.seconds else 0.0


def _took_rate(step: Step) -> bool:
    return _events_per_second(step) >= TOOK_RATE * step.rate


def _event_step_passes(step: Step) -> bool:
    return _passes(step) and _took_rate(step)


def _cpu_per_event(steps: list[Step]) -> float:
    published = sum(s.published for s in steps)
    return 1e6 * sum(s.server_cpu for s in steps) / published if published else math.nan


SCENARIOS: dict[str, Callable[..., dict]] = {
    "fanout": fanout,
    "wide": wide,
    "slow-consumer": slow_consumer,
    "chat": chat,
    "churn": churn,
    "stream": stream,
    "topics": topics,
}
ONLY_VOISNAP = {"chat", "churn", "stream", "topics"}
TOKEN_SCENARIOS = {"chat", "stream"}
"""The scenarios whose server needs the synthetic agents (``chat_agents_file``)."""
