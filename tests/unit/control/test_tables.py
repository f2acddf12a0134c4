"""Remembered acceptances and finished leads expire by time without a scan of the table:
RocksDB (a TTL database) and the changelog (compact + delete) drop them by themselves; the
memory store's tables are dropped from their oldest entry, reading no more than they drop."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import RecordMetadata
from faust.stores.rocksdb import Store as FaustRocksStore
from faust.streams import _current_event
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from streams.control.home import LeadStates
from streams.control.tables import (
    MIB,
    ROCKSDB_SCHEME,
    ROCKSDB_SIZES,
    STORE_MEMORY_MB,
    ChangelogWrite,
    SharedMemoryOptions,
    budget_store_memory,
    confirmed,
    expiring,
    forget_older,
    keyed_table,
    partition_of,
    store_memory,
    track_writes,
)


class CountedReads(dict[str, Any]):
    """A dict (written in order, as Faust's memory store) that counts the entries read."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        for item in super().items():
            self.read += 1
            yield item


def test_forgetting_reads_only_the_old_entries_and_the_first_young_one() -> None:
    table = CountedReads()
    for n in range(10_000):
        table[f"L{n}"] = {"at": float(n)}
    dropped = forget_older(table, 100.0, lambda value: value["at"], lambda key: key != "L7")
    assert dropped == 99  # L0..L99 but L7, whose partition another worker owns
    assert table.read == 101
    assert "L7" in table and "L99" not in table and "L100" in table


def test_a_table_that_expires_by_itself_is_not_read() -> None:
    table = CountedReads()
    table["L0"] = {"at": 0.0}
    table.expires_itself = True  # type: ignore[attr-defined]
    assert forget_older(table, 100.0, lambda value: value["at"], lambda _: True) == 0
    assert table.read == 0 and "L0" in table


def test_a_finished_lead_leaves_the_table_of_leads_in_progress() -> None:
    states = LeadStates({}, {})
    states["L1"] = {"run": 1, "finished": None}
    assert states.waiting == {"L1": {"run": 1, "finished": None}}
    states["L1"] = {"run": 1, "finished": 5.0}
    assert states.waiting == {} and states["L1"]["finished"] == 5.0
    # A replayed lead runs again while its first run's end is kept; in progress wins.
    states["L1"] = {"run": 2, "finished": None}
    assert states["L1"]["run"] == 2 and states.finished["L1"]["run"] == 1
    states["L0"] = {"run": 1, "finished": 6.0}
    states["L1"] = {"run": 2, "finished": 7.0}
    assert list(states.finished) == ["L0", "L1"]  # written again: the youngest, last
    assert states.forget(6.5, lambda _: True) == 1 and list(states) == ["L1"]


def test_a_finished_lead_written_to_a_table_that_expires_by_itself_is_not_looked_up() -> None:
    class Asked(dict[str, Any]):
        expires_itself = True
        asked = 0

        def __contains__(self, key: object) -> bool:
            self.asked += 1
            return super().__contains__(key)

    finished = Asked()
    states = LeadStates({}, finished)
    states["L1"] = {"run": 1, "finished": 5.0}
    states["L1"] = {"run": 2, "finished": 7.0}  # a new run: no order to keep, no lookup
    assert finished == {"L1": {"run": 2, "finished": 7.0}} and finished.asked == 0


def test_many_table_partitions_with_little_traffic_keep_their_memtables_small(
    tmp_path: Path,
) -> None:
    """9 tables on 32 partitions: 288 databases, a few writes each. A memtable reserves
    memory in arena blocks; at RocksDB's default (512 KiB here) these held 152 MB, over
    the whole budget, and the write buffer manager flushed them in tiny files."""
    options = SharedMemoryOptions(**ROCKSDB_SIZES)
    dbs = [options.open(tmp_path / f"table-{n}") for n in range(288)]
    for db in dbs:
        for key in range(50):
            db[key.to_bytes(4, "big")] = bytes(100)
    assert store_memory().usage()["memtables"] < 32 * MIB
    assert not list(tmp_path.glob("*/*.sst"))  # nothing flushed for want of memory
    for db in dbs:
        db.close()


def test_rocksdb_tables_drop_entries_older_than_their_time(tmp_path: Path) -> None:
    app = faust.App("expiry-test", store=f"{ROCKSDB_SCHEME}://", datadir=str(tmp_path))
    table = keyed_table(app, "finished", 1, lambda key: key, keep_s=1)
    assert table.expires_itself
    assert table.extra_topic_configs == expiring(1)["extra_topic_configs"]
    store = table.data
    assert store.rocksdb_options.ttl == 1
    db = store._db_for_partition(0)
    db[b"L1"] = b"{}"
    time.sleep(2.1)  # RocksDB counts whole seconds
    db.compact_range(None, None)  # RocksDB drops expired entries in its compactions
    assert db.get(b"L1") is None


def test_keeping_forever_is_the_default(tmp_path: Path) -> None:
    app = faust.App("expiry-test", store=f"{ROCKSDB_SCHEME}://", datadir=str(tmp_path))
    table = keyed_table(app, "leads", 1, lambda key: key)
    assert not table.expires_itself
    assert table.data.rocksdb_options.ttl is None
    # Sized for small values, not Faust's 2 GiB cache and 3 x 64 MiB memtables a database.
    assert table.data.rocksdb_options.write_buffer_size == ROCKSDB_SIZES["write_buffer_size"]
    assert isinstance(table.data.rocksdb_options, SharedMemoryOptions)


def flushed(dbs: list[Any], within_s: float = 60.0) -> None:
    """Until no database has a full memtable waiting for its flush to disk, or one being
    flushed (a condition, not a speed: the disk may be busy with other processes)."""
    waiting = (
        "rocksdb.num-immutable-mem-table",
        "rocksdb.mem-table-flush-pending",
        "rocksdb.num-running-flushes",
    )
    deadline = time.monotonic() + within_s
    while any(db.property_int_value(name) for db in dbs for name in waiting):
        assert time.monotonic() < deadline, "RocksDB's flushes did not finish"
        time.sleep(0.01)


def test_every_database_of_the_process_shares_one_memory_budget(tmp_path: Path) -> None:
    """Eight databases, 32 MB written to each and read back: their blocks read and their
    memtables together stay near the process's 8 MiB (a cache of their own each would
    hold up to 8 x 8 MiB of blocks, and their memtables come on top). RocksDB's limit is
    soft at the margin (a memtable's arena is reserved in whole blocks): 10 MB here.

    Soft too while the disk lags: the worker never stalls a write, and RocksDB decides to
    flush only when a database is written. Under another process's heavy disk writes (dd),
    memtables of 12-15 MB stayed after a burst, with every flush done, until the next
    write to each database flushed them (then 1-2 MB). So the blocks are measured at once
    (the shared cache evicts them), and the whole budget after one more write each."""
    budget_store_memory(8)
    try:
        options = SharedMemoryOptions(**ROCKSDB_SIZES)
        dbs = [options.open(tmp_path / f"table-{n}") for n in range(8)]
        value = bytes(1024)
        for written in (16_000, 32_000):
            for db in dbs:
                for key in range(written - 16_000, written):
                    db[key.to_bytes(4, "big")] = value
            flushed(dbs)
            assert store_memory().usage()["memtables"] > 0
            for db in dbs:
                for key in range(0, written, 7):
                    assert db[key.to_bytes(4, "big")] == value
            flushed(dbs)
            usage = store_memory().usage()
            assert usage["total"] - usage["memtables"] <= 8 * MIB * 1.25  # blocks read
            for db in dbs:
                db[b"one more"] = value
            flushed(dbs)
            used = store_memory().usage()["total"]
            assert 0 < used <= 8 * MIB * 1.5
        for db in dbs:
            db.close()
    finally:
        budget_store_memory(STORE_MEMORY_MB)


@pytest.mark.parametrize("keep_h", [1.0, 72.0])
def test_the_changelog_drops_what_the_table_dropped(keep_h: float) -> None:
    config = expiring(keep_h * 3600)["extra_topic_configs"]
    assert config["cleanup.policy"] == "compact,delete"
    assert int(config["retention.ms"]) == keep_h * 3_600_000
    # Kafka deletes whole segments: they must roll well within the retention.
    assert int(config["segment.ms"]) <= int(config["retention.ms"]) / 6 or (
        int(config["segment.ms"]) == 60_000
    )


def test_a_lookup_reads_the_store_once(tmp_path: Path) -> None:
    app = faust.App("lookup-test", store=f"{ROCKSDB_SCHEME}://", datadir=str(tmp_path))
    table = keyed_table(app, "leads", 1, lambda key: key)
    store = table.data
    db = store._db_for_partition(0)
    db[b'"L1"'] = b'{"run": 1}'  # as Faust writes a str key
    reads: list[bytes] = []

    class CountedDB:
        def get(self, key: bytes) -> Any:
            reads.append(key)
            return db.get(key)

    store._dbs[0] = CountedDB()
    assert table.get("L1") == {"run": 1} and table["L1"] == {"run": 1}
    assert table.get("L2") is None and table.get("L2", 0) == 0
    with pytest.raises(KeyError):
        table["L2"]
    # Faust's own lookup asks ``key in store`` first: a second read for every key found.
    assert reads == [b'"L1"'] * 2 + [b'"L2"'] * 3


@cache
def _json_keyed_store() -> Any:
    """A RocksDB table's store, as the worker makes them (nothing is opened on disk, but
    Faust makes its data directory: in a temporary one, not the checkout)."""
    datadir = tempfile.mkdtemp(prefix="key-test-")
    app = faust.App("key-test", store=f"{ROCKSDB_SCHEME}://", datadir=datadir)
    return keyed_table(app, "leads", 1, lambda key: key).data


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range (both raise past)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(key=st.text(max_size=80), value=st.dictionaries(st.text(), JSON_VALUES))
def test_keys_and_values_are_stored_as_fausts_codecs_encode_them(key: str, value: Any) -> None:
    store = _json_keyed_store()
    assert store._encode_key(key) == FaustRocksStore._encode_key(store, key)
    assert store._decode_key(store._encode_key(key)) == key
    assert store._encode_value(value) == FaustRocksStore._encode_value(store, value)
    assert store._encode_value(None) == FaustRocksStore._encode_value(store, None)


class _Handled:
    """A record being handled, as Faust's ``current_event`` gives it."""

    def __init__(self, partition: int) -> None:
        self.message = type("Message", (), {"partition": partition})()


def test_an_entry_lives_in_its_keys_partition_whatever_record_is_handled(tmp_path: Path) -> None:
    app = faust.App("keyed-test", store=f"{ROCKSDB_SCHEME}://", datadir=str(tmp_path))
    table = keyed_table(app, "parked", 4, lambda key: key.split("|", 1)[0])
    store = table.data
    key = "buyer|L1"
    home = table.partition_for_key(key)
    other = (home + 1) % 4
    for partition in range(4):
        store._db_for_partition(partition)

    def handling(partition: int | None) -> Any:
        event = _Handled(partition) if partition is not None else None
        return _current_event.set(None if event is None else (lambda: event))

    # Written while a record of another partition is handled (Faust's store would put it
    # in that partition's database; its changelog record goes to the key's partition).
    token = handling(other)
    try:
        store[key] = {"due": 1}
    finally:
        _current_event.reset(token)
    assert store._db_for_partition(home).get(store._encode_key(key)) is not None
    assert store._db_for_partition(other).get(store._encode_key(key)) is None

    # Read back where a recovery would have put it: under any record, or none (a timer).
    for partition in (home, other, None):
        token = handling(partition)
        try:
            assert store[key] == {"due": 1} and key in store and table.get(key) == {"due": 1}
            assert "buyer|L2" not in store and table.get("buyer|L2") is None
        finally:
            _current_event.reset(token)

    store[key] = {"due": 2}  # outside any record (Faust's store raises here)
    assert table.get(key) == {"due": 2}
    del store[key]
    assert key not in store and table.get(key) is None
    assert all(store._db_for_partition(p).get(store._encode_key(key)) is None for p in range(4))


def test_a_key_of_a_partition_not_open_here_is_not_found_and_opens_nothing(tmp_path: Path) -> None:
    app = faust.App("keyed-test", store=f"{ROCKSDB_SCHEME}://", datadir=str(tmp_path))
    table = keyed_table(app, "parked", 4, lambda key: key)
    store = table.data
    assert table.get("anything") is None and "anything" not in store
    with pytest.raises(KeyError):
        store["anything"]
    assert store._dbs == {}


async def test_a_changelog_write_goes_to_the_producer_buffer_as_faust_would_encode_it() -> None:
    app = faust.App("changelog-test", store="memory://")
    table = keyed_table(app, "leads", 4, lambda key: key.split("|")[0])
    state = {"run": 1, "finished": None, "lead": {"id": "L-é", "amount": 1.5}}
    track_writes()
    table["L-é|crm"] = state

    write = app.producer.buffer.pending.get_nowait()
    assert isinstance(write, ChangelogWrite) and write.message.channel is write
    assert write.message.partition == partition_of("L-é", 4)
    faust_would = table.changelog_topic.as_future_message(
        key="L-é|crm",
        value=state,
        partition=write.partition,
        key_serializer=table.key_serializer,
        value_serializer=table.value_serializer,
    ).message
    assert (write._key, write._value) == (faust_would.key, faust_would.value)
    # A delete goes Faust's own way (it sends deletes raw).
    del table["L-é|crm"]
    assert not isinstance(app.producer.buffer.pending.get_nowait(), ChangelogWrite)


async def test_a_confirmed_changelog_write_records_its_offset_and_a_refused_one_fails(
    tmp_path: Path,
) -> None:
    app = faust.App("changelog-test", store=f"{ROCKSDB_SCHEME}://", datadir=str(tmp_path))
    table = keyed_table(app, "leads", 4, lambda key: key)
    tp = TP(table.changelog_topic.get_topic_name(), 2)
    table.data._db_for_partition(2)  # opened, as when the partition is assigned
    loop = asyncio.get_running_loop()

    # Confirmed by the broker: the store keeps the changelog offset it has (a restart reads
    # the changelog from there), and ``confirmed`` resolves.
    track_writes()
    write = ChangelogWrite(table, 2, b'"L-1"', {"run": 1})
    _writes_of_this_task().append(write.confirmed)
    delivery: asyncio.Future[Any] = loop.create_future()
    delivery.set_result(RecordMetadata(tp.topic, 2, tp, 41, -1, 0, 0))
    write._sent(delivery)
    await confirmed()
    assert table.data.persisted_offset(tp) == 41

    # Refused: ``confirmed`` raises, and no offset is recorded for it.
    track_writes()
    refused = ChangelogWrite(table, 2, b'"L-2"', {"run": 1})
    _writes_of_this_task().append(refused.confirmed)
    failed: asyncio.Future[Any] = loop.create_future()
    failed.set_exception(KafkaTimeoutError())
    refused._sent(failed)
    with pytest.raises(KafkaTimeoutError):
        await confirmed()
    assert table.data.persisted_offset(tp) == 41


def _writes_of_this_task() -> list[Any]:
    from streams.control.tables import _writes

    pending = _writes.get()
    assert pending is not None
    return pending


@pytest.mark.parametrize(
    ("window_days", "set_h", "kept_h"), [(30, None, 720), (1, None, 72), (30, 24, 24)]
)
def test_a_worker_keeps_finished_leads_through_the_longest_return_window(
    monkeypatch: pytest.MonkeyPatch, window_days: float, set_h: float | None, kept_h: float
) -> None:
    """The finished leads (who accepted each), their references and the remembered
    acceptances expire when returns can no longer come: a return on day 20 of a 30-day
    window finds its sale. Built without a broker: nothing is started."""
    from streams.app import create_app
    from streams.config import Settings
    from streams.config.destinations import parse_destinations

    monkeypatch.setenv("RETURNS_SECRET", "a-secret-for-tests")
    feedback = {"secret": "${env:RETURNS_SECRET}", "return_window_days": window_days}
    destinations = parse_destinations(
        {"destinations": [{"id": "buyer", "url": "https://b.example.com", "feedback": feedback}]}
    )
    settings = Settings(broker="kafka://127.0.0.1:9", store="memory", remember_delivered_h=set_h)
    app = create_app(settings, destinations)
    for name in ("finished", "references", "delivered"):
        table = app.tables[name]
        assert table.options["ttl"] == kept_h * 3600
        assert table.extra_topic_configs["retention.ms"] == str(int(kept_h * 3600 * 1000))
