"""The package boundaries of docs/design.md §1 are load-bearing: imports only flow one way.

The repository keeps ``workers/``, ``bridge/`` and ``api/`` at its top level, but they install as
``runwatch.workers``, ``runwatch.bridge`` and ``runwatch.api``: every import names them that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Repository folder -> the import name it installs as.
PACKAGES = {"runwatch": "runwatch", "workers": "runwatch.workers", "bridge": "runwatch.bridge", "api": "runwatch.api"}
FORBIDDEN = {
    "runwatch": {"dramatiq", "falcon", "runwatch.workers", "runwatch.bridge", "runwatch.api"},
    "bridge": {"falcon", "runwatch.workers", "runwatch.api"},
    "workers": {"falcon", "runwatch.api"},
    "api": {"dramatiq", "runwatch.workers", "runwatch.bridge", "redis"},
}
#: Top-level names that exist only as repository folders: importing them works from a checkout and
#: breaks in an installed wheel (or picks up a user's own package of that name).
NOT_IMPORT_NAMES = {"workers", "bridge", "api"}


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (relative imports resolved)."""
    module = PACKAGES[package] + "." + ".".join(path.relative_to(ROOT / package).with_suffix("").parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


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


def test_the_boundary_check_sees_a_forbidden_import(tmp_path):
    """The check can fail: an api module importing the bridge, relatively or not, is reported."""
    names = _imports(ROOT / "api" / "app.py", "api")
    assert "runwatch.api.errors" in names  # ``from . import errors`` resolved to its installed name
    assert _matches("runwatch.bridge.requeue", FORBIDDEN["api"])
    assert not _matches("runwatch.queries", FORBIDDEN["api"])
