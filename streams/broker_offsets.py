"""Where a partition really ends, whatever the broker's ListOffsets says.

Tansu 0.6 answers ListOffsets(latest) with the base offset of the partition's last record
batch + 1, not the last offset + 1 (docs/brokers.md, "Tansu"); the high watermark in a fetch answer
is right. Readers that must not stop short (table recovery, ``courier events``) take the
larger of the two.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

FETCH_TIMEOUT_S = 5.0


async def fetched_end_offsets(consumer: AIOKafkaConsumer, listed: dict[Any, int]) -> dict[Any, int]:
    """``listed`` (partition → ListOffsets end), raised to each partition's fetched high
    watermark. ``consumer`` is started, in no group; its assignment is replaced."""
    consumer.assign(list(listed))
    for tp, end in listed.items():
        # The last batch starts at or before end - 1: fetching from there is one batch.
        consumer.seek(tp, max(end - 1, 0))
    unseen = {tp for tp, end in listed.items() if end > 0}
    deadline = asyncio.get_running_loop().time() + FETCH_TIMEOUT_S
    while unseen and asyncio.get_running_loop().time() < deadline:
        await consumer.getmany(*unseen, timeout_ms=200, max_records=1)
        unseen = {tp for tp in unseen if consumer.highwater(tp) is None}
    return {tp: max(end, consumer.highwater(tp) or 0) for tp, end in listed.items()}
