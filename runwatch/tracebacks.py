"""Tracebacks as evidence: the whole exception chain, host paths made relative, secrets masked.

A frame's file is shown relative to where it lives, never as a host path:
``site-packages/dramatiq/worker.py`` for installed packages, ``<stdlib>/threading.py`` for the
standard library, ``workers/middleware.py`` under the current directory (the project), and
``.../name.py`` for anything else.
"""

from __future__ import annotations

import hashlib
import os
import re
import sysconfig
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .redact import Redactor

_PACKAGES = re.compile(r"[/\\](?:site|dist)-packages[/\\]")
_FRAME_FILE = re.compile(r'(File ")([^"\n]+)(", line \d+)')
_STDLIB = os.path.normpath(sysconfig.get_paths()["stdlib"])


def relative_path(filename: str) -> str:
    """``/venv/lib/python3.11/site-packages/dramatiq/worker.py`` -> ``site-packages/dramatiq/worker.py``."""
    if not os.path.isabs(filename):
        return filename  # already relative, or <frozen ...>, <string>
    # NOTE: the last one: a virtualenv may itself sit under another site-packages.
    ends = [m.end() for m in _PACKAGES.finditer(filename)]
    if ends:
        return "site-packages/" + filename[ends[-1] :].replace("\\", "/")
    path = os.path.normpath(filename)
    for root, label in ((_STDLIB, "<stdlib>/"), (os.getcwd(), "")):
        if path.startswith(root + os.sep):
            return label + os.path.relpath(path, root).replace("\\", "/")
    return ".../" + os.path.basename(path)


def relative_frames(text: str) -> str:
    """Every ``File "/abs/path", line N`` of a formatted traceback with the path made relative."""
    return _FRAME_FILE.sub(lambda m: m[1] + relative_path(m[2]) + m[3], text)


def format_exception(exc: BaseException, redactor: Redactor) -> str:
    """The traceback Python prints (``__cause__``, ``__context__``, notes, groups), relative and redacted."""
    return redactor.text(relative_frames("".join(traceback.format_exception(exc))))


def raised_at(exc: BaseException) -> str | None:
    """``path:line in function`` of the innermost frame, path relative."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    return f"{relative_path(last.filename)}:{last.lineno} in {last.name}"


def digest(exc: BaseException) -> str:
    """A short hash of where the exception was raised: the same on every host, blind to the message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = "".join(f"{relative_path(f.filename)}:{f.lineno} in {f.name}\n" for f in frames)
    return hashlib.sha256(where.encode()).hexdigest()[:16]
