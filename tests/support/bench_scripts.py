"""A ``bench/`` script loaded as a module, for tests of its pure parts (labels, accounting)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(script: str) -> ModuleType:
    """``bench/<script>.py`` as module ``bench_<script>``, with ``bench/`` on ``sys.path`` while it
    loads (its sibling imports: ``common``, ``cpuacct``, ...), taken off again."""
    spec = importlib.util.spec_from_file_location(f"bench_{script}", BENCH / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    sys.path.insert(0, str(BENCH))
    sys.modules[spec.name] = module  # NOTE: its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
    return module
