"""Everywhere a job's secret could surface once Runwatch has recorded its failure, as text.

The ledger (every column of every run and event row), what is left in the event streams, the
API (list, detail, detail with diagnostics), and the SRE commands that print a run's evidence
(``deadletters show``, ``heal --explain``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import falcon.testing
from sqlalchemy import text

from runwatch.cli import main

LIST = "/api/admin/operations"
_DUMP = "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM {table} t"


@dataclass
class Api:
    client: falcon.testing.TestClient
    token: str

    def get(self, path: str, **params: str) -> falcon.testing.Result:
        headers = {"Authorization": f"Bearer {self.token}"}
        result = self.client.simulate_get(path, params=params or None, headers=headers)
        assert result.status_code == 200, result.text
        return result


def ledger_text(engine) -> str:
    """Every column of every run and every event, as JSON text."""
    with engine.connect() as conn:
        dumps = [conn.execute(text(_DUMP.format(table=t))).scalar_one() for t in ("operation_runs", "run_events")]
    return "\n".join(dumps)


def run_ids(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM operation_runs ORDER BY id")).scalars())


def stream_text(redis_client, stream: str) -> str:
    """Events still in the stream (not yet applied) and any the drainer rejected."""
    entries = [*redis_client.xrange(stream), *redis_client.xrange(f"{stream}:rejected")]
    return "\n".join(repr(fields) for _, fields in entries)


def api_text(api: Api, ids: Iterable[int]) -> str:
    """The list, and each run's detail with and without diagnostics."""
    parts = [api.get(LIST, limit="200").text]
    for run_id in ids:
        parts.append(api.get(f"{LIST}/{run_id}").text)
        parts.append(api.get(f"{LIST}/{run_id}", include="diagnostics").text)
    return "\n".join(parts)


def cli_text(capsys, namespace: str, ids: Iterable[int]) -> str:
    """``runwatch deadletters show`` and ``runwatch heal --explain`` of each run (env set by the caller)."""
    parts = []
    for run_id in ids:
        for argv in (
            ["deadletters", "--namespace", namespace, "show", str(run_id)],
            ["heal", "--namespace", namespace, "--explain", str(run_id)],
        ):
            code = main(argv)
            out = capsys.readouterr()
            assert code == 0, (argv, out.err)
            parts.extend((out.out, out.err))
    return "\n".join(parts)
