"""Poison pills: messages that crash their worker again and again, stopped by the healer's pass.

Dramatiq does not count a redelivery as a retry, so a message that OOM-kills its worker would
be delivered forever. A live run delivered ``max_crash_redeliveries`` more times than attempted
within the window is dead-lettered while it waits in its queue, and its run failed with the
deliveries as evidence (``run.infrastructure_timeout_or_abandonment``). Where the broker cannot
take a message out of its queue by id (RabbitMQ), the worker refuses its next redelivery instead
(``runwatch.workers.poison_gate``, the same rule per message: ``statements.POISON_PILL``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Connection

from . import statements as sql
from .reasons import INFRASTRUCTURE_ENDED


class Options(Protocol):
    """The part of ``healer.HealOptions`` this pass reads (read-only: the options are frozen)."""

    @property
    def dry_run(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def max_crash_redeliveries(self) -> int: ...
    @property
    def crash_window_seconds(self) -> float: ...


def stop_poison_pills(
    conn: Connection,
    dead_letter_if_queued: Callable[[str, str], str | None],
    options: Options,
    result: Any,
) -> None:
    """Dead-letter crash-looping messages waiting in their queue, and fail their runs with the deliveries.

    ``result`` is the pass's ``HealResult``: decisions, ``poison_pills``, ``skipped`` and ``finished`` grow.
    """
    params = {"window": options.crash_window_seconds, "max_crash": options.max_crash_redeliveries}
    for run in conn.execute(sql.POISON_CANDIDATES, {**params, "limit": options.limit}).mappings().all():
        evidence = {
            "poison_pill": True,
            "crash_redeliveries": run["deliveries"] - run["attempts"],
            "max_crash_redeliveries": options.max_crash_redeliveries,
            "window_seconds": options.crash_window_seconds,
            "attempts": run["attempts"],
            "deliveries": run["deliveries"],
            "deliveries_in_window": run["deliveries_seen"],
        }
        if not run["redis_message_id"]:
            # NOTE: no broker id to take the message out of its queue by (RabbitMQ gives none and
            # cannot): the worker's poison gate (runwatch.workers.poison_gate) refuses its next
            # redelivery, and the recorder fails the run then.
            note = "the broker cannot dead-letter it by id: the worker refuses its next redelivery"
            result.decisions.append({"id": run["id"], "action": "skip", "why": "poison_gate", "note": note, **evidence})
            result.skipped["poison_gate"] += 1
            continue
        result.decisions.append({"id": run["id"], "action": "dead_letter", **evidence})
        if options.dry_run:
            continue
        key = dead_letter_if_queued(run["queue_name"], run["redis_message_id"])
        if key is None:
            # NOTE: in flight right now (or gone): the next crash requeues it and the next pass catches it.
            result.skipped["poison_in_flight"] += 1
            continue
        evidence["dead_letter_key"] = key
        update: dict[str, Any] = {
            "id": run["id"],
            "reason_code": INFRASTRUCTURE_ENDED.code,
            "reason_message": INFRASTRUCTURE_ENDED.message,
            "evidence": json.dumps(evidence, default=str),
        }
        finished = [dict(r) for r in conn.execute(sql.RECONCILE_POISON, update).mappings()]
        result.poison_pills += len(finished)
        result.finished.extend(finished)
