"""The deployment files stay valid: the compose file, the CI script and the README's commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_file_is_valid():
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test" in readme and "scripts/demo" in readme
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_every_runwatch_env_var_in_the_code_is_documented():
    import re

    used = set()
    paths = [path for package in ("runwatch", "workers", "bridge", "api") for path in ROOT.glob(f"{package}/**/*.py")]
    for path in paths:
        used |= set(re.findall(r'"(RUNWATCH_[A-Z_]+)"', path.read_text()))
    readme = (ROOT / "README.md").read_text()
    assert sorted(v for v in used if f"`{v}`" not in readme) == []
