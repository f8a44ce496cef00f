"""``runwatch bridge mirror`` and ``runwatch bridge actions``: the console's dead-letter passes by hand or cron.

The workers' maintenance thread runs both on every pass; these are for deployments that run no
worker of Runwatch's (or want a backstop), as ``runwatch bridge scan`` is for the adapter.
"""

from __future__ import annotations

import argparse

from runwatch.errors import ConfigError


def register(bsub: argparse._SubParsersAction) -> None:
    mirror = bsub.add_parser("mirror", help="one mirror pass: copy the dead letters into PostgreSQL for the API")
    mirror.add_argument("--namespace", default="dramatiq")
    mirror.add_argument("--max-new", type=int, default=None, help="new letters mirrored in this pass (default 2000)")
    mirror.set_defaults(func=_mirror)
    actions = bsub.add_parser("actions", help="execute the requeues and purges operators asked for (the API)")
    actions.add_argument("--namespace", default="dramatiq")
    actions.add_argument("--max-letters", type=int, default=None, help="letters handled in this pass (default 500)")
    actions.set_defaults(func=_actions)


def _positive(value: int | None, name: str, default: int) -> int:
    if value is None:
        return default
    if value < 1:
        raise ConfigError(f"{name} must be at least 1")
    return value


def _mirror(args: argparse.Namespace) -> int:
    from .commands import _context
    from .mirror import DEFAULT_MAX_NEW, mirror_once

    max_new = _positive(args.max_new, "--max-new", DEFAULT_MAX_NEW)
    _, letters, engine, _ = _context(args)
    with letters:
        result = mirror_once(letters, engine, max_new=max_new)
    if result.locked_out:
        print("another mirror pass is running; nothing done")
        return 0
    print(
        f"mirrored {result.in_redis} dead letter(s) in {result.queues} queue(s): {result.added} added, "
        f"{result.removed} removed, {result.linked} linked to runs, {result.not_yet_mirrored} left for the next pass"
    )
    return 0


def _actions(args: argparse.Namespace) -> int:
    from .actions import DEFAULT_MAX_LETTERS, execute_once
    from .commands import _context

    limit = _positive(args.max_letters, "--max-letters", DEFAULT_MAX_LETTERS)
    _, letters, engine, policy = _context(args)
    with letters:
        result = execute_once(letters, engine, policy, max_letters=limit)
    if result.locked_out:
        print("another executor is running; nothing done")
        return 0
    print(
        f"worked on {result.actions} action(s): {result.requeued} requeued, {result.purged} purged, "
        f"{result.skipped} skipped (already gone); finished {result.finished or 'none'}"
        f"{f'; failed {result.failed}' if result.failed else ''}"
    )
    return 1 if result.failed else 0
