"""Fault injection with real processes; the history checker judges the final ledger after each.

``scripts/test tests/acceptance --scale large`` runs the same scenarios bigger (README: Acceptance).
"""

from __future__ import annotations

from .conftest import HEARTBEAT_TIMEOUT_MS, World

LOAD_MODES = ("ok", "ok", "ok", "partial", "block", "fail", "raise", "flaky")


def test_worker_sigkill_mid_run_under_load(world: World) -> None:
    """1. SIGKILL a worker's whole process group mid-run, again and again, while load goes on."""
    world.history.lossless = False  # a killed worker's unshipped start events die with it
    world.history.slack_seconds = HEARTBEAT_TIMEOUT_MS / 1000 + 3
    groups = [world.worker("a"), world.worker("b")]
    per_round = max(1, world.scale.jobs // (world.scale.kills + 1))
    for kill in range(world.scale.kills):
        ids = world.send_mix(per_round, LOAD_MODES)
        world.wait_count("status = 'running'", 1, 30, ids)
        victim = groups[kill % 2]
        victim.sigkill()
        world.history.faults["worker_sigkill"] += 1
        victim.start()
    world.send_mix(world.scale.jobs - per_round * world.scale.kills, LOAD_MODES)
    world.settle()
    world.finish()
