import threading

from sqlalchemy import text

from runwatch.cli import main
from runwatch.migrate import upgrade


def test_migrate_is_idempotent_and_safe_concurrently(database_url):
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(upgrade(database_url))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(results)) == 1 and results[0] is not None and len(results) == 3


def test_cli_migrate_reports_the_revision(database_url, monkeypatch, capsys):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    assert main(["migrate"]) == 0
    assert "schema is at revision" in capsys.readouterr().out


def test_cli_without_database_url_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("RUNWATCH_DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    assert "RUNWATCH_DATABASE_URL is not set" in capsys.readouterr().err


def test_cli_runs_prints_a_table(database_url, engine, monkeypatch, capsys):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, created_at, "
            "queued_stale_seconds, running_stale_seconds, threshold_source) "
            "VALUES ('m', 'demo.type', 'q', 'a', 'queued', 'pending', now() - interval '2 hours', 60, 60, 'default')"
        ))
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "demo.type" in out and "likely_stale" in out
