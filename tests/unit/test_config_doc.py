"""``runwatch config``, its Markdown table, and the README's copy of that table."""

import os
import subprocess
from pathlib import Path

import pytest

from runwatch.cli import main
from runwatch.config_doc import README_END, README_START, markdown_table, settings_report, table_in, with_table
from runwatch.variables import VARIABLES

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_configuration_table_is_the_one_the_code_prints():
    readme = (ROOT / "README.md").read_text()
    table = table_in(readme)
    assert table is not None, f"README.md lacks the {README_START} / {README_END} markers"
    assert table == markdown_table(), "the README's configuration table is stale: run scripts/config-table"


def test_the_markdown_table_has_one_row_per_variable_in_order():
    lines = markdown_table().splitlines()
    assert lines[:2] == ["| variable | default | accepted values | meaning |", "|---|---|---|---|"]
    rows = [line.split(" | ") for line in lines[2:]]
    assert [row[0] for row in rows] == [f"| `{v.name}`" for v in VARIABLES]
    assert all(len(row) == 4 and row[-1].endswith(" |") for row in rows)
    by_name = {row[0].strip("| `"): row for row in rows}
    assert by_name["RUNWATCH_API_WORKERS"][1:3] == ["`2`", "a positive integer"]
    assert by_name["RUNWATCH_RETENTION_DAYS_FAILED"][1] == "`RUNWATCH_RETENTION_DAYS`"
    assert by_name["RUNWATCH_DRAIN"][2] == "one of process, thread, external"


def test_the_table_goes_between_the_markers_and_nothing_else_changes():
    readme = f"# Runwatch\n\n## Configuration\n\n{README_START}\nold table\n{README_END}\n\nmore text\n"
    updated = with_table(readme, "| new |")
    assert updated == f"# Runwatch\n\n## Configuration\n\n{README_START}\n| new |\n{README_END}\n\nmore text\n"
    assert table_in(updated) == "| new |" and with_table(updated, "| new |") == updated
    with pytest.raises(ValueError, match="markers"):
        with_table("# no markers\n", "| new |")


def test_scripts_config_table_rewrites_a_readme_in_place(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nstale\n{README_END}\noutro\n")
    done = subprocess.run([ROOT / "scripts" / "config-table", readme], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert readme.read_text() == f"intro\n{README_START}\n{markdown_table()}\n{README_END}\noutro\n"
    readme.write_text("no markers\n")
    failed = subprocess.run([ROOT / "scripts" / "config-table", readme], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "markers" in failed.stderr and readme.read_text() == "no markers\n"


def _report_rows(env):
    lines = settings_report(env).splitlines()
    return {line.split()[0]: line.split() for line in lines[1:] if line.startswith("RUNWATCH_")}, lines


def test_the_report_shows_value_default_and_source_with_secrets_masked():
    env = {
        "RUNWATCH_DATABASE_URL": "postgresql://app:hunter2@db:5432/runwatch",
        "RUNWATCH_REDIS_URL": "redis://:redispw@cache:6379/0",
        "RUNWATCH_API_SECRET": "cursor-key-xyz",
        "RUNWATCH_API_WORKERS": "4",
        "RUNWATCH_RETENTION_DAYS": "30",
        "RUNWATCH_RETENTION_DAYS_FAILED": "365",
        "PATH": "/usr/bin",
    }
    rows, lines = _report_rows(env)
    text = "\n".join(lines)
    assert "hunter2" not in text and "redispw" not in text and "cursor-key-xyz" not in text
    assert lines[0].split() == ["variable", "value", "default", "source"]
    assert len(rows) == len(VARIABLES)
    assert rows["RUNWATCH_DATABASE_URL"] == [
        "RUNWATCH_DATABASE_URL", "postgresql+psycopg://app:***@db:5432/runwatch", "unset", "env"
    ]  # fmt: skip
    assert rows["RUNWATCH_REDIS_URL"][1] == "redis://:***@cache:6379/0"
    assert rows["RUNWATCH_API_SECRET"][1:] == ["***", "unset", "env"]
    assert rows["RUNWATCH_API_WORKERS"][1:] == ["4", "2", "env"]
    assert rows["RUNWATCH_API_BIND"][1:] == ["127.0.0.1:8000", "127.0.0.1:8000", "default"]
    assert rows["RUNWATCH_RETENTION_DAYS"][1:] == ["30", "90", "env"]
    assert rows["RUNWATCH_RETENTION_DAYS_FAILED"][1:] == ["365", "90", "env"]
    assert rows["RUNWATCH_RETENTION_DAYS_BLOCKED"][1:] == ["30", "90", "env", "(RUNWATCH_RETENTION_DAYS)"]


def test_the_report_lists_unknown_variables_with_the_closest_setting():
    _, lines = _report_rows({"RUNWATCH_HEAL_INTERVAL_SECOND": "5", "RUNWATCH_TOKEN": "rw_x"})
    assert lines[-1] == (
        "warning: RUNWATCH_HEAL_INTERVAL_SECOND is not a Runwatch setting and is ignored; "
        "did you mean RUNWATCH_HEAL_INTERVAL_SECONDS?"
    )
    assert not any("RUNWATCH_TOKEN" in line for line in lines)


def test_runwatch_config_command(monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("RUNWATCH_")]:  # NOTE: whatever the caller's shell set
        monkeypatch.delenv(name)
    monkeypatch.setenv("RUNWATCH_API_WORKERS", "3")
    assert main(["config"]) == 0
    assert capsys.readouterr().out == settings_report({"RUNWATCH_API_WORKERS": "3"}) + "\n"
    monkeypatch.setenv("RUNWATCH_API_WORKERS", "three")
    assert main(["config", "--markdown"]) == 0  # documents the code, whatever the environment holds
    assert capsys.readouterr().out == markdown_table() + "\n"
    assert main(["config"]) == 2
    assert capsys.readouterr().err == (
        "runwatch: error: RUNWATCH_API_WORKERS must be a positive integer (e.g. 2), got 'three'\n"
    )
