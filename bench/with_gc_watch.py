"""Run a voisnap from before issue 9 with the garbage-collector watch, for comparison.

    PYTHONPATH=/path/to/old/tree python bench/with_gc_watch.py serve --port 0

An older voisnap has no ``"gc"`` in ``GET /stats``. This runs ``python -m voisnap``
with this tree's watch (``voisnap/server/collector.py``, loaded by path: the
imported ``voisnap`` package is the old one) installed before start-up, and adds
the key to ``HubServer.statistics``, so that ``python -m bench churn --url ...``
reads the old server's pauses exactly as it reads the new one's. Nothing else of
the old server changes (in particular, it gets no ``gc.freeze()``).
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path
from types import ModuleType

import attrs

COLLECTOR = Path(__file__).resolve().parent.parent / "voisnap" / "server" / "collector.py"


def load_collector() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gc_collector", COLLECTOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    watch = load_collector().install_collector()
    from voisnap.server.hub_server import HubServer

    statistics = HubServer.statistics

    def with_gc(self: HubServer) -> dict:
        return {**statistics(self), "gc": attrs.asdict(watch.statistics())}

    HubServer.statistics = with_gc  # type: ignore[method-assign]
    sys.argv = ["voisnap", *sys.argv[1:]]
    runpy.run_module("voisnap", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
