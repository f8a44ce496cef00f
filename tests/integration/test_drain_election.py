"""One drainer per host: the worker processes of a host elect one with an flock (real CLI processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str], processes: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "dramatiq", "tests.integration.election_app", "-p", str(processes), "-t", "2"]
    argv += ["-Q", "elect", "--path", str(ROOT)]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _drainers(cli: subprocess.Popen) -> list[psutil.Process]:
    try:
        tree = psutil.Process(cli.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in tree if "workers.drain_process" in " ".join(_cmdline(p))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _workers(cli: subprocess.Popen) -> list[psutil.Process]:
    return [p for p in psutil.Process(cli.pid).children() if "drain_process" not in " ".join(_cmdline(p))]


def _stop(cli: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> None:
    if cli.poll() is None:
        os.killpg(cli.pid, sig)
        try:
            cli.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait(10)


@pytest.fixture
def election_env(settings, namespace, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    env.update(
        RUNWATCH_DATABASE_URL=settings.database_url,
        RUNWATCH_REDIS_URL=settings.redis_url,
        RUNWATCH_EVENT_STREAM=settings.event_stream,
        RUNWATCH_DRAIN="process",
        RUNWATCH_HEAL_INTERVAL_SECONDS="0",
        ELECTION_NAMESPACE=namespace,
        TMPDIR=str(tmp_path),  # NOTE: the lock file's directory: this test's own host
    )
    return env


def _send_and_wait_drained(settings, namespace, engine, n: int) -> None:
    import dramatiq

    from runwatch import workers
    broker = RedisBroker(url=settings.redis_url, namespace=namespace)
    recorder = workers.install(broker, settings=settings)

    @dramatiq.actor(broker=broker, queue_name="elect")
    def job() -> None:
        pass

    ids = [job.send().message_id for _ in range(n)]
    recorder.shipper.close()
    broker.close()
    query = text("SELECT count(*) FROM operation_runs WHERE status = 'completed' AND message_id = ANY(:ids)")

    def drained() -> bool:
        with engine.connect() as conn:
            return conn.execute(query, {"ids": ids}).scalar() == n

    wait_for(drained, timeout=60, interval=0.1)


def test_four_worker_processes_run_one_drainer(settings, namespace, engine, election_env, tmp_path):
    cli = _start(election_env, 4, tmp_path / "cli.log")
    try:
        wait_for(lambda: len(_workers(cli)) == 4, timeout=30)
        _send_and_wait_drained(settings, namespace, engine, 40)
        drainers = _drainers(cli)
        assert len(drainers) == 1, (tmp_path / "cli.log").read_text()[-2000:]
        assert drainers[0].parent().pid in {w.pid for w in _workers(cli)}
    finally:
        _stop(cli)
    assert not _drainers(cli)


def test_another_process_takes_over_when_the_holder_dies(settings, namespace, engine, election_env, tmp_path):
    first = _start(election_env, 2, tmp_path / "first.log")
    try:
        wait_for(lambda: len(_drainers(first)) == 1, timeout=30)
        second = _start(election_env, 2, tmp_path / "second.log")
        try:
            wait_for(lambda: len(_workers(second)) == 2, timeout=30)
            _send_and_wait_drained(settings, namespace, engine, 20)
            assert not _drainers(second)  # the lock is held by the first CLI's worker
            _stop(first, signal.SIGKILL)  # the holder dies without a word: the kernel frees the lock
            wait_for(lambda: len(_drainers(second)) == 1, timeout=30)
            _send_and_wait_drained(settings, namespace, engine, 20)
        finally:
            _stop(second)
    finally:
        _stop(first, signal.SIGKILL)


def test_a_frozen_holder_gets_a_spare_drainer_until_it_wakes(settings, namespace, engine, election_env, tmp_path):
    from runwatch.workers import drain_process

    first = _start(election_env, 1, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: len(_drainers(first)) == 1, timeout=30)
        os.killpg(first.pid, signal.SIGSTOP)  # a VM pause: alive, holding the lock, doing nothing
        second = _start(election_env, 1, tmp_path / "second.log")
        wait_for(lambda: len(_drainers(second)) == 1, timeout=drain_process.STALE_HOLDER_SECONDS + 30)
        _send_and_wait_drained(settings, namespace, engine, 10)
        os.killpg(first.pid, signal.SIGCONT)
        wait_for(lambda: not _drainers(second), timeout=30)  # the holder beats again: the spare stops
    finally:
        if second is not None:
            _stop(second)
        os.killpg(first.pid, signal.SIGCONT)
        _stop(first)
