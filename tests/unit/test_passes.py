"""The pass primitive's pure parts: one lock-key registry, the duration histogram's buckets."""

from __future__ import annotations

from pathlib import Path

from runwatch import passes
from runwatch.passes import PassStatus

ROOT = Path(__file__).resolve().parents[2]


def test_every_pass_has_its_own_lock_key():
    keys = [kind.lock_key for kind in passes.REGISTRY.values()]
    assert len(set(keys)) == len(keys) == 5
    assert set(passes.REGISTRY) == {"healer", "bridge", "prune", "dead_letter_mirror", "operator_actions"}
    # NOTE: no other module takes an advisory lock of its own (the migration lock aside).
    sources = [p for d in ("runwatch", "workers", "bridge", "api") for p in (ROOT / d).rglob("*.py")]
    takers = {
        p.relative_to(ROOT).as_posix() for p in sources if "advisory" in p.read_text() and "lock(" in p.read_text()
    }
    assert takers <= {"runwatch/passes.py", "runwatch/statements.py", "runwatch/migrate.py", "bridge/actions.py"}


def test_a_duration_falls_in_the_smallest_bucket_that_holds_it():
    assert passes.bucket_of(0.0) == "0.01"
    assert passes.bucket_of(0.05) == "0.05"
    assert passes.bucket_of(0.051) == "0.1"
    assert passes.bucket_of(10**6) == "+Inf"


def test_one_pass_increments_its_result_and_one_bucket():
    assert passes.increments(PassStatus.PAUSED, 0.2) == {
        "passes.paused": 1,
        "duration.le.0.25": 1,
        "duration.sum": 0.2,
        "duration.count": 1,
    }
