"""View models: what a template shows, prepared from ledger rows (templates stay dumb)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from runwatch.lifecycle import Freshness

FRESHNESS_ORDER = [f.value for f in Freshness]
#: Types drawn on the overview's chart (the busiest ones); the table below it lists all.
MAX_CHART_TYPES = 6
CHART_WIDTH, CHART_HEIGHT, BAR_GAP = 480, 80, 2


def state_table(by_state: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by type (rows) and freshness (columns), with totals."""
    cells: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FRESHNESS_ORDER, 0))
    for row in by_state:
        cells[row["type"]][row["freshness"]] += row["n"]
    totals = {f: sum(c[f] for c in cells.values()) for f in FRESHNESS_ORDER}
    rows = [{"type": t, "counts": c, "total": sum(c.values())} for t, c in sorted(cells.items())]
    return {"columns": FRESHNESS_ORDER, "rows": rows, "totals": totals, "total": sum(totals.values())}


def hourly_chart(per_hour: list[dict[str, Any]], now: datetime, hours: int) -> list[dict[str, Any]]:
    """One bar chart per busy type: finished runs per hour, the failed part drawn apart, as SVG geometry."""
    last = int(now.timestamp()) // 3600 * 3600
    slots = [last - 3600 * (hours - 1 - i) for i in range(hours)]
    series: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for row in per_hour:
        series[row["type"]][int(row["hour"])] = (row["finished"], row["failed"])
    busiest = sorted(series, key=lambda t: (-sum(f for f, _ in series[t].values()), t))[:MAX_CHART_TYPES]
    peak = max((f for t in busiest for f, _ in series[t].values()), default=0) or 1
    width = CHART_WIDTH // hours
    charts = []
    for type_ in busiest:
        bars, finished_total, failed_total = [], 0, 0
        for i, slot in enumerate(slots):
            finished, failed = series[type_].get(slot, (0, 0))
            finished_total, failed_total = finished_total + finished, failed_total + failed
            height = round(finished / peak * CHART_HEIGHT)
            failed_height = round(failed / peak * CHART_HEIGHT)
            rate = f"{failed / finished:.0%}" if finished else "—"
            bars.append({
                "x": i * width, "width": width - BAR_GAP, "y": CHART_HEIGHT - height, "height": height,
                "failed_y": CHART_HEIGHT - failed_height, "failed_height": failed_height,
                "hour": datetime.fromtimestamp(slot, tz=now.tzinfo), "finished": finished, "failed": failed,
                "rate": rate,
            })  # fmt: skip
        rate = f"{failed_total / finished_total:.1%}" if finished_total else "—"
        charts.append({"type": type_, "bars": bars, "finished": finished_total, "failed": failed_total, "rate": rate})
    return charts


#: What each healer verdict means for an operator, by the ``why`` the healer wrote.
_WHY = {
    "backlog": "the broker still holds the message: it is backlog, not lost",
    "requeued": "the message is back in the broker, awaiting redelivery",
    "dead_letter_fresh": "dead-lettered moments ago: the failure callback may still report it",
    "retry_waiting": "a retry waits in a live worker's prefetch and has not started",
    "worker_alive": "slow, not dead: its worker still heartbeats (healed only past its time limit)",
}


def why_not_healed(row: dict[str, Any], now: datetime, last_pass: dict[str, Any] | None) -> dict[str, Any]:
    """The console's ``runwatch heal --explain``, from the ledger alone (the API reads no broker)."""
    if row["status"] == "completed":
        by = f"reconciled by {row['reconciliation_source']}" if row["reconciled"] else "completed by the job itself"
        return {"headline": f"{by}; the healer never touches terminal runs", "live": False}
    stale_at: datetime | None = row["stale_at"]
    note = row.get("healer_note") or {}
    out: dict[str, Any] = {"live": True, "stale_at": stale_at, "checked_at": row["healer_checked_at"], "note": note}
    if stale_at is not None and stale_at > now:
        out["headline"] = (
            f"not stale yet: its deadline is in {(stale_at - now).total_seconds():.0f} s "
            f"(threshold {row['threshold_seconds']} s from {row['threshold_source']}); progress reports push it back"
        )
    elif row["healer_checked_at"] is None:
        when = f"its last pass finished {last_pass['age_seconds']:.0f} s ago" if last_pass else "no pass recorded yet"
        out["headline"] = f"past its deadline; the healer has not looked at it yet ({when})"
    else:
        why = note.get("why") if isinstance(note, dict) else None
        out["headline"] = "past its deadline, left alone: " + _WHY.get(
            str(why), str(note.get("note", why or "see below"))
        )
    return out


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events oldest first, each with a readable label; unknown kinds (operator actions) show as-is."""
    labels = {
        "queued": "enqueued", "enqueued": "enqueued", "started": "started", "progress": "progress",
        "retry": "retry scheduled", "failed_attempt": "attempt failed", "completed": "completed",
        "dead_lettered": "dead-lettered", "reconciled": "reconciled",
    }  # fmt: skip
    out = []
    for e in events:
        details = e.get("details") or {}
        error = details.get("error") or details.get("last_error") if isinstance(details, dict) else None
        label = labels.get(e["kind"], e["kind"].replace("_", " "))
        out.append({**e, "label": label, "error": error, "operator": _operator_action(e["kind"], details)})
    return out


def _operator_action(kind: str, details: Any) -> dict[str, Any] | None:
    """An ``operator_action`` event's who, what and result, for a readable timeline line."""
    if kind != "operator_action" or not isinstance(details, dict):
        return None
    by = details.get("requested_by")
    return {
        "action_id": details.get("action_id") if isinstance(details.get("action_id"), int) else None,
        "action": details.get("action"),
        "result": details.get("result"),
        "by": by.get("token_name") if isinstance(by, dict) else None,
        "new_run_id": details.get("new_run_id") if isinstance(details.get("new_run_id"), int) else None,
    }
