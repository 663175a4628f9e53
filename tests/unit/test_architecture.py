"""The library's import graph, read from its source: arrows point one way (handlers →
composition → services → ports ← adapters, the domain at the bottom) and nothing imports itself
back. docs/ARCHITECTURE.md draws this graph; each room below is a row of its "Rooms" table."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "monitor"
PACKAGE = "connector_monitor"

# Shared code of an adapter package: the adapters of that package may import it.
SUPPORT = {
    "connector_monitor.aws.clients",
    "connector_monitor.aws.dynamodb",
    "connector_monitor.aws.records",
    "connector_monitor.aws.botocore_redaction",
    "connector_monitor.bitrix24.transport",
    "connector_monitor.bitrix24.redaction",
    "connector_monitor.bitrix24.limits",
    "connector_monitor.bitrix24.answers",
    "connector_monitor.bitrix24.oauth",
    "connector_monitor.bitrix24.rest_session",
}
# What any room may import: pure code with no I/O.
BOTTOM = ("connector_monitor.domain", "connector_monitor.deadline")
PORTS = ("connector_monitor.ports", "connector_monitor.tokens.ports")
TOKEN_MODEL = (
    "connector_monitor.tokens.credentials",
    "connector_monitor.tokens.errors",
    *PORTS,
)


def modules() -> dict[str, set[str]]:
    """Every module of the library and the library modules it imports (at any depth in the
    file: imports inside functions count too)."""
    graph: dict[str, set[str]] = {}
    packages: set[str] = set()
    for path in sorted((LIBRARY / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(LIBRARY).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        if is_package:
            packages.add(name)
        graph[name] = set(_imports(ast.parse(path.read_text()), name, is_package))
    known = set(graph)
    # A package's __init__ only names its room; `from . import clients` imports the module.
    return {
        m: {_owner(i, known) for i in imports} - {m} - packages
        for m, imports in graph.items()
        if m not in packages
    }


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.startswith(PACKAGE):
                yield target
                yield from (f"{target}.{a.name}" for a in node.names)


def _owner(name: str, known: set[str]) -> str:
    """The module `name` is (or is in): `from pkg import module` names a module."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


GRAPH = modules()


def room(module: str) -> str:
    if module.startswith(BOTTOM):
        return "domain"
    if module.startswith(PORTS) or module in TOKEN_MODEL:
        return "ports"
    if module.startswith(("connector_monitor.aws.", "connector_monitor.bitrix24.")):
        return "support" if module in SUPPORT else "adapter"
    if module == "connector_monitor.composition":
        return "composition"
    return "service"


def arrows(source_room: str, target_room: str) -> list[str]:
    return sorted(
        f"{m} -> {i}"
        for m, imports in GRAPH.items()
        if room(m) == source_room
        for i in imports
        if room(i) == target_room
    )


def test_the_graph_is_read_from_every_module() -> None:
    assert len(GRAPH) > 40
    assert "connector_monitor.cycle" in GRAPH["connector_monitor.composition"]


def leaving(source_room: str, allowed: tuple[str, ...]) -> list[str]:
    """The arrows out of `source_room` into rooms other than `allowed`."""
    return sorted(
        f"{m} -> {i}"
        for m, imports in GRAPH.items()
        if room(m) == source_room
        for i in imports
        if room(i) not in allowed
    )


def test_the_domain_imports_nothing_but_the_domain() -> None:
    assert leaving("domain", ("domain",)) == []


def test_ports_import_only_ports_and_the_domain() -> None:
    assert leaving("ports", ("ports", "domain")) == []


@pytest.mark.parametrize("target", ["service", "composition", "adapter"])
def test_an_adapter_imports_no_service_and_no_other_adapter(target: str) -> None:
    assert arrows("adapter", target) == []
    assert arrows("support", target) == []


@pytest.mark.parametrize("target", ["adapter", "support", "composition"])
def test_a_service_imports_no_adapter(target: str) -> None:
    assert arrows("service", target) == []


def test_the_tokens_package_imports_neither_aws_nor_bitrix24() -> None:
    reached = sorted(
        f"{m} -> {i}"
        for m, imports in GRAPH.items()
        if m.startswith("connector_monitor.tokens")
        for i in imports
        if i.startswith(("connector_monitor.aws", "connector_monitor.bitrix24"))
    )
    assert reached == []


def test_no_module_imports_itself_back() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_every_path_the_architecture_page_names_exists() -> None:
    root = LIBRARY.parents[1]
    page = (root / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w./-]+\.(?:py|md|json|yaml|toml))`", page))
    named |= set(re.findall(r"`([\w-]+(?:/[\w.-]+)+/)`", page))  # folders, written with a "/"
    everywhere = {p.relative_to(root).as_posix() for p in root.rglob("*") if ".venv" not in p.parts}
    library = f"layers/monitor/{PACKAGE}/"

    def exists(path: str) -> bool:
        path = path.rstrip("/")
        return (
            path in everywhere
            or library + path in everywhere
            or any(p.endswith("/" + path) for p in everywhere)
        )

    assert len(named) > 50
    assert sorted(p for p in named if not exists(p)) == []
