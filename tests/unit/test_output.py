"""CLI rendering: JSON Lines with stable keys, plain text off a terminal, rich on one; consent and progress."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from runwatch import output
from runwatch.terminal import NotConfirmed, Progress, confirm

COLUMNS = (output.Column("id"), output.Column("at", "when"), output.Column("note", wrap=True))
ROWS = [
    {"id": 1, "at": datetime(2026, 1, 31, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))), "note": "ok"},
    {"id": 2, "at": None, "note": "[red]not markup[/red] \x1b[31mescape", "extra": "not listed"},
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _a_colour_terminal(monkeypatch):
    """What an operator's shell usually says (CI may say otherwise)."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def test_json_lines_keep_the_column_keys_in_order_and_times_in_utc():
    stream = io.StringIO()
    assert output.emit(ROWS, COLUMNS, output.JSON, stream=stream) == 2
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [list(line) for line in lines] == [["id", "at", "note"]] * 2
    assert lines[0]["at"] == "2026-01-31T12:00:00.123456Z" and lines[1]["at"] is None
    assert lines[1]["note"] == "[red]not markup[/red] \x1b[31mescape"  # JSON carries the text whole, escaped


def test_a_plain_table_has_no_escape_codes_and_shows_utc_seconds():
    stream = io.StringIO()
    output.emit(ROWS, COLUMNS, output.TABLE, stream=stream)
    header, rule, first, second = stream.getvalue().splitlines()
    assert header.split() == ["id", "when", "note"] and set(rule) == {"-", " "}
    assert first.split() == ["1", "2026-01-31T12:00:00Z", "ok"]
    assert "\x1b" not in stream.getvalue() and "?[31mescape" in second and second.split()[1] == "-"


def test_a_terminal_gets_a_rich_table_that_reads_job_text_literally():
    stream = Terminal()
    output.emit(ROWS, COLUMNS, output.TABLE, stream=stream)
    text = stream.getvalue()
    assert "\x1b[" in text  # styled: a terminal
    assert "[red]not markup[/red]" in text and "\x1b[31m" not in text  # no markup, no injected escape


def test_empty_listings():
    table, lines = io.StringIO(), io.StringIO()
    output.emit([], COLUMNS, output.TABLE, stream=table, empty="(no runs)")
    output.emit([], COLUMNS, output.JSON, stream=lines)
    assert table.getvalue() == "(no runs)\n" and lines.getvalue() == ""


def test_a_record_is_one_json_line_or_a_field_value_table():
    record = {"run": 7, "stale_at": datetime(2026, 1, 1, tzinfo=UTC), "evidence": {"found": ["a", "b"]}}
    line, table = io.StringIO(), io.StringIO()
    output.emit_record(record, output.JSON, stream=line)
    output.emit_record(record, output.TABLE, stream=table)
    assert json.loads(line.getvalue()) == {
        "run": 7,
        "stale_at": "2026-01-01T00:00:00Z",
        "evidence": {"found": ["a", "b"]},
    }
    assert "stale_at        2026-01-01T00:00:00Z" in table.getvalue()
    assert "evidence.found  a,b" in table.getvalue()  # nested fields flattened, one per line


def test_cells_are_capped_where_the_column_says():
    assert output.cell("x" * 100, 10) == "x" * 9 + "…" and output.cell("x" * 100, None) == "x" * 100
    assert output.cell(True) == "yes" and output.cell(None) == "-" and output.cell((1, 2)) == "1,2"


def test_confirmation_off_a_terminal_needs_yes(monkeypatch):
    confirm("requeue 5 dead letter(s)", yes=True, stdin=io.StringIO())
    with pytest.raises(NotConfirmed, match=r"requeue 5 dead letter\(s\)\? .*pass --yes"):
        confirm("requeue 5 dead letter(s)", yes=False, stdin=io.StringIO("y\n"))  # a pipe is never asked


@pytest.mark.parametrize("answer, goes_ahead", [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False)])
def test_a_terminal_is_asked(capsys, answer, goes_ahead):
    stdin = Terminal(answer)
    if goes_ahead:
        confirm("purge 3 dead letter(s)", yes=False, stdin=stdin)
    else:
        with pytest.raises(NotConfirmed, match="nothing changed"):
            confirm("purge 3 dead letter(s)", yes=False, stdin=stdin)
    assert "purge 3 dead letter(s)? [y/N]" in capsys.readouterr().err


def test_progress_shows_on_a_terminal_only():
    pipe, terminal = io.StringIO(), Terminal()
    for stream in (pipe, terminal):
        with Progress("requeue", total=3, stream=stream) as bar:
            for n in range(1, 4):
                bar.update(n)
    assert pipe.getvalue() == "" and "requeue" in terminal.getvalue()
