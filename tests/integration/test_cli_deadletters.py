"""``runwatch deadletters`` as an operator's tool: JSON listings, consent before a bulk requeue, progress."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from runwatch.bridge.commands import LETTER_COLUMNS
from runwatch.bridge.keys import Keys

from runwatch.cli import main
from tests.support.letters import dead_letter_without_callback, run_of


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _letters(bare, namespace, queue="jobs"):
    return bare.client.zcard(Keys(namespace).dead_letters(queue))


def test_list_as_json_lines(bare, engine, settings, namespace, cli_env, capsys):
    message = dead_letter_without_callback(bare, engine, settings)
    run_id = run_of(engine, message.message_id)["id"]
    assert main(["deadletters", "--namespace", namespace, "list", "--format", "json"]) == 0
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()
    letter = json.loads(line)
    assert list(letter) == [c.key for c in LETTER_COLUMNS]
    assert (letter["run_id"], letter["queue"], letter["message_id"]) == (run_id, "jobs", message.message_id)
    assert letter["dead_lettered_at"].endswith("Z") and datetime.fromisoformat(letter["dead_lettered_at"])
    assert isinstance(letter["age_seconds"], float) and letter["age_seconds"] >= 0
    assert "1 dead letter" in captured.err  # the summary stays off stdout


def test_list_table_in_a_pipe_has_no_escape_codes(bare, engine, settings, namespace, cli_env, capsys):
    dead_letter_without_callback(bare, engine, settings)
    assert main(["deadletters", "--namespace", namespace, "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.splitlines()[0].split()[:4] == ["run", "queue", "actor", "dead"]


@pytest.mark.parametrize("argv", [["--all"], ["--queue", "jobs"], ["--actor", "_explode"]])
def test_a_bulk_requeue_off_a_terminal_refuses_without_yes_and_loses_nothing(
    bare,
    engine,
    settings,
    namespace,
    cli_env,
    capsys,
    argv,
):
    message = dead_letter_without_callback(bare, engine, settings)
    assert main(["deadletters", "--namespace", namespace, "requeue", *argv]) == 2
    err = capsys.readouterr().err
    assert "requeue 1 dead letter(s)" in err and "pass --yes" in err and "not a terminal" in err
    assert _letters(bare, namespace) == 1
    assert run_of(engine, message.message_id)["status"] == "running"
    assert main(["runs", "--message-id", message.message_id, "--format", "json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # no new run was recorded


def test_a_terminal_is_asked_before_a_bulk_requeue(bare, engine, settings, namespace, cli_env, capsys, monkeypatch):
    message = dead_letter_without_callback(bare, engine, settings)
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["deadletters", "--namespace", namespace, "requeue", "--all"]) == 2
    assert "[y/N]" in capsys.readouterr().err and _letters(bare, namespace) == 1
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["deadletters", "--namespace", namespace, "requeue", "--all"]) == 0
    assert "requeued 1 dead letter(s)" in capsys.readouterr().out
    assert main(["runs", "--message-id", message.message_id, "--format", "json"]) == 0
    old, new = (json.loads(line) for line in reversed(capsys.readouterr().out.splitlines()))
    assert new["retry_of"] == old["id"] and new["message_id"] != message.message_id


def test_requeue_with_yes_shows_progress_on_a_terminal_only(
    bare,
    engine,
    settings,
    namespace,
    cli_env,
    capsys,
    monkeypatch,
):
    dead_letter_without_callback(bare, engine, settings)
    dead_letter_without_callback(bare, engine, settings)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["deadletters", "--namespace", namespace, "requeue", "--all", "--yes"]) == 0
    assert "requeue" in terminal.getvalue()
    assert capsys.readouterr().out.endswith("requeued 2 dead letter(s), skipped 0\n")


def test_a_dry_run_and_run_ids_need_no_confirmation(bare, engine, settings, namespace, cli_env, capsys):
    message = dead_letter_without_callback(bare, engine, settings)
    assert main(["deadletters", "--namespace", namespace, "requeue", "--all", "--dry-run"]) == 0
    assert "would requeue 1" in capsys.readouterr().out and _letters(bare, namespace) == 1
    run_id = run_of(engine, message.message_id)["id"]
    assert main(["deadletters", "--namespace", namespace, "requeue", str(run_id)]) == 0
    assert "requeued 1 dead letter(s)" in capsys.readouterr().out


def test_purge_asks_a_terminal_too(bare, engine, settings, namespace, cli_env, capsys, monkeypatch):
    dead_letter_without_callback(bare, engine, settings)
    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    assert main(["deadletters", "--namespace", namespace, "purge", "--all"]) == 2 and _letters(bare, namespace) == 1
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["deadletters", "--namespace", namespace, "purge", "--all"]) == 0 and _letters(bare, namespace) == 0
