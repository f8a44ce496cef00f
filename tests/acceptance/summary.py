"""The acceptance figures of a run: each scenario's travel on its own test report.

``World.finish`` leaves a scenario's figures on the World; the ``world`` fixture puts them on the
test's ``user_properties`` (``attach``), which reach the process that prints the terminal summary
with the test's report (``collect``, from ``pytest_runtest_logreport``). Under pytest-xdist that
process ran no scenario itself, so a list kept where the scenarios ran would never reach it.
The hooks are in tests/conftest.py: pytest-xdist's controller collects no test, and so loads no
conftest below the one of the paths it was given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_KEY = "runwatch_acceptance"
#: The figures of every scenario that finished in this run, as the summary's process received them.
SCENARIOS: list[dict[str, Any]] = []


def attach(item: pytest.Item, figures: dict[str, Any]) -> None:
    item.user_properties.append((_KEY, json.dumps(figures, default=str)))


def collect(report: pytest.TestReport) -> None:
    if report.when == "teardown":  # NOTE: the world fixture attaches in its teardown
        SCENARIOS.extend(json.loads(value) for key, value in report.user_properties if key == _KEY)


def write(tr: Any, path: str | None) -> None:
    """The summary section (and the JSON report, if asked for)."""
    if not SCENARIOS:
        return
    report = sorted(SCENARIOS, key=lambda r: r["scenario"])  # NOTE: parallel runs finish them in any order
    tr.section("runwatch acceptance: faults injected, invariants checked")
    for r in report:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items())) or "none"
        tr.write_line(
            f"{r['scenario']:<46} runs {r['runs']:>5}  deliveries {r['deliveries']:>5}  "
            f"history checks {r['history_checks']:>6}  API checks {r['api_checks']:>6}  "
            f"violations {r['violations']}  {r['seconds']:>5.0f} s  faults: {faults}"
        )
    keys = ("runs", "deliveries", "history_checks", "api_checks", "violations")
    total = {k: sum(r[k] for r in report) for k in keys}
    faults = sum(sum(r["faults"].values()) for r in report)
    tr.write_line(
        f"{len(report)} scenarios ({report[0]['scale']}): {total['runs']} runs, {total['deliveries']} deliveries, "
        f"{faults} faults injected, {total['history_checks']} history checks, "
        f"{total['api_checks']} API request checks, {total['violations']} violations"
    )
    if path:
        Path(path).write_text(json.dumps({"scenarios": report, "total": {**total, "faults": faults}}, indent=2))
        tr.write_line(f"report written to {path}")
