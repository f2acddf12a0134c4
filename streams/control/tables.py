"""Faust tables whose keys live in the partition of an owner id (a destination, a lead).

Faust writes a table change to the changelog partition of the event being processed. Our
agents handle a batch of events from several partitions at once, and the parking timer
runs outside any event, so that partition would be wrong or missing. Here the partition
comes from the key instead: ``owner(key)`` (the destination id of "destination|lead")
hashed as Kafka's default partitioner hashes a record key (murmur2), which is also how
the work and routing topics are partitioned; the RocksDB store keeps each entry in that
partition's database too (``RocksStore``). A destination's work, caps and circuit
therefore always share a partition number, and Faust assigns a partition number of every
topic and changelog to the same worker.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from faust.stores import STORES
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksStore
from faust.utils import json as faust_json
from murmurhash2 import murmurhash2
from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    ReadOptions,
    WriteBufferManager,
)

# The seed of Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2).
KAFKA_MURMUR2_SEED = 0x9747B28C


def kafka_hash(key: bytes) -> int:
    """Kafka's default partitioner's hash of a record key (murmur2, positive), in C:
    aiokafka's murmur2 is pure Python, ~8 µs a key, and a lead's records are hashed four
    times (its home, its state's changelog, its event, its outcome); this is ~0.25 µs."""
    return murmurhash2(key, KAFKA_MURMUR2_SEED) & 0x7FFFFFFF


def partition_of(owner: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``owner``."""
    return kafka_hash(owner.encode()) % partitions


def kafka_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (Kafka's), with ``kafka_hash``. A record without a
    key goes to any partition, as with aiokafka's."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[kafka_hash(key) % len(all_partitions)]


@dataclass(frozen=True, slots=True)
class Owned:
    """The partitions of a topic this worker owns now, its tables recovered (none during a
    rebalance): called with an id, whether its keys are this worker's to act on."""

    partitions: frozenset[int]
    count: int

    def __call__(self, owner: str) -> bool:
        return partition_of(owner, self.count) in self.partitions


def owned_partitions(owns: Callable[[str], bool]) -> frozenset[int] | None:
    """What ``owns`` owns, when it says (an ``Owned``); None for any other check."""
    return owns.partitions if isinstance(owns, Owned) else None


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


def forget_older(
    table: Any, horizon: float, at: Callable[[Any], float], owns: Callable[[str], bool]
) -> int:
    """Drop the entries of a table that keeps them in the order written (a dict, Faust's
    memory store) whose time ``at(value)`` is before ``horizon``, oldest first: it stops at
    the first younger entry, so it reads what it drops and one more, never the whole
    table. An entry of a partition this worker does not own is passed over (its owner
    drops it). A table that expires by itself (``expires_itself``) is left to its store."""
    if getattr(table, "expires_itself", False):
        return 0
    old = []
    for key, value in table.items():
        if at(value) >= horizon:
            break
        if owns(key):
            old.append(key)
    for key in old:
        del table[key]
    return len(old)


# RocksDB sizes per table partition (each is a database of its own). Faust's defaults are
# a 2 GiB block cache and three 64 MiB memtables per database: with ~30 of them a worker's
# memory grew with every lead written until memtables flushed (200 MB → 426 MB over 200k
# leads in the soak benchmark). Our tables hold small values read mostly once. The block
# cache is not sized here: every database shares the process's (``StoreMemory``).
ROCKSDB_SIZES: dict[str, int] = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 8 * 1024 * 1024,
    # Bits of bloom filter a key. Most lookups are of keys not stored (a new lead's state,
    # an acceptance not remembered): Faust's 3 bits let ~1 in 7 of them read a data block
    # from disk and keep it in the cache; 10 bits, ~1 in 100.
    "bloom_filter_size": 10,
}

MIB = 1024 * 1024
ARENA_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class StoreMemory:
    """One memory budget for every RocksDB database of the process: a block cache that the
    memtables are charged to as well (RocksDB's write buffer manager), so blocks read and
    changes not yet flushed share one limit. With a cache of its own for each table
    partition (Faust's way), the memory a worker could hold grew with its tables and
    partitions (8 MiB for each of 36 databases on 4 partitions, 288 on 32), and it filled
    slowly as leads were read back: ~1 MB every 10 s in the soak benchmark, most of the
    worker's RSS growth (docs/performance.md)."""

    cache: Cache
    writes: WriteBufferManager

    @classmethod
    def of(cls, megabytes: int) -> StoreMemory:
        cache = Cache(megabytes * MIB)
        # Memtables may take half the budget; past it RocksDB flushes the largest (no stall).
        writes = WriteBufferManager.new_write_buffer_manager_with_cache(
            megabytes * MIB // 2, False, cache
        )
        return cls(cache, writes)

    def usage(self) -> dict[str, int]:
        """Bytes in use: the whole budget's (blocks and memtables) and the memtables'."""
        return {"total": self.cache.get_usage(), "memtables": self.writes.get_usage()}


STORE_MEMORY_MB = 64
_store_memory: StoreMemory | None = None


def budget_store_memory(megabytes: int) -> StoreMemory:
    """Every RocksDB database this process opens from now on shares ``megabytes``."""
    global _store_memory
    _store_memory = StoreMemory.of(megabytes)
    return _store_memory


def store_memory() -> StoreMemory:
    """The process's store budget (``STORE_MEMORY_MB`` when none was set)."""
    return _store_memory or budget_store_memory(STORE_MEMORY_MB)


class SharedMemoryOptions(RocksDBOptions):
    """Faust's RocksDB options with the process's shared cache and write buffer manager.
    Opens a database with one options object: Faust's ``open`` builds two (a block cache
    each) and uses the second."""

    def open(self, path: Path, *, read_only: bool = False) -> Rdict:
        access = AccessType.read_write() if self.ttl is None else AccessType.with_ttl(self.ttl)
        db = Rdict(str(path), options=self.as_options(), access_type=access)
        db.set_read_options(ReadOptions())
        return db

    def as_options(self) -> Options:
        memory = store_memory()
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_write_buffer_manager(memory.writes)
        # A memtable takes memory in arena blocks, an eighth of its size by default (512
        # KiB): a worker with 288 table partitions (9 tables, 32 partitions) and a little
        # traffic in each held 152 MB of memtables, over any budget, and flushed them in
        # tiny files. In 64 KiB blocks: 19 MB.
        options.set_arena_block_size(ARENA_BLOCK_BYTES)
        tables = BlockBasedOptions()
        tables.set_bloom_filter(self.bloom_filter_size, False)
        tables.set_block_cache(memory.cache)
        tables.set_index_type(BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(tables)
        return options


def table_options(keep_s: float | None = None) -> dict[str, Any]:
    """A table's store options (RocksDB sizes, and ``expiring`` when entries expire)."""
    if keep_s is None:
        return {"options": dict(ROCKSDB_SIZES)}
    expires = expiring(keep_s)
    return {**expires, "options": {**ROCKSDB_SIZES, **expires["options"]}}


def expiring(keep_s: float) -> dict[str, Any]:
    """A table's options for entries kept ``keep_s`` after their last write, without any
    scan: RocksDB drops older ones in its compactions (a TTL database: kept at least that
    long), and the broker drops the changelog's older segments (compact + delete, with
    segments rolled often enough for retention to bite), so a recovery does not bring them
    back. The memory store ignores both: ``forget_older`` serves it."""
    keep_ms = int(keep_s * 1000)
    return {
        "options": {"ttl": max(1, int(keep_s))},
        "extra_topic_configs": {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(keep_ms),
            "segment.ms": str(max(60_000, keep_ms // 6)),
        },
    }


# Our keys are str and our values dicts, serialized as JSON (Faust's default for tables):
# Faust's codec registry gives the bytes of orjson and of Faust's own JSON function after
# ~3 µs of dispatch, several times a lead (the store and the changelog each encode every
# write). The same bytes, at once, for a table or its store (both know the codecs); None
# for any other key or value, which goes Faust's way.
def json_key(of: Any, key: Any) -> bytes | None:
    if type(key) is str and of.key_type is str and of.key_serializer == "json":
        return orjson.dumps(key)
    return None


def json_value(of: Any, value: Any) -> bytes | None:
    if type(value) is dict and of.value_type is None and of.value_serializer == "json":
        return cast(bytes, faust_json.dumps(value))
    return None


class RocksStore(FaustRocksStore):
    """Faust's RocksDB store, without a full garbage collection at every rebalance.

    Faust's store drops a revoked partition's database and runs ``gc.collect()`` so that
    nothing still holds it (its lock must be free before the partition can be opened
    again), on every rebalance whether or not a partition was revoked, and again at stop:
    for each table. Measured on a fresh worker (9 tables, 4 partitions each): ~90 ms a
    table, so ~0.8 s of stalled event loop at each assignment and again at each stop (more
    on a larger heap). Closing each dropped database releases its lock at once without
    looking at every object in the process; a read through a closed handle raises
    rocksdict's DbClosedError rather than reading freed memory. Its databases share the
    process's memory budget (``SharedMemoryOptions``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = SharedMemoryOptions(**(self.options or {}))

    def _encode_key(self, key: Any) -> bytes:
        return json_key(self, key) or super()._encode_key(key)

    def _encode_value(self, value: Any) -> bytes | None:
        return json_value(self, value) or super()._encode_value(value)

    # A keyed table's entry lives in the database of its key's partition: the one its
    # changelog record goes to, and so the one a recovery writes it back to. Faust's store
    # writes to the database of the partition of the event being handled (and raises with
    # none, as in a timer), and reads there too, or in every database when no event is.
    # A key handled under another partition's event (a destination's entry written while
    # handling a lead) would be read back from where it was written until a restart, and
    # missed after it. Only a write opens a database; a read of a partition whose database
    # is not open finds nothing, as Faust's own read outside an event.
    def _keyed_partition(self, key: Any) -> int | None:
        table = self.table
        return table.partition_for_key(key) if isinstance(table, KeyedTable) else None

    def __getitem__(self, key: Any) -> Any:
        partition = self._keyed_partition(key)
        if partition is None:
            return super().__getitem__(key)
        db = self._dbs.get(partition)
        value = None if db is None else db.get(self._encode_key(key))
        if value is None:
            raise KeyError(key)
        return self._decode_value(value)

    def __contains__(self, key: object) -> bool:
        partition = self._keyed_partition(key)
        if partition is None:
            return super().__contains__(key)
        db = self._dbs.get(partition)
        return db is not None and db.get(self._encode_key(key)) is not None

    def __setitem__(self, key: Any, value: Any) -> None:
        partition = self._keyed_partition(key)
        if partition is None:
            return super().__setitem__(key, value)
        self._db_for_partition(partition).put(self._encode_key(key), self._encode_value(value))
        return None

    def __delitem__(self, key: Any) -> None:
        partition = self._keyed_partition(key)
        if partition is None:
            return super().__delitem__(key)
        self._db_for_partition(partition).delete(self._encode_key(key))
        return None

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                db = self._dbs.pop(tp.partition, None)
                if db is not None:
                    self.logger.info(f"closing db {tp.topic} partition {tp.partition}")
                    db.close()

    async def stop(self) -> None:
        self.logger.info("Closing rocksdb on stop")
        dbs, self._dbs = list(self._dbs.values()), {}
        for db in dbs:
            db.close()


ROCKSDB_SCHEME = "courierrocksdb"  # a scheme mode can look up: letters only
ROCKSDB_SCHEMES = ("rocksdb", ROCKSDB_SCHEME)
STORES[ROCKSDB_SCHEME] = f"{__name__}:RocksStore"


class KeyedTable(faust.Table):  # type: ignore[type-arg]
    """A table whose changelog partition is that of ``owner(key)``; its writes are
    collected for ``confirmed``."""

    def __init__(self, app: Any, *, owner: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._owner = owner
        # RocksDB with a TTL drops old entries itself; the memory store needs forget_older.
        self.expires_itself = "ttl" in (kwargs.get("options") or {}) and (
            app.conf.store.scheme in ROCKSDB_SCHEMES
        )

    def partition_for_key(self, key: Any) -> int:
        return partition_of(self._owner(key), self.partitions or self.app.conf.topic_partitions)

    # One store read a lookup. Faust's table (mode's FastUserDict, with ``__missing__``
    # for defaults) asks ``key in store`` and then ``store[key]``: on RocksDB two or three
    # reads (a bloom-filter check, a get, a get) and two key encodings for every key found.
    def __getitem__(self, key: Any) -> Any:
        self.on_key_get(key)
        try:
            return self.data[key]
        except KeyError:
            return self.__missing__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        pending = _writes.get()
        if key_serializer is None and value_serializer is None and self._writes_direct():
            write = ChangelogWrite(self, partition, self._changelog_key(key), value)
            self.app.producer.buffer.put(write)  # type: ignore[arg-type]  # duck-typed
            if pending is not None:
                pending.append(write.confirmed)
            return write  # Faust reads the partition it went to: ``.message.partition``
        # A delete (Faust sends those raw), or a write in a transaction.
        future = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if pending is not None:
            pending.append(future)
        return future

    def _writes_direct(self) -> bool:
        conf = self.app.conf
        return not (self.app.in_transaction or conf.producer_threaded)

    def _changelog_key(self, key: Any) -> bytes:
        fast = json_key(self, key)
        if fast is not None:
            return fast
        encoded = self.app.serializers.dumps_key(self.key_type, key, serializer=self.key_serializer)
        if encoded is None:
            raise TypeError("Table key cannot be None")  # as Faust's store says
        return encoded


class ChangelogWrite:
    """One table change on its way to the changelog, through Faust's producer buffer (in
    order with every other write, counted by its flush), as bytes.

    Faust's own write makes a pending message, a future message and a publish through the
    changelog topic's codecs and sensors, ~6 % of a lead's CPU for one write a lead
    (cProfile over the delivery benchmark): here the buffer hands it straight to the
    producer. When the broker confirms it, the table's store records the changelog offset
    it has (Faust's ``_on_changelog_sent``), and ``confirmed`` resolves; a send that fails
    fails ``confirmed`` and stops neither the buffer nor other writes."""

    __slots__ = ("_key", "_table", "_value", "confirmed", "partition")

    def __init__(self, table: KeyedTable, partition: int | None, key: bytes, value: Any) -> None:
        self._table = table
        self.partition = partition
        self._key = key
        self._value: bytes | None = json_value(table, value) or table.app.serializers.dumps_value(
            table.value_type, value, serializer=table.value_serializer
        )
        self.confirmed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    # What Faust's producer buffer calls on what it takes, ``fut.message.channel
    # .publish_message(fut, wait=False)``, and its table reads, ``fut.message.partition``.
    @property
    def message(self) -> ChangelogWrite:
        return self

    @property
    def channel(self) -> ChangelogWrite:
        return self

    async def publish_message(self, _: Any, wait: bool = False) -> None:
        table = self._table
        try:
            producer = await table.app.maybe_start_producer()
            delivery = await producer.send(
                table.changelog_topic.get_topic_name(),
                self._key,
                self._value,
                self.partition,
                None,
                None,
            )
        except asyncio.CancelledError:
            self.confirmed.cancel()
            raise
        except Exception as exc:
            self.confirmed.set_exception(exc)
            return
        delivery.add_done_callback(self._sent)

    def _sent(self, delivery: asyncio.Future[Any]) -> None:
        if self.confirmed.done():
            return
        if delivery.cancelled():
            self.confirmed.cancel()
        elif delivery.exception() is not None:
            self.confirmed.set_exception(delivery.exception())  # type: ignore[arg-type]
        else:
            # Faust reads only the result (the record's metadata) of what it is given.
            self._table._on_changelog_sent(delivery)  # type: ignore[arg-type]
            self.confirmed.set_result(delivery.result())


def keyed_table(
    app: Any,
    name: str,
    partitions: int,
    owner: Callable[[str], str],
    keep_s: float | None = None,
) -> Any:
    """``keep_s``: entries expire that long after their last write (``expiring``)."""
    table = KeyedTable(
        app,
        owner=owner,
        **table_options(keep_s),
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=str,
        value_type=None,
    )
    return app.tables.add(table)
