"""Import rules of the libraries, read from their source with ``ast`` (nothing is imported).

- ``hae_data``, ``hae_model`` and ``annotation_schema`` are plain libraries: no module imports
  Prefect or ``flows`` anywhere, not even inside a function (STYLE.md pattern 1).
- No import cycle among the project's own modules: the graph of every import statement (those
  inside functions and ``if TYPE_CHECKING:`` blocks included, since a deferred import only hides a
  cycle) has no strongly connected component of more than one module.
- No two modules share a file name, so a name says which part of the system it is.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("hae_data", "hae_model", "annotation_schema")
FORBIDDEN = ("prefect", "flows")


def _modules(packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: Collection[str]
) -> Iterator[str]:
    """The dotted names an import statement in ``module`` asks for (relative ones resolved).

    ``from package import name`` asks for ``package.name`` where that is a module in
    ``known``, and for ``package`` otherwise.
    """
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in known else base


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Import edges between the project's own modules, from every import statement."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for wanted in _imported(node, name, is_package, modules):
                if wanted in modules and wanted != name:
                    targets.add(wanted)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_libraries_never_import_prefect_or_flows() -> None:
    modules = _modules(LIBRARIES)
    assert {"hae_data.sources", "hae_model.model", "annotation_schema"} <= set(modules)
    offenders = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for wanted in _imported(node, name, is_package, modules):
                    if wanted.split(".")[0] in FORBIDDEN:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {wanted}")
    assert not offenders, "\n".join(offenders)


def test_no_import_cycle_among_project_modules() -> None:
    graph = _graph(_modules((*LIBRARIES, "flows")))
    assert "hae_data.sources.base" in graph["hae_data.sources.ava"]
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_module_file_names_are_unique() -> None:
    stems = Counter(
        path.stem
        for package in (*LIBRARIES, "flows")
        for path in (REPO / package).rglob("*.py")
        if path.stem not in ("__init__", "__main__")
    )
    assert not [s for s, n in stems.items() if n > 1], stems.most_common(3)
