"""Which destination of a distribution step gets a lead first (streams/config/flows.py,
``Distribute``): the order is chosen here, once per lead, and kept in the lead's state.

- ``weighted`` (and ``round_robin``, equal weights): smooth weighted round robin. Each
  destination is first for exactly its share of every ``sum(weights)`` leads this worker
  orders, and the picks interleave (70/30 gives a a b a a b a a b a, not 7 a's then 3
  b's). The rest of the order follows the same counters: the destination next in line
  comes next. Over several workers each keeps its own counters, so at any moment the
  shares are exact to within one lead per destination per worker.
- ``priority`` by ``price``: the highest fixed price first (destinations without one
  last), ties in the listed order.
- ``capacity``: the most room left in its tightest cap first (an uncapped destination has
  all of it), as last reported by the worker that counts it (streams/control/capacity.py).
- ``performance``: the best acceptance rate (or revenue per attempt, less the credits of
  returns judged in the window) over the last ``window_min`` minutes of every worker's
  delivery attempts first. A destination with
  few attempts is judged with a prior of one acceptance in two attempts, so a newcomer is
  tried and a run of bad luck is not final. Each worker counts its own attempts per
  minute and tells the others the minutes that changed (``PerformanceTally`` on the
  control topic, every 10 s): each ranks by all attempts, its own as they happen,
  the others' as of their last tally. Only destinations that a ``performance`` step
  ranks are counted, each for the longest window it is ranked over.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from streams.config.flows import Distribute
from streams.control.capacity import CapacityBoard
from streams.model import OutcomeCategory, OutcomeKind
from streams.stages.attempt import Attempt

log = logging.getLogger(__name__)

BUCKET_S = 60.0  # performance is kept per minute
SKEW_MINUTES = 5  # a tally's minute may be this far ahead of this worker's clock
Counts = list[Any]  # [attempts: int, accepted: int, revenue: Decimal], one minute's
MinuteTally = tuple[int, int, int, Decimal]  # (minute, attempts, accepted, revenue)


class Distributor:
    def __init__(
        self,
        prices: Mapping[str, Decimal | None],
        clock: Callable[[], float] = time.time,
        capacity: CapacityBoard | None = None,
        windows: Mapping[str, float] | None = None,
        worker: str = "",
    ) -> None:
        """``windows``: each destination a ``performance`` step ranks → its longest window
        in seconds (``performance_windows``; held, and changed in place on a reload);
        ``worker``: this worker's name, as its tallies carry it."""
        self._prices = prices
        self._capacity = capacity or CapacityBoard()
        self._clock = clock
        self._windows = windows if windows is not None else {}
        self._worker = worker
        # (flow id, step path) → each destination's current weight (smooth round robin)
        self._current: dict[tuple[str, str], list[int]] = {}
        # destination id → minute → counts: this worker's attempts, and everyone's
        self._own: dict[str, dict[int, Counts]] = defaultdict(dict)
        self._all: dict[str, dict[int, Counts]] = defaultdict(dict)
        # (worker, destination id) → minute → counts, as that worker last told them
        self._heard: dict[tuple[str, str], dict[int, Counts]] = defaultdict(dict)
        self._changed: dict[str, set[int]] = defaultdict(set)  # not told yet
        self._telling: list[tuple[str, list[MinuteTally]]] = []  # sent, not yet confirmed
        self._pruned_minute = 0

    def order(self, step: Distribute) -> list[str]:
        if step.kind == "weighted":
            return self._weighted(step)
        if step.kind == "priority":
            return self._by_price(step.destinations)
        if step.kind == "capacity":
            # Most room first (a destination without caps has all of it); ties as listed.
            return sorted(step.destinations, key=self._capacity.room, reverse=True)
        return self._by_performance(step.destinations, step.by, step.window_s)

    def saw(self, attempt: Attempt) -> None:
        """A delivery attempt's outcome, for ``performance``: one that was never sent
        (a closed circuit, a full cap, a schedule) says nothing of the recipient."""
        destination_id = attempt.destination_id
        if attempt.outcome.category is OutcomeCategory.NOT_SENT:
            return
        if destination_id not in self._windows:
            return  # no performance step ranks it
        minute = int(attempt.finished_at.timestamp() // BUCKET_S)
        accepted = attempt.outcome.kind is OutcomeKind.SUCCESS
        revenue = (attempt.outcome.price or Decimal(0)) if accepted else Decimal(0)
        for book in (self._own, self._all):
            counts = book[destination_id].setdefault(minute, [0, 0, Decimal(0)])
            counts[0] += 1
            counts[1] += accepted
            counts[2] += revenue
        self._changed[destination_id].add(minute)

    def returned(self, destination_id: str, credit: Decimal, at_s: float) -> None:
        """A return of a sale accepted (judged here, in the lead's partition): its credit
        comes off the destination's revenue in the minute it was judged, so ``by:
        revenue`` ranks by what a buyer keeps paying for, not by what it bought and sent
        back. Its acceptance rate stays as the recipient answered."""
        if destination_id not in self._windows:
            return
        minute = int(at_s // BUCKET_S)
        for book in (self._own, self._all):
            book[destination_id].setdefault(minute, [0, 0, Decimal(0)])[2] -= credit
        self._changed[destination_id].add(minute)

    def tallies(self) -> list[tuple[str, list[MinuteTally]]]:
        """This worker's minutes that changed since the tallies ``told`` last confirmed,
        per destination, each with its count so far: for the other workers
        (``PerformanceTally``). Until ``told``, the same minutes come again."""
        tallied = []
        for destination_id, minutes in list(self._changed.items()):
            own = self._own.get(destination_id, {})
            rows = [(m, own[m][0], own[m][1], own[m][2]) for m in sorted(minutes) if m in own]
            if rows:
                tallied.append((destination_id, rows))
            else:  # forgotten since (out of its window, or no longer ranked)
                del self._changed[destination_id]
        self._telling = tallied
        return tallied

    def told(self) -> None:
        """The last ``tallies`` reached the control topic: a minute is told unless it
        changed again since (a failed send leaves them all to tell at the next tally)."""
        for destination_id, rows in self._telling:
            own = self._own.get(destination_id, {})
            changed = self._changed[destination_id]
            for minute, attempts, accepted, revenue in rows:
                if own.get(minute) in (None, [attempts, accepted, revenue]):
                    changed.discard(minute)
            if not changed:
                del self._changed[destination_id]
        self._telling = []

    def heard(self, record: dict[str, Any]) -> None:
        """A decoded ``PerformanceTally``: a worker's counts of some minutes, each replacing
        what that worker told of the same minute before."""
        worker, destination_id = record["worker"], record["destination_id"]
        if destination_id not in self._windows:
            return
        oldest = self._oldest_minute(destination_id)
        newest = int(self._clock() // BUCKET_S) + SKEW_MINUTES
        for row in record["minutes"]:
            minute = int(row["minute"])
            counts: Counts = [int(row["attempts"]), int(row["accepted"]), row["revenue"]]
            if not oldest <= minute <= newest:
                continue  # out of every window (or from a clock far ahead: never forgotten)
            # (Revenue may be below zero: a minute of returns credited.)
            if not 0 <= counts[1] <= counts[0]:
                # Not what a worker writes: it would turn a ranking upside down, or divide
                # by zero for every lead of the flow.
                log.warning("a performance tally for %s that cannot be: ignored", destination_id)
                return
            if worker == self._worker:
                # Its own tally read back: an echo, or one written before a restart under
                # the same name (a container's pid 1), kept where this run counted nothing.
                if minute not in self._own[destination_id]:
                    self._own[destination_id][minute] = counts
                    self._add(destination_id, minute, counts, 1)
                continue
            earlier = self._heard[(worker, destination_id)].get(minute)
            if earlier is not None:
                self._add(destination_id, minute, earlier, -1)
            self._heard[(worker, destination_id)][minute] = counts
            self._add(destination_id, minute, counts, 1)

    def known(self) -> dict[str, tuple[int, int]]:
        """Each ranked destination → (attempts, accepted) of every worker over its longest
        window, as this worker knows them (its metrics)."""
        self._forget_old_minutes()
        return {
            destination_id: (
                sum(counts[0] for counts in minutes.values()),
                sum(counts[1] for counts in minutes.values()),
            )
            for destination_id, minutes in list(self._all.items())
        }

    # ── inside ─────────────────────────────────────────────────────────────
    def _weighted(self, step: Distribute) -> list[str]:
        current = self._current.setdefault((step.flow_id, step.path), [0] * len(step.weights))
        total = sum(step.weights)
        for i, weight in enumerate(step.weights):
            current[i] += weight
        first = max(range(len(current)), key=lambda i: (current[i], -i))
        current[first] -= total
        rest = sorted(
            (i for i in range(len(current)) if i != first), key=lambda i: (-current[i], i)
        )
        return [step.destinations[i] for i in (first, *rest)]

    def _by_price(self, destinations: Sequence[str]) -> list[str]:
        def price(destination_id: str) -> Decimal:
            fixed = self._prices.get(destination_id)
            return Decimal(-1) if fixed is None else fixed

        return sorted(destinations, key=price, reverse=True)  # sorted() is stable

    def _by_performance(self, destinations: Sequence[str], by: str, window_s: float) -> list[str]:
        self._forget_old_minutes()
        since = int((self._clock() - window_s) // BUCKET_S)

        def score(destination_id: str) -> Decimal:
            minutes = self._all.get(destination_id, {})
            counted = [counts for minute, counts in minutes.items() if minute >= since]
            attempts: int = sum(counts[0] for counts in counted)
            if by == "revenue":
                revenue: Decimal = sum((counts[2] for counts in counted), Decimal(0))
                return revenue / (attempts + 1)
            accepted: int = sum(counts[1] for counts in counted)
            return Decimal(accepted + 1) / (attempts + 2)

        return sorted(destinations, key=score, reverse=True)

    def _add(self, destination_id: str, minute: int, counts: Counts, sign: int) -> None:
        total = self._all[destination_id].setdefault(minute, [0, 0, Decimal(0)])
        for i in range(3):
            total[i] += sign * counts[i]

    def _oldest_minute(self, destination_id: str) -> int:
        """The oldest minute a step ranking the destination can still look at."""
        window_s = self._windows.get(destination_id, 0.0)
        return int((self._clock() - window_s) // BUCKET_S)

    def _forget_old_minutes(self) -> None:
        """Minutes older than every window that ranks them go, once a minute (and every
        destination no step ranks any more)."""
        now = int(self._clock() // BUCKET_S)
        if now == self._pruned_minute:
            return
        self._pruned_minute = now
        for book in (self._own, self._all):
            for destination_id in list(book):
                self._forget_before(book, destination_id, destination_id)
        for key in list(self._heard):
            self._forget_before(self._heard, key, key[1])

    def _forget_before(
        self, book: dict[Any, dict[int, Counts]], key: Any, destination_id: str
    ) -> None:
        if destination_id not in self._windows:
            del book[key]
            return
        oldest = self._oldest_minute(destination_id)
        minutes = book[key]
        for minute in [m for m in minutes if m < oldest]:
            del minutes[minute]
