"""A clock the test moves: what the stages take instead of time.monotonic or time.time."""

from __future__ import annotations

import asyncio


class Clock:
    """Reads ``now``; moves when the test adds to it, or when someone ``sleep``s on it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)  # a sleep lets the others run, as the real one does
