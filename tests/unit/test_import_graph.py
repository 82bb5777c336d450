"""No import cycles in the package, between modules or between subpackages, lazy imports included.

Every ``winequality.*`` import counts, wherever it sits (module level, inside a function, under
``if TYPE_CHECKING``): a function-level import is a dependency all the same, and a cycle through
one is what makes two modules impossible to understand (or change) one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "winequality"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The longest known module a dotted name points into (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> Iterator[str]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    is_package = MODULES[module].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from winequality.training import tracking` imports the module tracking.
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            if target.startswith("winequality"):
                found = _resolve(target)
                if found is not None and found != module:
                    yield found


def _unit(module: str) -> str:
    """The subpackage a module belongs to, or the module itself for top-level modules."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and MODULES[module].name == "__init__.py"):
        return ".".join(parts[:2])
    return module


Graph = dict[str, set[str]]


def _graph(level: str) -> Graph:
    """``{node: nodes it imports}`` per module, or per subpackage / top-level module."""
    graph: Graph = {}
    for module in MODULES:
        source = module if level == "module" else _unit(module)
        edges = graph.setdefault(source, set())
        for target in _imports(module):
            dest = target if level == "module" else _unit(target)
            if target != "winequality" and dest != source:
                edges.add(dest)
    return graph


def _reachable(graph: Graph, start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def _cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one node, each sorted."""
    reach = {node: _reachable(graph, node) for node in graph}
    components = {
        frozenset({node} | {other for other in reach[node] if node in reach.get(other, ())})
        for node in graph
        if node in reach[node]
    }
    return sorted(sorted(c) for c in components if len(c) > 1)


def test_the_graph_sees_lazy_imports() -> None:
    # retrain.py imports the registry inside its functions only.
    graph = _graph("module")
    assert "winequality.training.registry" in graph["winequality.pipeline.retrain"]


def test_no_cycle_between_modules() -> None:
    assert _cycles(_graph("module")) == []


def test_no_cycle_between_subpackages() -> None:
    cycles = [c for c in _cycles(_graph("unit")) if len(set(c)) > 1]
    assert cycles == []
