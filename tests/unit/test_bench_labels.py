"""``bench/healer.py`` labels every statement a heal pass runs by its name, not by a fragment of its SQL.

Fragments drifted from the statements they named; names cannot: a statement the healer, the poison
gate or ``passes.run_once`` executes is a named ``TextClause``, and the label is that name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from runwatch import lookups, passes, statements
from tests.support import bench_scripts

ROOT = Path(__file__).resolve().parents[2]
#: The modules of a heal pass, and how each names the statements module.
HEAL_PASS_SOURCES = ("runwatch/healer.py", "runwatch/poison.py", "runwatch/passes.py")


bench = bench_scripts.load("healer")


def _executed_statement_names() -> set[str]:
    """``sql.NAME`` as the heal pass's modules write it (``from . import statements as sql``)."""
    names = set()
    for path in HEAL_PASS_SOURCES:
        names |= set(re.findall(r"\bsql\.([A-Z][A-Z0-9_]+)\b", (ROOT / path).read_text()))
    return names


def test_the_heal_pass_statements_are_found_in_its_sources():
    assert {"HEAL_CANDIDATES", "RECONCILE_STALE", "NOTE_SKIPPED", "RECONCILE_POISON", "TRY_XACT_LOCK"} <= (
        _executed_statement_names()
    )


@pytest.mark.parametrize("name", sorted(_executed_statement_names()))
def test_every_statement_a_heal_pass_executes_is_labelled_by_its_name(name):
    clause = getattr(statements, name)
    assert bench.label_of(clause.text) == name
    # NOTE: the cursor sees the statement compiled for the driver (``%(rows)s``, not ``:rows``).
    assert bench.label_of(str(clause.compile(dialect=psycopg_dialect()))) == name


def test_statements_of_other_modules_carry_the_module_name():
    assert bench.label_of(passes._RECORD.text) == "passes._RECORD"
    assert bench.label_of(passes._LAST.text) == "passes._LAST"
    # the outage grace's clock, which healer._pause_reason reads through lookups
    assert bench.label_of(str(lookups._SECONDS_SINCE.compile(dialect=psycopg_dialect()))) == "lookups._SECONDS_SINCE"


def test_driver_statements_keep_their_fallback_labels():
    assert bench.label_of("SELECT 1") == "pool pre-ping"
    assert bench.label_of("select pg_catalog.version()") == "connect"
    assert bench.label_of("\nVACUUM operation_runs\n") == "VACUUM operation_runs"
