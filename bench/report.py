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
    if scenario == "churn":
        return _churn_figures(outcome)
    if scenario == "stream":
        return _stream_figures(outcome)
    if scenario == "topics":
        return _topics_figures(outcome)
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


def _stream_figures(outcome: dict) -> dict[str, float]:
    """Each face's token figures, then their ratios (stream / chat hub)."""
    table: dict[str, float] = {}
    for face in ("stream", "chat"):
        run, latency = outcome[face], outcome[face]["latency"]
        table |= {
            f"{face} tokens received": run["token_deliveries"],
            f"{face} tokens lost": run["lost"],
            f"{face} p50 ms": latency["p50"],
            f"{face} p99 ms": latency["p99"],
            f"{face} max ms": latency["max"],
            f"{face} server CPU us/token": run["server_cpu_us_per_token"],
        }
    ratio = outcome["ratio"]
    return table | {
        "p50 stream/chat": ratio["p50"],
        "p99 stream/chat": ratio["p99"],
        "CPU/token stream/chat": ratio["server_cpu_per_token"],
    }


def _topics_figures(outcome: dict) -> dict[str, float]:
    """The end-to-end best step, then ``TopicTree.match``'s cost at each size and depth."""
    best = outcome.get("best_step") or {}
    nan = float("nan")
    table = {
        "subscriptions": outcome["subscriptions"],
        "deliveries per event": outcome["deliveries_per_event"],
        "best events/s (p99<100ms)": outcome["best_events_per_second"],
        "best deliveries/s": outcome["best_deliveries_per_second"],
        "sustained events/s": outcome["sustained_events_per_second"],
        "p99 ms at best": (best.get("latency") or {}).get("p99", nan),
        "lost at best": best.get("lost", nan),
        "server CPU us/event": outcome["server_cpu_us_per_event"],
        "server CPU us/delivery": outcome["server_cpu_us_per_delivery"],
    }
    matching = outcome["matching"]
    for row in matching["rows"]:
        size, depth = row["subscriptions"], row["depth"]
        table[f"match us, {size} subs, depth {depth}"] = row["us_per_match"]
        table[f"match us hot, {size} subs, depth {depth}"] = row["us_per_match_hot"]
        table[f"match nodes, {size} subs, depth {depth}"] = row["nodes_per_match"]
    for depth, ratio in matching["largest_over_smallest"].items():
        table[f"match us largest/smallest, depth {depth}"] = ratio
        hot = matching["largest_over_smallest_hot"][depth]
        table[f"match us hot largest/smallest, depth {depth}"] = hot
    return table


def _churn_figures(outcome: dict) -> dict[str, float]:
    latency, churn = outcome["latency"], outcome["churn"]
    nan = float("nan")
    collector = outcome["gc"] or {}  # None: the server's /stats has no "gc"
    return {
        "p50 ms": latency["p50"],
        "p99 ms": latency["p99"],
        "p99.9 ms": latency["p999"],
        "max ms": latency["max"],
        "lost deliveries": outcome["expected"] - outcome["received"],
        "full collections": collector.get("full_collections", nan),
        "longest full pause ms": collector.get("longest_full_ms", nan),
        "mean full CPU ms": collector.get("mean_full_cpu_ms", nan),
        "pauses over 20 ms": collector.get("pauses_over_20ms", nan),
        "server cores": outcome["server_cores"],
        "machine cores": outcome.get("machine_cores", nan),
        "server RSS MiB at end": outcome["rss_after"] / MIB,
        "churners joined": churn["opened"],
        "join p99 ms": churn["join_latency"]["p99"],
    }


def summarize(result: dict) -> str:
    scenario = result["scenario"]
    table = {target: figures(scenario, outcome) for target, outcome in result["targets"].items()}
    names = list(next(iter(table.values())))
    targets = list(table)
    lines = [f"\n== {scenario} ==", "figure".ljust(40) + "".join(t.rjust(14) for t in targets)]
    for name in names:
        lines.append(name.ljust(40) + "".join(f"{table[t][name]:14.2f}" for t in targets))
    if "voisnap" in table:
        for other in (t for t in targets if t != "voisnap"):
            # a peer against voisnap; voisnap's scale-out variants against one plain process
            ours, theirs = (other, "voisnap") if other.startswith("voisnap") else ("voisnap", other)
            ratios = ", ".join(
                f"{name}: {_ratio(table[ours][name], table[theirs][name])}" for name in names
            )
            lines.append(f"{ours} / {theirs}: {ratios}")
    for target, outcome in result["targets"].items():
        if outcome.get("hop"):
            lines.append(_hop_line(target, outcome["hop"]))
    return "\n".join(lines)


def _hop_line(target: str, hop: dict) -> str:
    same, across = hop["same_process"], hop["across_processes"]
    return (
        f"{target}: a cross-process hop adds {hop['added_p50_ms']:.2f} ms at p50 and "
        f"{hop['added_p99_ms']:.2f} ms at p99 (same process {same['p50']:.2f}/{same['p99']:.2f}, "
        f"across {across['p50']:.2f}/{across['p99']:.2f} ms p50/p99)"
    )


def _ratio(ours: float, theirs: float) -> str:
    if not theirs or theirs != theirs or ours != ours:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def plot(result: dict, stem: Path) -> None:
    if result["scenario"] == "fanout":
        _plot_latency(result, stem.with_name(stem.name + "-latency.png"))
    if result["scenario"] == "churn":
        _plot_timeline(result, stem.with_name(stem.name + "-timeline.png"))
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


def _plot_timeline(result: dict, path: Path) -> None:
    """Each second's worst delivery, and the full collections (when known)."""
    figure, axes = plt.subplots(figsize=(9, 4))
    for index, (target, outcome) in enumerate(result["targets"].items()):
        worst = outcome["timeline_max_ms"]
        axes.plot(range(len(worst)), worst, color=f"C{index}", label=f"{target}: max per second")
        pauses = (outcome["gc"] or {}).get("full_pauses") or []
        axes.plot(
            [at for at, _ in pauses],
            [ms for _, ms in pauses],
            "v",
            color=f"C{index + 1}",
            label=f"{target}: full collection pause",
        )
    axes.axhline(50, color="grey", linewidth=0.8)
    axes.set_xlabel("seconds")
    axes.set_ylabel("ms")
    axes.set_yscale("log")
    options = result["options"]
    axes.set_title(
        f"{options['subscribers']} steady subscribers, {options['churners']} churning "
        f"({options['churn_rate']} joins/s)"
    )
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
