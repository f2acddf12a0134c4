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
- ``performance``: the best acceptance rate (or revenue per attempt) over the last
  ``window_min`` minutes of this worker's own delivery attempts first. A destination with
  few attempts is judged with a prior of one acceptance in two attempts, so a newcomer is
  tried and a run of bad luck is not final. Each worker judges from the attempts of its
  own partitions, a share of all leads by the partition count.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from streams.config.flows import Distribute
from streams.control.capacity import CapacityBoard
from streams.model import OutcomeCategory, OutcomeKind
from streams.stages.attempt import Attempt

BUCKET_S = 60.0  # performance is kept per minute


class Distributor:
    def __init__(
        self,
        prices: Mapping[str, Decimal | None],
        clock: Callable[[], float] = time.time,
        capacity: CapacityBoard | None = None,
    ) -> None:
        self._prices = prices
        self._capacity = capacity or CapacityBoard()
        self._clock = clock
        # (flow id, step path) → each destination's current weight (smooth round robin)
        self._current: dict[tuple[str, str], list[int]] = {}
        # destination id → minute → [attempts, accepted, revenue]
        self._seen: dict[str, dict[int, list[Decimal]]] = defaultdict(dict)

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
        if attempt.outcome.category is OutcomeCategory.NOT_SENT:
            return
        minute = int(attempt.finished_at.timestamp() // BUCKET_S)
        counts = self._seen[attempt.destination_id].setdefault(
            minute, [Decimal(0), Decimal(0), Decimal(0)]
        )
        counts[0] += 1
        if attempt.outcome.kind is OutcomeKind.SUCCESS:
            counts[1] += 1
            counts[2] += attempt.outcome.price or 0

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
        since = int((self._clock() - window_s) // BUCKET_S)

        def score(destination_id: str) -> Decimal:
            buckets = self._seen[destination_id]
            for minute in [m for m in buckets if m < since]:
                del buckets[minute]
            attempts = sum((b[0] for b in buckets.values()), Decimal(0))
            if by == "revenue":
                return sum((b[2] for b in buckets.values()), Decimal(0)) / (attempts + 1)
            accepted = sum((b[1] for b in buckets.values()), Decimal(0))
            return (accepted + 1) / (attempts + 2)

        return sorted(destinations, key=score, reverse=True)
