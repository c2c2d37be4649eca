"""What the plugin tells the server log: its first few decisions in full, then a periodic summary.

Both hooks (request ordering, DP dispatch) log through one :class:`DecisionLog` each, so a server
log shows the plugin at work without one line per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("moesched.sglang")


class DecisionLog:
    """Log the first ``first_n`` decisions verbatim, then a summary every ``interval_s`` seconds.

    Args:
        first_n: decisions logged in full.
        interval_s: seconds between summary lines (0: no summaries).
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, first_n: int, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first_n = first_n
        self.interval_s = interval_s
        self._clock = clock
        self._decisions = 0
        self._next_summary = clock() + interval_s

    def decision(self, describe: Callable[[], str]) -> None:
        """Count one decision; log ``describe()`` if it is among the first ``first_n``."""
        self._decisions += 1
        if self._decisions <= self.first_n:
            logger.info("%s", describe())

    def maybe_summary(self, describe: Callable[[], str]) -> None:
        """Log ``describe()`` if a summary is due."""
        if self.interval_s <= 0:
            return
        now = self._clock()
        if now >= self._next_summary:
            self._next_summary = now + self.interval_s
            logger.info("%s", describe())
