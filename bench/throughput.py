"""Throughput of bare Dramatiq vs Dramatiq + Runwatch, side by side, in one run.

    python bench/throughput.py [--messages 20000] [--threads 8] [--rounds 1] [--json out.json]

Per variant and round (variants alternate: bare, runwatch, bare, ...):

1. flush the benchmark Redis DB (only that DB); for Runwatch, drop/create ``runwatch_bench``
   and migrate it;
2. enqueue: ``send()`` N no-op messages from this process (Runwatch: with the recorder
   installed here too, and the final ``recorder.shipper.flush()`` inside the timed span);
3. process: launch ``python -m dramatiq bench_app:setup -p 1 -t T`` only now, and poll every
   20 ms until the queue's message hash is empty (Dramatiq deletes a message from it on ack)
   and, for Runwatch, until ``operation_runs`` holds N completed rows (drained as configured by
   ``--drain``: ``process``, the default, a drainer child of the worker process; or ``thread``).

   boot      = worker launch -> first ack observed (imports, forking, connecting; reported apart)
   processing msg/s = N / (first ack -> last message done), "done" meaning acked for bare and
                      acked AND completed in PostgreSQL for Runwatch
   acks msg/s = N / (first ack -> last ack): the worker alone, without waiting for the ledger
   ledger lag = last ack -> last completed row in PostgreSQL (Runwatch only; part of processing)

4. peak RSS: ``VmHWM`` of the worker child process (the CLI's main process forks it), read just
   before the SIGTERM, and of the drainer process the worker started (``--drain process``);
   then verify (Runwatch: N runs, all completed/succeeded, no rejected events).

The table shows the median of each figure over the rounds; ``--json`` also keeps every round.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import psycopg
import redis

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import bench_app  # noqa: E402

POLL_S = 0.02
DB_NAME = "runwatch_bench"
EVENT_STREAM = "runwatch:events"
T0 = time.perf_counter()


class BenchError(Exception):
    """A phase failed or the recorded results are wrong: the run exits non-zero."""


@dataclass
class Phase:
    variant: str
    round: int
    enqueue_s: float
    boot_s: float
    process_s: float  # first ack -> all done (acked, and for Runwatch also completed in PostgreSQL)
    ack_s: float  # first ack -> last ack (the worker's own speed, ledger not included)
    ledger_lag_s: float | None
    rss_mb: float
    main_rss_mb: float
    drainer_rss_mb: float | None = None


def log(message: str) -> None:
    """Progress on stderr, stamped with the seconds since start."""
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def reset_redis(client: redis.Redis) -> None:
    """Flush the dedicated benchmark DB, refusing to if it holds keys that are not ours."""
    foreign = [k for k in client.scan_iter(count=1000) if not k.startswith((b"bench:", b"runwatch:"))]
    if foreign:
        raise BenchError(f"Redis DB of --redis-url holds foreign keys (e.g. {foreign[0]!r}); pick another DB")
    client.flushdb()


def reset_database(admin_url: str, db_url: str) -> None:
    """Drop and create the benchmark database, then migrate it to head."""
    from runwatch.db import engine_for
    from runwatch.migrate import upgrade

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    upgrade(db_url)
    engine_for(db_url).dispose()


def enqueue(variant: str, redis_url: str, n: int) -> float:
    """Send ``n`` messages; return the seconds taken (Runwatch: including the final flush)."""
    broker, actor, recorder = bench_app.build(variant, redis_url)
    try:
        start = time.perf_counter()
        for i in range(1, n + 1):
            actor.send()
            if i % 5000 == 0:
                log(f"  {variant}: enqueued {i}/{n}")
        if recorder is not None and not recorder.shipper.flush(timeout_seconds=60):
            raise BenchError("the producer's run events did not reach Redis within 60 s")
        return time.perf_counter() - start
    finally:
        if recorder is not None:
            recorder.shipper.close()
        broker.close()


def pending(client: redis.Redis) -> int:
    """Messages not acked yet: queued or in flight (the ack deletes them from the hash)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hlen(f"{bench_app.NAMESPACE}:{bench_app.QUEUE}.msgs")
        pipe.hlen(f"{bench_app.NAMESPACE}:{bench_app.QUEUE}.DQ.msgs")
        return sum(pipe.execute())


def completed_rows(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM operation_runs WHERE status = 'completed'").fetchone()[0]


def wait_until(done, proc: subprocess.Popen, deadline: float, what: str, describe) -> float:
    """Poll ``done()`` every 20 ms; return the time it first held. Fail if the worker dies."""
    last_log = time.perf_counter()
    while not done():
        if proc.poll() is not None:
            raise BenchError(f"the worker exited with code {proc.returncode} while waiting for {what}")
        now = time.perf_counter()
        if now > deadline:
            raise BenchError(f"timed out waiting for {what} ({describe()})")
        if now - last_log >= 2:
            log(f"  waiting for {what}: {describe()}")
            last_log = now
        time.sleep(POLL_S)
    return time.perf_counter()


def worker_rss_mb(pid: int) -> tuple[float, float, float | None]:
    """Peak RSS (VmHWM) in MB of the worker process(es), the CLI's main process, and drainer children."""

    def hwm(p: int) -> float:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise BenchError(f"no VmHWM for pid {p}")

    workers = psutil.Process(pid).children()
    if not workers:
        raise BenchError("the dramatiq CLI has no worker child process")
    drainers = [d for w in workers for d in w.children()]
    drainer = max(hwm(d.pid) for d in drainers) if drainers else None
    return max(hwm(w.pid) for w in workers), hwm(pid), drainer


def stop_worker(proc: subprocess.Popen) -> None:
    """SIGTERM the CLI (it stops its workers) and wait; kill what is left after 60 s."""
    if proc.poll() is not None:
        return
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log("  worker did not stop within 60 s: killing it")
        proc.kill()
        proc.wait()
    for child in children:
        if child.is_running():
            child.kill()


def verify(conn: psycopg.Connection, client: redis.Redis, n: int) -> None:
    """Every message has exactly one run, completed and succeeded; no event was rejected."""
    total, ok = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed' AND outcome = 'succeeded') FROM operation_runs"
    ).fetchone()
    rejected = client.xlen(f"{EVENT_STREAM}:rejected") if client.exists(f"{EVENT_STREAM}:rejected") else 0
    if total != n or ok != n or rejected:
        raise BenchError(f"PostgreSQL holds {total} runs, {ok} completed/succeeded, {rejected} rejected; expected {n}")


def run_phase(variant: str, rnd: int, args: argparse.Namespace, client: redis.Redis, logdir: Path) -> Phase:
    """One variant, one round: reset, enqueue, process, measure, verify."""
    log(f"round {rnd} / {variant}: resetting Redis DB and database {DB_NAME}")
    reset_redis(client)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    env.update(BENCH_VARIANT=variant, BENCH_REDIS_URL=args.redis_url, PYTHONUNBUFFERED="1")
    # NOTE: both variants reset the database, so both enqueue right after the same PostgreSQL
    # work (CREATE DATABASE checkpoints); only the runwatch worker then uses it.
    reset_database(args.pg_admin_url, args.db_url)
    if variant == "runwatch":
        env.update(RUNWATCH_DATABASE_URL=args.db_url, RUNWATCH_DRAIN=args.drain, RUNWATCH_EVENT_STREAM=EVENT_STREAM)
        os.environ.update(RUNWATCH_DATABASE_URL=args.db_url, RUNWATCH_EVENT_STREAM=EVENT_STREAM)
    n = args.messages
    log(f"round {rnd} / {variant}: enqueueing {n} messages")
    enqueue_s = enqueue(variant, args.redis_url, n)
    if pending(client) != n:
        raise BenchError(f"{pending(client)} messages in Redis after enqueueing {n}")
    log(f"round {rnd} / {variant}: enqueued in {enqueue_s:.2f}s ({n / enqueue_s:,.0f} msg/s); starting the worker")

    cmd = [sys.executable, "-m", "dramatiq", "bench_app:setup", "--path", str(BENCH_DIR)]
    cmd += ["-p", "1", "-t", str(args.threads), "-Q", bench_app.QUEUE]
    logfile = logdir / f"worker-{variant}-{rnd}.log"
    pg = psycopg.connect(args.db_url, autocommit=True) if variant == "runwatch" else None
    with open(logfile, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=BENCH_DIR.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = start + args.timeout
        left = lambda: f"{pending(client)} of {n} unacked"  # noqa: E731
        first = wait_until(lambda: pending(client) < n, proc, deadline, "the first ack", left)
        acked = wait_until(lambda: pending(client) == 0, proc, deadline, "all acks", left)
        done, lag = acked, None
        if pg is not None:
            rows = lambda: f"{completed_rows(pg)} of {n} completed in PostgreSQL"  # noqa: E731
            done = wait_until(lambda: completed_rows(pg) >= n, proc, deadline, "the ledger", rows)
            lag = done - acked
        rss, main_rss, drainer_rss = worker_rss_mb(proc.pid)
    except BenchError as exc:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise BenchError(f"{variant}: {exc}\n--- worker log tail ({logfile}) ---\n{tail}") from None
    finally:
        stop_worker(proc)
        if pg is not None:
            pg.close()
    log(f"round {rnd} / {variant}: processed in {done - first:.2f}s after a {first - start:.2f}s boot, worker stopped")
    if variant == "runwatch":
        with psycopg.connect(args.db_url, autocommit=True) as conn:
            verify(conn, client, n)
        log(f"round {rnd} / {variant}: verified {n} runs completed/succeeded in PostgreSQL")
    return Phase(variant, rnd, enqueue_s, first - start, done - first, acked - first, lag, rss, main_rss, drainer_rss)


def summarize(phases: list[Phase], n: int) -> dict[str, dict[str, float | None]]:
    """Median over the rounds of each figure, per variant (rates are per-round N / duration)."""
    out: dict[str, dict[str, float | None]] = {}
    for variant in bench_app.VARIANTS:
        ps = [p for p in phases if p.variant == variant]
        lags = [p.ledger_lag_s for p in ps if p.ledger_lag_s is not None]
        out[variant] = {
            "enqueue_per_s": statistics.median(n / p.enqueue_s for p in ps),
            "processing_per_s": statistics.median(n / p.process_s for p in ps),
            "acks_per_s": statistics.median(n / p.ack_s for p in ps),
            "boot_s": statistics.median(p.boot_s for p in ps),
            "ledger_lag_s": statistics.median(lags) if lags else None,
            "rss_mb": statistics.median(p.rss_mb for p in ps),
            "drainer_rss_mb": statistics.median(d)
            if (d := [p.drainer_rss_mb for p in ps if p.drainer_rss_mb])
            else None,
        }
    return out


def print_table(summary: dict[str, dict[str, float | None]], args: argparse.Namespace) -> None:
    """The comparison table on stdout: medians per variant, then runwatch/bare."""
    bare, rw = summary["bare"], summary["runwatch"]
    print(
        f"\n{args.messages} messages, 1 worker process x {args.threads} threads, {os.cpu_count()} CPUs, "
        f"median of {args.rounds} round(s), RUNWATCH_DRAIN={args.drain}\n"
    )
    print(
        f"{'variant':<15}{'enqueue msg/s':>15}{'processing msg/s':>18}{'(acks msg/s)':>14}{'boot s':>8}"
        f"{'ledger lag s':>14}{'peak RSS MB':>13}{'drainer RSS MB':>16}"
    )
    for name, s in (("bare", bare), ("runwatch", rw)):
        lag = f"{s['ledger_lag_s']:.2f}" if s["ledger_lag_s"] is not None else "-"
        print(
            f"{name:<15}{s['enqueue_per_s']:>15,.0f}{s['processing_per_s']:>18,.0f}{s['acks_per_s']:>14,.0f}"
            f"{s['boot_s']:>8.2f}{lag:>14}{s['rss_mb']:>13.1f}"
            f"{'-' if s['drainer_rss_mb'] is None else format(s['drainer_rss_mb'], '.1f'):>16}"
        )
    pct = {k: f"{100 * rw[k] / bare[k]:.1f}%" for k in ("enqueue_per_s", "processing_per_s", "acks_per_s")}
    print(
        f"{'runwatch/bare':<15}{pct['enqueue_per_s']:>15}{pct['processing_per_s']:>18}{pct['acks_per_s']:>14}"
        f"{'':>22}{rw['rss_mb'] - bare['rss_mb']:>+10.1f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every round and the medians here")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="a DB used by nothing else")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-url", default=f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per processing phase")
    parser.add_argument("--drain", choices=("process", "thread"), default="process", help="RUNWATCH_DRAIN")
    args = parser.parse_args(argv)

    client = redis.Redis.from_url(args.redis_url)
    phases: list[Phase] = []
    try:
        with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as logdir:
            for rnd in range(1, args.rounds + 1):
                for variant in bench_app.VARIANTS:
                    phases.append(run_phase(variant, rnd, args, client, Path(logdir)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            reset_redis(client)
        except (BenchError, redis.RedisError) as exc:
            log(f"could not flush the benchmark Redis DB: {exc}")
    summary = summarize(phases, args.messages)
    print_table(summary, args)
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(
            json.dumps({"config": config, "rounds": [asdict(p) for p in phases], "median": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
