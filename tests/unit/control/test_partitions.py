"""Our partitioner puts every key where Kafka's default partitioner (and aiokafka's, and
every other client's) puts it: a lead's records, its home and its tables' changelogs
agree with whatever upstream producer keyed the lead."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from murmurhash2 import murmurhash2

from streams.control.tables import KAFKA_MURMUR2_SEED, kafka_partitioner, partition_of

# Kafka's own test vectors for Utils.murmur2 (clients/.../utils/UtilsTest.java), as Java ints.
KAFKA_MURMUR2_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_the_hash_is_kafkas_murmur2() -> None:
    for key, java_int in KAFKA_MURMUR2_CASES.items():
        assert murmurhash2(key, KAFKA_MURMUR2_SEED) == java_int & 0xFFFFFFFF, key


@given(key=st.binary(max_size=300), count=st.integers(min_value=1, max_value=64))
def test_a_keyed_record_goes_where_aiokafkas_default_partitioner_puts_it(
    key: bytes, count: int
) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert kafka_partitioner(key, partitions, partitions) == expected


@given(owner=st.text(max_size=100), count=st.integers(min_value=1, max_value=64))
def test_an_owners_partition_is_that_of_a_record_keyed_by_it(owner: str, count: int) -> None:
    partitions = list(range(count))
    assert partition_of(owner, count) == DefaultPartitioner()(owner.encode(), partitions, [])


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert kafka_partitioner(None, [0, 1, 2, 3], [2]) == 2
    assert kafka_partitioner(None, [0, 1, 2, 3], []) in {0, 1, 2, 3}
