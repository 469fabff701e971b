"""The house by role: every import in ``bridge/``, ``adapters/``, ``schemas/`` and the tools
(imports inside functions and under ``TYPE_CHECKING`` included) points down the floors below,
never between two roles, and no modules import each other in a circle.

Floors, bottom up (a module may import its own package and lower floors only):

- ``schemas`` (imports nothing of the project), then ``adapters`` (schemas only);
- ``bridge``'s shared floors: ``privacy``, ``security``, ``deadlines``; then ``telemetry``
  and ``config``; then ``store``; then ``runtime``;
- the roles ``ingest``, ``triage``, ``ticketing``, ``sync``, ``reply``, ``sla``, ``inspect``
  and the read models ``reports``, which never import one another;
- ``web``, then ``daemon`` (the composition root), then ``cli``;
- ``govbridge_tools`` (simulators, demo, bench) on top: nothing of the product imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "schemas": ROOT / "schemas",
    "adapters": ROOT / "adapters",
    "bridge": ROOT / "bridge",
    "govbridge_tools": ROOT / "tools" / "govbridge_tools",
}

ROLES = ("ingest", "triage", "ticketing", "sync", "reply", "sla", "inspect", "reports")
FLOORS: dict[str, int] = {
    "schemas": 0,
    "adapters": 1,
    "bridge": 2,  # bridge/__init__.py: the version
    "bridge.privacy": 2,
    "bridge.security": 2,
    "bridge.deadlines": 2,
    "bridge.telemetry": 3,
    "bridge.config": 3,
    "bridge.store": 4,
    "bridge.runtime": 5,
    **{f"bridge.{role}": 6 for role in ROLES},
    "bridge.web": 7,
    "bridge.daemon": 8,
    "bridge.cli": 9,
    "govbridge_tools": 10,
}


def room(module: str) -> str:
    """The part of the house a module belongs to: ``bridge.reply.outbox`` -> ``bridge.reply``."""
    parts = module.split(".")
    if parts[0] == "bridge" and len(parts) > 1:
        return f"bridge.{parts[1]}"
    return parts[0]


def module_of(path: Path, top: str, base: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = [top, *rel.parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, module: str) -> set[str]:
    """Every project module ``path`` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (names that are not modules are dropped)."""
    modules: dict[str, Path] = {}
    for top, base in SOURCES.items():
        for path in base.rglob("*.py"):
            modules[module_of(path, top, base)] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = {m for m in imports(path, module) if m in modules and m != module}
    return graph


def forbidden(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports that point up a floor or sideways between rooms of one floor."""
    found = []
    for source, targets in graph.items():
        a = room(source)
        for target in targets:
            b = room(target)
            if a == b:
                continue
            if b not in FLOORS or a not in FLOORS:
                found.append(f"{source} -> {target}: {a if a not in FLOORS else b} has no floor")
            elif FLOORS[b] > FLOORS[a]:
                found.append(f"{source} -> {target}: up from {a} to {b}")
            elif FLOORS[b] == FLOORS[a]:
                found.append(f"{source} -> {target}: sideways between {a} and {b}")
    return sorted(found)


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a loop (Tarjan's strongly connected
    components of two or more modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_points_up_or_between_roles() -> None:
    problems = forbidden(import_graph())
    assert problems == [], "\n".join(problems)


def test_no_modules_import_each_other_in_a_circle() -> None:
    found = circles(import_graph())
    assert found == [], "\n".join(" <-> ".join(group) for group in found)


def test_the_checks_see_what_they_must_refuse() -> None:
    """The checks fail on the imports they exist for (so a green run means something)."""
    graph = import_graph()
    assert "bridge.reply.outbox" in graph and "bridge.store" in graph["bridge.reply.outbox"]
    bad = {k: set(v) for k, v in graph.items()}
    bad["bridge.sla.role"].add("bridge.reply.role")  # role -> role
    bad["bridge.store.sql"].add("bridge.runtime.worker")  # up a floor
    bad["adapters.base"].add("bridge.runtime.broker")  # an adapter that knows RabbitMQ
    bad["bridge.runtime.worker"].add("bridge.cli.main")  # anything -> cli
    bad["bridge.reply.templates"].add("bridge.reply.role")  # a circle inside a role
    bad["bridge.reply.role"].add("bridge.reply.templates")
    problems = forbidden(bad)
    assert any("bridge.sla.role -> bridge.reply.role: sideways" in p for p in problems)
    assert any("bridge.store.sql -> bridge.runtime.worker: up" in p for p in problems)
    assert any("adapters.base -> bridge.runtime.broker: up" in p for p in problems)
    assert any("bridge.runtime.worker -> bridge.cli.main: up" in p for p in problems)
    assert ["bridge.reply.role", "bridge.reply.templates"] in circles(bad)


def test_bridge_holds_no_more_than_eight_modules_of_its_own() -> None:
    """Everything else lives in the package of the role (or floor) that owns it."""
    own = sorted(p.name for p in (ROOT / "bridge").glob("*.py"))
    assert len(own) <= 8, own
