"""Is the worker getting anywhere? A worker with records waiting that has finished none for
a while is stalled: it answers /readyz with 503 (so Kubernetes stops counting on it, and
an alert can fire) even though its event loop still answers /healthz."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.held = 0  # records taken and not finished
        self._since = clock()  # the last finish, or when waiting began
        self._waiting = False

    def taken(self) -> None:
        if not self._waiting:
            self._since = self._clock()  # idle until now: waiting starts here
            self._waiting = True
        self.held += 1

    def finished(self) -> None:
        self.held = max(self.held - 1, 0)
        self._since = self._clock()
        self._waiting = self.held > 0  # else idle until the next record or backlog

    def stalled_for(self, backlog: int) -> float:
        """Seconds without a finished record while some wait (held, or ``backlog`` not yet
        read); 0 when nothing waits."""
        if self.held == 0 and backlog == 0:
            self._waiting = False
            return 0.0
        if not self._waiting:  # a backlog seen for the first time
            self._since = self._clock()
            self._waiting = True
        return self._clock() - self._since
