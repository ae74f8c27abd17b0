"""The bench harness works: a short fan-out run against voisnap delivers every
message and writes its results. Benchmarks are not tests: no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_fanout_quick_run_delivers_everything() -> None:
    results = ROOT / "bench" / "results"
    before = set(results.glob("*-fanout.json")) if results.exists() else set()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--quick", "--targets", "voisnap"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    written = set(results.glob("*-fanout.json")) - before
    assert len(written) == 1
    path = written.pop()
    result = json.loads(path.read_text())
    outcome = result["targets"]["voisnap"]
    assert outcome["connected"] == result["options"]["subscribers"]
    for step in outcome["steps"]:
        assert step["published"] > 0
        assert step["received"] == step["expected"] > 0
        assert step["lost"] == 0
    assert path.with_name(path.stem + "-latency.png").stat().st_size > 0
    assert path.with_name(path.stem + "-rss.png").stat().st_size > 0
