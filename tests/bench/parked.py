"""Parked work: what the 0.2 s look at parked retries and held leads costs with many of
them waiting (a destination down or paused for a while), against reading every parked
entry, as the look did before the due index (streams/control/due.py).

Measured before the index (2026-12-01): 10,000 parked deliveries, 100 ms a look (half a
core at five looks a second); 50,000, 560 ms (more than the event loop has between two
looks). The figure is the look's time as a share of a whole read of the same table, in
the same run (target: at most 1 %).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from streams.config import DestinationsFile
from streams.control.desk import DeliveryDesk
from streams.control.messages import WorkItem
from streams.control.tables import Owned
from streams.model import Lead
from tests.bench.mapping import sample_leads


async def _never(*_: Any) -> Any:
    raise AssertionError("nothing is delivered here")


def run(quick: bool = False) -> dict[str, Any]:
    count = 10_000 if quick else 50_000
    crm = DestinationsFile.model_validate(
        {"destinations": [{"id": "crm", "url": "https://crm.example.com"}]}
    ).destinations[0]
    owns = Owned(frozenset(range(4)), 4)
    parked: dict[str, Any] = {}
    desk = DeliveryDesk({"crm": crm}, _never, circuits={}, caps={}, delivered={}, parked=parked)
    desk.due(owns)
    later = time.time() + 3600
    for lead in sample_leads(count):
        item = WorkItem(Lead(str(lead.envelope["id"]), lead.envelope), "crm", "plan", 2, False)
        desk._store_parked(item, later)  # as a retry parks it

    looks, reads = [], []
    for _ in range(5):
        started = time.perf_counter()
        desk.due(owns)
        looks.append(time.perf_counter() - started)
        started = time.perf_counter()
        # What a look did before: every parked entry read and decoded.
        [WorkItem.from_json(value["item"].encode()) for value in list(parked.values())]
        reads.append(time.perf_counter() - started)
    look, read = statistics.median(looks), statistics.median(reads)
    return {
        "parked": count,
        "look_us": round(look * 1e6),
        "whole_read_ms": round(read * 1e3, 1),
        "look_vs_whole_read": round(look / read, 5),
        "targets": {"look_vs_whole_read": 0.01},
    }
