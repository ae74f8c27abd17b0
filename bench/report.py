"""Turning a run's JSON into a summary table (with voisnap's ratios to each peer)
and PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MIB = 1024 * 1024


def figures(scenario: str, outcome: dict) -> dict[str, float]:
    """The numbers compared across targets, higher-is-better ones first."""
    if scenario == "fanout":
        best = outcome.get("best_step") or {}
        nan = float("nan")
        return {
            "best deliveries/s (p99<100ms)": outcome["best_deliveries_per_second"],
            "sustained deliveries/s": outcome.get("sustained_deliveries_per_second", nan),
            "p99 ms at best": (best.get("latency") or {}).get("p99", nan),
            "server CPU us/delivery": outcome["server_cpu_us_per_delivery"],
            "server cores at best": best.get("server_cores", nan),
            "load-gen cores at best": best.get("loadgen_cores", nan),
            "machine cores at best": best.get("machine_cores", nan),
        }
    if scenario == "wide":
        latency = outcome["step"]["latency"]
        return {
            "connections": outcome["connected"],
            "p50 ms": latency["p50"],
            "p99 ms": latency["p99"],
            "RSS KiB/connection": outcome["rss_per_connection"] / 1024,
        }
    if scenario == "chat":
        latency = outcome["latency"]
        return {
            "token deliveries/s": outcome["token_deliveries_per_second"],
            "p50 ms": latency["p50"],
            "p99 ms": latency["p99"],
            "max ms": latency["max"],
            "completed replies": outcome["completed"],
        }
    stalled = outcome["with_stalled"]
    return {
        "baseline p99 ms": outcome["baseline"]["latency"]["p99"],
        "p99 ms with stalled": stalled["latency"]["p99"],
        "p99 ratio to baseline": stalled["p99_ratio_to_baseline"],
        "evicted": outcome["evicted"] if outcome["evicted"] is not None else float("nan"),
        "s from stall to eviction": outcome["seconds_from_stall_to_evictions"] or float("nan"),
        "max s full before eviction": max(
            (lag["full_seconds"] for lag in outcome["eviction_lags"] or []), default=float("nan")
        ),
        "RSS growth MiB": (outcome["rss_at_end"] - outcome["rss_at_stall"]) / MIB,
    }


def summarize(result: dict) -> str:
    scenario = result["scenario"]
    table = {target: figures(scenario, outcome) for target, outcome in result["targets"].items()}
    names = list(next(iter(table.values())))
    targets = list(table)
    lines = [f"\n== {scenario} ==", "figure".ljust(30) + "".join(t.rjust(14) for t in targets)]
    for name in names:
        lines.append(name.ljust(30) + "".join(f"{table[t][name]:14.2f}" for t in targets))
    if "voisnap" in table:
        for peer in (t for t in targets if t != "voisnap"):
            ratios = ", ".join(
                f"{name}: {_ratio(table['voisnap'][name], table[peer][name])}" for name in names
            )
            lines.append(f"voisnap / {peer}: {ratios}")
    return "\n".join(lines)


def _ratio(ours: float, theirs: float) -> str:
    if not theirs or theirs != theirs or ours != ours:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def plot(result: dict, stem: Path) -> None:
    if result["scenario"] == "fanout":
        _plot_latency(result, stem.with_name(stem.name + "-latency.png"))
    _plot_rss(result, stem.with_name(stem.name + "-rss.png"))


def _plot_latency(result: dict, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 5))
    for index, (target, outcome) in enumerate(result["targets"].items()):
        rates = [step["deliveries_per_second"] for step in outcome["steps"]]
        for key, style in (("p50", ":"), ("p99", "-")):
            values = [step["latency"][key] for step in outcome["steps"]]
            axes.plot(rates, values, style, marker="o", color=f"C{index}", label=f"{target} {key}")
    axes.axhline(100, color="grey", linewidth=0.8)
    axes.set_xlabel("deliveries per second")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.set_title(f"fan-out to {result['options']['subscribers']} subscribers")
    axes.legend()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _plot_rss(result: dict, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 4))
    for target, outcome in result["targets"].items():
        samples = outcome.get("rss_samples") or []
        axes.plot([t for t, _ in samples], [rss / MIB for _, rss in samples], label=target)
    axes.set_xlabel("seconds")
    axes.set_ylabel("server RSS (MiB)")
    axes.set_title(f"{result['scenario']}: server memory")
    axes.legend()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
