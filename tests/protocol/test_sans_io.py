"""voisnap.protocol is sans-IO: it never awaits and imports no I/O framework.

STYLE.md, habit 1 ("Protocol code never awaits ... a test enforces it"); HubProtocol.md,
"Overview" (the protocol is independent of its transport). Covered: importing
``voisnap.protocol`` in a fresh interpreter loads no trio, hypercorn, jwt, wsproto or
ASGI module; the package's own imports stay inside it or in the standard library,
attrs and cattrs; no function, method or statement in it is asynchronous.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import voisnap.protocol

FORBIDDEN = ("trio", "hypercorn", "jwt", "wsproto", "starlette", "h11", "httpx")
PACKAGE_DIR = Path(voisnap.protocol.__file__).parent
MODULES = sorted(info.name for info in pkgutil.iter_modules([str(PACKAGE_DIR)]))


def forbidden(module_name: str) -> bool:
    return module_name.split(".")[0] in FORBIDDEN or "asgi" in module_name.lower()


def test_sans_io_has_modules_to_check() -> None:
    assert {"connection", "framing", "handshake", "json_codec", "messages"} <= set(MODULES)


def test_sans_io_import_loads_no_io_framework() -> None:
    script = (
        "import json, sys\n"
        "import voisnap.protocol\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=PACKAGE_DIR.parent.parent,
    )
    loaded = json.loads(result.stdout)
    assert "voisnap.protocol" in loaded
    offenders = sorted(name for name in loaded if forbidden(name))
    importers = sorted(name for name in loaded if name.startswith("voisnap.") and
                       not name.startswith("voisnap.protocol"))
    top_level = sorted({name.split(".")[0] for name in offenders})
    assert offenders == [], f"loaded {top_level}; voisnap modules loaded along: {importers}"


def test_sans_io_modules_import_nothing_outside_the_package() -> None:
    for name in MODULES:
        tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = "." * node.level + (node.module or "")
                assert node.level <= 1, f"{name}: 'from {source}' leaves the package"
                if node.level == 0:
                    assert not forbidden(node.module or ""), f"{name} imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not forbidden(alias.name), f"{name} imports {alias.name}"


def test_sans_io_modules_define_no_async_code() -> None:
    for name in MODULES:
        tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text())
        asynchronous = [
            f"{name}.py:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith)
        ]
        assert asynchronous == []


def test_sans_io_no_function_is_a_coroutine_function() -> None:
    checked = 0
    for name in MODULES:
        module = importlib.import_module(f"voisnap.protocol.{name}")
        for _, member in inspect.getmembers(module):
            if getattr(member, "__module__", None) != module.__name__:
                continue
            functions = [member]
            if inspect.isclass(member):
                # Plain, static and class methods alike (``__func__`` unwraps the latter two).
                functions = [getattr(value, "__func__", value) for value in vars(member).values()]
            for function in functions:
                if inspect.isfunction(function):
                    checked += 1
                    assert not inspect.iscoroutinefunction(function), function.__qualname__
                    assert not inspect.isasyncgenfunction(function), function.__qualname__
    assert checked > 10
