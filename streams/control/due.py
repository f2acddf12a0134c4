"""Which entries of a table of waiting work are due, without reading the whole table each
time: parked retries and held leads (looked at every 0.2 s) and polls (every 5 s).

Thousands wait while a destination is down or paused, and reading them all is not
cheap: measured on a plain dict (RocksDB is slower), 10,000 parked deliveries took 100 ms
a look (half a core at five looks a second) and 50,000 took 560 ms, more than the event
loop has between two looks. The index keeps the keys in the order they are due; a look
takes the due ones off its front.

The table stays the truth and the index is this worker's memory of it: an entry is added
as it is written here; the whole table is read again when the partitions this worker
owns change (a rebalance recovers entries another worker wrote), when ``rescan`` changes
(an operator's action may release held entries before their time), and every few
minutes anyway."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

from streams.control.tables import owned_partitions

RESCAN_S = 300.0  # the whole table read again at least this often, whatever happened


class DueIndex:
    def __init__(
        self,
        table: MutableMapping[str, Any],
        due_at: Callable[[Any], float],
        owner: Callable[[str], str],
        rescan_s: float = RESCAN_S,
        read_all: Callable[[list[tuple[str, Any]]], None] | None = None,
    ) -> None:
        """``due_at(value)``: when an entry is due; ``owner(key)``: the id whose partition
        holds the key; ``read_all(entries)``: told of every entry of the owned partitions
        whenever the table is read whole."""
        self._on_read_all = read_all
        self._table = table
        self._read_due_at = due_at
        self._owner = owner
        self._rescan_s = rescan_s
        self._heap: list[tuple[float, str]] = []
        self._read_for: Hashable = None  # (partitions, rescan) the last full read was for
        self._next_read = 0.0
        self.waiting = 0  # entries of owned partitions: at the last full read, then kept up

    def put(self, key: str, value: Any) -> None:
        """Write ``value`` at ``key`` in the table, and note when it is due."""
        self.waiting += key not in self._table
        self._table[key] = value
        heapq.heappush(self._heap, (self._due_at(value), key))

    def remove(self, key: str) -> None:
        """Take ``key`` out of the table (its index entry goes when it comes up)."""
        if self._table.pop(key, None) is not None:
            self.waiting = max(self.waiting - 1, 0)

    def due(
        self,
        owns: Callable[[str], bool],
        now: float,
        rescan: Hashable = None,
        early: Callable[[str, Any], bool] | None = None,
    ) -> list[tuple[str, Any]]:
        """The entries due at ``now`` among the owners ``owns`` owns, in the order due; on a
        full read also those ``early(key, value)`` lets go before their time. Each stays
        in the index until it is removed from the table or written again."""
        partitions = owned_partitions(owns)
        read_for = (partitions, rescan)
        if partitions is None or read_for != self._read_for or now >= self._next_read:
            self._read_for, self._next_read = read_for, now + self._rescan_s
            return self._read_all(owns, now, early)
        found: dict[str, Any] = {}
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            value = self._table.get(key)
            if value is None or self._due_at(value) != due or key in found:
                continue  # removed, written again since (its own entry), or a repeat
            found[key] = value
        for key, value in found.items():  # until the caller removes it
            heapq.heappush(self._heap, (self._due_at(value), key))
        return list(found.items())

    def _due_at(self, value: Any) -> float:
        """When an entry is due; one without a readable time is due now (its reader says
        what is wrong with it)."""
        try:
            return self._read_due_at(value)
        except (KeyError, TypeError, ValueError):
            return 0.0

    def _read_all(
        self, owns: Callable[[str], bool], now: float, early: Callable[[str, Any], bool] | None
    ) -> list[tuple[str, Any]]:
        mine = [
            (self._due_at(value), key, value)
            for key, value in list(self._table.items())
            if owns(self._owner(key))
        ]
        if self._on_read_all is not None:
            self._on_read_all([(key, value) for _, key, value in mine])
        self._heap = [(due, key) for due, key, _ in mine]
        heapq.heapify(self._heap)
        self.waiting = len(mine)
        found = [
            (due, key, value)
            for due, key, value in mine
            if due <= now or (early is not None and early(key, value))
        ]
        found.sort(key=lambda entry: entry[0])
        return [(key, value) for _, key, value in found]
