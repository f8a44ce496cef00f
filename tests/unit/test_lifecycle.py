from datetime import UTC, datetime, timedelta
from itertools import product

from runwatch.lifecycle import STATES, THROUGH_RUNNING, TRANSITIONS, Freshness, Outcome, Status, freshness, is_legal

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_transitions_only_climb_and_terminal_states_are_final():
    rank = {Status.QUEUED: 1, Status.RUNNING: 2, Status.COMPLETED: 3}
    for src, dst in TRANSITIONS:
        assert src in STATES and dst in STATES
        assert rank[dst[0]] > rank[src[0]]
        assert src[0] != Status.COMPLETED


def test_exactly_the_design_transitions_are_legal():
    legal = {(a, b) for a, b in product(STATES, STATES) if is_legal(a, b)}
    assert len(legal) == 8  # docs/design.md §3: start, 4 normal endings, precondition block, 2 reconciliations
    assert ((Status.QUEUED, Outcome.PENDING, False), (Status.COMPLETED, Outcome.SUCCEEDED, False)) not in legal
    assert ((Status.RUNNING, Outcome.PENDING, False), (Status.COMPLETED, Outcome.FAILED, True)) in legal


def test_through_running_is_exactly_the_normal_endings_from_queued():
    queued = (Status.QUEUED, Outcome.PENDING, False)
    through = {dst for (src, dst) in THROUGH_RUNNING}
    assert all(src == queued for (src, _) in THROUGH_RUNNING)
    assert {o for (_, o, _) in through} == {Outcome.SUCCEEDED, Outcome.PARTIALLY_SUCCEEDED, Outcome.FAILED}
    assert not is_legal(queued, (Status.COMPLETED, Outcome.SUCCEEDED, False))
    assert is_legal(queued, (Status.COMPLETED, Outcome.SUCCEEDED, False), started=True)


def test_freshness_derivation_on_both_sides_of_the_deadline():
    stale_at = NOW
    assert freshness("queued", "pending", False, stale_at, NOW - timedelta(seconds=1)) == Freshness.FRESH_ACTIVE
    assert freshness("running", "pending", False, stale_at, NOW) == Freshness.LIKELY_STALE
    assert freshness("completed", "failed", True, None, NOW) == Freshness.RECONCILED_FAILED
    assert freshness("completed", "failed", False, None, NOW) == Freshness.TERMINAL_NORMAL
    assert freshness("completed", "blocked", False, None, NOW) == Freshness.TERMINAL_NORMAL
