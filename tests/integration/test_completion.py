"""Shell completion (argcomplete) over argparse and the entry-point commands, as a shell asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runwatch.cli
from runwatch.cli import main


def _complete(tmp_path: Path, line: str) -> list[str]:
    """What the completion script gets back for ``line`` (the protocol its shell function speaks)."""
    answer = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    done = subprocess.run([sys.executable, "-m", "runwatch.cli"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return answer.read_text().split("\v")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("runwatch dead", ["deadletters "]),  # an entry-point command
        ("runwatch deadletters re", ["requeue "]),
        ("runwatch runs --fresh", ["--freshness "]),
        ("runwatch runs --status ", ["queued", "running", "completed"]),
        ("runwatch heal --for", ["--format "]),
    ],
)
def test_the_shell_gets_commands_options_and_choices(tmp_path, line, expected):
    assert _complete(tmp_path, line) == expected


@pytest.mark.parametrize("shell, marker", [("bash", "complete "), ("zsh", "#compdef runwatch"), ("fish", "complete ")])
def test_completion_prints_the_script_to_source(capsys, shell, marker):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert marker in script and "runwatch" in script and "_ARGCOMPLETE" in script


def test_the_entry_module_carries_the_global_completion_marker():
    # NOTE: argcomplete's global activation looks for it near the top of the console script's module.
    assert "PYTHON_ARGCOMPLETE_OK" in Path(runwatch.cli.__file__).read_text()[:1024]


def test_a_reader_that_stops_early_is_no_traceback(monkeypatch):
    """``runwatch runs | head``: the pipe closes under the writer; the command ends quietly."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as closed_pipe:
        monkeypatch.setattr("sys.stdout", closed_pipe)
        assert main(["completion", "bash"]) == 141
        closed_pipe.write("x" * 100_000)  # stdout now goes to /dev/null: the exit flush cannot fail
        closed_pipe.flush()
