"""CPU of draining one delivery's events into the ledger: the drainer's and PostgreSQL's, per message.

    python bench/drain.py [--messages 20000] [--rounds 3] [--threads 8] [--batch 50] [--profile drain.pstats]

What the throughput benchmark's backlog phase drains, without the worker around it: N messages are
sent through a recorded broker and their enqueue events drained first (the runs are queued rows,
as in the benchmark); then each message's delivery runs through the recorder's hooks
(before_process_message, after_process_message, after_ack) and the drainer applies what the
shipper wrote. Measured for that second drain only: the drainer's CPU (``time.process_time``, this
process does nothing else meanwhile) and the CPU of every process of the private PostgreSQL, from
/proc. Both servers are private (``common.private_servers``). ``--profile`` writes a cProfile of
the measured drains, in CPU time (cProfile slows the drainer: read its proportions, not its times).

Ablations, to size a change before building it:

- ``--alter SQL`` runs SQL on each round's fresh ledger before anything is sent, e.g.
  ``--alter "DROP TRIGGER runwatch_guard_run ON operation_runs"``: what that trigger costs.
- ``--prefill-runs N``: every round starts from a copy of a ledger seeded once with N runs and
  their events (``healer.seed_template``, as ``throughput.py --prefill-runs``): index maintenance
  costs more in indexes of a million entries than in empty ones.
- ``--thin-pipe`` drains with a pipe instead of the drainer: read the entries, join their payloads,
  one statement that parses every event (``json_to_recordset``) and writes nothing, acknowledge.
  The floor of a drainer that would leave the fold to PostgreSQL, before the fold's own cost.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import healer
import redis
from common import database_url, log, private_servers, reset_database
from cpuacct import Account
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from runwatch.bridge import replies
from runwatch.workers.drainer import Drainer, DrainResult
from runwatch.workers.redis_source import GROUP, RedisEventSource
from sqlalchemy import text

from runwatch import workers
from runwatch.db import engine_for
from runwatch.settings import Settings

STREAM = "drainbench:runwatch:events"
SEED_DB = "drainbench_seed"
#: What --thin-pipe asks PostgreSQL: parse every event's fields, write nothing.
THIN_PIPE_PARSE = text("""
SELECT count(*) FROM json_to_recordset(CAST(:events AS json)) AS e(
    id text, kind text, message_id text, at double precision, meta json, start json, outcome text,
    summary json, delay_ms bigint, redis_message_id text)
""")


@dataclass(frozen=True)
class Variant:
    """How a round drains: the drainer over the ledger as migrated, or an ablation of it."""

    alter: str | None = None
    thin_pipe: bool = False
    template: str | None = None  # a prefilled ledger each round starts from a copy of


def one_round(
    pg_admin: str, redis_url: str, n: int, profiler: cProfile.Profile | None, batch: int, threads: int, variant: Variant
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(drainer, postgres) us per message for the enqueue events, then for the deliveries."""
    db_url = database_url(pg_admin, "drainbench")
    reset_database(pg_admin, db_url, template=variant.template)
    broker = RedisBroker(url=redis_url, namespace="drainbench")
    settings = Settings(
        event_stream=STREAM, drain_mode="external", heal_interval_seconds=0, database_url=db_url, drain_batch=batch
    )
    recorder = workers.install(broker, settings=settings)
    actor = dramatiq.actor(lambda: None, broker=broker, queue_name="drainbench", actor_name="noop")
    client = redis.Redis.from_url(redis_url)
    client.delete(STREAM)
    engine = engine_for(db_url)
    if variant.alter:
        with engine.begin() as conn:
            conn.execute(text(variant.alter))
    drainer = Drainer.from_settings(settings, client, engine)
    drain = thin_pipe if variant.thin_pipe else Drainer.drain_until_empty
    try:
        messages = [actor.send() for _ in range(n)]
        recorder.shipper.flush()
        log(f"{n:,} messages sent; draining their enqueue events")
        account = Account({"postgres": postgres_pid(pg_admin)})
        enqueues = measured(drain, drainer, account, n, profiler)  # the queued rows, as in the benchmark's backlog
        deliver(broker, recorder, messages, threads)
        log(f"{n:,} deliveries recorded; draining them")
        return enqueues, measured(drain, drainer, account, n, profiler)
    finally:
        recorder.shipper.close()
        client.delete(STREAM)
        broker.flush_all()
        broker.close()
        engine.dispose()


def measured(
    drain: Callable[[Drainer], Any], drainer: Drainer, account: Account, n: int, profiler: cProfile.Profile | None
) -> tuple[float, float]:
    """Drain everything; the drainer's and PostgreSQL's CPU, in us per message."""
    pg0, cpu0 = account.snapshot(), time.process_time()
    if profiler is not None:
        profiler.enable()
    drained = drain(drainer)
    if profiler is not None:
        profiler.disable()
    cpu, pg = time.process_time() - cpu0, account.snapshot().minus(pg0)["postgres"]
    if drained.events < n:
        raise SystemExit(f"drained {drained.events} events for {n} messages")
    return 1e6 * cpu / n, 1e6 * pg / n


def thin_pipe(drainer: Drainer) -> DrainResult:
    """--thin-pipe: what the drainer's source holds, through THIN_PIPE_PARSE, batch by batch, acknowledged."""
    source = drainer.source
    assert isinstance(source, RedisEventSource)
    client, engine, result = source.client, drainer._engine, DrainResult()
    with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: made by an earlier drain
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    while True:
        reply = client.xreadgroup(GROUP, "thin-pipe", {STREAM: ">"}, count=drainer._batch)
        entries = replies.read_entries(reply)
        if not entries:
            return result
        # NOTE: each payload is a JSON array of events: joined into one array without decoding it.
        events = b"[" + b",".join(fields[b"e"][1:-1] for _, fields in entries) + b"]"
        with engine.begin() as conn:
            result.events += conn.execute(THIN_PIPE_PARSE, {"events": events.decode()}).scalar_one()
        ids = [entry_id for entry_id, _ in entries]
        with client.pipeline(transaction=False) as pipe:
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)
            pipe.execute()


def deliver(broker: RedisBroker, recorder: workers.Recorder, messages: list, threads: int) -> None:
    """Each message's delivery through the hooks, from ``threads`` threads as a worker runs them: the
    shipper then batches what arrives together, as it does in a worker."""

    def work(mine: list) -> None:
        for message in mine:
            proxy = MessageProxy(message)
            recorder.before_process_message(broker, proxy)
            recorder.after_process_message(broker, proxy, result=None)
            recorder.after_ack(broker, proxy)

    pool = [threading.Thread(target=work, args=(messages[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    recorder.shipper.flush()


def postgres_pid(pg_admin: str) -> int:
    import psycopg
    from common import libpq_url

    with psycopg.connect(libpq_url(pg_admin)) as conn:
        directory = conn.execute("SHOW data_directory").fetchone()[0]
    with open(f"{directory}/postmaster.pid") as f:
        return int(f.readline())


def _format(enqueues: tuple[float, float], deliveries: tuple[float, float]) -> str:
    total = (enqueues[0] + deliveries[0], enqueues[1] + deliveries[1])
    return "; ".join(
        f"{name}: drainer {d:.1f}, postgres {pg:.1f} us/msg"
        for name, (d, pg) in (("enqueues", enqueues), ("deliveries", deliveries), ("both", total))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=Settings().drain_batch, help="entries per drain transaction")
    parser.add_argument("--threads", type=int, default=8, help="worker threads running the hooks")
    parser.add_argument("--profile", help="write a cProfile of the measured drains here")
    parser.add_argument("--alter", help="SQL run on each round's fresh ledger first (an ablation)")
    parser.add_argument("--thin-pipe", action="store_true", help="drain through a pipe that only parses (a floor)")
    parser.add_argument("--prefill-runs", type=int, default=0, help="runs in the ledger before each round")
    args = parser.parse_args()
    variant = Variant(alter=args.alter, thin_pipe=args.thin_pipe, template=SEED_DB if args.prefill_runs else None)
    profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waits
    with private_servers() as (pg_admin, redis_url, _):
        if args.prefill_runs:
            healer.seed_template(pg_admin, SEED_DB, args.prefill_runs)
        rounds = []
        for i in range(args.rounds):
            enqueues, deliveries = one_round(
                pg_admin, redis_url, args.messages, profiler, args.batch, args.threads, variant
            )
            log(f"round {i + 1}: {_format(enqueues, deliveries)}")
            rounds.append((enqueues, deliveries))
    median = [(statistics.median(r[p][0] for r in rounds), statistics.median(r[p][1] for r in rounds)) for p in (0, 1)]
    print(f"median of {args.rounds}: {_format(*median)}")
    if profiler is not None:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
