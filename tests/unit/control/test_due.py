"""The due index: a look at parked work reads only what is due, not the whole table (a
scan of every entry five times a second took half a core at 10,000 parked deliveries),
and reads the whole table again when it may have changed behind this worker's back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.control.due import DueIndex
from streams.control.tables import Owned, partition_of


class Table(dict[str, Any]):
    """A table that counts how often it is read whole."""

    reads = 0

    def items(self) -> Any:
        self.reads += 1
        return super().items()

    def __iter__(self) -> Iterator[str]:
        self.reads += 1
        return super().__iter__()


def owner(key: str) -> str:
    return key.split("|", 1)[0]


ALL = Owned(frozenset({0, 1}), 2)


def write(index: DueIndex, table: Table, key: str, due: float) -> None:
    index.put(key, {"due": due})


def make(rescan_s: float = 300.0) -> tuple[DueIndex, Table]:
    table = Table()
    return DueIndex(table, lambda value: float(value["due"]), owner, rescan_s), table


def test_a_look_reads_only_what_is_due_in_the_order_due() -> None:
    index, table = make()
    assert index.due(ALL, 900.0) == []  # the first look reads the (empty) table
    for n in range(10_000):
        write(index, table, f"d{n % 7}|lead-{n}", 1_000.0 + n)
    reads = table.reads
    assert index.due(ALL, 999.0) == []
    found = index.due(ALL, 1_002.0)
    assert [key for key, _ in found] == ["d0|lead-0", "d1|lead-1", "d2|lead-2"]
    assert table.reads == reads  # nothing read whole
    assert index.waiting == 10_000


def test_a_due_entry_comes_back_until_it_is_removed_or_written_again() -> None:
    index, table = make()
    index.due(ALL, 0.0)
    write(index, table, "d|a", 10.0)
    write(index, table, "d|b", 10.0)
    assert [k for k, _ in index.due(ALL, 10.0)] == ["d|a", "d|b"]
    index.remove("d|a")  # handed back and released
    write(index, table, "d|b", 50.0)  # parked again, later: its earlier time is stale
    assert index.due(ALL, 11.0) == []
    assert [k for k, _ in index.due(ALL, 50.0)] == ["d|b"]
    assert [k for k, _ in index.due(ALL, 51.0)] == ["d|b"]  # not released: again
    assert index.waiting == 1


def test_the_whole_table_is_read_again_when_what_this_worker_owns_changes() -> None:
    index, table = make()
    mine, theirs = "a", "d"
    assert (partition_of(mine, 2), partition_of(theirs, 2)) == (0, 1)
    first = Owned(frozenset({0}), 2)
    index.due(first, 0.0)
    table[f"{theirs}|recovered"] = {"due": 5.0}  # recovered from the changelog, not written here
    assert index.due(first, 10.0) == []  # not this worker's partition anyway
    assert [k for k, _ in index.due(ALL, 10.0)] == [f"{theirs}|recovered"]  # assigned now
    write(index, table, f"{mine}|here", 6.0)
    assert {k for k, _ in index.due(ALL, 10.0)} == {f"{theirs}|recovered", f"{mine}|here"}
    assert index.due(Owned(frozenset(), 2), 10.0) == []  # a rebalance: nothing is its own


def test_an_operators_action_lets_early_ones_go_and_a_slow_rescan_finds_strays() -> None:
    index, table = make(rescan_s=60.0)
    index.due(ALL, 0.0, rescan=0)
    write(index, table, "d|held", 1_000_000.0)  # held for a pause
    resumed = {"d"}

    def early(key: str, value: Any) -> bool:
        return owner(key) in resumed

    assert [k for k, _ in index.due(ALL, 1.0, rescan=0)] == []  # same actions: not read
    assert [k for k, _ in index.due(ALL, 2.0, rescan=1, early=early)] == ["d|held"]
    table["d|stray"] = {"due": 3.0}  # written behind the index's back
    assert index.due(ALL, 30.0, rescan=1) == []
    assert [k for k, _ in index.due(ALL, 62.0, rescan=1)] == ["d|stray"]  # the slow rescan


def test_a_check_that_says_nothing_of_its_partitions_reads_everything_each_time() -> None:
    index, table = make()
    table["d|a"] = {"due": 1.0}
    assert index.due(lambda _: True, 2.0) == [("d|a", {"due": 1.0})]
    assert index.due(lambda _: True, 2.0) == [("d|a", {"due": 1.0})]
    assert table.reads == 2
