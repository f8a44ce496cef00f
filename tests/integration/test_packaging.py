"""Runwatch as a user installs it: an sdist, the wheel built from it, a fresh virtualenv, the demo.

The wheel has one top-level import name, ``runwatch`` (the repository's ``workers/``, ``bridge/``
and ``api/`` folders install as ``runwatch.workers`` ...), so it never shadows a user's own
``api`` or ``workers`` package, nor is shadowed by one: the demo below runs from a directory that
holds packages of those names, and its API (gunicorn) must still serve Runwatch's app.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from runwatch import __version__

ROOT = Path(__file__).resolve().parents[2]
#: How long the demo may take (its faults wait on real heartbeat timeouts); the test's own timeout
#: lies beyond it, so that a slow demo fails with its stderr instead of being cut off.
DEMO_TIMEOUT_SECONDS = 300
INSTALL_TIMEOUT_SECONDS = 600


#: What is not source: building would copy none of it. ``*.egg-info`` above all: building writes
#: one into the tree it builds, and the checkout's own is where every test process with the
#: checkout on ``sys.path`` reads the CLI's commands from (its entry points), in parallel runs too.
GENERATED = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", "build", "dist", ".*cache",
                                   ".hypothesis", ".runwatch")  # fmt: skip

#: The module's tests share the built distributions (module fixtures): one pytest-xdist worker
#: builds them once, rather than each worker that gets one of these tests building its own. The
#: first test to ask for them waits for the build and the install, which are given minutes.
pytestmark = [pytest.mark.xdist_group("packaging"), pytest.mark.timeout(2 * INSTALL_TIMEOUT_SECONDS + 60)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist, and a wheel built from that sdist (``python -m build``), as a release would be;
    built from a copy of the checkout, so that the checkout's own ``runwatch.egg-info`` stays as it is."""
    source = tmp_path_factory.mktemp("source") / "runwatch"
    shutil.copytree(ROOT, source, ignore=GENERATED)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel (and the embedded extra) installed: nothing of the checkout."""
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    wheel = next(dist.glob("runwatch-*.whl"))
    done = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[embedded]"],
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return env_dir


def test_the_wheel_installs_one_top_level_name(dist: Path) -> None:
    wheel = zipfile.ZipFile(next(dist.glob("runwatch-*.whl")))
    names = wheel.namelist()
    assert {n.split("/")[0] for n in names} == {"runwatch", f"runwatch-{__version__}.dist-info"}
    for shipped in ("runwatch/workers/middleware.py", "runwatch/bridge/requeue.py", "runwatch/api/app.py",
                    "runwatch/api/contract/operation-run-lifecycle.openapi.yaml", "runwatch/migrations/script.py.mako",
                    "runwatch/py.typed", "runwatch/workers/py.typed",
                    f"runwatch-{__version__}.dist-info/licenses/LICENSE"):  # fmt: skip
        assert shipped in names, shipped
    entry_points = wheel.read(f"runwatch-{__version__}.dist-info/entry_points.txt").decode()
    assert "runwatch.workers.commands:register_demo" in entry_points and "= workers." not in entry_points


def test_the_sdist_holds_the_repository_layout(dist: Path) -> None:
    with tarfile.open(next(dist.glob("runwatch-*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for shipped in ("LICENSE", "README.md", "pyproject.toml", "workers/middleware.py", "bridge/requeue.py",
                    "api/app.py", "runwatch/cli.py"):  # fmt: skip
        assert shipped in names, shipped


def _user_project(tmp_path: Path) -> Path:
    """A user's project with its own ``api`` and ``workers`` packages, which Runwatch must not import."""
    for package in ("api", "workers", "bridge"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('the user\\'s own {package} package')\n")
    return tmp_path


def test_the_installed_command_knows_its_version_and_its_commands(venv: Path, tmp_path: Path) -> None:
    cwd = _user_project(tmp_path)
    runwatch = str(venv / "bin" / "runwatch")
    version = subprocess.run([runwatch, "--version"], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"runwatch {__version__}", version.stderr
    usage = subprocess.run([runwatch, "--help"], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "unavailable" not in usage.stderr, usage.stderr
    for command in ("demo", "drain", "deadletters", "bridge", "heal", "prune", "api", "config"):
        assert command in usage.stdout, command


@pytest.mark.timeout(2 * INSTALL_TIMEOUT_SECONDS + DEMO_TIMEOUT_SECONDS + 60)
def test_the_installed_demo_shows_every_outcome_and_every_reconciliation_source(
    venv: Path, tmp_path: Path, database_url: str, servers, namespace: str, engine
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "RUNWATCH_DATABASE_URL": database_url,
        "RUNWATCH_REDIS_URL": servers.redis_url,
        "RUNWATCH_EVENT_STREAM": f"{namespace}:events",
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
    }
    result = subprocess.run([str(venv / "bin" / "runwatch"), "demo", "--no-serve"], cwd=_user_project(tmp_path),
                            env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for outcome in ("succeeded", "partially_succeeded", "blocked", "failed"):
        assert f" {outcome} " in out, outcome
    for source in ("failed_callback", "scheduled_reconciler", "adapter_reconciler"):
        assert source in out, source
    for reason in ("run.queue_failure_bridge", "run.infrastructure_timeout_or_abandonment", "run.stale_queued",
                   "run.adapter_out_of_sync"):
        assert reason in out, reason
    evidence = out[out.find("how each reconciliation was decided"):]
    assert "requeued from run" in evidence and "delivered 2 times, then succeeded" in evidence, evidence
    assert "-> 200, 4 runs" in out  # the API (gunicorn, from the user's directory) served the ledger over HTTP
    # A user reads the demo's output: no Python warning or traceback in it (the drainer child once
    # printed a RuntimeWarning about how it was started).
    for noise in ("Warning:", "Traceback"):
        assert noise not in result.stderr, result.stderr[-3000:]
    lines = out.rstrip().splitlines()
    assert "/console/ and sign in with the token" in lines[-2] and lines[-1].strip().startswith("rw_"), lines[-3:]
