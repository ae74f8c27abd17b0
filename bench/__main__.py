"""``python -m bench``: fan-out benchmarks, voisnap side by side with its peers.

    python -m bench fanout                    # voisnap, websockets, python-socketio
    python -m bench all --targets voisnap,websockets
    python -m bench fanout --quick            # a few seconds: proves the harness works
    python -m bench fanout --targets voisnap --url http://127.0.0.1:8080 --token "$TOKEN" \
        [--server-pid PID]                    # a voisnap you started yourself

Every target runs the same scenario with the same Node load generator, one after
the other, in one run. Results go to ``bench/results/<time>-<scenario>.json``
and PNG plots beside it; a summary with voisnap's ratios to each peer is printed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .harness import (
    ChatLoad,
    LoadGenerator,
    ServerUnderTest,
    external_voisnap,
    peer_server,
    voisnap_server,
)
from .report import plot, summarize
from .scenarios import ONLY_VOISNAP, SCENARIOS, chat_agents_file

RESULTS = Path(__file__).resolve().parent / "results"

FULL = {
    "fanout": {
        "subscribers": 1000,
        "size": 200,
        "duration": 4.0,
        "rates": [1, 2, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 200, 250],
    },
    "wide": {"subscribers": 5000, "size": 200, "duration": 8.0, "rate": 10},
    "chat": {"sessions": 200, "devices": 2, "tokens": 100, "token_delay": 0.05},
    # Large payloads, so that the stalled clients' kernel buffers (about 5 MiB
    # on loopback) fill in seconds rather than minutes.
    "slow-consumer": {
        "subscribers": 1000,
        "stalled": 10,
        "size": 8000,
        "rate": 40,
        "baseline_duration": 8.0,
        "duration": 25.0,
    },
}
QUICK = {
    "fanout": {"subscribers": 50, "size": 200, "duration": 1.0, "rates": [5, 20]},
    "wide": {"subscribers": 200, "size": 200, "duration": 1.0, "rate": 10},
    "chat": {"sessions": 10, "devices": 2, "tokens": 10, "token_delay": 0.02},
    "slow-consumer": {
        "subscribers": 50,
        "stalled": 2,
        "size": 30000,
        "rate": 100,
        "baseline_duration": 1.0,
        "duration": 4.0,
    },
}


def main() -> None:
    arguments = _parser().parse_args()
    scenarios = list(SCENARIOS) if arguments.scenario == "all" else [arguments.scenario]
    targets = arguments.targets.split(",")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for scenario in scenarios:
        options = dict((QUICK if arguments.quick else FULL)[scenario])
        if arguments.subscribers:
            options["subscribers"] = arguments.subscribers
        result = {"scenario": scenario, "options": options, "targets": {}}
        for target in targets:
            if scenario in ONLY_VOISNAP and target != "voisnap":
                continue  # the peers have no chat hub
            result["targets"][target] = _run(scenario, target, options, arguments)
        path = RESULTS / f"{stamp}-{scenario}.json"
        path.write_text(json.dumps(result, indent=2))
        plot(result, path.with_suffix(""))
        print(summarize(result))
        print(f"results: {path}")


def _run(scenario: str, target: str, options: dict, arguments: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        server = _server(target, Path(data_dir), arguments, scenario, options)
        server.start()
        load = (
            ChatLoad(arguments.workers) if scenario == "chat" else LoadGenerator(arguments.workers)
        )
        try:
            outcome = SCENARIOS[scenario](server, load, options)
        finally:
            load.close()
            server.stop()
        outcome["rss_samples"] = [(t, rss) for t, rss, _ in server.samples]
        return outcome


def _server(
    target: str, data_dir: Path, arguments: argparse.Namespace, scenario: str, options: dict
) -> ServerUnderTest:
    if target == "voisnap" and arguments.url:
        return external_voisnap(arguments.url, arguments.token, arguments.server_pid)
    if target != "voisnap":
        return peer_server(target)
    # The quick slow-consumer run publishes 30 KB messages: over the 32 KiB default.
    settings = {"max_message_size": str(64 * 1024)}
    if scenario == "chat":
        agents = data_dir / "agents.toml"
        agents.write_text(chat_agents_file(options))
        settings |= {"agents_file": str(agents), "agent_workers": str(options["sessions"])}
    return voisnap_server(data_dir, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument(
        "--targets",
        default="voisnap,websockets,socketio",
        help="comma-separated: voisnap, websockets, socketio",
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--subscribers", type=int, default=0, help="override the scenario's N")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--url", help="bench a voisnap already running at this http:// URL")
    parser.add_argument("--token", default="", help="an access token for --url")
    parser.add_argument("--server-pid", type=int, help="the --url server's pid, to sample it")
    return parser


if __name__ == "__main__":
    main()
