"""A destination's limits in one worker: requests at once, per second, per hour, per day.

A worker holds its share of each limit (its part of the partitions that deliver to the
destination), and that share changes with every rebalance. The gate is retuned in place:
requests already waiting wait on the new numbers. Building a second gate would let the
first one's waiting requests go on at the old rate beside the new one's (seen as twice the
allowance, for a while, after a rebalance).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


class SlidingWindow:
    """At most ``allowed`` requests in any ``period_s`` (sliding, exact): a vendor's hourly
    or daily allowance, and (one in 1/rate seconds) a rate per second. A token bucket would
    let twice the allowance through in the first period; this keeps the times of the
    requests in the period and waits for the oldest to leave it. Both numbers may change
    while requests wait: the first in line looks at them again when it wakes."""

    def __init__(
        self,
        allowed: int,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.allowed = allowed
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()  # first come, first served

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._forget_before(now - self.period_s)
                if len(self._sent) < self.allowed:
                    self._sent.append(now)
                    return
                # The oldest that keeps the window full leaves it first.
                oldest = self._sent[len(self._sent) - self.allowed]
                await self._sleep(oldest + self.period_s - now)

    def free_in(self, ahead: int = 0) -> float:
        """Seconds until a request asked now could go, with ``ahead`` requests before it
        (each going as soon as it may): the times of those sent, then of those ahead. Asked
        of every ping: no copy of a large allowance's times (an hour's 10,000)."""
        now = self._clock()
        self._forget_before(now - self.period_s)
        sent = self._sent
        if len(sent) + ahead < self.allowed:
            return 0.0
        coming: list[float] = []  # when those ahead go
        at = now
        for k in range(ahead + 1):
            index = len(sent) + k - self.allowed  # the one that must leave the window first
            if index >= 0:
                oldest = sent[index] if index < len(sent) else coming[index - len(sent)]
                at = max(at, oldest + self.period_s)
            coming.append(at)
        return at - now

    def _forget_before(self, start: float) -> None:
        """Drop the requests sent at or before ``start``: out of the window."""
        while self._sent and self._sent[0] <= start:
            self._sent.popleft()


class Slots:
    """At most ``limit`` requests at once (an asyncio semaphore); the limit can change
    while requests hold and wait for slots. A lowered limit takes back free slots at once
    and the rest as their holders release them."""

    def __init__(self, limit: int) -> None:
        self._free = asyncio.Semaphore(limit)
        self._limit = limit
        self._owed = 0  # slots to keep when released: the limit was lowered while held

    async def acquire(self) -> None:
        await self._free.acquire()

    def release(self) -> None:
        if self._owed:
            self._owed -= 1
        else:
            self._free.release()

    async def set_limit(self, limit: int) -> None:
        change, self._limit = limit - self._limit, limit
        while change > 0 and self._owed:
            self._owed, change = self._owed - 1, change - 1
        for _ in range(change):
            self._free.release()
        self._owed += max(0, -change)
        while self._owed and not self._free.locked():
            await self._free.acquire()  # free now: returns at once
            self._owed -= 1


@dataclass(frozen=True, slots=True)
class Allowance:
    """A destination's limits as this worker holds them (its share applied)."""

    concurrency: int | None
    per_second: float | None
    per_hour: int | None
    per_day: int | None


class Gate:
    """``async with gate.held():`` waits for the destination's allowance; other destinations go
    on. ``retune`` applies new numbers to the requests already waiting."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.allowance = Allowance(None, None, None, None)
        self._slots: Slots | None = None
        self._windows: dict[str, SlidingWindow] = {}
        self.waiting = 0  # requests waiting for their turn (deliveries past it are parked)
        self._held_until = 0.0  # the recipient said its window is spent: none goes before

    @property
    def idle(self) -> bool:
        return self._slots is None and not self._windows and self._held_until <= self._clock()

    def hold(self, seconds: float) -> None:
        """The recipient said no request will be taken for ``seconds`` (its rate limit's
        window is spent): requests wait for it, then go in their turn. A later hold extends
        it, a shorter one does not cut it."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def turn_in(self) -> float:
        """Seconds at least before a request asked now would go: the recipient's hold and
        this worker's rate windows, with the requests already waiting ahead of it (how
        long in-flight slots take to free is not known). An auction does not ping a buyer
        whose turn would come after the ping's timeout."""
        wait = self._held_until - self._clock()
        for window in self._windows.values():
            wait = max(wait, window.free_in(self.waiting))
        return max(0.0, wait)

    async def retune(self, allowance: Allowance) -> None:
        if allowance == self.allowance:
            return
        self.allowance = allowance
        if allowance.concurrency is None:
            self._slots = None  # those holding a slot release it into the old one
        elif self._slots is None:
            self._slots = Slots(allowance.concurrency)
        else:
            await self._slots.set_limit(allowance.concurrency)
        per_second = allowance.per_second
        wanted = {
            # One request every 1/rate seconds: no second ever sees a burst on top.
            "second": (1, 1.0 / per_second) if per_second else None,
            "hour": (allowance.per_hour, 3600.0) if allowance.per_hour else None,
            "day": (allowance.per_day, 86400.0) if allowance.per_day else None,
        }
        for name, numbers in wanted.items():
            window = self._windows.get(name)
            if numbers is None:
                self._windows.pop(name, None)
            elif window is None:
                self._windows[name] = SlidingWindow(*numbers, self._clock, self._sleep)
            else:
                window.allowed, window.period_s = numbers

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            # The per-day and per-hour allowances first: a request waiting for tomorrow
            # must not hold this second's turn.
            for name in ("day", "hour", "second"):
                window = self._windows.get(name)
                if window is not None:
                    await window.acquire()
            slots = self._slots  # released into the one it came from, whatever retune does
            if slots is not None:
                await slots.acquire()
            try:
                # Asked last, with the slot held: a hold set while this one waited for its
                # slot (the answer that freed it said the window was spent) holds it too.
                while (left := self._held_until - self._clock()) > 0:
                    await self._sleep(left)
            except BaseException:
                if slots is not None:
                    slots.release()
                raise
        finally:
            self.waiting -= 1  # its turn came, or it was cancelled while it waited
        if slots is None:
            yield
            return
        try:
            yield
        finally:
            slots.release()
