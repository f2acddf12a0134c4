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
from typing import Any

import faust
from aiokafka.partitioner import murmur2


def partition_of(owner: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``owner``."""
    hashed: int = murmur2(owner.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class KeyedTable(faust.Table):  # type: ignore[type-arg]
    """A table whose changelog partition is that of ``owner(key)``, and whose writes can be
    awaited: ``all_confirmed`` returns when every table write sent so far is stored."""

    _unconfirmed: set[asyncio.Future[Any]] = set()  # every KeyedTable's, in this process

    def __init__(self, app: Any, *, owner: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._owner = owner

    def partition_for_key(self, key: Any) -> int:
        return partition_of(self._owner(key), self.partitions or self.app.conf.topic_partitions)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        KeyedTable._unconfirmed.add(future)
        future.add_done_callback(KeyedTable._unconfirmed.discard)
        return future

    @staticmethod
    async def all_confirmed() -> None:
        """Before writing what depends on a table's state (an event naming an acceptance):
        the state is stored first, so a restart never finds the event without it."""
        if KeyedTable._unconfirmed:
            await asyncio.gather(*list(KeyedTable._unconfirmed))


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
