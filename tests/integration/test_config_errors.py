"""A malformed RUNWATCH_* variable is one clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from dramatiq.brokers.redis import RedisBroker
from runwatch.api.commands import GUNICORN_CONF

from runwatch import workers
from runwatch.errors import ConfigError
from runwatch.variables import VARIABLES


def _env(**variables: str) -> dict[str, str]:
    """This process's environment without any RUNWATCH_* variable, plus ``variables``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}, **variables}


def _run(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kwargs)


RUNWATCH = [sys.executable, "-m", "runwatch.cli"]


@pytest.mark.parametrize(
    "name, raw, form",
    [
        ("RUNWATCH_API_WORKERS", "four", "a positive integer (e.g. 2)"),
        ("RUNWATCH_RETENTION_DAYS", "forever", "a positive integer (e.g. 90)"),
        ("RUNWATCH_QUEUED_STALE_SECONDS", "1h", "a positive integer (e.g. 3600)"),
    ],
)
def test_runwatch_runs_with_a_malformed_variable_exits_2_with_the_message(database_url, name, raw, form):
    # NOTE: `runs` reads neither the API nor the retention settings: every command checks them all.
    done = _run([*RUNWATCH, "runs"], _env(RUNWATCH_DATABASE_URL=database_url, **{name: raw}))
    message = f"{name} must be {form}, got {raw!r}"
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"runwatch: error: {message}\n")


def test_runwatch_runs_with_good_variables_still_works(database_url):
    done = _run([*RUNWATCH, "runs"], _env(RUNWATCH_DATABASE_URL=database_url, RUNWATCH_API_WORKERS="4"))
    assert done.returncode == 0, done.stderr


def test_runwatch_api_checks_every_setting_before_starting_gunicorn(database_url):
    env = _env(RUNWATCH_DATABASE_URL=database_url, RUNWATCH_API_TIMEOUT_SECONDS="30s")
    done = _run([*RUNWATCH, "api", "--bind", "127.0.0.1:0"], env)
    message = "RUNWATCH_API_TIMEOUT_SECONDS must be an integer >= 0 (e.g. 30), got '30s'"
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"runwatch: error: {message}\n")


def test_runwatch_api_without_a_database_exits_2(tmp_path):
    done = _run([*RUNWATCH, "api", "--bind", "127.0.0.1:0"], _env())
    assert done.returncode == 2 and done.stderr.startswith("runwatch: error: RUNWATCH_DATABASE_URL is not set")


def test_gunicorn_with_the_shipped_config_stops_before_forking(database_url):
    """`gunicorn --config api/gunicorn_conf.py` run by hand: the message and exit 2, no traceback."""
    env = _env(RUNWATCH_DATABASE_URL=database_url, RUNWATCH_API_WORKERS="four")
    done = _run([sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF)], env)
    message = "RUNWATCH_API_WORKERS must be a positive integer (e.g. 2), got 'four'"
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"runwatch api: error: {message}\n")


def test_gunicorn_with_its_own_config_halts_when_the_app_cannot_load(database_url, tmp_path):
    """Started without our config file, the worker prints the message and gunicorn halts (exit 4)."""
    env = _env(RUNWATCH_DATABASE_URL=database_url, RUNWATCH_API_STATEMENT_TIMEOUT_MS="fast")
    argv = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1"]
    argv += ["--control-socket", str(tmp_path / "gunicorn.ctl"), "runwatch.api.app:get_app()"]
    done = _run(argv, env)
    message = "RUNWATCH_API_STATEMENT_TIMEOUT_MS must be a positive integer (e.g. 5000), got 'fast'"
    assert done.returncode == 4, done.stderr
    assert f"runwatch api: error: {message}\n" in done.stderr and "App failed to load" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def clean_environment(monkeypatch):
    for var in VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    return monkeypatch


def test_install_with_a_malformed_variable_raises_a_config_error_naming_it(clean_environment, servers):
    clean_environment.setenv("RUNWATCH_DRAIN_BATCH", "lots")
    broker = RedisBroker(url=servers.redis_url, namespace=f"rwtest-{uuid.uuid4().hex[:6]}")
    try:
        with pytest.raises(ConfigError) as caught:
            workers.install(broker)
        assert str(caught.value) == "RUNWATCH_DRAIN_BATCH must be a positive integer (e.g. 50), got 'lots'"
        assert not any(isinstance(m, workers.Recorder) for m in broker.middleware)
    finally:
        broker.close()


def test_a_dramatiq_worker_whose_broker_module_installs_runwatch_reports_the_variable(tmp_path, servers):
    (tmp_path / "rw_bad_broker.py").write_text(
        "import dramatiq\n"
        "from dramatiq.brokers.redis import RedisBroker\n"
        "from runwatch import workers\n"
        f"broker = RedisBroker(url={servers.redis_url!r}, namespace='rwtest-{uuid.uuid4().hex[:6]}')\n"
        "workers.install(broker)\n"
        "dramatiq.set_broker(broker)\n"
    )
    env = _env(RUNWATCH_DRAIN_BATCH="lots", RUNWATCH_DRAIN="external")
    argv = [sys.executable, "-m", "dramatiq", "rw_bad_broker", "--processes", "1", "--threads", "1"]
    done = _run(argv, env, cwd=tmp_path)
    assert done.returncode != 0
    assert (
        "runwatch.errors.ConfigError: RUNWATCH_DRAIN_BATCH must be a positive integer (e.g. 50), got 'lots'\n"
        in done.stderr
    )
