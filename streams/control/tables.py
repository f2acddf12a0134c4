"""Faust tables whose keys live in the partition of an owner id (a destination, a lead).

Faust writes a table change to the changelog partition of the event being processed. Our
agents handle a batch of events from several partitions at once, and the parking timer
runs outside any event, so that partition would be wrong or missing. Here the partition
comes from the key instead: ``owner(key)`` (the destination id of "destination|lead")
hashed as Kafka's default partitioner hashes a record key (murmur2), which is also how
the work and routing topics are partitioned. A destination's work, caps and circuit
therefore always share a partition number, and Faust assigns a partition number of every
topic and changelog to the same worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import faust
from aiokafka.partitioner import murmur2


def partition_of(owner: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``owner``."""
    hashed: int = murmur2(owner.encode())
    return (hashed & 0x7FFFFFFF) % partitions


# The table writes made while handling one record (its task and the tasks it starts):
# ``confirmed`` waits for those, not for every write in the worker.
_writes: ContextVar[list[asyncio.Future[Any]] | None] = ContextVar("table_writes", default=None)


def track_writes() -> None:
    """From here on in this task (and the tasks it starts), table writes are collected."""
    _writes.set([])


async def confirmed() -> None:
    """Every table write collected since ``track_writes`` is stored by the broker: what
    depends on a table's state (an event naming an acceptance) may now be written, and a
    restart will never find the one without the other."""
    pending = _writes.get()
    if pending:
        writes = list(pending)
        pending.clear()
        await asyncio.gather(*writes)


class KeyedTable(faust.Table):  # type: ignore[type-arg]
    """A table whose changelog partition is that of ``owner(key)``; its writes are
    collected for ``confirmed``."""

    def __init__(self, app: Any, *, owner: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._owner = owner

    def partition_for_key(self, key: Any) -> int:
        return partition_of(self._owner(key), self.partitions or self.app.conf.topic_partitions)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        pending = _writes.get()
        if pending is not None:
            pending.append(future)
        return future


def keyed_table(app: Any, name: str, partitions: int, owner: Callable[[str], str]) -> Any:
    table = KeyedTable(
        app,
        owner=owner,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=str,
        value_type=None,
    )
    return app.tables.add(table)
