"""Jinja2 filters of the console: how times, durations, states and JSON read on a page."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

#: Freshness badge: a symbol and a label in words, so the state never depends on colour alone.
BADGES = {
    "fresh_active": ("●", "fresh"),
    "likely_stale": ("▲", "likely stale"),
    "reconciled_failed": ("✖", "reconciled failed"),
    "terminal_normal": ("■", "finished"),
}


def when(value: Any) -> str:
    """A timestamp as ``2026-01-31 12:00:05Z`` (UTC, to the second); blank for none."""
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        value = value.isoformat()
    text = str(value).replace("T", " ").replace("+00:00", "Z")
    head, _, tail = text.partition(".")
    return head + ("Z" if tail.endswith("Z") or text.endswith("Z") else "")


def duration(seconds: Any) -> str:
    """Seconds as ``1 h 05 min``, ``3 min 20 s`` or ``12.5 s``; negative ones as ``… ago``."""
    if seconds is None:
        return "—"
    s = float(seconds)
    sign, s = ("-" if s < 0 else ""), abs(s)
    if s < 60:
        out = f"{s:.1f} s"
    elif s < 3600:
        out = f"{int(s // 60)} min {int(s % 60):02d} s"
    else:
        out = f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    return sign + out


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def badge_symbol(state: str) -> str:
    return BADGES.get(state, ("?", state))[0]


def badge_label(state: str) -> str:
    return BADGES.get(state, ("?", state))[1]


FILTERS = {
    "when": when,
    "duration": duration,
    "pretty_json": pretty_json,
    "badge_symbol": badge_symbol,
    "badge_label": badge_label,
}
