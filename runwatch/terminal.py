"""Talking to a person at a terminal: progress on stderr, and confirmation before a bulk change.

Both look at the streams, never at an option: progress shows only when stderr is a terminal
(cron mail and CI logs get the final summary alone), and a question is asked only when stdin is
a terminal; without one, a command that needs consent refuses unless it was given ``--yes``.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from typing import IO, Any

from .errors import RunwatchError
from .output import is_tty


class NotConfirmed(RunwatchError):
    """A bulk change was not confirmed (no ``--yes``, and no terminal to ask, or the answer was no)."""


def confirm(question: str, *, yes: bool, flag: str = "--yes", stdin: IO[str] | None = None) -> None:
    """Return if the change may go ahead; raise ``NotConfirmed`` (exit 2) if not. Nothing is changed before."""
    if yes:
        return
    stdin = stdin or sys.stdin
    if not is_tty(stdin):
        raise NotConfirmed(f"{question}? not without confirmation: pass {flag} to go ahead (stdin is not a terminal)")
    print(f"{question}? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmed(f"not confirmed; nothing changed (pass {flag} to skip this question)")


class Progress(AbstractContextManager["Progress"]):
    """A progress bar (``total`` known) or a spinner with a counter, on ``stream`` if it is a terminal.

    ``update(done)`` sets how much is done; off a terminal every call is a no-op.
    """

    def __init__(self, label: str, *, total: int | None = None, stream: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.shown = is_tty(self.stream)
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.shown:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            columns = [SpinnerColumn(), TextColumn("{task.description}")]
            columns += (
                [BarColumn(), MofNCompleteColumn()] if self.total is not None else [TextColumn("{task.completed}")]
            )
            columns.append(TimeElapsedColumn())
            self._bar = Bar(*columns, console=Console(file=self.stream), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def update(self, done: int, *, label: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, **({"description": label} if label else {}))

    def __exit__(self, *exc_info: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)
            self._bar = None
