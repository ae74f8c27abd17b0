"""The package's rooms and their doors, checked from the source (issue 9).

Every ``import`` in voisnap/ is read with ``ast`` (also those inside functions
and under ``TYPE_CHECKING``: a cycle hidden from the interpreter is still a
cycle for the reader), and the rules of the layout are checked:

- the framework (``protocol``, ``transports``, ``routing``, ``hubs``,
  ``server``) never imports the product (``apps``, ``agents``, ``storage``);
- ``routing`` imports nothing from ``transports`` (frames are the transports'
  business; the outbox is a transport's buffer);
- the subpackages import each other without a cycle;
- only ``voisnap/islands/`` imports asyncio (the seam for asyncio-only libraries).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "voisnap"
FRAMEWORK = ("protocol", "transports", "routing", "hubs", "server")
PRODUCT = ("apps", "agents", "storage")


def room_of(module: str) -> str:
    """``voisnap.hubs.connection`` -> ``hubs``; top-level modules are rooms of their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The absolute names of every module ``path`` imports."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the voisnap modules (and packages) it imports."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        modules[module_name(path)] = {
            name for name in imports_of(path) if name.startswith("voisnap.")
        }
    return modules


GRAPH = graph()


def violations(rooms_from: tuple[str, ...], rooms_to: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if room_of(module) in rooms_from
        for target in targets
        if room_of(target) in rooms_to
    )


def test_architecture_the_framework_never_imports_the_product() -> None:
    assert violations(FRAMEWORK, PRODUCT) == []


def test_architecture_routing_knows_nothing_of_transports() -> None:
    assert violations(("routing",), ("transports",)) == []


def test_architecture_rooms_import_each_other_without_a_cycle() -> None:
    edges: defaultdict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        for target in targets:
            if room_of(target) != room_of(module) and (PACKAGE / room_of(target)).is_dir():
                edges[room_of(module)].add(room_of(target))
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(room: str, path: tuple[str, ...]) -> None:
        if state.get(room) == "done":
            return
        if state.get(room) == "visiting":
            pytest.fail("a cycle between rooms: " + " -> ".join((*path, room)))
        state[room] = "visiting"
        for target in sorted(edges[room]):
            visit(target, (*path, room))
        state[room] = "done"
        order.append(room)

    for room in sorted(edges):
        visit(room, ())
    assert "protocol" in order


def test_architecture_only_the_islands_import_asyncio() -> None:
    offenders = sorted(
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if "asyncio" in {name.split(".")[0] for name in imports_of(path)}
        and room_of(module_name(path)) != "islands"
    )
    assert offenders == []


def test_architecture_graph_reads_relative_imports() -> None:
    """The checks above are only as good as the reader: relative imports resolve."""
    assert "voisnap.hubs.closing" in GRAPH["voisnap.hubs.connection"]
    assert "voisnap.protocol" in GRAPH["voisnap.hubs.connection"]
    assert "voisnap.server.hub_server" in GRAPH["voisnap.server.factory"]
