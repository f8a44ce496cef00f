"""The throughput benchmark's results: one ``Phase`` per variant, scenario and round; medians; the printed tables.

Ratios are Runwatch / bare. A component ratio is shown only where bare spends at least
``MIN_RATIO_BASE_US`` per message in it (bare Dramatiq uses no drainer and almost no PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field

import brokers

COMPONENTS = ("worker", "drainer", "postgres", *brokers.KINDS, "producer")
VARIANTS = ("bare", "runwatch")  # bench_app.VARIANTS (not imported here: it imports dramatiq)
MIN_RATIO_BASE_US = 5.0


@dataclass
class Phase:
    scenario: str
    variant: str
    round: int
    messages: int
    boot_s: float
    process_s: float  # first ack (steady: producer start) -> all done
    ack_s: float  # first ack -> last ack
    ledger_lag_s: float | None  # backlog: last ack -> last run in PostgreSQL
    cpu_s: dict[str, float]  # per component, over the processing phase
    boot_cpu_s: float
    enqueue_s: float | None = None
    enqueue_cpu_s: dict[str, float] = field(default_factory=dict)
    lag_p50_ms: float | None = None  # steady only
    lag_p99_ms: float | None = None
    worker_rss_mb: float = 0.0
    drainer_rss_mb: float = 0.0
    drainers: int = 0
    broker_idle_cpu_per_s: float = 0.0  # the broker server's CPU s/s just before the phase
    load1: float = 0.0  # the 1-minute load average at the phase's end


def med(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(phases: list[Phase]) -> dict[str, dict[str, dict[str, float | None]]]:
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for scenario in sorted({p.scenario for p in phases}):
        out[scenario] = {}
        for variant in VARIANTS:
            ps = [p for p in phases if p.scenario == scenario and p.variant == variant]
            if not ps:
                continue
            s: dict[str, float | None] = {
                "processing_per_s": med([p.messages / p.process_s for p in ps]),
                "acks_per_s": med([p.messages / p.ack_s for p in ps]),
                "boot_s": med([p.boot_s for p in ps]),
                "ledger_lag_s": med([p.ledger_lag_s for p in ps]),
                "lag_p50_ms": med([p.lag_p50_ms for p in ps]),
                "lag_p99_ms": med([p.lag_p99_ms for p in ps]),
                "worker_rss_mb": med([p.worker_rss_mb for p in ps]),
                "drainer_rss_mb": med([p.drainer_rss_mb for p in ps]),
                "drainers": med([p.drainers for p in ps]),
                "boot_cpu_s": med([p.boot_cpu_s for p in ps]),
                "broker_idle_cpu_per_s": med([p.broker_idle_cpu_per_s for p in ps]),
                "load1": med([p.load1 for p in ps]),
            }
            for c in COMPONENTS:
                s[f"us_{c}"] = med([1e6 * p.cpu_s.get(c, 0.0) / p.messages for p in ps])
            # NOTE: the broker server's CPU it would have spent anyway over the phase (other load on a
            # shared server): its rate just before the phase times the phase's length.
            s["us_broker_background"] = med([1e6 * p.broker_idle_cpu_per_s * p.process_s / p.messages for p in ps])
            s["us_total"] = med([1e6 * sum(p.cpu_s.values()) / p.messages for p in ps])
            s["us_total_with_boot"] = med([1e6 * (sum(p.cpu_s.values()) + p.boot_cpu_s) / p.messages for p in ps])
            if ps[0].enqueue_s is not None:
                s["enqueue_per_s"] = med([p.messages / p.enqueue_s for p in ps if p.enqueue_s])
                for c in ("producer", *brokers.KINDS, "postgres"):
                    s[f"enqueue_us_{c}"] = med([1e6 * p.enqueue_cpu_s.get(c, 0.0) / p.messages for p in ps])
            out[scenario][variant] = s
    return out


def print_report(summary: dict, args: argparse.Namespace) -> None:
    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    shown = [c for c in COMPONENTS if c not in brokers.KINDS or c == args.broker]
    print(
        f"\n{args.broker} broker, {args.processes} worker process(es) x {args.threads} threads, {os.cpu_count()} CPUs, "
        f"median of {args.rounds} round(s), ledger prefilled with {args.prefill_runs:,} runs, "
        + (f"jobs of {args.job_cpu_us:,} us of CPU" if args.job_cpu_us else "no-op jobs")
    )
    for scenario, variants in summary.items():
        what = (
            f"{args.messages:,} messages enqueued first"
            if scenario == "backlog"
            else (f"{args.rate:,.0f} msg/s for {args.duration:.0f} s")
        )
        print(f"\n== {scenario}: {what}\n")
        head = f"{'CPU us/msg':<14}" + "".join(f"{c:>10}" for c in shown) + f"{'total':>10}{'+boot':>10}"
        print(head)
        for variant, s in variants.items():
            cells = "".join(f"{fmt(s[f'us_{c}'], ',.0f'):>10}" for c in shown)
            print(f"{variant:<14}{cells}{fmt(s['us_total'], ',.0f'):>10}{fmt(s['us_total_with_boot'], ',.0f'):>10}")
        bare, rw = variants.get("bare"), variants.get("runwatch")
        if bare and rw:
            print(f"{'runwatch/bare':<14}" + "".join(f"{ratio(rw[f'us_{c}'], bare[f'us_{c}']):>10}" for c in shown)
                  + f"{rw['us_total'] / bare['us_total']:>10.2f}"
                  f"{rw['us_total_with_boot'] / bare['us_total_with_boot']:>10.2f}")  # fmt: skip
        print(f"\n{'variant':<14}{'msg/s':>10}{'acks/s':>10}{'boot s':>8}{'lag s':>8}{'lag p50':>9}{'lag p99':>9}"
              f"{'worker MB':>11}{'drainers':>10}{'drainer MB':>12}")  # fmt: skip
        for variant, s in variants.items():
            print(
                f"{variant:<14}{fmt(s['processing_per_s'], ',.0f'):>10}{fmt(s['acks_per_s'], ',.0f'):>10}"
                f"{fmt(s['boot_s'], '.2f'):>8}{fmt(s['ledger_lag_s'], '.2f'):>8}{fmt(s['lag_p50_ms'], '.0f'):>9}"
                f"{fmt(s['lag_p99_ms'], '.0f'):>9}{fmt(s['worker_rss_mb'], '.1f'):>11}{fmt(s['drainers'], '.0f'):>10}"
                f"{fmt(s['drainer_rss_mb'], '.1f'):>12}"
            )
        if bare and rw:
            adds = rw["worker_rss_mb"] - bare["worker_rss_mb"] + (rw["drainer_rss_mb"] or 0)
            print(f"{'runwatch/bare':<14}{100 * rw['processing_per_s'] / bare['processing_per_s']:>9.1f}%"
                  f"{100 * rw['acks_per_s'] / bare['acks_per_s']:>9.1f}%   Runwatch adds {adds:.1f} MB "
                  f"(workers {rw['worker_rss_mb'] - bare['worker_rss_mb']:+.1f}, "
                  f"drainers {rw['drainer_rss_mb']:.1f})")  # fmt: skip
        if scenario == "backlog" and bare and rw:
            print(f"enqueue msg/s: bare {bare['enqueue_per_s']:,.0f}, runwatch {rw['enqueue_per_s']:,.0f} "
                  f"({100 * rw['enqueue_per_s'] / bare['enqueue_per_s']:.1f}%); producer CPU us/msg "
                  f"{bare['enqueue_us_producer']:.0f} / {rw['enqueue_us_producer']:.0f}, {args.broker} "
                  f"{bare[f'enqueue_us_{args.broker}']:.0f} / {rw[f'enqueue_us_{args.broker}']:.0f}")  # fmt: skip
        if bare and rw and args.broker == "rabbitmq":
            background = f"bare {bare['us_broker_background']:.0f}, runwatch {rw['us_broker_background']:.0f}"
            print(f"of the rabbitmq column, the node's background (its CPU rate just before the phase x the "
                  f"phase's length): {background}")  # fmt: skip
        loads = "/".join(fmt(variants[v]["load1"], ".2f") for v in variants)
        idles = "/".join(fmt(1000 * (variants[v]["broker_idle_cpu_per_s"] or 0), ".0f") for v in variants)
        print(f"load average (1 min) at the phases' end: {loads}; {args.broker} server CPU just before the phases "
              f"(other load on it): {idles} ms/s")  # fmt: skip


def print_rounds(phases: list[Phase]) -> None:
    """Each round's total CPU ratio and throughput, so that a median never hides the spread."""
    for scenario in sorted({p.scenario for p in phases}):
        pairs = []
        for rnd in sorted({p.round for p in phases}):
            by = {p.variant: p for p in phases if p.scenario == scenario and p.round == rnd}
            if set(VARIANTS) <= by.keys():
                bare, rw = by["bare"], by["runwatch"]
                cpu = sum(rw.cpu_s.values()) / sum(bare.cpu_s.values())
                pairs.append(f"{cpu:.2f}x ({100 * bare.process_s / rw.process_s:.1f}%)")
        if len(pairs) > 1:
            print(f"per round, {scenario}: total CPU runwatch/bare (throughput): {', '.join(pairs)}")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b is not None and b >= MIN_RATIO_BASE_US else "-"
