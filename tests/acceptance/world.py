"""One acceptance scenario's world: its processes, producer, history and ledger, at a scale.

The ``world`` fixture (conftest.py) starts each scenario with an empty ledger and broker and hands
it a ``World``; ``World.finish`` checks the history (checker.py) and keeps the scenario's figures
in ``summary`` (for the terminal summary: summary.py). The broker is Redis, or RabbitMQ
(``amqp_url``: the suite's own node, tests/support/rabbit_node.py); on RabbitMQ no process of the
World is given a Redis URL, so the run events travel through RabbitMQ as a RabbitMQ shop's would.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import create_engine, text

from runwatch import embedded, workers
from runwatch.settings import Settings
from tests.support.rabbit_node import RabbitNode

from . import fleet
from .actors import JOURNAL_ENV, declare, gate_path, read_journal
from .checker import History, Ledger, Verdict, check
from .history import by_message, in_flight

HEAL_INTERVAL_SECONDS = 1
#: The brokers a broker-neutral scenario runs on: ``parametrize("world", BROKERS, indirect=True)``.
BROKERS = ("redis", "rabbitmq")
#: How long a scenario waits for a state that, once reached, stays (gated jobs, counts that only grow).
REACH_SECONDS = 90
HEARTBEAT_TIMEOUT_MS = 4000


@dataclass(frozen=True)
class Scale:
    name: str
    jobs: int  # messages per load scenario
    kills: int  # SIGKILLs in the kill scenario
    stale_runs: int  # stale runs and dead letters for the concurrent healers
    healers: int  # concurrent healer / bridge-scan processes
    api_seconds: float  # how long the API is queried under load
    settle_seconds: float
    frozen_jobs: int  # jobs of a frozen worker that end as late successes
    sigterm_jobs: int  # short and as many long jobs running when SIGTERM arrives


SCALES = {
    "quick": Scale("quick", jobs=40, kills=3, stale_runs=30, healers=3, api_seconds=4, settle_seconds=60,
                   frozen_jobs=2, sigterm_jobs=2),
    "large": Scale("large", jobs=1000, kills=25, stale_runs=1000, healers=6, api_seconds=60, settle_seconds=300,
                   frozen_jobs=6, sigterm_jobs=4),
}  # fmt: skip
#: Not inherited from the test session: a World's processes see only its own broker.
_BROKER_VARIABLES = ("RUNWATCH_REDIS_URL", "RUNWATCH_RABBITMQ_URL", "RUNWATCH_BROKER", "RUNWATCH_EVENT_TRANSPORT")


class World:
    """One scenario's processes, producer, history and ledger."""

    def __init__(
        self, servers: embedded.EmbeddedServers, scale: Scale, tmp: Path, name: str, rabbit: RabbitNode | None = None
    ) -> None:
        self.servers, self.scale, self.name, self.rabbit = servers, scale, name, rabbit
        amqp_url = None if rabbit is None else rabbit.url
        self.kind = "redis" if amqp_url is None else "rabbitmq"
        self.journal_dir, self.log_dir = tmp / "journal", tmp / "logs"
        self.journal_dir.mkdir()
        self.log_dir.mkdir()
        self.random = random.Random(name)  # the same load on every run of a scenario
        self.history = History(heal_interval_seconds=HEAL_INTERVAL_SECONDS)
        self.engine = create_engine(servers.database_url, pool_pre_ping=True, pool_size=2)
        self.redis = redis.Redis.from_url(servers.redis_url) if amqp_url is None else None
        broker_env = (
            {"RUNWATCH_REDIS_URL": servers.redis_url}
            if amqp_url is None
            else {"RUNWATCH_BROKER": "rabbitmq", "RUNWATCH_RABBITMQ_URL": amqp_url}
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in _BROKER_VARIABLES},
            **broker_env,
            "RUNWATCH_DATABASE_URL": servers.database_url,
            "RUNWATCH_HEAL_INTERVAL_SECONDS": str(HEAL_INTERVAL_SECONDS),
            "RUNWATCH_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_TIMEOUT_MS),
            "RUNWATCH_OUTAGE_GRACE_SECONDS": "3",
            "RUNWATCH_CEILING_MARGIN_SECONDS": "2",
            "RUNWATCH_DRAIN_CLAIM_IDLE_MS": "2000",
            "RUNWATCH_PROGRESS_INTERVAL_MS": "200",
            JOURNAL_ENV: str(self.journal_dir),
        }
        self.processes: list[fleet.Process] = []
        producer = {"RUNWATCH_DRAIN": "external", "RUNWATCH_HEAL_INTERVAL_SECONDS": "0"}
        self.settings = Settings.from_env({**self.env, **producer})
        self.broker: dramatiq.Broker = (
            RedisBroker(url=servers.redis_url)
            if amqp_url is None
            else RabbitmqBroker(url=amqp_url, confirm_delivery=True)
        )
        self.recorder = workers.install(self.broker, settings=self.settings)
        self.work = declare(self.broker)
        self.figures: dict[str, Any] = {}
        #: The scenario's figures once ``finish`` has checked its history (summary.py).
        self.summary: dict[str, Any] | None = None
        self.started = time.monotonic()

    # -- processes ---------------------------------------------------------------------------

    def worker(self, name: str, env: dict[str, str] | None = None, **kw: Any) -> fleet.Process:
        proc = fleet.worker(name, {**self.env, **(env or {})}, self.log_dir, **kw).start()
        self.processes.append(proc)
        return proc

    def runwatch(self, name: str, args: list[str], env: dict[str, str] | None = None) -> fleet.Process:
        proc = fleet.runwatch(name, args, {**self.env, **(env or {})}, self.log_dir).start()
        self.processes.append(proc)
        return proc

    def rabbit_restart(self) -> None:
        """Stop the World's RabbitMQ node gracefully and start it again (its data directory stays)."""
        assert self.rabbit is not None, "not a RabbitMQ world"
        self.rabbit.restart()

    # -- load --------------------------------------------------------------------------------

    def send(self, mode: str, ms: int, tenant: int | None = None, gate: str | None = None) -> dramatiq.Message:
        """Send one job; with a ``gate`` it stays in flight, after ``ms``, until ``open_gate(gate)``."""
        args = (mode, ms) if gate is None else (mode, ms, gate)
        message = self.work.send_with_options(args=args, runwatch_tenant_id=tenant)
        self.history.send(message.message_id, mode, tenant)
        return message

    def open_gate(self, gate: str) -> None:
        gate_path(self.journal_dir, gate).touch()

    def send_mix(self, count: int, modes: tuple[str, ...], ms: tuple[int, int] = (100, 600)) -> list[str]:
        ids = [
            self.send(self.random.choice(modes), self.random.randint(*ms), self.random.choice((1, 2, 3))).message_id
            for _ in range(count)
        ]
        self.recorder.shipper.flush()
        return ids

    # -- observation -------------------------------------------------------------------------

    def count(self, where: str, ids: list[str] | None = None) -> int:
        ids = list(self.history.sent) if ids is None else ids
        with self.engine.connect() as conn:
            query = text(f"SELECT count(*) FROM operation_runs WHERE message_id = ANY(:ids) AND ({where})")
            return int(conn.execute(query, {"ids": ids}).scalar())

    def wait_count(self, where: str, at_least: int, timeout: float, ids: list[str] | None = None) -> int:
        try:
            return fleet.wait_until(
                lambda: (n := self.count(where, ids)) >= at_least and n, timeout, f"{at_least} runs with {where}"
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {self._post_mortem(where, ids)}") from None

    def _post_mortem(self, where: str, ids: list[str] | None, shown: int = 5) -> str:
        """The runs a wait still waits for, what the healer said of them, and transactions left open."""
        ids = list(self.history.sent) if ids is None else ids
        runs = text(
            "SELECT id, status, outcome, deliveries, worker_id, healer_note FROM operation_runs "
            f"WHERE message_id = ANY(:ids) AND NOT ({where}) ORDER BY id LIMIT {shown}"
        )
        idle = text(
            "SELECT pid, now() - xact_start AS open_for, left(query, 80) AS last_query FROM pg_stat_activity "
            "WHERE state LIKE 'idle in transaction%'"
        )
        with self.engine.connect() as conn:
            waiting = [dict(r) for r in conn.execute(runs, {"ids": ids}).mappings()]
            open_transactions = [dict(r) for r in conn.execute(idle).mappings()]
        return f"runs still waited for: {waiting}; sessions idle in a transaction: {open_transactions}"

    def other_tenant_runs(self) -> list[int]:
        """Ids of runs of tenants other than 1 (the API scenario's tenant-scoped token must not see them)."""
        with self.engine.connect() as conn:
            query = text("SELECT id FROM operation_runs WHERE tenant_id IS DISTINCT FROM 1 ORDER BY id LIMIT 50")
            return [int(i) for i in conn.execute(query).scalars()]

    def in_flight(self, ids: list[str], group: int | None = None) -> list[str]:
        """Those of ``ids`` a delivery of which (in worker group ``group``) has started and not finished."""
        journal, now = by_message(read_journal(self.journal_dir)), time.time() + 1
        return [m for m in ids if in_flight(journal.get(m, []), now, group) is not None]

    def wait_in_flight(self, ids: list[str], timeout: float, group: int | None = None) -> None:
        """Wait until every one of ``ids`` is in flight: gated jobs, so that this state lasts until the gate opens."""
        fleet.wait_until(lambda: len(self.in_flight(ids, group)) == len(ids), timeout,
                         f"{len(ids)} deliveries in flight{f' in group {group}' if group else ''}")  # fmt: skip

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every sent run is terminal; False at the deadline (the checker then says which)."""
        try:
            self.wait_count("status = 'completed'", len(self.history.sent), timeout or self.scale.settle_seconds)
        except TimeoutError:
            return False
        return True

    # -- the end -----------------------------------------------------------------------------

    def finish(self, extra: list[Callable[[Ledger, Verdict], None]] | None = None) -> Verdict:
        fleet.stop_all(self.processes)
        self.history.journal = list(read_journal(self.journal_dir))
        verdict = check(self.engine, self.history, extra or [])
        self.summary = {
            "scenario": self.name,
            "broker": self.kind,
            "scale": self.scale.name,
            "runs": len(self.history.sent),
            "deliveries": sum(1 for line in self.history.journal if line["k"] == "start"),
            "faults": dict(self.history.faults),
            "history_checks": verdict.history_total,
            "api_checks": verdict.api_total,
            "invariants": dict(verdict.checks),
            "api_invariants": dict(verdict.api_checks),
            "violations": len(verdict.violations),
            "seconds": round(time.monotonic() - self.started, 1),
            **self.figures,
        }
        if verdict.violations:  # the final state, for a post-mortem: the servers are reset next scenario
            ledger = Ledger.read(self.engine)
            dump = {"runs": list(ledger.runs.values()), "events": ledger.events, "journal": self.history.journal}
            (self.log_dir / "ledger.json").write_text(json.dumps(dump, default=str, indent=1))
        shown = "\n  ".join(verdict.violations[:30])
        assert not verdict.violations, (
            f"{len(verdict.violations)} violation(s) of {verdict.history_total} history checks and "
            f"{verdict.api_total} API request checks (logs: {self.log_dir}):\n  {shown}"
        )
        return verdict

    def close(self) -> None:
        fleet.stop_all(self.processes)
        self.recorder.shipper.close()
        self.broker.close()
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()
