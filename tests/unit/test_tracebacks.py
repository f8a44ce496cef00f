"""Tracebacks as evidence: the whole chain, relative paths, masked lines, a host-independent digest."""

from __future__ import annotations

import os
import sysconfig

import pytest
from runwatch.workers.meta import TRACEBACK_MAX_CHARS, error_evidence

from runwatch import tracebacks
from runwatch.redact import Redactor

STDLIB = sysconfig.get_paths()["stdlib"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/app/.venv/lib/python3.11/site-packages/dramatiq/worker.py", "site-packages/dramatiq/worker.py"),
        ("/usr/lib/python3/dist-packages/redis/client.py", "site-packages/redis/client.py"),
        (f"{STDLIB}/json/decoder.py", "<stdlib>/json/decoder.py"),
        (f"{os.getcwd()}/workers/meta.py", "workers/meta.py"),
        ("/home/alice/elsewhere/job.py", ".../job.py"),
        ("<frozen runpy>", "<frozen runpy>"),
        ("relative/already.py", "relative/already.py"),
    ],
)
def test_relative_path(path, expected):
    assert tracebacks.relative_path(path) == expected


def test_relative_frames_rewrites_only_frame_lines():
    text = (
        'Traceback (most recent call last):\n  File "/home/alice/x/job.py", line 3, in run\n'
        '  |   File "/srv/.venv/lib/python3.11/site-packages/dramatiq/worker.py", line 9, in process\n'
        "OSError: cannot open /home/alice/data.csv\n"
    )
    assert tracebacks.relative_frames(text) == (
        'Traceback (most recent call last):\n  File ".../job.py", line 3, in run\n'
        '  |   File "site-packages/dramatiq/worker.py", line 9, in process\n'
        "OSError: cannot open /home/alice/data.csv\n"
    )


SECRET = "hunter2"  # NOTE: a bare literal in a call would show in the source line: not a shape we mask


def _raise(token: str) -> None:
    raise RuntimeError(f"boom password={token}")


def _chained() -> BaseException:
    try:
        try:
            try:
                _raise(SECRET)
            except RuntimeError as inner:
                raise KeyError("api_key=ctx1") from inner
        except KeyError:
            error = ValueError("Authorization: Bearer ctx2")
            error.add_note("note: token=note3")
            raise ExceptionGroup("group", [error, OSError("redis://:grp4@db")]) from None
    except ExceptionGroup as exc:
        return exc


def test_error_evidence_masks_the_whole_chain_and_keeps_paths_relative():
    try:
        try:
            _raise(SECRET)
        except RuntimeError as inner:
            raise KeyError("session=ctx1") from inner
    except KeyError as exc:
        evidence = error_evidence(exc, Redactor())
    tb = evidence["traceback"]
    assert 'raise RuntimeError(f"boom password={***}")' in tb  # the source line survives, masked
    assert "RuntimeError: boom password=***" in tb and "KeyError: 'session=***'" in tb
    assert "The above exception was the direct cause" in tb
    assert 'File "tests/unit/test_tracebacks.py"' in tb and os.getcwd() not in tb
    assert "hunter2" not in tb and "ctx1" not in tb
    assert evidence["exception_message"] == "'session=***'" and evidence["exception_type"] == "KeyError"
    assert evidence["raised_at"].startswith("tests/unit/test_tracebacks.py:") and evidence["raised_at"].endswith(
        " in test_error_evidence_masks_the_whole_chain_and_keeps_paths_relative"
    )


def test_error_evidence_masks_notes_contexts_and_exception_groups():
    group = _chained()
    evidence = error_evidence(group, Redactor())
    tb = evidence["traceback"]
    for secret in ("hunter2", "ctx1", "ctx2", "note3", "grp4"):
        assert secret not in tb
    assert "note: token=***" in tb and "Bearer ***" in tb and "redis://:***@db" in tb and "| ValueError" in tb
    assert "During handling of the above exception" not in tb  # `from None` suppressed the context
    group.__suppress_context__ = False
    assert "KeyError: 'api_key=***'" in error_evidence(group, Redactor())["traceback"]


def test_the_traceback_keeps_its_tail_after_masking():
    try:
        _raise("x" * 10_000)
    except RuntimeError as exc:
        evidence = error_evidence(exc, Redactor())
    assert len(evidence["traceback"]) <= TRACEBACK_MAX_CHARS
    assert evidence["traceback"].endswith("RuntimeError: boom password=***\n")


def _digest_at(filename: str, token: str) -> str:
    """The digest of an exception raised by the same code loaded from ``filename``."""
    namespace: dict = {}
    exec(compile("def job(t):\n    raise RuntimeError(t)\n", filename, "exec"), namespace)
    try:
        namespace["job"](token)
    except RuntimeError as exc:
        return tracebacks.digest(exc)
    raise AssertionError("job() did not raise")


def test_the_digest_depends_on_where_not_on_the_message_or_the_host():
    host_a = _digest_at("/srv/a/.venv/lib/python3.11/site-packages/billing/job.py", "password=a")
    assert _digest_at("/opt/b/lib/python3.11/site-packages/billing/job.py", "password=b") == host_a
    assert _digest_at("/srv/a/.venv/lib/python3.11/site-packages/billing/other.py", "password=a") != host_a


def test_a_broken_str_still_gives_evidence():
    class Broken(Exception):
        def __str__(self):
            raise TypeError("no")

    try:
        raise Broken()
    except Broken as exc:
        evidence = error_evidence(exc, Redactor())
    assert evidence["exception_message"] == "<Broken: str() failed>" and evidence["traceback"]
