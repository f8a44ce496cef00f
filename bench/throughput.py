"""Cost of Runwatch against bare Dramatiq, side by side in one run: throughput, CPU of every process, memory.

    python bench/throughput.py [--broker redis|rabbitmq] [--scenario backlog|steady|both] [--messages 20000]
                               [-p 1] [-t 8] [--rate 1000 --duration 60] [--prefill-runs 1000000]
                               [--rounds 1] [--job-cpu-us 0] [--json out.json]

The benchmark starts its own PostgreSQL and Redis (``common.private_servers``), so that every CPU
second either server spends is the benchmark's. Variants alternate per round (bare, runwatch, ...).
``--broker rabbitmq`` runs both variants on the machine's RabbitMQ instead (a virtual host of the
benchmark's own; no Redis at all: the private one is stopped), see ``brokers``.

**backlog** (the default): N no-op messages are enqueued first, then ``dramatiq bench_app:setup
-p P -t T`` is launched; we poll every 20 ms until the queue is empty and (Runwatch) PostgreSQL
holds N completed runs.

   boot         = launch -> first ack (imports, forking, connecting)
   processing   = N / (first ack -> last message done; done = acked, and for Runwatch completed in
                  PostgreSQL); ``acks msg/s`` = N / (first ack -> last ack)

**steady**: the worker is launched and warmed up (100 messages), then a producer process sends at
a fixed rate (``--rate`` msg/s for ``--duration`` s) while the worker runs. Ledger lag per run is
``updated_at - completed_at`` (the outcome's timestamp in the worker to the drain transaction that
wrote it), p50/p99 over every run.

**CPU account** (``cpuacct``): CPU seconds of each component over the processing phase (first ack
-> done; steady: producer start -> done), from /proc, counting processes that exit within the
phase (their time lands in their parent's reaped-children time):

   worker    the dramatiq CLI process and its worker processes (hooks, shipper thread, maintenance)
   drainer   Runwatch drainer processes (children of a worker, ``-m runwatch.workers.drain_process_main``)
   postgres  every process of the private PostgreSQL (backends, WAL writer, checkpointer,
             autovacuum), less the benchmark's own polling connection
   redis     the private redis-server (``--broker redis``)
   rabbitmq  the RabbitMQ node (beam.smp and its children; ``--broker rabbitmq``): a shared server,
             so other load on the node during the phase is included (sampled before each phase)
   producer  steady only: the producer process (its Runwatch enqueue hook and shipper included)

plus ``boot`` (launch -> first ack, all components, and the drainer's own boot up to its "drainer
ready" log line, which may end after the first ack: a once-per-host cost, not a per-message one;
the ``+boot`` column adds it back). Memory: the peak RSS (VmHWM) summed over the
worker processes, and over the drainers; "Runwatch adds" = workers(runwatch) - workers(bare) +
drainers. ``--prefill-runs`` seeds the ledger first (``healer.seed``: completed and fresh live
runs with ~2.9 events each) in a template database that every Runwatch round starts from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import bench_app  # noqa: E402
import brokers  # noqa: E402
import cpuacct  # noqa: E402
from common import (  # noqa: E402
    BenchError,
    database_url,
    drop_database,
    log,
    private_servers,
    reset_database,
    wait_until_quiet,
)
from throughput_report import Phase, print_report, print_rounds, summarize  # noqa: E402

POLL_S = 0.02
DB_NAME = "runwatch_bench"
SEED_DB = "runwatch_bench_seed"
EVENT_STREAM = "runwatch:events"
WARMUP = 100


# -- infrastructure ------------------------------------------------------------------------------


@dataclass
class Servers:
    admin_url: str
    db_url: str
    postmaster: int
    broker: brokers.BenchBroker

    def roots(self, **more: int) -> dict[str, int]:
        """The CPU account's components: the servers' process trees, and ``more``."""
        return {**more, "postgres": self.postmaster, self.broker.kind: self.broker.server_pid}


def servers_of(admin_url: str, data_dir: Path, broker: brokers.BenchBroker) -> Servers:
    postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    return Servers(admin_url, database_url(admin_url, DB_NAME), postmaster, broker)


def redis_pid_of(data_dir: Path) -> int:
    return int(json.loads((data_dir / "servers.json").read_text())["redis"]["pid"])


def pending(srv: Servers) -> int:
    """Messages not taken by the worker yet (``brokers``: Redis counts in-flight ones too)."""
    return srv.broker.pending(bench_app.QUEUE)


def completed_rows(conn: psycopg.Connection, since: float) -> int:
    """Runs completed since ``since`` (epoch s): this round's, not the prefilled ones (which the
    workers' retention pass may prune meanwhile). PERF: a range scan of the retention index."""
    query = "SELECT count(*) FROM operation_runs WHERE status = 'completed' AND completed_at >= to_timestamp(%s)"
    return conn.execute(query, (since,)).fetchone()[0]


def wait_until(done, proc: subprocess.Popen, deadline: float, what: str, describe) -> float:
    """Poll ``done()`` every 20 ms; return the time it first held. Fail if the worker dies."""
    last_log = time.perf_counter()
    while not done():
        if proc.poll() is not None:
            raise BenchError(f"the worker exited with code {proc.returncode} while waiting for {what}")
        now = time.perf_counter()
        if now > deadline:
            raise BenchError(f"timed out waiting for {what} ({describe()})")
        if now - last_log >= 5:
            log(f"  waiting for {what}: {describe()}")
            last_log = now
        time.sleep(POLL_S)
    return time.perf_counter()


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


def verify(conn: psycopg.Connection, srv: Servers, n: int) -> None:
    """Every message has exactly one run, completed and succeeded; no event was rejected."""
    # NOTE: the prefilled runs are healer.seed's, with message ids that are md5 hex digests.
    total, ok = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed' AND outcome = 'succeeded') "
        "FROM operation_runs WHERE NOT message_id ~ '^[0-9a-f]{32}$'"
    ).fetchone()
    rejected = srv.broker.rejected(EVENT_STREAM)
    if total != n or ok != n or rejected:
        raise BenchError(f"PostgreSQL holds {total} runs, {ok} completed/succeeded, {rejected} rejected; expected {n}")


def is_drainer(pid: int, component: str) -> str:
    return "drainer" if component == "worker" and "drain_process" in cpuacct.cmdline(pid) else component


def runwatch_env(srv: Servers, args: argparse.Namespace) -> dict[str, str]:
    """The Runwatch settings of both the workers and the producer: nothing else from our environment."""
    env = {"RUNWATCH_DATABASE_URL": srv.db_url, "RUNWATCH_EVENT_STREAM": EVENT_STREAM}
    if srv.broker.kind == "rabbitmq":
        env["RUNWATCH_RABBITMQ_URL"] = srv.broker.url  # NOTE: the bench's vhost, not the default one
    if args.drain:
        env["RUNWATCH_DRAIN"] = args.drain
    return env


def worker_env(variant: str, srv: Servers, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    env.update(BENCH_VARIANT=variant, BENCH_BROKER=srv.broker.kind, BENCH_BROKER_URL=srv.broker.url)
    env["BENCH_JOB_CPU_US"] = str(args.job_cpu_us)
    env["PYTHONUNBUFFERED"] = "1"
    if variant == "runwatch":
        env.update(runwatch_env(srv, args))
    return env


def launch(variant: str, srv: Servers, args: argparse.Namespace, logfile: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dramatiq", "bench_app:setup", "--path", str(BENCH_DIR)]
    cmd += ["-p", str(args.processes), "-t", str(args.threads), "-Q", bench_app.QUEUE]
    with open(logfile, "wb") as out:
        return subprocess.Popen(
            cmd, cwd=BENCH_DIR.parent, env=worker_env(variant, srv, args), stdout=out, stderr=subprocess.STDOUT
        )


def memory(snapshot: cpuacct.Snapshot, cli_pid: int) -> tuple[float, float, int]:
    """(peak RSS of the worker processes, of the drainers, number of drainers), MB."""
    workers = [p for p in snapshot.pids.get("worker", ()) if p != cli_pid]
    drainers = list(snapshot.pids.get("drainer", ()))
    return cpuacct.peak_rss_mb(workers), cpuacct.peak_rss_mb(drainers), len(drainers)


def prepare(variant: str, srv: Servers, args: argparse.Namespace) -> None:
    srv.broker.reset(bench_app.QUEUE, EVENT_STREAM)
    # NOTE: both variants reset the database, so both start right after the same PostgreSQL work.
    reset_database(srv.admin_url, srv.db_url, template=SEED_DB if args.prefill_runs else None)
    if variant == "runwatch":
        for name in [k for k in os.environ if k.startswith("RUNWATCH_")]:
            del os.environ[name]
        os.environ.update(runwatch_env(srv, args))


def after_stop(srv: Servers) -> None:
    """The worker is gone: no message may be left (on RabbitMQ an unacked one is back in the queue)."""
    brokers.check_server(srv.broker)
    if left := pending(srv):
        raise BenchError(f"{left} messages left in the queue after the worker stopped")


# -- scenarios -----------------------------------------------------------------------------------


def enqueue(variant: str, srv: Servers, n: int) -> float:
    """Send ``n`` messages; return the seconds taken (Runwatch: including the final flush)."""
    broker, actor, recorder = bench_app.build(variant, srv.broker.kind, srv.broker.url)
    try:
        start = time.perf_counter()
        for _ in range(n):
            actor.send()
        if recorder is not None and not recorder.shipper.flush(timeout_seconds=60):
            raise BenchError(f"the producer's run events did not reach {srv.broker.kind} within 60 s")
        return time.perf_counter() - start
    finally:
        if recorder is not None:
            recorder.shipper.close()
        broker.close()


def run_backlog(variant: str, rnd: int, args: argparse.Namespace, srv: Servers, logdir: Path) -> Phase:
    prepare(variant, srv, args)
    n = args.messages
    servers_acct = cpuacct.Account(srv.roots())
    since = time.time()
    before = servers_acct.snapshot()
    cpu0 = os.times()
    enqueue_s = enqueue(variant, srv, n)
    cpu1 = os.times()
    enqueue_cpu = servers_acct.snapshot().minus(before)
    enqueue_cpu["producer"] = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    if pending(srv) != n:
        raise BenchError(f"{pending(srv)} messages in {srv.broker.kind} after enqueueing {n}")
    idle = brokers.idle_cpu_per_s(srv.broker)
    log(f"round {rnd} backlog/{variant}: enqueued {n} in {enqueue_s:.2f}s; starting the worker")

    pg = psycopg.connect(srv.db_url, autocommit=True)
    poller = pg.info.backend_pid
    logfile = logdir / f"worker-backlog-{variant}-{rnd}.log"
    start = time.perf_counter()
    proc = launch(variant, srv, args, logfile)
    acct = cpuacct.Account(srv.roots(worker=proc.pid), is_drainer, exclude={poller})
    snap0 = acct.snapshot()
    try:
        deadline = start + args.timeout
        left = lambda: f"{pending(srv)} of {n} unacked"  # noqa: E731
        first = wait_until(lambda: pending(srv) < n, proc, deadline, "the first ack", left)
        snap1 = acct.snapshot()
        acked = wait_until(lambda: pending(srv) == 0, proc, deadline, "all acks", left)
        done, lag = acked, None
        if variant == "runwatch":
            rows = lambda: f"{completed_rows(pg, since)} of {n} completed in PostgreSQL"  # noqa: E731
            done = wait_until(lambda: completed_rows(pg, since) >= n, proc, deadline, "the ledger", rows)
            lag = done - acked
        snap2 = acct.snapshot()
        rss, drainer_rss, drainers = memory(snap2, proc.pid)
    except BenchError as exc:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise BenchError(f"{variant}: {exc}\n--- worker log tail ({logfile}) ---\n{tail}") from None
    finally:
        stop_worker(proc)
        pg.close()
    after_stop(srv)
    boot, cpu = snap1.minus(snap0), snap2.minus(snap1)
    boot_cpu = sum(boot.values()) + drainer_boot_in_phase(logfile, boot, cpu)
    log(f"round {rnd} backlog/{variant}: processed in {done - first:.2f}s after a {first - start:.2f}s boot")
    if variant == "runwatch":
        with psycopg.connect(srv.db_url, autocommit=True) as conn:
            verify(conn, srv, n)
    return Phase(
        "backlog", variant, rnd, n, first - start, done - first, acked - first, lag, cpu, boot_cpu,
        enqueue_s, enqueue_cpu, worker_rss_mb=rss, drainer_rss_mb=drainer_rss, drainers=drainers,
        broker_idle_cpu_per_s=idle, load1=os.getloadavg()[0],
    )  # fmt: skip


#: The drainer's line once it is ready to read (``workers.drain_process.main``), with its CPU so far.
_DRAINER_READY = re.compile(rb"drainer ready: .*? booted on ([0-9.]+) s of CPU")


def drainer_boot_in_phase(logfile: Path, boot: dict[str, float], cpu: dict[str, float]) -> float:
    """Move the drainer's own boot (imports, connections: ~1 s of CPU once per host) out of the
    processing phase's account, where it lands when the worker acks its first message before the
    drainer is ready; return the CPU seconds moved, which the caller adds to the boot column.
    Only the first drainer's boot: a drainer started again later is a cost of the phase."""
    ready = _DRAINER_READY.search(logfile.read_bytes()) if logfile.exists() else None
    if ready is None or "drainer" not in cpu:
        return 0.0
    moved = min(cpu["drainer"], max(0.0, float(ready.group(1)) - boot.get("drainer", 0.0)))
    cpu["drainer"] -= moved
    return moved


def produce(variant: str, kind: str, url: str, rate: float, seconds: float) -> None:
    """The steady scenario's producer (a process of its own, so its CPU is counted apart)."""
    broker, actor, recorder = bench_app.build(variant, kind, url)
    total, sent, start = int(rate * seconds), 0, time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            actor.send()
            sent += 1
        time.sleep(0.005)
    if recorder is not None:
        recorder.shipper.close(timeout_seconds=60)
    broker.close()


def wait_producer(producer: subprocess.Popen, worker: subprocess.Popen) -> tuple[float, int]:
    """Wait for the producer; return (its CPU seconds, exact, from wait4's rusage; its exit code)."""
    while True:
        pid, status, usage = os.wait4(producer.pid, os.WNOHANG)
        if pid:
            producer.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime, producer.returncode
        if worker.poll() is not None:
            raise BenchError(f"the worker exited with code {worker.returncode} while the producer ran")
        time.sleep(0.1)


def run_steady(variant: str, rnd: int, args: argparse.Namespace, srv: Servers, logdir: Path) -> Phase:
    prepare(variant, srv, args)
    n = int(args.rate * args.duration)
    idle = brokers.idle_cpu_per_s(srv.broker)
    pg = psycopg.connect(srv.db_url, autocommit=True)
    poller = pg.info.backend_pid
    logfile = logdir / f"worker-steady-{variant}-{rnd}.log"
    start = time.perf_counter()
    proc = launch(variant, srv, args, logfile)
    acct = cpuacct.Account(srv.roots(worker=proc.pid), is_drainer, exclude={poller})
    snap0 = acct.snapshot()
    producer = None
    try:
        deadline = start + args.timeout + args.duration
        since = time.time()
        enqueue(variant, srv, WARMUP)
        left = lambda: f"{pending(srv)} unacked"  # noqa: E731
        first = wait_until(lambda: pending(srv) < WARMUP, proc, deadline, "the first ack", left)
        wait_until(lambda: pending(srv) == 0, proc, deadline, "the warm-up", left)
        target = WARMUP
        if variant == "runwatch":
            wait_until(lambda: completed_rows(pg, since) >= target, proc, deadline, "the warm-up in PostgreSQL", left)
        snap1 = acct.snapshot()
        t0 = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__)), "--produce", variant, srv.broker.kind, srv.broker.url]
        producer = subprocess.Popen([*cmd, str(args.rate), str(args.duration)], env=worker_env(variant, srv, args))
        producer_cpu, code = wait_producer(producer, proc)
        if code:
            raise BenchError(f"the producer exited with {code}")
        acked = wait_until(lambda: pending(srv) == 0, proc, deadline, "all acks", left)
        done = acked
        if variant == "runwatch":
            target += n
            rows = lambda: f"{completed_rows(pg, since)} of {target} completed in PostgreSQL"  # noqa: E731
            done = wait_until(lambda: completed_rows(pg, since) >= target, proc, deadline, "the ledger", rows)
        snap2 = acct.snapshot()
        rss, drainer_rss, drainers = memory(snap2, proc.pid)
    except BenchError as exc:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise BenchError(f"{variant}: {exc}\n--- worker log tail ({logfile}) ---\n{tail}") from None
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        stop_worker(proc)
    after_stop(srv)
    cpu = snap2.minus(snap1)
    cpu["producer"] = producer_cpu
    p50 = p99 = None
    if variant == "runwatch":
        p50, p99 = pg.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x), percentile_cont(0.99) WITHIN GROUP (ORDER BY x) "
            "FROM (SELECT extract(epoch FROM updated_at - completed_at) * 1000 AS x FROM operation_runs "
            "WHERE NOT message_id ~ '^[0-9a-f]{32}$') s"
        ).fetchone()
        verify(pg, srv, n + WARMUP)
    pg.close()
    after = done - t0 - args.duration
    log(f"round {rnd} steady/{variant}: {n} messages at {args.rate}/s, all done {after:.2f}s after the producer's end")
    return Phase(
        "steady", variant, rnd, n, first - start, done - t0, acked - t0, None, cpu, sum(snap1.minus(snap0).values()),
        lag_p50_ms=p50, lag_p99_ms=p99, worker_rss_mb=rss, drainer_rss_mb=drainer_rss, drainers=drainers,
        broker_idle_cpu_per_s=idle, load1=os.getloadavg()[0],
    )  # fmt: skip


def prefill(srv: Servers, runs: int) -> int:
    """Seed the template database with ``runs`` runs; return how many are completed."""
    import healer

    return healer.seed_template(srv.admin_url, SEED_DB, runs)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--produce":
        _, _, variant, kind, url, rate, seconds = sys.argv
        produce(variant, kind, url, float(rate), float(seconds))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", choices=brokers.KINDS, default="redis", help="both variants' broker")
    parser.add_argument("--scenario", choices=("backlog", "steady", "both"), default="backlog")
    parser.add_argument("--messages", type=int, default=20_000, help="backlog: messages enqueued first")
    parser.add_argument("-p", "--processes", type=int, default=1, help="dramatiq worker processes")
    parser.add_argument("-t", "--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--rate", type=float, default=1000, help="steady: messages per second")
    parser.add_argument("--duration", type=float, default=60, help="steady: seconds of sending")
    parser.add_argument("--prefill-runs", type=int, default=0, help="runs in the ledger before each round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--job-cpu-us", type=int, default=0, help="CPU each job burns on its thread (default 0: no-op jobs)"
    )
    parser.add_argument("--drain", choices=("process", "thread"), help="RUNWATCH_DRAIN (default: Runwatch's)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per processing phase")
    parser.add_argument("--json", type=Path, help="write every round and the medians here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # NOTE: so the private servers are stopped
    scenarios = ("backlog", "steady") if args.scenario == "both" else (args.scenario,)
    phases: list[Phase] = []
    try:
        with contextlib.ExitStack() as stack:
            # NOTE: on RabbitMQ no Redis runs at all: the private one is stopped before the first round.
            admin_url, redis_url, data_dir = stack.enter_context(private_servers(redis=args.broker == "redis"))
            logdir = stack.enter_context(tempfile.TemporaryDirectory())
            redis_pid = redis_pid_of(data_dir) if args.broker == "redis" else 0
            broker = stack.enter_context(brokers.opened(args.broker, redis_url, redis_pid, bench_app.NAMESPACE))
            srv = servers_of(admin_url, data_dir, broker)
            if args.prefill_runs:
                prefill(srv, args.prefill_runs)
            for rnd in range(1, args.rounds + 1):
                for scenario in scenarios:
                    run = run_backlog if scenario == "backlog" else run_steady
                    for variant in bench_app.VARIANTS:
                        wait_until_quiet()  # NOTE: each phase starts on a quiet machine, the first one too
                        phases.append(run(variant, rnd, args, srv, Path(logdir)))
            drop_database(srv.admin_url, DB_NAME)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = summarize(phases)
    print_report(summary, args)
    print_rounds(phases)
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(
            json.dumps({"config": config, "rounds": [asdict(p) for p in phases], "summary": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
