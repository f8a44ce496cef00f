"""The main command: ``runwatch demo`` end to end, as a user runs it (real processes, real servers)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: How long the demo may take (its faults wait on real heartbeat timeouts); the test's own timeout
#: lies beyond it, so that a slow demo fails with its stderr instead of being cut off by the suite's
#: 120 s default per test.
DEMO_TIMEOUT_SECONDS = 300


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_demo_shows_every_outcome_and_every_reconciliation_source(database_url, servers, namespace, engine):
    env = {
        **os.environ,
        "RUNWATCH_DATABASE_URL": database_url,
        "RUNWATCH_REDIS_URL": servers.redis_url,
        "RUNWATCH_EVENT_STREAM": f"{namespace}:events",
    }
    result = subprocess.run([sys.executable, "-m", "runwatch.cli", "demo", "--no-serve"], env=env,
                            capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
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
    assert "-> 200, 4 runs" in out  # the API served the ledger over HTTP
