"""The bench harness works: short fan-out and churn runs against voisnap deliver
every message and write their results. Benchmarks are not tests: no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def run_quick(scenario: str, *options: str) -> tuple[Path, dict]:
    """``python -m bench <scenario> --quick`` against voisnap: its JSON's path and content."""
    before = set(RESULTS.glob(f"*-{scenario}.json")) if RESULTS.exists() else set()
    run = subprocess.run(
        [sys.executable, "-m", "bench", scenario, "--quick", "--targets", "voisnap", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    written = set(RESULTS.glob(f"*-{scenario}.json")) - before
    assert len(written) == 1
    path = written.pop()
    return path, json.loads(path.read_text())


def test_bench_fanout_quick_run_delivers_everything() -> None:
    path, result = run_quick("fanout")
    outcome = result["targets"]["voisnap"]
    assert outcome["connected"] == result["options"]["subscribers"]
    for step in outcome["steps"]:
        assert step["published"] > 0
        assert step["received"] == step["expected"] > 0
        assert step["lost"] == 0
    assert path.with_name(path.stem + "-latency.png").stat().st_size > 0
    assert path.with_name(path.stem + "-rss.png").stat().st_size > 0


def test_bench_fanout_scale_out_runs_one_process_with_and_without_redis_and_two(
    redis_url: str,
) -> None:
    _, result = run_quick("fanout", "--workers", "2", "--redis-url", redis_url)
    assert list(result["targets"]) == ["voisnap", "voisnap+redis", "voisnap x2"]
    for outcome in result["targets"].values():
        assert outcome["connected"] == result["options"]["subscribers"]
        for step in outcome["steps"]:
            assert step["received"] == step["expected"] > 0
    hop = result["targets"]["voisnap x2"]["hop"]
    assert hop["same_process"]["p50"] > 0 and hop["across_processes"]["p50"] > 0
    assert result["targets"]["voisnap"]["hop"] is None


def test_bench_chat_across_two_processes_on_postgres_streams_every_token(
    redis_url: str, postgres_url: str
) -> None:
    _, result = run_quick(
        "chat", "--workers", "2", "--redis-url", redis_url, "--database-url", postgres_url
    )
    assert list(result["targets"]) == ["voisnap", "voisnap+redis", "voisnap x2"]
    for outcome in result["targets"].values():
        assert outcome["completed"] == outcome["devices"] > 0  # every device saw its end
        assert outcome["token_deliveries"] == outcome["expected_deliveries"] > 0


def test_bench_churn_quick_run_delivers_everything_while_clients_come_and_go() -> None:
    path, result = run_quick("churn")
    outcome = result["targets"]["voisnap"]
    assert outcome["connected"] == result["options"]["subscribers"]
    assert outcome["received"] == outcome["expected"] > 0
    churn = outcome["churn"]
    # The population, and arrivals on top of it during the run.
    assert churn["opened"] > result["options"]["churners"]
    assert churn["failed"] == churn["dropped"] == 0
    assert churn["left"] == churn["opened"]
    assert outcome["gc"]["full_collections"] >= 0  # the server's /stats has "gc"
    assert outcome["timeline_max_ms"]
    assert path.with_name(path.stem + "-timeline.png").stat().st_size > 0
    assert path.with_name(path.stem + "-rss.png").stat().st_size > 0


def test_bench_voice_quick_run_hears_every_sentence() -> None:
    """Issue 16's voice scenario: real-time StreamAudio streams end to end; every final
    transcript comes back and the figures are written (none of them is asserted)."""
    before = set(RESULTS.glob("*-voice.json")) if RESULTS.exists() else set()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "voice", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    [path] = set(RESULTS.glob("*-voice.json")) - before
    result = json.loads(path.read_text())
    assert result["real_time_factor"] > 0
    for level in result["levels"]:
        assert level["finals"] == level["expected_finals"] and not level["errors"], level
        assert 0 <= level["wer"] <= 1
