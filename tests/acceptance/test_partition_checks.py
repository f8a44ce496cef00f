"""The partition scenario's own logic, without a network: its invariants can fail, its skip says why.

Each invariant of ``test_partition.py`` gets a history that breaks it (one per branch) and must be
reported; the clean history must pass, so a check that checks nothing fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from . import netns
from .checker import History, Ledger, Verdict
from .partition_checks import Round, partition_checks


def _held_history(**change: Any) -> tuple[Any, Ledger, Round]:
    """One job h1 held when cut off at t=100 and h2 redelivered; healed at t=120. ``change`` breaks it."""
    at = lambda t: datetime.fromtimestamp(t, UTC)  # noqa: E731
    journal = [
        {"k": "start", "m": "m", "p": 1, "t": change.get("h1_start", 99.0)},
        {"k": "done", "m": "m", "p": 1, "t": change.get("h1_done", 105.0), "ok": True},
        {"k": "start", "m": "m", "p": 2, "t": change.get("h2_start", 110.0)},
        {"k": "done", "m": "m", "p": 2, "t": 112.0, "ok": True},
        {"k": "ack", "m": "m", "p": 2, "t": change.get("h2_ack", 113.0), "ok": True},
    ]
    if change.get("h1_ack", 125.0) is not None:
        journal.append({"k": "ack", "m": "m", "p": 1, "t": change.get("h1_ack", 125.0), "ok": True})
    run = {"id": 1, "message_id": "m", "outcome": change.get("outcome", "succeeded"), "reason_code": None,
           "reconciled_at": change.get("reconciled_at"), "deliveries": change.get("deliveries", 2)}  # fmt: skip
    late_is_h1 = change.get("late_is_h1", True)
    events = [
        {"kind": "completed", "late": not late_is_h1, "at": at(112.0), "recorded_at": at(113.0)},
        {"kind": "completed", "late": late_is_h1, "at": at(105.0), "recorded_at": at(change.get("recorded", 126.0))},
    ][: change.get("completions", 2)]
    history = History(sent={"m": {"mode": "ok", "tenant": None}}, journal=journal)
    held = change.get("held", ["m"])
    partition = Round("h1", "h2", 100.0, held, healed_at=120.0, pids={"h1": {1}, "h2": {2}})
    return SimpleNamespace(history=history, figures={}), Ledger({"m": run}, {"m": events}), partition


def _violations(**change: Any) -> set[str]:
    world, ledger, partition = _held_history(**change)
    verdict = Verdict()
    partition_checks(world, [partition])(ledger, verdict)
    assert verdict.total >= 1
    return {v.split(":")[0] for v in verdict.violations}


BREAKS = {
    "finished before the cut": ({"h1_done": 99.5}, "partition_hit_a_running_job"),
    "started after the cut": ({"h1_start": 101.0}, "partition_hit_a_running_job"),
    "no job held": ({"held": []}, "partition_held_jobs"),
    "redelivered before the cut": ({"h2_start": 98.0}, "redelivered_on_the_other_host"),
    "other host acked only after the heal": ({"h2_ack": 121.0}, "redelivered_on_the_other_host"),
    "isolated host acked while cut off": ({"h1_ack": 115.0}, "isolated_ack_after_heal"),
    "the redelivery's completion is the late one": ({"late_is_h1": False}, "isolated_completion_is_late"),
    "one completion only": ({"completions": 1}, "isolated_completion_is_late"),
    "late completion recorded before the heal": ({"recorded": 119.0}, "isolated_completion_is_late"),
    "one delivery counted": ({"deliveries": 1}, "redelivery_counted"),
    "reconciled": ({"reconciled_at": datetime.fromtimestamp(118.0, UTC)}, "no_run_failed_by_partition"),
    "wrong outcome": ({"outcome": "failed"}, "no_run_failed_by_partition"),
}


def test_the_clean_partition_history_passes():
    assert _violations() == set()
    assert _violations(h1_ack=None) == set()  # an ack Dramatiq gave up (its issue #894) is no violation


@pytest.mark.parametrize("name", BREAKS)
def test_each_partition_invariant_can_fail(name):
    change, invariant = BREAKS[name]
    assert invariant in _violations(**change)


def test_namespaces_are_unavailable_without_root(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "network namespaces need root (this run is not root)"


def test_namespaces_are_unavailable_without_iproute2(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    assert netns.unavailable() == "network namespaces need iproute2's `ip`, which is not installed"


def test_a_failing_netns_add_is_the_reason(monkeypatch):
    def refuse(*args, check=True):
        raise netns.NetnsError("ip netns add x: mount --make-shared /run/netns failed: Operation not permitted")

    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: "/usr/sbin/ip")
    monkeypatch.setattr(netns, "ip", refuse)
    assert netns.unavailable().startswith("`ip netns add` failed: ip netns add x: mount")
