"""Freshness thresholds per operation type: actor option, then config file, then global default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import Settings


@dataclass(frozen=True)
class Thresholds:
    queued_stale_seconds: int
    running_stale_seconds: int
    source: str  # "actor", "config" or "default": recorded so an operator can see why
    heal: bool = True


@dataclass(frozen=True)
class TypePolicy:
    queued_stale_seconds: int | None = None
    running_stale_seconds: int | None = None
    heal: bool = True


def load_policies(path: Path | None) -> dict[str, TypePolicy]:
    """Read ``[types."<type>"]`` tables from a TOML thresholds file."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read thresholds file {path}: {exc}") from None
    policies: dict[str, TypePolicy] = {}
    for name, table in (data.get("types") or {}).items():
        policies[name] = TypePolicy(
            queued_stale_seconds=_positive(table, "queued_stale_seconds", path, name),
            running_stale_seconds=_positive(table, "running_stale_seconds", path, name),
            heal=bool(table.get("heal", True)),
        )
    return policies


def _positive(table: dict[str, Any], key: str, path: Path, name: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{path}: types.{name}.{key} must be a positive integer, got {value!r}")
    return value


class ThresholdPolicy:
    """Resolves the thresholds of a run from the most specific place that sets them."""

    def __init__(self, settings: Settings, policies: dict[str, TypePolicy] | None = None) -> None:
        self._settings = settings
        self._policies = load_policies(settings.thresholds_file) if policies is None else policies
        self._resolved: dict[tuple[str, int | None, int | None], Thresholds] = {}

    def opted_out_types(self) -> list[str]:
        """Types whose config says ``heal = false``."""
        return sorted(name for name, policy in self._policies.items() if not policy.heal)

    def resolve(
        self, type_: str, *, queued_override: int | None = None, running_override: int | None = None
    ) -> Thresholds:
        # PERF: the drainer asks once per run; the answer only depends on these three.
        key = (type_, queued_override, running_override)
        found = self._resolved.get(key)
        if found is None:
            if len(self._resolved) >= 10_000:  # NOTE: bounded, whatever actor options the events carry
                self._resolved.clear()
            found = self._resolved[key] = self._resolve(type_, queued_override, running_override)
        return found

    def _resolve(self, type_: str, queued_override: int | None, running_override: int | None) -> Thresholds:
        policy = self._policies.get(type_)
        queued, running, source = self._settings.queued_stale_seconds, self._settings.running_stale_seconds, "default"
        if policy is not None:
            if policy.queued_stale_seconds is not None:
                queued, source = policy.queued_stale_seconds, "config"
            if policy.running_stale_seconds is not None:
                running, source = policy.running_stale_seconds, "config"
        if queued_override is not None:
            queued, source = queued_override, "actor"
        if running_override is not None:
            running, source = running_override, "actor"
        return Thresholds(queued, running, source, heal=policy.heal if policy else True)
