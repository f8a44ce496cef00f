"""The import graph of runwatch/, workers/, bridge/ and api/: imports flow one way, never in a circle.

The package boundaries of docs/design.md §1 are load-bearing: the core (``runwatch/``) knows no
Dramatiq, Falcon or pika, and the API knows no broker. The repository keeps ``workers/``,
``bridge/`` and ``api/`` at its top level, but they install as ``runwatch.workers``,
``runwatch.bridge`` and ``runwatch.api``: every import names them that way. Imports are read with
``ast`` (relative ones resolved, those inside functions too); for cycles only the imports that run
when a module is first imported count: module level, not inside a function or ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Repository folder -> the import name it installs as.
PACKAGES = {"runwatch": "runwatch", "workers": "runwatch.workers", "bridge": "runwatch.bridge", "api": "runwatch.api"}
FORBIDDEN = {
    "runwatch": {"dramatiq", "falcon", "pika", "runwatch.workers", "runwatch.bridge", "runwatch.api"},
    "bridge": {"falcon", "runwatch.workers", "runwatch.api"},
    "workers": {"falcon", "runwatch.api"},
    "api": {"dramatiq", "pika", "runwatch.workers", "runwatch.bridge", "redis"},
}
#: Top-level names that exist only as repository folders: importing them works from a checkout and
#: breaks in an installed wheel (or picks up a user's own package of that name).
NOT_IMPORT_NAMES = {"workers", "bridge", "api"}


def _module_name(path: Path, folder: str) -> str:
    parts = path.relative_to(ROOT / folder).with_suffix("").parts
    return ".".join([PACKAGES[folder], *(parts[:-1] if parts[-1] == "__init__" else parts)])


#: Every module of the four packages by its installed name: (path, repository folder).
MODULES = {
    _module_name(path, folder): (path, folder) for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(nodes: Iterable[ast.AST], *, top_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements among ``nodes``; with ``top_level``, only those run at import time."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif top_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif top_level and isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, top_level=top_level)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node), top_level=top_level)


def _resolved(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """(absolute base, imported names) of one import statement of ``module`` (relative imports resolved)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
        return
    base = node.module or ""
    if node.level:
        # NOTE: in a package's __init__, ``from . import x`` is relative to the package itself.
        parent = module.rsplit(".", node.level - is_package)[0]
        base = f"{parent}.{base}" if base else parent
    yield base, [alias.name for alias in node.names]


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(path: Path, folder: str, *, top_level: bool = False) -> set[str]:
    """Every module (or module attribute) ``path`` imports, as absolute dotted names."""
    module = _module_name(path, folder)
    names = set()
    for node in _import_nodes([_parse(path)], top_level=top_level):
        for base, aliases in _resolved(node, module, path.name == "__init__.py"):
            names.add(base)
            names |= {f"{base}.{alias}" for alias in aliases}
    return names


def _edges(path: Path, folder: str) -> set[str]:
    """The modules of the four packages that ``path`` imports at module level."""
    module = _module_name(path, folder)
    edges = set()
    for node in _import_nodes([_parse(path)], top_level=True):
        for base, aliases in _resolved(node, module, path.name == "__init__.py"):
            # ``from package import submodule`` needs the submodule; ``from module import name`` the module.
            targets = [f"{base}.{a}" if f"{base}.{a}" in MODULES else base for a in aliases] or [base]
            edges |= {t for t in targets if t in MODULES and t != module}
    return edges


def import_graph() -> dict[str, set[str]]:
    return {module: _edges(path, folder) for module, (path, folder) in MODULES.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or not (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            if group:
                found.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _matches(name: str, forbidden: set[str]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_boundaries(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path, package) if _matches(n, FORBIDDEN[package]))
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("folder", ["runwatch", "workers", "bridge", "api", "tests", "bench"])
def test_nothing_imports_a_repository_folder_as_a_top_level_package(folder):
    offenders = {}
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        bad = sorted(
            {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
               and node.module}
        )  # fmt: skip
        bad = [n for n in bad if n.split(".")[0] in NOT_IMPORT_NAMES]
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_no_module_level_import_cycle():
    """A cycle works only while nobody imports its modules in another order: none may exist."""
    assert cycles(import_graph()) == []


def test_the_boundary_check_sees_a_forbidden_import(tmp_path):
    """The check can fail: an api module importing the bridge, relatively or not, is reported."""
    names = _imports(ROOT / "api" / "app.py", "api")
    assert "runwatch.api.errors" in names  # ``from . import errors`` resolved to its installed name
    assert _matches("runwatch.bridge.requeue", FORBIDDEN["api"])
    assert not _matches("runwatch.queries", FORBIDDEN["api"])


def test_the_cycle_check_sees_a_cycle():
    """The check can fail: a module of the core importing one that (indirectly) imports it back."""
    graph = import_graph()
    assert "runwatch.statements" in graph["runwatch.healer"]  # ``from . import statements as sql``
    assert "runwatch.passes" in graph["runwatch.healer"]
    (cycle,) = cycles({**graph, "runwatch.statements": {"runwatch.healer"}})
    assert {"runwatch.healer", "runwatch.statements"} <= set(cycle)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_reads_only_what_runs_at_import_time():
    tree = ast.parse(
        "import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\nelse:\n    import c\n"
        "def f():\n    import d\nclass K:\n    import e\n    def m(self):\n        import f\n"
    )
    top = {a.name for n in _import_nodes([tree], top_level=True) if isinstance(n, ast.Import) for a in n.names}
    every = {a.name for n in _import_nodes([tree], top_level=False) if isinstance(n, ast.Import) for a in n.names}
    assert (top, every) == ({"a", "c", "e"}, {"a", "b", "c", "d", "e", "f"})
