"""The stream scenario of ``python -m bench`` works: a short run streams the synthetic
agent's tokens over ``/v1/stream`` and, in the same run, over the chat hub, and writes
both faces' figures side by side. Benchmarks are not tests: no timing is asserted."""

from __future__ import annotations

from tests.bench.test_bench_smoke import run_quick

FACES = ("stream", "chat")
LATENCY = ("p50", "p95", "p99", "p999", "max")


def test_bench_stream_quick_run_streams_tokens_on_both_faces() -> None:
    path, result = run_quick("stream")
    options = result["options"]
    assert result["scenario"] == "stream"
    outcome = result["targets"]["voisnap"]
    for face in FACES:
        run = outcome[face]
        assert run["sessions"] == run["devices"] == options["sessions"], face
        assert run["expected_deliveries"] == options["sessions"] * options["tokens"], face
        assert run["token_deliveries"] > 0, face
        assert run["lost"] == run["expected_deliveries"] - run["token_deliveries"], face
        assert run["completed"] == options["sessions"] and run["failed"] == 0, run["error"]
        assert set(run["latency"]) == set(LATENCY), face
    assert set(outcome["ratio"]) == {"p50", "p99", "server_cpu_per_token"}
    assert path.with_name(path.stem + "-rss.png").stat().st_size > 0
