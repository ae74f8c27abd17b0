"""voisnap's Prometheus metrics (``GET /metrics``; docs/operations.md, "Metrics").

Two kinds, both in one registry (``REGISTRY``), exposed by prometheus-client
itself (no hand-written exposition):

- **events counted where they happen**, each once per event, never per
  recipient: a hub invocation (by hub, method and outcome, with its latency),
  a handshake (by hub and outcome), an agent task's end (by state, with its
  duration);
- **figures read when scraped**, from the counters the server keeps anyway
  (the ones ``GET /stats`` shows): connections by hub, transport and
  protocol, messages sent and fan-out deliveries, evictions, outbox depth,
  backplane traffic, ``/v1/events`` and ``/v1/stream`` figures. Reading them
  at scrape time costs the fan-out path nothing (``ScrapedCollector``).

Method labels are only ever the names of methods a hub has (an unknown
target counts as ``(unknown)``), so a client cannot grow the label set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
UNKNOWN_METHOD = "(unknown)"

INVOCATIONS = Counter(
    "voisnap_hub_invocations", "Hub method invocations, by hub, method and outcome.",
    ["hub", "method", "outcome"], registry=REGISTRY,
)
INVOCATION_SECONDS = Histogram(
    "voisnap_hub_invocation_seconds", "How long hub methods took, by hub and method.",
    ["hub", "method"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HANDSHAKES = Counter(
    "voisnap_hub_handshakes", "Hub handshakes, by hub and outcome (accepted, rejected, timeout).",
    ["hub", "outcome"], registry=REGISTRY,
)
TASKS = Counter(
    "voisnap_agent_tasks", "Agent tasks that reached a state, by kind and state.",
    ["kind", "state"], registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "voisnap_agent_task_seconds", "How long completed agent tasks ran.", ["kind"],
    registry=REGISTRY, buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)


class ScrapedCollector(Collector):
    """Figures read at scrape time from ``read()``: a dict shaped as below,
    gathered by the server (``server.metrics_snapshot``)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: nothing to describe ahead

    def collect(self) -> Iterator[Metric]:
        figures = self._read()
        connections = GaugeMetricFamily(
            "voisnap_hub_connections", "Open hub connections, by hub, transport and protocol.",
            labels=["hub", "transport", "protocol"])
        for (hub, transport, protocol), count in figures["connections"].items():
            connections.add_metric([hub, transport, protocol], count)
        yield connections
        sent = CounterMetricFamily("voisnap_hub_messages_sent",
                                   "Messages sent to groups, users, tenants or connections.",
                                   labels=["hub"])
        deliveries = CounterMetricFamily("voisnap_hub_deliveries",
                                         "Copies of those messages handed to connections.",
                                         labels=["hub"])
        evictions = CounterMetricFamily("voisnap_hub_evictions",
                                        "Connections closed because their outbox was full.",
                                        labels=["hub", "reason"])
        for hub, counts in figures["hubs"].items():
            sent.add_metric([hub], counts["messages_sent"])
            deliveries.add_metric([hub], counts["deliveries"])
            evictions.add_metric([hub, "outbox_full"], counts["evictions"])
        yield from (sent, deliveries, evictions)
        depth = GaugeMetricFamily("voisnap_outbox_depth_messages",
                                  "Messages waiting in connections' outboxes, summed, and the "
                                  "deepest one.", labels=["stat"])
        depth.add_metric(["total"], figures["outbox"]["total"])
        depth.add_metric(["max"], figures["outbox"]["max"])
        yield depth
        yield from _backplane(figures["backplane"])
        yield from _gauges("voisnap_", figures["gauges"])


def _backplane(counts: dict[str, Any]) -> Iterator[Metric]:
    connected = GaugeMetricFamily("voisnap_backplane_connected",
                                  "1 while the backplane is connected.")
    connected.add_metric([], 1 if counts.get("connected") else 0)
    yield connected
    for name in ("published", "received", "reconnects", "dropped"):
        if isinstance(counts.get(name), int):
            family = CounterMetricFamily(f"voisnap_backplane_{name}",
                                         f"Backplane messages {name} (or reconnects).")
            family.add_metric([], counts[name])
            yield family


def _gauges(prefix: str, gauges: dict[str, float]) -> Iterator[Metric]:
    for name, value in sorted(gauges.items()):
        family = GaugeMetricFamily(prefix + name, name.replace("_", " ") + ".")
        family.add_metric([], value)
        yield family
