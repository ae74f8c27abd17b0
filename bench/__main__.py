"""``python -m bench``: fan-out benchmarks, voisnap side by side with its peers.

    python -m bench fanout                    # voisnap, websockets, python-socketio
    python -m bench churn                     # voisnap only
    python -m bench all --targets voisnap,websockets
    python -m bench fanout --quick            # a few seconds: proves the harness works
    python -m bench fanout --targets voisnap --url http://127.0.0.1:8080 --token "$TOKEN" \
        [--server-pid PID]                    # a voisnap you started yourself
    python -m bench fanout --targets voisnap --workers 2 --redis-url redis://127.0.0.1:6379/0
        # scale-out: 1 process, 1 process with Redis, 2 processes with Redis
    python -m bench chat --workers 2 --redis-url redis://... --database-url postgresql://...
        # chat: 1 process on SQLite beside 2 processes on Redis and PostgreSQL
    python -m bench stream                    # /v1/stream's token latency beside the chat
                                              # hub's, same sessions, same run (voisnap only)
    python -m bench topics                    # /v1/events: wildcard subscriptions, events
                                              # published on NATS at a ramp of rates (a
                                              # nats-server of the run's own); TopicTree's cost
    python -m bench topics --producer rest    # the same, events POSTed to /v1/events/{topic}
    python -m bench voice                     # N real-time StreamAudio streams (voisnap only),
                                              # then the VoiceHub's round trip
    python -m bench voice --part call         # only the VoiceHub's round trip
    python -m bench voice --part webrtc       # only a browser's WebRtcHub call (Chromium)

Every target runs the same scenario with the same Node load generator, one after
the other, in one run. Results go to ``bench/results/<time>-<scenario>.json``
and PNG plots beside it; a summary with voisnap's ratios to each peer is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .harness import (
    ChatLoad,
    ClusterUnderTest,
    LoadGenerator,
    NatsServer,
    ServerUnderTest,
    StreamLoad,
    external_voisnap,
    peer_server,
    voisnap_cluster,
    voisnap_server,
)
from .report import plot, summarize
from .scenarios import ONLY_VOISNAP, SCENARIOS, TOKEN_SCENARIOS, chat_agents_file
from .topics import TopicsLoad

RESULTS = Path(__file__).resolve().parent / "results"

FULL = {
    "fanout": {
        "subscribers": 1000,
        "size": 200,
        "duration": 4.0,
        "rates": [1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 100, 120, 140, 160, 200, 250],
    },
    "wide": {"subscribers": 5000, "size": 200, "duration": 8.0, "rate": 10},
    "chat": {"sessions": 200, "devices": 2, "tokens": 100, "token_delay": 0.05},
    # One connection a session on /v1/stream; the chat hub beside it gets one
    # device a session too, so that both carry the same connections and tokens.
    "stream": {"sessions": 200, "devices": 1, "tokens": 100, "token_delay": 0.05},
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
    # Issue 9's soak: 600 clients churning, 10 new connections a second (each
    # stays a minute), for five minutes: several full collections of the server
    # before issue 9.
    "churn": {
        "subscribers": 1000,
        "size": 200,
        "rate": 10,
        "duration": 300.0,
        "churners": 600,
        "churn_rate": 10,
    },
    # 1,000 connections x 10 mixed patterns; the producer cycles through 256 topics
    # (over REST: 16 keep-alive connections, "inflight"). The rates are NATS's: REST
    # stops near 250 a second, at its own cost, which ends its ramp early. The
    # matching cost: 1k, 10k, 100k subscriptions.
    "topics": {
        "connections": 1000,
        "per_connection": 10,
        "topics": 256,
        "inflight": 16,
        "duration": 4.0,
        "rates": [50, 100, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 4000, 6000, 8000,
                  12000, 16000, 24000, 32000],
        "sizes": [1000, 10000, 100000],
        "depths": [6, 10],
    },
}
QUICK = {
    "fanout": {"subscribers": 50, "size": 200, "duration": 1.0, "rates": [5, 20]},
    "wide": {"subscribers": 200, "size": 200, "duration": 1.0, "rate": 10},
    "chat": {"sessions": 10, "devices": 2, "tokens": 10, "token_delay": 0.02},
    "stream": {"sessions": 20, "devices": 1, "tokens": 10, "token_delay": 0.02},
    "slow-consumer": {
        "subscribers": 50,
        "stalled": 2,
        "size": 30000,
        "rate": 100,
        "baseline_duration": 1.0,
        "duration": 4.0,
    },
    "churn": {
        "subscribers": 50,
        "size": 200,
        "rate": 10,
        "duration": 3.0,
        "churners": 20,
        "churn_rate": 10,
    },
    "topics": {
        "connections": 100,
        "per_connection": 10,
        "topics": 64,
        "inflight": 4,
        "duration": 1.0,
        "rates": [50, 200],
        "sizes": [100, 1000, 10000],
        "depths": [6, 10],
    },
}


def main() -> None:
    parser = _parser()
    arguments = parser.parse_args()
    if arguments.url and arguments.producer == "nats" and arguments.scenario in {*PRODUCED, "all"}:
        parser.error("--url: the run's own NATS server is not that voisnap's; use --producer rest")
    if arguments.scenario == "voice":
        return _voice(arguments.quick, arguments.part)
    scenarios = list(SCENARIOS) if arguments.scenario == "all" else [arguments.scenario]
    targets = arguments.targets.split(",")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for scenario in scenarios:
        options = dict((QUICK if arguments.quick else FULL)[scenario])
        if arguments.subscribers:
            options["subscribers"] = arguments.subscribers
        if scenario in PRODUCED:
            options["producer"] = arguments.producer
        result = {"scenario": scenario, "options": options, "targets": {}}
        for target in _expand(targets, arguments):
            if scenario in ONLY_VOISNAP and not target.startswith("voisnap"):
                continue  # the peers have no chat hub, nor groups to join and leave
            result["targets"][target] = _run(scenario, target, options, arguments)
        path = RESULTS / f"{stamp}-{scenario}.json"
        path.write_text(json.dumps(result, indent=2))
        plot(result, path.with_suffix(""))
        print(summarize(result))
        print(f"results: {path}")


def _voice(quick: bool, part: str | None) -> None:
    """Voice is voisnap's alone, and its load is speech, not the Node load generator:
    the StreamAudio streams, then the VoiceHub's round trip (``--part`` for one)."""
    from .voice import run_voice, summarize_voice  # loads espeak-ng's and jiwer's parts
    from .voice_call import run_call, summarize_call
    from .voice_webrtc import run_webrtc, summarize_webrtc

    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = run_voice(quick) if part in (None, "streams") else {"scenario": "voice"}
    if part in (None, "call"):
        # The agent at its default pace; the full run also at 1 ms a word, to show its share.
        result["call"] = {"default": run_call(quick)}
        if not quick:
            result["call"]["fast_agent"] = run_call(quick, token_delay=0.001)
    if part in (None, "webrtc"):
        result["webrtc"] = run_webrtc(quick)
    path = RESULTS / f"{stamp}-voice.json"
    path.write_text(json.dumps(result, indent=2))
    if "levels" in result:
        print(summarize_voice(result))
    if "call" in result:
        print("voice call (VoiceHub round trip, agent sophon):")
    for name, call in result.get("call", {}).items():
        print(summarize_call(name, call))
    if "webrtc" in result:
        print(summarize_webrtc(result["webrtc"]))
    print(f"results: {path}")


def _run(scenario: str, target: str, options: dict, arguments: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as data_dir, _event_bus(options) as nats_url:
        server = _server(target, Path(data_dir), arguments, scenario, options, nats_url)
        server.start()
        load = LOADS.get(scenario, LoadGenerator)(arguments.loadgen)
        try:
            outcome = SCENARIOS[scenario](server, load, options | {"nats_url": nats_url})
        finally:
            load.close()
            server.stop()
        outcome["rss_samples"] = [(t, rss) for t, rss, _ in server.samples]
        return outcome


PRODUCED = {"topics"}
"""The scenarios whose events come from a producer, on NATS or over REST (``--producer``)."""


@contextlib.contextmanager
def _event_bus(options: dict) -> Iterator[str | None]:
    """With the NATS producer, a nats-server for this target's run, stopped after it
    (by the PID started): its URL, for voisnap's ``--nats-url``. Else None."""
    if options.get("producer") != "nats":
        yield None
        return
    nats = NatsServer()
    nats.start()
    try:
        yield nats.url
    finally:
        nats.stop()


LOADS: dict[str, type[ChatLoad] | type[LoadGenerator]] = {
    "chat": ChatLoad, "stream": StreamLoad, "topics": TopicsLoad,
}
"""The load generators other than the fan-out one, by scenario."""


def _expand(targets: list[str], arguments: argparse.Namespace) -> list[str]:
    """With ``--redis-url``, voisnap runs as 1 process without Redis, 1 with,
    and ``--workers`` processes with it, one after the other in this run."""
    if not arguments.redis_url or "voisnap" not in targets:
        return targets
    variants = ["voisnap", REDIS]
    if arguments.workers > 1:
        variants.append(f"voisnap x{arguments.workers}")
    index = targets.index("voisnap")
    return targets[:index] + variants + targets[index + 1 :]


REDIS = "voisnap+redis"


def _server(
    target: str, data_dir: Path, arguments: argparse.Namespace, scenario: str, options: dict,
    nats_url: str | None = None,
) -> ServerUnderTest | ClusterUnderTest:
    if target == "voisnap" and arguments.url:
        return external_voisnap(arguments.url, arguments.token, arguments.server_pid)
    if not target.startswith("voisnap"):
        return peer_server(target)
    # The quick slow-consumer run publishes 30 KB messages: over the 32 KiB default.
    settings = {"max_message_size": str(64 * 1024)}
    if nats_url:
        settings["nats_url"] = nats_url
    if scenario in TOKEN_SCENARIOS:
        agents = data_dir / "agents.toml"
        agents.write_text(chat_agents_file(options))
        settings |= {"agents_file": str(agents), "agent_workers": str(options["sessions"])}
    if target == "voisnap":
        return voisnap_server(data_dir, settings)
    settings["redis_url"] = arguments.redis_url
    if target == REDIS:
        return voisnap_cluster(target, data_dir, settings, processes=1)
    if arguments.database_url:
        settings["database_url"] = arguments.database_url
    return voisnap_cluster(target, data_dir, settings, processes=arguments.workers)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "voice", "all"])
    parser.add_argument(
        "--targets",
        default="voisnap,websockets,socketio",
        help="comma-separated: voisnap, websockets, socketio",
    )
    parser.add_argument("--loadgen", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="voisnap processes for the scale-out variant (with --redis-url)",
    )
    parser.add_argument("--redis-url", help="run voisnap with this Redis backplane too")
    parser.add_argument(
        "--database-url", help="PostgreSQL for the scale-out variant's store (default: SQLite)"
    )
    parser.add_argument("--subscribers", type=int, default=0, help="override the scenario's N")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--part", choices=["streams", "call", "webrtc"],
        help="voice: only StreamAudio, only the VoiceHub call, or only the browser's WebRTC call"
    )
    parser.add_argument(
        "--producer", choices=["nats", "rest"], default="nats",
        help="topics: publish the events on NATS (a nats-server of the run's own; voisnap "
        "gets --nats-url) or POST them to /v1/events/{topic}",
    )
    parser.add_argument("--url", help="bench a voisnap already running at this http:// URL")
    parser.add_argument("--token", default="", help="an access token for --url")
    parser.add_argument("--server-pid", type=int, help="the --url server's pid, to sample it")
    return parser


if __name__ == "__main__":
    main()
