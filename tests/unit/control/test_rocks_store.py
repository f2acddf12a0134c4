"""Our RocksDB store (streams/control/tables.py) gives a revoked partition's database back
at once, without a full garbage collection at each rebalance and at stop."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from streams.control.tables import ROCKSDB_SCHEME, RocksStore


@pytest.fixture
def full_collections() -> Iterator[list[dict[str, Any]]]:
    """Every garbage collection while the test runs: with automatic ones off, only those
    something asked for."""
    seen: list[dict[str, Any]] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info)

    gc.collect()
    gc.disable()
    gc.callbacks.append(count)
    try:
        yield seen
    finally:
        gc.callbacks.remove(count)
        gc.enable()


async def test_a_revoked_partition_is_closed_at_once_and_opens_again_with_its_data(
    tmp_path: Path, full_collections: list[dict[str, Any]]
) -> None:
    app = faust.App("store-test", datadir=str(tmp_path), store=f"{ROCKSDB_SCHEME}://")
    table = app.Table("parked", partitions=2, key_type=str, value_type=None)
    store = table.data
    assert isinstance(store, RocksStore)
    changelog = table.changelog_topic.get_topic_name()
    both = {TP(changelog, 0), TP(changelog, 1)}
    await store.on_rebalance(both, set(), both)
    # Something still holds the revoked partition's handle: Faust's store, which only
    # drops it, cannot open the partition again until it is freed (its RocksDB lock: 30
    # tries a second apart, then the worker stops).
    still_held = store._dbs[0]
    still_held[b"L-1"] = b"parked"

    await store.on_rebalance({TP(changelog, 1)}, {TP(changelog, 0)}, set())
    assert set(store._dbs) == {1}
    await store.on_rebalance(both, set(), {TP(changelog, 0)})  # its lock was given back
    assert store._dbs[0][b"L-1"] == b"parked"
    await store.stop()
    assert store._dbs == {}
    assert full_collections == []  # Faust's store runs one at each rebalance and at stop
