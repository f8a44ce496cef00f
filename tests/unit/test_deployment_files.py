"""The deployment files stay valid: the compose file, the CI script and the README's commands."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


#: The Compose Specification's JSON schema, vendored (tests/support/compose_spec/SOURCE.md).
COMPOSE_SCHEMA = ROOT / "tests" / "support" / "compose_spec" / "compose-spec.json"


def _docker_compose() -> list[str] | None:
    """``docker compose`` (the plugin) when it answers here; None where it is missing (a bare client)."""
    if shutil.which("docker") is None:
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    return ["docker", "compose"] if probe.returncode == 0 else None


def _schema_problems(document: dict) -> list[str]:
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_is_valid():
    """``docker compose config`` where the plugin works; else the Compose Specification's own schema."""
    compose = _docker_compose()
    if compose is not None:
        result = subprocess.run([*compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert _schema_problems(yaml.safe_load((ROOT / "docker-compose.yml").read_text())) == []


@pytest.mark.parametrize("break_it, where", [
    (lambda doc: doc["services"]["worker"].update(depends_on="migrate"), "services/worker/depends_on"),
    (lambda doc: doc["services"]["api"].update(ports=8000), "services/api/ports"),
    (lambda doc: doc["services"]["api"].update(restart_policy="always"), "services/api"),
    (lambda doc: doc.update(service={}), "<root>"),
])  # fmt: skip
def test_the_schema_check_rejects_a_broken_compose_file(break_it, where):
    """The fallback can fail: each mistake a hand-edited compose file makes is reported where it is."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    break_it(document)
    problems = _schema_problems(document)
    assert len(problems) == 1 and problems[0].startswith(f"{where}: "), problems


def test_compose_services_commands_and_dependencies_are_consistent():
    """What `docker compose config` cannot tell, and what runs without Docker: every command is a
    real `runwatch` command or the worker's broker module, and every dependency a service."""
    import importlib

    from runwatch.cli import build_parser

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "worker", "healer", "api"} <= services.keys()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        if "build" in service and "entrypoint" not in service:
            assert service["command"][0] in commands, f"{name}: runwatch has no command {service['command'][0]}"
    worker = services["worker"]["entrypoint"]
    assert worker[0] == "dramatiq" and importlib.util.find_spec(worker[1]) is not None
    env = compose["x-runwatch-env"]
    assert env["RUNWATCH_DATABASE_URL"].startswith("postgresql://") and env["RUNWATCH_REDIS_URL"].startswith("redis://")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test" in readme and "scripts/demo" in readme
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_every_runwatch_env_var_in_the_code_is_declared():
    """Named anywhere in the code means declared in the table the README's table is printed from."""
    import re

    from runwatch.variables import BY_NAME, NOT_SETTINGS

    used = set()
    paths = [path for package in ("runwatch", "workers", "bridge", "api") for path in ROOT.glob(f"{package}/**/*.py")]
    for path in paths:
        used |= set(re.findall(r'"(RUNWATCH_[A-Z_]+)"', path.read_text()))
    assert "RUNWATCH_DATABASE_URL" in used
    assert sorted(used - set(BY_NAME) - NOT_SETTINGS) == []
