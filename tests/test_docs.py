"""docs/ states the contracts; these tests keep it honest about the code.

- every setting of ``voisnap.config.Settings`` is on docs/settings.md, by flag and variable;
- every mounted hub has a page, docs/hubs/<last path segment>.md, with a heading for each of
  its client-callable methods, and no heading for a method it does not have;
- every REST route the apps register is on docs/rest.md, with its method;
- every relative link between docs pages, anchors included, resolves.

Nothing here starts a server: the app is assembled (``create_product``) and inspected.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from voisnap.apps import create_product
from voisnap.config import Settings, env_name, flag_name
from voisnap.hubs.methods import describe_methods, methods_key
from voisnap.server.hub_server import HubServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
DOCUMENTED_ROUTE = re.compile(r"`(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`\s?]*)")
METHOD_HEADING = re.compile(r"`(\w+)\(")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> HubServer:
    """The product's server, assembled but not started (its data dir is a temporary one)."""
    return create_product(Settings(data_dir=tmp_path_factory.mktemp("data")))


def prose_lines(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def headings(page: Path) -> list[tuple[int, str]]:
    return [
        (len(found.group(1)), found.group(2))
        for found in map(HEADING.match, prose_lines(page))
        if found
    ]


def slug(text: str) -> str:
    """A heading's anchor, as GitHub makes it: lower case, no punctuation, hyphens for spaces."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, text in headings(page):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def wire_name(python_name: str) -> str:
    """``send_to_group`` -> ``SendToGroup``, the spelling the hub pages use."""
    return "".join(part[:1].upper() + part[1:] for part in python_name.split("_"))


def method_headings(page: Path) -> list[str]:
    """Names in the ``### `Name(...)` `` headings of the page's "Methods" section."""
    names, in_methods = [], False
    for level, text in headings(page):
        if level == 2:
            in_methods = text.startswith("Methods")
        elif level == 3 and in_methods:
            names += METHOD_HEADING.findall(text)
    return names


def hub_page(path: str) -> Path:
    """docs/hubs/<name>.md; the Voisnap hubs' pages are docs/hubs/voisnap-<name>.md."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    voisnap = path.startswith(Settings().voisnap_hubs_prefix + "/")
    return DOCS / "hubs" / (f"voisnap-{name}.md" if voisnap else f"{name}.md")


# -- settings -------------------------------------------------------------------------------------


def test_docs_settings_page_lists_every_flag_and_variable() -> None:
    page = (DOCS / "settings.md").read_text()
    missing = [
        field.name
        for field in attrs.fields(Settings)
        if f"`{flag_name(field.name)}`" not in page or f"`{env_name(field.name)}`" not in page
    ]
    assert not missing, f"docs/settings.md does not list: {missing}"


# -- hubs -----------------------------------------------------------------------------------------


def test_docs_playground_and_chat_hubs_are_mounted(app: HubServer) -> None:
    assert {"/hubs/playground", "/hubs/chat"} <= set(app.endpoints)


def test_docs_every_hub_method_has_a_heading_on_its_page(app: HubServer) -> None:
    for path, endpoint in app.endpoints.items():
        page = hub_page(path)
        assert page.exists(), f"{path} has no page: expected {page.relative_to(DOCS.parent)}"
        documented = {methods_key(name) for name in method_headings(page)}
        for key, method in describe_methods(endpoint.hub_class).items():
            assert key in documented, f"{page.name} has no heading for {wire_name(method.name)}"


def test_docs_hub_pages_document_no_method_the_hub_lacks(app: HubServer) -> None:
    for path, endpoint in app.endpoints.items():
        methods = describe_methods(endpoint.hub_class)
        extra = [n for n in method_headings(hub_page(path)) if methods_key(n) not in methods]
        assert not extra, f"{hub_page(path).name} documents methods {path} lacks: {extra}"


# -- REST -----------------------------------------------------------------------------------------


def test_docs_rest_page_lists_every_route(app: HubServer) -> None:
    """A documented path such as ``GET /sessions/{sessionId}/messages`` must match the
    route's own pattern, so the parameter may be named in the wire's camelCase."""
    documented = DOCUMENTED_ROUTE.findall((DOCS / "rest.md").read_text())
    assert app.routes, "no REST routes registered"
    for route in app.routes:
        assert any(
            method == route.method and route.pattern.match(path) for method, path in documented
        ), f"docs/rest.md does not list {route.method} {route.pattern.pattern}"


# -- links ----------------------------------------------------------------------------------------


def relative_links(page: Path) -> list[str]:
    return [
        target
        for line in prose_lines(page)
        for target in LINK.findall(line)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def test_docs_pages_exist() -> None:
    assert (DOCS / "README.md") in PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_docs_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(DOCS)}: broken links {broken}"


def test_docs_index_links_every_page() -> None:
    index = DOCS / "README.md"
    linked = {(DOCS / target.partition("#")[0]).resolve() for target in relative_links(index)}
    missing = [str(p.relative_to(DOCS)) for p in PAGES if p != index and p.resolve() not in linked]
    assert not missing, f"docs/README.md does not link: {missing}"
