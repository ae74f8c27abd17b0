"""The topics scenario of ``python -m bench`` works: a short run opens ``/v1/events``
connections with mixed wildcard subscriptions, produces tenant events on NATS (a
nats-server of the run's own; or over REST with ``--producer rest``), gets every
delivery the reference matcher expects, and times ``TopicTree.match`` at three sizes.
Benchmarks are not tests: no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import run_quick


@pytest.fixture(scope="module")
def quick() -> tuple[Path, dict]:
    """One quick run for both tests: it starts a server and Node workers."""
    return run_quick("topics")


def test_bench_topics_quick_run_delivers_every_matching_event(quick: tuple[Path, dict]) -> None:
    path, result = quick
    assert result["scenario"] == "topics" and result["options"]["producer"] == "nats"
    assert_delivered(result)
    assert path.with_name(path.stem + "-rss.png").stat().st_size > 0


def test_bench_topics_rest_producer_delivers_every_matching_event() -> None:
    _, result = run_quick("topics", "--producer", "rest")
    assert result["options"]["producer"] == "rest"
    assert_delivered(result)


def assert_delivered(result: dict) -> None:
    """Every connection subscribed, and every step got the deliveries due, no more."""
    options, outcome = result["options"], result["targets"]["voisnap"]
    assert outcome["connections"] == options["connections"] and outcome["failed"] == 0
    assert outcome["subscriptions"] == options["connections"] * options["per_connection"]
    assert outcome["deliveries_per_event"] > 0
    first = outcome["steps"][0]
    assert first["published"] > 0
    assert first["received"] == first["expected"] > 0
    assert first["lost"] == 0
    assert set(first["latency"]) == {"p50", "p95", "p99", "p999", "max"}
    assert first["events_per_second"] > 0
    for step in outcome["steps"]:  # each connection gets an event once, however many match
        assert step["received"] <= step["expected"]


def test_bench_topics_quick_run_times_matching_at_three_sizes(quick: tuple[Path, dict]) -> None:
    _, result = quick
    matching = result["targets"]["voisnap"]["matching"]
    sizes, depths = result["options"]["sizes"], result["options"]["depths"]
    assert len(sizes) == 3 and matching["sizes"] == sizes
    assert [(row["depth"], row["subscriptions"]) for row in matching["rows"]] == [
        (depth, size) for depth in depths for size in sizes
    ]
    for row in matching["rows"]:
        assert row["us_per_match"] > 0 and row["us_per_match_hot"] > 0
        assert row["nodes_per_match"] > 0 and row["matches_per_event"] >= 0
    for growth in ("largest_over_smallest", "largest_over_smallest_hot"):
        assert set(matching[growth]) == {str(depth) for depth in depths}
