"""Commits that never pass a record nobody handled.

Faust commits the first run of acknowledged offsets after the committed one, and lets a
run start one past it: a transaction's commit marker takes an offset that holds no record,
and a consumer never sees it. But Faust also drops records it fetched without handing them
to an agent (a batch cut short while the flow stops and starts around a group join), and
the next record's acknowledgement then carries the commit past the dropped one: a SIGKILL
later, that lead is gone (seen in tests/integration/test_auction.py, about once in twenty
runs). So before a commit passes an offset that nobody acknowledged, the broker is asked
what is there: nothing (a marker, a compacted record) lets the commit go on; a record is
handed to the agents as if Faust had, and the commit waits until it is handled.

A worker also looks, every few seconds, for partitions where records wait below the end
that no agent holds and nothing acknowledged (Faust dropped them and has nothing after
them to read): those are read again and handed over the same way (``left_behind``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.kafka import KafkaSecurity
from streams.kafka_clients import client_options, started, stop_consumer

log = logging.getLogger(__name__)

RECHECK_S = 30.0  # a record handed over and still not handled after this: look again
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Unhandled:
    """Offsets ``start`` (None: the partition's first) up to ``end`` of ``tp``, which a
    commit would pass with none of them acknowledged."""

    tp: Any
    start: int | None
    end: int


def unhandled(
    tp: Any, committed: int | None, acked: list[int], gaps: Any, held: list[int]
) -> Unhandled | None:
    """What the next commit of ``tp`` would pass without an acknowledgement: the offsets
    before its first acknowledged one (``acked``, or the first of Faust's ``gaps``), when
    Faust would commit anyway (one offset after the committed one, or anything when none
    is committed). None when nothing is passed, or an agent holds the first offset (the
    commit waits for it: ``streams.agents.safe_commit``)."""
    if not acked:
        return None
    first = min(acked)
    if gaps:
        first = min(first, min(interval.begin for interval in gaps))
    lowest_held = min(held, default=None)
    if lowest_held is not None and lowest_held < first:
        return None
    if committed is None:
        return Unhandled(tp, None, first) if first > 0 else None
    if first == committed + 1:
        return Unhandled(tp, committed, first)
    return None  # none passed, or a wider gap: Faust does not commit past it


def left_behind(
    tp: Any, committed: int | None, end: int | None, held: list[int], acked: list[int]
) -> Unhandled | None:
    """Records of ``tp`` below its end that nothing will handle: none held by an agent,
    none acknowledged and waiting for a commit, and still the committed offset is short of
    the end. Faust left them behind (dropped after it fetched them, its position already
    past them); asked twice a few seconds apart before anything is done (between a fetch
    and an agent taking it, a record is briefly in neither place)."""
    if end is None or held or acked or (committed or 0) >= end:
        return None
    return Unhandled(tp, committed, end)


class UnhandledRecords:
    """Offsets a commit would pass unacknowledged, checked against the broker once each.
    ``read(tp, start, end)``: the records of ``tp`` from ``start`` (None: its first)
    below ``end``; ``hand_over(tp, record)``: gives a record to the agents."""

    def __init__(
        self,
        read: Callable[[Any, int | None, int], Awaitable[list[Any]]],
        hand_over: Callable[[Any, Any], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._hand_over = hand_over
        self._clock = clock
        # (tp, end) → ("checking" | "handed over" | "none", since)
        self._states: dict[tuple[Any, int], tuple[str, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def may_pass(self, found: Unhandled) -> bool:
        """May the commit pass ``found``'s offsets? Asked every commit; the first time (and
        again if a handed-over record is still not handled after ``RECHECK_S``) it starts
        a look at the broker and answers no."""
        key = (found.tp, found.end)
        state = self._states.get(key)
        stale = state is not None and state[0] == "handed over"
        if state is None or (stale and self._clock() - state[1] > RECHECK_S):
            self._states[key] = ("checking", self._clock())
            task = asyncio.ensure_future(self._check(found))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return False
        return state[0] == "none"

    def forget(self, tp: Any, committed: int) -> None:
        """Offsets below a new committed offset need no more looking after."""
        for key in [key for key in self._states if key[0] == tp and key[1] <= committed]:
            del self._states[key]

    async def _check(self, found: Unhandled) -> None:
        key = (found.tp, found.end)
        try:
            records = await self._read(found.tp, found.start, found.end)
        except Exception as exc:
            log.warning(
                "%s[%d]: cannot read offsets below %d again (%s); looking again at the next "
                "commit", found.tp.topic, found.tp.partition, found.end, type(exc).__name__,
            )  # fmt: skip
            self._states.pop(key, None)
            return
        if not records:
            self._states[key] = ("none", self._clock())
            return
        log.warning(
            "%s[%d]: %d record(s) below offset %d were fetched but never handled; handing "
            "them to the agents", found.tp.topic, found.tp.partition, len(records), found.end,
        )  # fmt: skip
        for record in records:
            await self._hand_over(found.tp, record)
        self._states[key] = ("handed over", self._clock())


async def read_range(
    bootstrap: str, security: KafkaSecurity | None, tp: Any, start: int | None, end: int
) -> list[Any]:
    """The records of ``tp`` from ``start`` (None: its first) below ``end``."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        **client_options(security),
    )  # fmt: skip
    await started(reader)
    try:
        partition = TopicPartition(tp.topic, tp.partition)
        reader.assign([partition])
        if start is None:
            await reader.seek_to_beginning(partition)
        else:
            reader.seek(partition, start)
        found: list[Any] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                batch = await reader.getmany(partition, timeout_ms=500)
                records = batch.get(partition, [])
                found += [record for record in records if record.offset < end]
                if any(record.offset >= end for record in records):
                    return found
                if not records and await reader.position(partition) >= end:
                    return found
    finally:
        await stop_consumer(reader)
