"""Log a failing dependency once per burst, with counts, not once per message."""

from __future__ import annotations

import logging
import time


class BurstLogger:
    """First failure of a burst logs a warning; the recovery logs how much the burst held."""

    def __init__(self, logger: logging.Logger, what: str, *, repeat_seconds: float = 60.0) -> None:
        self._logger = logger
        self._what = what
        self._repeat = repeat_seconds
        self._failures = 0
        self._items = 0
        self._since = 0.0
        self._last_log = 0.0

    @property
    def failing(self) -> bool:
        return self._failures > 0

    def failure(self, exc: BaseException, items: int = 1) -> None:
        now = time.monotonic()
        if self._failures == 0:
            self._since = now
        self._failures += 1
        self._items += items
        if self._failures == 1 or now - self._last_log >= self._repeat:
            self._last_log = now
            self._logger.warning(
                "%s: %s: %s (%d failures, %d items affected over %.0f s; retrying, nothing is lost)",
                self._what,
                type(exc).__name__,
                exc,
                self._failures,
                self._items,
                now - self._since,
            )

    def success(self) -> None:
        if self._failures:
            self._logger.warning(
                "%s: recovered after %d failures over %.1f s (%d items retried)",
                self._what,
                self._failures,
                time.monotonic() - self._since,
                self._items,
            )
            self._failures = self._items = 0
