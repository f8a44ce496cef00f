"""9. A partitioned worker host: cut off mid-run for longer than the heartbeat timeout, then healed.

Two worker hosts, each a Linux network namespace running the real ``dramatiq tests.acceptance.app``
(recorder, drainer child, maintenance thread); PostgreSQL and Redis on the bridge joining them (the
root namespace, where the test process runs too). One host is cut off while it holds started jobs:
its packets are dropped, so its connections stall rather than fail. The other host's healer sees
its heartbeat stop and hands its messages back; they are redelivered and completed there. Healed,
the isolated host finishes its jobs too late: each of its completions is a ``late`` event and the
redelivery's outcome stands. The scenario waits only for states that persist (journal lines,
ledger rows), never for a transient one; the checker then judges the whole history.

Skips, saying why, where network namespaces are not available (not root, no ``ip``).
``scripts/test tests/acceptance --scale large`` runs it with more jobs and a partition of each host
in turn.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from runwatch import embedded
from runwatch.migrate import upgrade

from . import fleet, netns
from .actors import read_journal
from .partition_checks import Round, partition_checks
from .world import HEARTBEAT_TIMEOUT_MS, Scale, World

pytestmark = pytest.mark.timeout(1500)

HOSTS = ("h1", "h2")
#: Modes whose jobs end normally: every delivery of a held job completes, so each has a late twin.
MODES = ("ok", "ok", "partial", "block", "fail")
JOB_MS = (1000, 3000)


@dataclass(frozen=True)
class PartitionSize:
    jobs: int  # messages sent, spread over the rounds
    rounds: int  # partitions, the hosts cut off in turn
    threads: int  # worker threads per host
    hold: int  # started, unfinished jobs the host must hold when it is cut off


#: What conftest's Scale would carry as ``partition_*`` fields (see the report).
SIZES = {
    "quick": PartitionSize(jobs=40, rounds=1, threads=4, hold=2),
    "large": PartitionSize(jobs=600, rounds=4, threads=8, hold=6),
}


@pytest.fixture
def net() -> Iterator[netns.Network]:
    if why := netns.unavailable():
        pytest.skip(f"partition scenario needs network namespaces: {why}")
    with netns.network(HOSTS) as network:
        yield network


@pytest.fixture
def partition_world(net: netns.Network, scale: Scale, tmp_path: Path) -> Iterator[World]:
    """The scenario's own servers, listening on the bridge: the cluster's listen on loopback only."""
    data = tmp_path / "servers"
    quiet = lambda *_: None  # noqa: E731
    embedded.stop(embedded.start(data, log=quiet))  # initdb, then let the hosts' network in
    with (data / "postgres" / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {net.subnet} trust\n")
    servers = embedded.start(data, log=quiet, host=net.server_address)
    try:
        upgrade(servers.database_url)
        w = World(servers, scale, tmp_path, "partitioned_worker_host")
        try:
            yield w
        finally:
            w.close()
    finally:
        embedded.stop(servers)


def test_partitioned_worker_host(partition_world: World, net: netns.Network, scale: Scale) -> None:
    world, size = partition_world, SIZES[scale.name]
    world.history.slack_seconds = HEARTBEAT_TIMEOUT_MS / 1000 + 3
    started = time.monotonic()
    for host in HOSTS:
        # NOTE: a host's own /tmp, as a real host has: the drain lock (one drainer per host) is a
        # file there, and hosts sharing it would elect one drainer for both, cut off with h1.
        tmp = world.log_dir / f"tmp-{host}"
        tmp.mkdir(exist_ok=True)
        env = {**world.env, "TMPDIR": str(tmp)}
        proc = fleet.Process(host, net.hosts[host].argv(fleet.worker(host, env, world.log_dir,
                             threads=size.threads).argv), env, world.log_dir)  # fmt: skip
        world.processes.append(proc.start())
    rounds = []
    per_round = size.jobs // size.rounds
    for n in range(size.rounds):
        count = per_round if n < size.rounds - 1 else size.jobs - per_round * n
        world.send_mix(count, MODES, ms=JOB_MS)
        isolated, other = HOSTS[n % 2], HOSTS[(n + 1) % 2]
        rounds.append(_partition(world, net, size, isolated, other))
    world.settle()
    world.figures["partitions"] = [
        {"host": r.isolated, "held_jobs": len(r.held), "cut_seconds": round(r.healed_at - r.cut_at, 1)} for r in rounds
    ]
    world.figures["seconds"] = round(time.monotonic() - started, 1)
    world.finish([partition_checks(world, rounds)])


def _partition(world: World, net: netns.Network, size: PartitionSize, isolated: str, other: str) -> Round:
    pids: dict[str, set[int]] = defaultdict(set)

    def journal() -> list[dict[str, Any]]:
        for host in HOSTS:  # the hosts' processes do not change; collect them while they run
            pids[host] |= net.pids(host)
        return list(read_journal(world.journal_dir))

    def holding() -> list[str] | None:
        held = _unfinished(journal(), pids[isolated], time.time(), frozenset(pids[other]))
        return held if len(held) >= size.hold else None

    fleet.wait_until(holding, 120, f"{isolated} to hold {size.hold} started jobs")
    cut_at = time.time()
    net.cut(isolated)
    world.history.faults["host_partitioned"] += 1
    # The exact set from the journal: a job may have ended between the poll and the cut.
    held = _unfinished(journal(), pids[isolated], cut_at, frozenset(pids[other]))
    partition = Round(isolated, other, cut_at, held, pids=pids)
    assert partition.held, f"{isolated} held no started job when it was cut off"

    def redelivered_and_acked_elsewhere() -> bool:
        lines = [ln for ln in journal() if ln["p"] in pids[other] and ln["t"] > cut_at]
        acked = {ln["m"] for ln in lines if ln["k"] == "ack" and ln["ok"]}
        return set(partition.held) <= acked

    # While cut off: the healer hands the held messages back and the other host completes them.
    fleet.wait_until(redelivered_and_acked_elsewhere, 180, f"{other} to redeliver and ack what {isolated} held")
    partition.healed_at = time.time()
    net.heal(isolated)

    def isolated_caught_up() -> bool:
        # Healed, the isolated host ships the (late) completions of the jobs it finished. Not its
        # acks: an ack whose reply timed out is given up by Dramatiq (its issue #894), not retried.
        lines = [ln for ln in journal() if ln["p"] in pids[isolated] and ln["k"] == "done"]
        with world.engine.connect() as conn:
            late = conn.execute(
                text("SELECT count(DISTINCT message_id) FROM run_events WHERE late AND kind = 'completed' "
                     "AND message_id = ANY(:ids)"),
                {"ids": partition.held},
            ).scalar()  # fmt: skip
        return set(partition.held) <= {ln["m"] for ln in lines} and late == len(partition.held)

    # NOTE: TCP retransmits with backoff: after a long cut, stalled connections resume only at
    # their next retransmission, up to two minutes after the link is back.
    try:
        fleet.wait_until(isolated_caught_up, 300, f"{isolated}'s late completions after the heal")
    except TimeoutError:
        raise AssertionError(f"{isolated} did not catch up after the heal: {_state_of(world, partition)}") from None
    world.figures.setdefault("rounds", 0)
    world.figures["rounds"] += 1
    return partition


def _state_of(world: World, partition: Round) -> str:
    """What the journal and the ledger say about the held jobs (for a failure message)."""
    lines = [ln for ln in read_journal(world.journal_dir) if ln["m"] in partition.held]
    with world.engine.connect() as conn:
        events = conn.execute(
            text("SELECT message_id, kind, late, at, recorded_at FROM run_events WHERE message_id = ANY(:ids) "
                 "ORDER BY id"),
            {"ids": partition.held},
        ).all()  # fmt: skip
        sessions = conn.execute(text("SELECT state, wait_event_type, left(query, 60) FROM pg_stat_activity")).all()
    host = {p: h for h, pids in partition.pids.items() for p in pids}
    return "\n".join(
        [f"cut {partition.cut_at:.1f}, healed {partition.healed_at:.1f}"]
        + [f"{ln['m'][:8]} {host.get(ln['p'], ln['p'])} {ln['k']} {ln['t']:.1f}" for ln in lines]
        + [f"{e.message_id[:8]} {e.kind} late={e.late} at={e.at} recorded={e.recorded_at}" for e in events]
        + [f"session {s}" for s in sessions]
        + [f"stream length {world.redis.xlen(world.settings.event_stream)}"]
    )


def _unfinished(lines: list[dict[str, Any]], pids: set[int], at: float, others: frozenset[int]) -> list[str]:
    """Messages a delivery of which started on ``pids`` at or before ``at`` and had not returned by then.

    Not those that ``others`` (the other host) had started too by then: a worker starved of CPU
    for longer than the heartbeat timeout is taken for dead before any cut (a busy machine), and
    its messages are redelivered early. Those are ordinary duplicates, which the general invariants
    judge; the partition did not hold them.
    """
    open_: dict[str, int] = defaultdict(int)
    elsewhere = set()
    for ln in lines:
        if ln["t"] > at or ln["k"] not in ("start", "done"):
            continue
        if ln["p"] in pids:
            open_[ln["m"]] += 1 if ln["k"] == "start" else -1
        elif ln["p"] in others and ln["k"] == "start":
            elsewhere.add(ln["m"])
    return sorted(m for m, n in open_.items() if n > 0 and m not in elsewhere)
