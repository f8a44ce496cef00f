"""The pass primitive's pure parts: one lock-key registry, the duration histogram's buckets."""

from __future__ import annotations

from runwatch import passes
from runwatch.passes import PassStatus


def test_every_pass_has_its_own_lock_key():
    keys = [kind.lock_key for kind in passes.REGISTRY.values()]
    assert len(set(keys)) == len(keys) == 3
    assert set(passes.REGISTRY) == {"healer", "bridge", "prune"}


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
