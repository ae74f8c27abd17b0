"""The topics scenario's parts: the topic space and its mix of wildcard patterns,
a reference matcher for the deliveries to expect, the in-process cost of
``TopicTree.match`` as subscriptions grow, and the load generator's driver.

Topics are ``events.bench.<source>.<resource>.<event>.<id>`` (deeper ones add
tokens after the id). A subscription is a random topic of the space made a
pattern by one of a few kinds: exact, ``*`` at one or two places, a ``>`` tail,
and a few with ``*`` for the source. The number of sources grows with the
number of subscriptions (a service subscribes to its own source's events), so
that an event matches about as many subscriptions at 1k as at 100k: what is
left to grow with the subscriptions is the cost of finding them, which the
tree must keep flat.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from voisnap.apps.events.topics import ONE, PREFIX, REST, TopicTree

from .harness import TOPICS_WORKER, ClusterUnderTest, LoadGenerator, ServerUnderTest

TENANT = "bench"
PER_SOURCE = 100
"""Subscriptions per source: the sources grow with the subscriptions."""
LEVELS = (4, 4, 20)
"""Literals of the resource, event and id tokens."""
EXTRA = 1
"""Literals of each token after the id: one, so that a deeper topic's extra tokens
lengthen every branch of the walk instead of spreading the subscriptions thinner
(with many literals there, most deep branches would be empty, and cheap)."""
NAMES = "sreixyzwvu"
"""The first letter of each level's literals (source, resource, event, id, then extra)."""
KINDS = ("exact", "one_star", "two_stars", "tail", "any_source")
WEIGHTS = (30, 35, 15, 19, 1)
"""The pattern mix, in percent."""
FIRST_FREE = 3
"""The first token a wildcard may take, but for ``any_source``: after events.bench.source."""


@attrs.frozen
class TopicSpace:
    """How many literals each token after the tenant may take."""

    levels: tuple[int, ...]

    @classmethod
    def for_subscriptions(cls, count: int, depth: int = 6) -> TopicSpace:
        sources = max(1, count // PER_SOURCE)
        return cls((sources, *LEVELS, *(EXTRA,) * (depth - 6)))

    def topic(self, rng: random.Random) -> list[str]:
        literals = (f"{NAMES[n]}{rng.randrange(size)}" for n, size in enumerate(self.levels))
        return [PREFIX, TENANT, *literals]

    def pattern(self, rng: random.Random) -> list[str]:
        """A random topic of the space, made a pattern by a kind drawn from the mix."""
        tokens = self.topic(rng)
        free = range(FIRST_FREE, len(tokens))
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "one_star":
            tokens[rng.choice(free)] = ONE
        elif kind == "two_stars":
            for position in rng.sample(free, 2):
                tokens[position] = ONE
        elif kind == "tail":
            tokens = [*tokens[: rng.choice(free)], REST]
        elif kind == "any_source":
            tokens[FIRST_FREE - 1] = ONE
        return tokens


def matches(pattern: Sequence[str], topic: Sequence[str]) -> bool:
    """The reference matcher: a pattern against a topic, token by token, no tree."""
    for position, token in enumerate(pattern):
        if token == REST:
            return len(topic) > position
        if position >= len(topic) or token not in (ONE, topic[position]):
            return False
    return len(pattern) == len(topic)


def deliveries(connections: list[list[list[str]]], topic: list[str]) -> int:
    """How many connections get ``topic``: once each, however many of theirs match it."""
    return sum(any(matches(p, topic) for p in patterns) for patterns in connections)


# -- the matching cost, in-process ---------------------------------------------------------------

REPEATS, MIN_SECONDS = 15, 0.05
"""Each timing is the best of REPEATS runs of at least MIN_SECONDS each."""
TOPICS_TIMED = 2000
HOT_TOPICS = 20
"""So few topics, repeated, that their branches of the tree stay in the CPU's caches:
the walk's own cost, without the memory misses of a large tree."""


@attrs.frozen
class _Case:
    """One tree (a size, a depth) and the topics it is timed on."""

    size: int
    depth: int
    tree: TopicTree
    topics: list[list[str]]
    matches_per_event: float


def matching_cost(sizes: Sequence[int], depths: Sequence[int], seed: int = 1) -> dict:
    """``TopicTree.match`` per event at each size and topic depth, and how the
    largest size's cost compares with the smallest's (flat: near 1)."""
    cases = [_case(size, depth, seed) for depth in depths for size in sizes]
    cold = _best_of(cases, lambda case: case.topics)
    hot = _best_of(cases, lambda case: case.topics[:HOT_TOPICS])
    rows = [
        {
            "subscriptions": case.size,
            "depth": case.depth,
            "us_per_match": cold[index] * 1e6,
            "us_per_match_hot": hot[index] * 1e6,
            "nodes_per_match": sum(nodes_visited(case.tree, t) for t in case.topics)
            / len(case.topics),
            "matches_per_event": case.matches_per_event,
        }
        for index, case in enumerate(cases)
    ]
    return {
        "sizes": list(sizes),
        "depths": list(depths),
        "rows": rows,
        "largest_over_smallest": _growth(rows, depths, "us_per_match"),
        "largest_over_smallest_hot": _growth(rows, depths, "us_per_match_hot"),
    }


def _growth(rows: list[dict], depths: Sequence[int], key: str) -> dict[str, float]:
    """By depth: the largest size's ``key`` over the smallest's."""
    growth = {}
    for depth in depths:
        ours = [row for row in rows if row["depth"] == depth]
        growth[str(depth)] = ours[-1][key] / ours[0][key]
    return growth


def _case(size: int, depth: int, seed: int) -> _Case:
    """``size`` patterns of the mix in a tree, and topics of the same space."""
    rng = random.Random(seed)
    space = TopicSpace.for_subscriptions(size, depth)
    patterns = [space.pattern(rng) for _ in range(size)]
    tree = TopicTree()
    for index, pattern in enumerate(patterns):
        tree.add(pattern, index)
    topics = [space.topic(rng) for _ in range(TOPICS_TIMED)]
    _check_sample(tree, patterns, topics[:5])
    matched = sum(len(tree.match(topic)) for topic in topics)
    return _Case(size, depth, tree, topics, matched / len(topics))


def _best_of(cases: list[_Case], timed: Callable[[_Case], list[list[str]]]) -> list[float]:
    """Seconds per match for each case: the best of REPEATS means (as ``timeit``
    advises), the cases taken in turn within each repeat, so that a burst of
    other work on this shared machine slows one repeat of every case, not every
    repeat of one case."""
    best = [float("inf")] * len(cases)
    for _ in range(REPEATS):
        for index, case in enumerate(cases):
            best[index] = min(best[index], _mean_seconds(case.tree.match, timed(case)))
    return best


def _mean_seconds(match: Callable[[list[str]], object], topics: list[list[str]]) -> float:
    """Whole passes over ``topics`` until MIN_SECONDS have gone, so that the
    timer's resolution does not count."""
    calls = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < MIN_SECONDS:
        for topic in topics:
            match(topic)
        calls += len(topics)
    return elapsed / calls


def nodes_visited(tree: TopicTree, topic: list[str]) -> int:
    """The tree's nodes that ``match`` reaches for ``topic``, counted by the walk of
    ``TopicTree._walk``: the work, free of the timer's noise."""

    def walk(node: Any, depth: int) -> int:
        if depth == len(topic):
            return 1
        below = (node.children.get(key) for key in (topic[depth], ONE))
        return 1 + (REST in node.children) + sum(walk(c, depth + 1) for c in below if c is not None)

    return walk(tree._root, 0)


def _check_sample(tree: TopicTree, patterns: list[list[str]], topics: list[list[str]]) -> None:
    """The tree and the reference matcher agree, or the timings time a wrong answer."""
    for topic in topics:
        expected = {index for index, pattern in enumerate(patterns) if matches(pattern, topic)}
        if tree.match(topic) != expected:
            raise AssertionError(f"TopicTree and the reference matcher differ on {topic}")


# -- the load generator --------------------------------------------------------------------------


class TopicsLoad(LoadGenerator):
    """Node processes holding ``/v1/events`` connections (``bench/loadgen/topics.mjs``);
    worker 0 also produces the events, on NATS or over REST. It answers ``begin``, ``publish`` and
    ``end`` as the fan-out's load generator does, so that ``run_step`` times both."""

    script = TOPICS_WORKER

    def subscribe(
        self, server: ServerUnderTest | ClusterUnderTest, connections: list[list[str]]
    ) -> dict:
        """Open the connections, each with its patterns, spread over the workers."""
        workers = len(self.workers)
        for index, worker in enumerate(self.workers):
            worker.send(cmd="subscribe", host=server.host, port=server.port, token=server.token,
                        connections=connections[index::workers])
        replies = [worker.reply("subscribed", timeout=300) for worker in self.workers]
        return {
            "connections": sum(r["count"] for r in replies),
            "subscriptions": sum(r["subscriptions"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "error": next((r["error"] for r in replies if r["error"]), None),
        }

    def produce(self, server: ServerUnderTest | ClusterUnderTest, topics: list[str],
                options: dict) -> None:
        """Worker 0's producer of ``topics``: on NATS (``options["nats_url"]``), one TCP
        connection to the bus that voisnap listens on, as another service's; over REST,
        a ``service`` token and ``inflight`` keep-alive connections to voisnap."""
        if options.get("producer") == "nats":
            bus = urlsplit(options["nats_url"])
            self.workers[0].send(cmd="producer", kind="nats", host=bus.hostname, port=bus.port,
                                 topics=topics)
        else:
            token = server.mint("bench-producer", TENANT, roles=("service",))
            self.workers[0].send(cmd="producer", kind="rest", host=server.host,
                                 port=server.publisher_port(), token=token, topics=topics,
                                 inflight=options["inflight"])
        self.workers[0].reply("producer")

    def publish(self, rate: float, duration: float, size: int = 0) -> dict:
        """``rate`` events a second for ``duration`` seconds (``size``: the fan-out's, unused)."""
        self.workers[0].send(cmd="publish", rate=rate, duration=duration)
        return self.workers[0].reply("published", timeout=duration + 120)


# -- the end-to-end plan -------------------------------------------------------------------------


@attrs.frozen
class Plan:
    """The connections' patterns, the topics the producer cycles through, and how
    many deliveries each of those topics is due (by the reference matcher)."""

    connections: list[list[list[str]]]
    topics: list[list[str]]
    per_topic: list[int]

    @classmethod
    def of(cls, connections: int, per_connection: int, topics: int, seed: int = 2) -> Plan:
        rng = random.Random(seed)
        space = TopicSpace.for_subscriptions(connections * per_connection)
        held = [[space.pattern(rng) for _ in range(per_connection)] for _ in range(connections)]
        published = [space.topic(rng) for _ in range(topics)]
        return cls(held, published, [deliveries(held, topic) for topic in published])

    def texts(self) -> tuple[list[list[str]], list[str]]:
        """The patterns and topics as the wire has them."""
        return ([[".".join(p) for p in patterns] for patterns in self.connections],
                [".".join(topic) for topic in self.topics])

    def expected(self, published: int, open_connections: int = 0) -> int:
        """Deliveries due for the first ``published`` events of the cycle (all
        connections': one that closed shows as a loss)."""
        rounds, rest = divmod(published, len(self.topics))
        return rounds * sum(self.per_topic) + sum(self.per_topic[:rest])

    @property
    def deliveries_per_event(self) -> float:
        return sum(self.per_topic) / len(self.per_topic)
