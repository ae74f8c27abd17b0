"""Everything the ``voisnap`` package imports is a declared runtime dependency.

The test environment installs more (the test extras), so a missing runtime
dependency would pass every other test and still break ``pip install .`` on
a fresh machine (the README's quick start).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "voisnap").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"voisnap", "__future__"}


def declared_runtime_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        canonical(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])
        for spec in project["dependencies"]
    }


def canonical(name: str) -> str:
    """PEP 503: "prometheus_client" and "prometheus-client" are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_packaging_every_import_is_a_runtime_dependency() -> None:
    owners = importlib.metadata.packages_distributions()
    declared = declared_runtime_distributions()
    missing = {
        module: owners.get(module, ["?"])
        for module in imported_top_level_modules()
        if not {canonical(name) for name in owners.get(module, [])} & declared
    }
    assert missing == {}, f"imported by voisnap but not in [project.dependencies]: {missing}"
