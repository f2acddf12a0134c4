"""Deliveries that wait for a crowded destination in its table, not in memory.

A lead waiting for a destination's turn (its in-flight slots, its rate) holds its record
unacknowledged, and an agent holds at most ``COURIER_HELD_PER_AGENT`` records. Measured
before this existed: beside a recipient answering in 1 s with 64 slots, a fast
destination of the same flow averaged 473 leads/s over 8,000 leads but 185 over 15,000 —
past the first 10,000 the slow one's backlog held every record the agent could take, and
every destination went at its pace.

So at most ``limit`` deliveries wait in memory for one destination. The next ones are
parked like a retry (the item in the desk's table, confirmed before the record is
acknowledged, so a SIGKILL loses nothing) and go on, oldest first, as the queue empties:
first come, first served, so a new lead does not pass the parked ones. There is no time
at which room is sure to free (every slot may hang, a daily allowance may be spent), so
they are let go by room, looked at with the parked retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

# A delivery parked for room comes back after a week anyway, as one held for a pause does.
# Not sooner: whatever comes back by time joins the queue whatever its length, and a
# buyer's daily allowance may keep thousands parked for hours. None is forgotten before:
# the index is rebuilt from the table on every full read (``DueIndex``, every 5 minutes).
RECHECK_S = 7 * 86400.0
BACK_WITHIN_S = 30.0  # a delivery let go is counted as on its way back for this long


class Crowds:
    def __init__(
        self, queued: Callable[[str], int], limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``queued(destination_id)``: deliveries waiting in memory for the destination's
        turn (the HTTP sender's count); ``limit``: how many may."""
        self._queued = queued
        self.limit = limit
        self._clock = clock
        # Per destination, the keys of deliveries parked for room, oldest first, and those
        # let go and not yet back (with when): they will join the queue.
        self._parked: dict[str, dict[str, None]] = {}
        self._on_the_way: dict[str, dict[str, float]] = {}

    def back(self, destination_id: str, key: str) -> bool:
        """Its record is being handled: was it let go for room? Asked of every delivery
        taken, whatever becomes of it: one let go that is not sent (accepted already, its
        destination removed or paused meanwhile) must still give back its place, else
        that place stays taken for ``BACK_WITHIN_S``. Seen after a restart: records read
        again before the table was read whole were sent at once, their parked copies were
        let go and came back accepted already, and five places a destination were taken
        each time, half a minute at a time."""
        coming = self._on_the_way.get(destination_id)
        return coming is not None and coming.pop(key, None) is not None

    def must_wait(self, destination_id: str, back: bool = False) -> bool:
        """Park this delivery instead of queueing it in memory? ``back``: it was let go for
        room (``Crowds.back``) and takes its place in the queue."""
        if back:
            return False
        if self._parked.get(destination_id):
            return True  # older ones wait in the table: they go first
        return self._queued(destination_id) >= self.limit

    def parked(self, destination_id: str, key: str) -> None:
        self._parked.setdefault(destination_id, {})[key] = None

    def let_go(self, destination_id: str, key: str) -> None:
        """Its item is being written as a record: it comes back to the queue. Said before
        the write, not after its confirmation: the record may be read back before the
        confirmation arrives, and must then find its place (it was parked again instead,
        first in line, over and over on a loaded machine)."""
        waiting = self._parked.get(destination_id)
        if waiting is None or key not in waiting:
            return  # parked for a retry or a hold, not for room
        del waiting[key]
        if not waiting:
            del self._parked[destination_id]
        self._on_the_way.setdefault(destination_id, {})[key] = self._clock()

    def kept(self, destination_id: str, key: str) -> None:
        """Its record could not be written after ``let_go``: it waits again, first."""
        coming = self._on_the_way.get(destination_id)
        if coming is None or coming.pop(key, None) is None:
            return  # not let go, or already back
        waiting = self._parked.get(destination_id, {})
        self._parked[destination_id] = {key: None, **waiting}

    def gone(self, destination_id: str, key: str) -> None:
        """No longer parked for room (it left the table another way)."""
        waiting = self._parked.get(destination_id)
        if waiting is not None:
            waiting.pop(key, None)
            if not waiting:
                del self._parked[destination_id]

    def with_room(self) -> list[tuple[str, str]]:
        """Parked (destination, key) pairs to let go now, oldest first: as many as each
        destination's queue has room for, less those already on their way back."""
        now = self._clock()
        for destination_id, coming in list(self._on_the_way.items()):
            for key in [key for key, at in coming.items() if at < now - BACK_WITHIN_S]:
                del coming[key]  # went elsewhere (a rebalance), or handled before it was due
            if not coming:
                del self._on_the_way[destination_id]
        chosen: list[tuple[str, str]] = []
        for destination_id, waiting in self._parked.items():
            coming = self._on_the_way.get(destination_id, {})
            room = self.limit - self._queued(destination_id) - len(coming)
            if room > 0:
                chosen += ((destination_id, key) for key in islice(waiting, room))
        return chosen

    def read_again(self, entries: Iterable[tuple[str, Any]]) -> None:
        """The table was read whole (this worker's partitions changed, or a rescan): its
        entries parked for room, as they are now."""
        found = sorted(
            (float(value.get("parked_at", 0.0)), str(value["crowded"]), key)
            for key, value in entries
            if isinstance(value, dict) and value.get("crowded") is not None
        )
        self._parked = {}
        for _, destination_id, key in found:
            self.parked(destination_id, key)
