"""The scenario-specific invariants and the API clients' judgement can fail too, branch by branch.

No servers: small ledgers in memory, and for the API a fake server (a function) that answers the
way Runwatch's API should, or with exactly one flaw.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from . import api_probe
from . import scenario_checks as checks
from .history import History, Ledger, Verdict

RUN = {"id": 1, "outcome": "succeeded", "reconciled_at": None, "reconciliation_source": None, "reason_code": None,
       "reconciliation_evidence": None, "deliveries": 2}  # fmt: skip
VANISHED = {**RUN, "id": 2, "outcome": "failed", "reconciled_at": 9, "reconciliation_source": "scheduled_reconciler",
            "reason_code": "run.stale_queued", "reconciliation_evidence": {
                "message_found_in": None, "looked_for_message_in": ["dramatiq:acc.DQ.msgs"], "broker_checked": True}}
LATE = {**RUN, "id": 3, "outcome": "failed", "reconciled_at": 9, "reconciliation_source": "failed_callback",
        "reason_code": "run.queue_failure_bridge"}  # fmt: skip


def _completion(late: bool, outcome: str = "succeeded") -> dict[str, Any]:
    return {"kind": "completed", "late": late, "details": {"outcome": outcome}}


#: The runs each scenario's ledger holds: a run that succeeded twice (once late), a vanished
#: message healed, a late success after a reconciliation.
SCOPE = {
    "postgres": ("ran",), "redis": ("ran", "vanished"), "redelivered": ("ran",), "duplicate": ("ran",),
    "healers": ("vanished", "zombie"), "late": ("zombie",), "sigterm": ("ran",), "load": ("ran",),
    "rabbitmq": ("ran",),
}  # fmt: skip


def ledger(scenario: str) -> Ledger:
    runs = {"ran": dict(RUN), "vanished": json.loads(json.dumps(VANISHED)), "zombie": dict(LATE)}
    events = {"ran": [_completion(False), _completion(True)], "vanished": [], "zombie": [_completion(True)]}
    return Ledger({m: runs[m] for m in SCOPE[scenario]}, {m: events[m] for m in SCOPE[scenario]})


def history() -> History:
    h = History()
    h.journal = [{"k": "ack", "m": "ran", "t": 5.0}]
    return h


def scenario_checks(h: History) -> dict[str, checks.Check]:
    """Each scenario's checks, given what its scenario knew; on ``ledger()`` they all pass."""
    return {
        "postgres": checks.no_healer_reconciliation("after an outage"),
        "redis": checks.vanished_healed_with_evidence({"vanished"}),
        "redelivered": checks.deliveries_equal(["ran"], 2, "redelivery_counted"),
        "duplicate": checks.duplicates_counted_once(["ran"]),
        "healers": checks.every_pass_finished({"heal-0": 0, "scan-0": 0}),
        "late": checks.reconciliation_stands(["zombie"]),
        "sigterm": checks.all_succeeded("never_a_false_failure"),
        "load": checks.acked_during(h, 4.0, 6.0, "the API was queried"),
        "rabbitmq": checks.survived_broker_restart(["ran"]),
    }


def _run(message: str, **over: Any) -> Callable[[Ledger, History, dict], None]:
    return lambda lg, h, codes: lg.runs[message].update(over)


def _evidence(message: str, **over: Any) -> Callable[[Ledger, History, dict], None]:
    return lambda lg, h, codes: lg.runs[message]["reconciliation_evidence"].update(over)


def _late(message: str, *flags: bool, outcome: str = "succeeded") -> Callable[[Ledger, History, dict], None]:
    def mutate(lg: Ledger, h: History, codes: dict) -> None:
        lg.events[message] = [_completion(flag, outcome) for flag in flags]

    return mutate


#: (scenario, invariant, fragment, mutation of the ledger, the history or the exit codes).
MUTATIONS: dict[str, tuple[str, str, str, Callable[[Ledger, History, dict], None]]] = {
    "outage: a healthy run healed": (
        "postgres", "no_healthy_run_reconciled", "run 1 healed",
        _run("ran", reconciliation_source="scheduled_reconciler"),
    ),
    "redis: vanished run with another reason": (
        "redis", "vanished_message_reconciled", "run.stale_running", _run("vanished", reason_code="run.stale_running"),
    ),
    "redis: vanished message found": (
        "redis", "vanished_message_reconciled", "'queue'", _evidence("vanished", message_found_in="queue"),
    ),
    "redis: looked nowhere": (
        "redis", "vanished_message_reconciled", "looked_for_message_in': []",
        _evidence("vanished", looked_for_message_in=[]),
    ),
    "redis: broker not asked": (
        "redis", "vanished_message_reconciled", "broker_checked': False", _evidence("vanished", broker_checked=False),
    ),
    "redis: a running job reconciled": (
        "redis", "nothing_else_touched", "run 1 ended failed",
        _run("ran", outcome="failed", reconciled_at=9, reason_code="run.stale_running"),
    ),
    "redis: a running job ended otherwise": (
        "redis", "nothing_else_touched", "ended blocked", _run("ran", outcome="blocked"),
    ),
    "redelivery not counted": (
        "redelivered", "redelivery_counted", "1 deliveries, expected 2", _run("ran", deliveries=1),
    ),
    "duplicate delivered once": ("duplicate", "duplicate_counted_once", "deliveries 1", _run("ran", deliveries=1)),
    "duplicate completed once": ("duplicate", "duplicate_counted_once", "[False]", _late("ran", False)),
    "duplicate, neither completion late": (
        "duplicate", "duplicate_counted_once", "[False, False]", _late("ran", False, False),
    ),
    "duplicate, both completions late": (
        "duplicate", "duplicate_counted_once", "[True, True]", _late("ran", True, True),
    ),
    "healer process failed": ("healers", "no_deadlock", "heal-0 exited 1", lambda lg, h, c: c.update({"heal-0": 1})),
    "healer process hung": (
        "healers", "no_deadlock", "scan-0 exited None", lambda lg, h, c: c.update({"scan-0": None}),
    ),
    "run left unreconciled": (
        "healers", "reconciled", "run 1 not reconciled", lambda lg, h, c: lg.runs.update(ran=RUN),
    ),
    "late: reconciled by another source": (
        "late", "late_success_is_an_event", "by scheduled_reconciler",
        _run("zombie", reconciliation_source="scheduled_reconciler"),
    ),
    "late: the late success overwrote the row": (
        "late", "late_success_is_an_event", "succeeded by failed_callback", _run("zombie", outcome="succeeded"),
    ),
    "late: no late event": ("late", "late_success_is_an_event", "late []", _late("zombie")),
    "late: the late event is a failure": (
        "late", "late_success_is_an_event", "'failed'", _late("zombie", True, outcome="failed"),
    ),
    "rabbitmq: a run healed": (
        "rabbitmq", "nothing_lost_or_healed", "run 1 ended failed",
        _run("ran", outcome="failed", reconciled_at=9, reason_code="run.stale_running"),
    ),
    "rabbitmq: delivered three times": (
        "rabbitmq", "redelivery_is_late", "deliveries 3", _run("ran", deliveries=3),
    ),
    "rabbitmq: the redelivery not late": (
        "rabbitmq", "redelivery_is_late", "[False, False]", _late("ran", False, False),
    ),
    "rabbitmq: once, yet a late completion": (
        "rabbitmq", "redelivery_is_late", "deliveries 1", _run("ran", deliveries=1),
    ),
    "sigterm: a false failure": ("sigterm", "never_a_false_failure", "run 1: failed", _run("ran", outcome="failed")),
    "api load: no job acked meanwhile": (
        "load", "fault_hit", "no job acked while the API was queried",
        lambda lg, h, c: h.journal[0].update(t=7.0),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCOPE))
def test_each_scenario_check_passes_on_a_ledger_that_keeps_it(scenario: str) -> None:
    verdict = Verdict()
    scenario_checks(history())[scenario](ledger(scenario), verdict)
    # One check per run in scope (two on RabbitMQ); the healers' also one per process exit code; the load's one.
    per_run = 2 if scenario == "rabbitmq" else 1
    expected = 1 if scenario == "load" else per_run * len(SCOPE[scenario]) + (2 if scenario == "healers" else 0)
    assert (verdict.violations, verdict.history_total, verdict.api_total) == ([], expected, 0)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_scenario_check_reports_its_violation(name: str) -> None:
    scenario, invariant, fragment, mutate = MUTATIONS[name]
    lg, h, codes = ledger(scenario), history(), {"heal-0": 0, "scan-0": 0}
    mutate(lg, h, codes)
    check = checks.every_pass_finished(codes) if scenario == "healers" else scenario_checks(h)[scenario]
    verdict = Verdict()
    check(lg, verdict)
    assert any(v.startswith(f"{invariant}:") and fragment in v for v in verdict.violations), verdict.violations


def test_api_results_are_counted_apart_from_history_checks() -> None:
    verdict = Verdict()
    checks.api_results([("api_no_5xx", True, "ok"), ("api_tenant_scope", False, "leak")])(ledger("load"), verdict)
    assert (verdict.history_total, verdict.api_total, verdict.violations) == (0, 2, ["api_tenant_scope: leak"])


# -- the API clients' judgement, against a fake server ------------------------------------------

EVERYONE, TENANT1 = "all", "t1"
#: (id, tenant, created_at): newest last; ids 2, 4, 6 belong to tenants other than 1.
ROWS = [(i, 1 if i % 2 else 2, f"2026-11-29T12:00:{i:02d}+00:00") for i in range(1, 13)]
PROBLEM = {"Content-Type": "application/problem+json"}


def fake_api(flaw: str | None = None) -> api_probe.Get:
    """Runwatch's API as the contract says it answers, or with one ``flaw``."""

    def get(path: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if flaw == "5xx" and "cursor" in query:
            return 503, {}, b"{}"
        if url.path.startswith("/api/admin/operations/"):
            return _detail(int(url.path.rsplit("/", 1)[1]), token, flaw)
        if set(query) - {"limit", "cursor"} or not all(query.get(k, "0").isdigit() for k in ("limit", "cursor")):
            return _bad_input(flaw)
        visible = [r for r in reversed(ROWS) if token == EVERYONE or r[1] == 1 or flaw == "list leak"]
        start, limit = int(query.get("cursor", 0)), int(query["limit"])
        if flaw == "repeat" and start:
            start -= 1
        page = visible[start : start + limit]
        if flaw == "unordered" and start:
            page = page[::-1]
        if flaw == "walk fails" and start:
            return 400, PROBLEM, b"{}"
        more = start + limit < len(visible)
        links = {"next": f"http://api{url.path}?limit={limit}&cursor={start + limit}" if more else None}
        data = [{"id": i, "tenant_id": t, "created_at": c} for i, t, c in page]
        return 200, {"Content-Type": "application/json"}, json.dumps({"data": data, "links": links}).encode()

    return get


def _detail(run_id: int, token: str | None, flaw: str | None) -> tuple[int, dict[str, str], bytes]:
    row = next((r for r in ROWS if r[0] == run_id), None)
    if row and (token == EVERYONE or row[1] == 1 or flaw == "detail leak"):
        return 200, {}, json.dumps({"id": run_id}).encode()
    body = b'{"title": "Not Found", "status": 404}'
    if flaw == "hidden differs" and row:
        body = b'{"title": "Not Found", "status": 404, "detail": "not yours"}'
    return 404, PROBLEM, body


def _bad_input(flaw: str | None) -> tuple[int, dict[str, str], bytes]:
    if flaw == "bad input 500":
        return 500, PROBLEM, b"{}"
    if flaw == "bad input 200":
        return 200, {"Content-Type": "application/json"}, b'{"data": [], "links": {}}'
    if flaw == "bad input not a problem":
        return 400, {"Content-Type": "application/json"}, b"{}"
    return 400, PROBLEM, b"{}"


def _probe(flaw: str | None) -> list[api_probe.Result]:
    out: list[api_probe.Result] = []
    api_probe.probe(fake_api(flaw), EVERYONE, TENANT1, [2, 4, 6], random.Random(1), out)
    return out


def test_a_well_behaved_api_passes_every_request_check() -> None:
    out = _probe(None)
    assert [r for r in out if not r[1]] == []
    assert {r[0] for r in out} == {"api_no_5xx", "api_tenant_scope", "api_pagination", "api_bad_input_400"}


API_FLAWS = {
    "5xx": ("api_no_5xx", ": 503"),
    "list leak": ("api_tenant_scope", "other tenants' runs ["),
    "detail leak": ("api_tenant_scope", "other tenant's run"),
    "hidden differs": ("api_tenant_scope", "not yours"),
    "repeat": ("api_pagination", "walk"),
    "unordered": ("api_pagination", "walk"),
    "walk fails": ("api_pagination", ": 400"),
    "bad input 500": ("api_bad_input_400", "limit=abc: 500"),
    "bad input 200": ("api_bad_input_400", "unknown=1: 200"),
    "bad input not a problem": ("api_bad_input_400", "application/json"),
}


@pytest.mark.parametrize("flaw", sorted(API_FLAWS))
def test_each_api_flaw_is_reported(flaw: str) -> None:
    invariant, fragment = API_FLAWS[flaw]
    failed = [f"{inv}: {detail}" for inv, ok, detail in _probe(flaw) if not ok]
    assert any(f.startswith(f"{invariant}:") and fragment in f for f in failed), failed
