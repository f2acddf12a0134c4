"""The embedded broker alone, as the soak fills it: Tansu's CPU for each record written
and read, every 100k records up to 1M (``--quick``: every 20k up to 200k), with nothing
else running. Tansu's memory storage keeps every record, so the question is whether a
record costs more as it holds more. A small topic made afresh at each step (the probe)
tells a cost that follows the growing topic from one that follows everything held. A
partition written one record a batch, as a worker writes its events and outcomes, shows
what a produce request and a fetch at the partition's end cost as its batches add up."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker_offsets import fetched_end_offsets
from streams.cli.broker import EmbeddedBroker
from tests.bench.delivery import create_topics
from tests.bench.mapping import sample_leads
from tests.bench.worker import process_usage

PROBE_RECORDS = 5_000
ROUND_TRIPS = 500  # a step's batches of one record added to the small-batch partition


async def _write(bootstrap: str, topic: str, values: list[bytes], start: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=524288)
    await producer.start()
    try:
        for n in range(start, start + count):
            key = f"G-{n}".encode()
            await producer.send(topic, values[n % len(values)], key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, starts: dict[int, int], count: int) -> None:
    """Read ``count`` records of ``topic`` from the offsets ``starts`` (partition → offset)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in starts]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp.partition])
        seen = 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()


async def _round_trips(
    bootstrap: str, topic: str, value: bytes, count: int, broker_pid: int
) -> tuple[int, int]:
    """One record sent and awaited (a batch of one), then fetched by a consumer waiting
    at the partition's end, ``count`` times: the broker's CPU µs for a produce request
    and for a fetch, each measured apart."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await producer.start()
    await consumer.start()
    produce_s = fetch_s = 0.0
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        for _ in range(count):
            before = process_usage(broker_pid)[0]
            await producer.send_and_wait(topic, value, partition=0)
            sent = process_usage(broker_pid)[0]
            await consumer.getone()
            produce_s, fetch_s = (
                produce_s + sent - before,
                fetch_s + process_usage(broker_pid)[0] - sent,
            )
    finally:
        await consumer.stop()
        await producer.stop()
    return round(produce_s / count * 1e6), round(fetch_s / count * 1e6)


async def _write_then_read(
    bootstrap: str, topic: str, values: list[bytes], starts: dict[int, int], count: int
) -> None:
    """``count`` records written to ``topic``, then read from ``starts``."""
    await _write(bootstrap, topic, values, 0, count)
    await _read(bootstrap, topic, starts, count)


async def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's real end (Tansu's ListOffsets is short by its last batch but one)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        while not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = await fetched_end_offsets(consumer, await consumer.end_offsets(partitions))
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _broker_cpu_us_per_record(pid: int, records: int, work: Any) -> float:
    before, _ = process_usage(pid)
    await work
    after, _ = process_usage(pid)
    return round((after - before) / records * 1e6, 1)


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> dict[str, Any]:
    step, total = (20_000, 200_000) if quick else (100_000, 1_000_000)
    values = [lead.envelope for lead in sample_leads(1000)]
    encoded = [orjson.dumps(value) for value in values]
    tag = uuid.uuid4().hex[:8]
    topic = f"growth-{tag}"
    written, read, probed, rss, produced, fetched = [], [], [], [], [], []
    small = f"small-{tag}"
    started = time.monotonic()
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        await create_topics(bootstrap, topic)
        await create_topics(bootstrap, small, partitions=1)
        for start in range(0, total, step):
            starts = await _ends(bootstrap, topic)
            written.append(
                await _broker_cpu_us_per_record(
                    broker.pid, step, _write(bootstrap, topic, encoded, start, step)
                )
            )
            read.append(
                await _broker_cpu_us_per_record(
                    broker.pid, step, _read(bootstrap, topic, starts, step)
                )
            )
            probe = f"probe-{tag}-{start // step}"
            await create_topics(bootstrap, probe, partitions=1)
            probe_starts = await _ends(bootstrap, probe)
            probing = _write_then_read(bootstrap, probe, encoded, probe_starts, PROBE_RECORDS)
            probed.append(await _broker_cpu_us_per_record(broker.pid, PROBE_RECORDS, probing))
            costs = await _round_trips(bootstrap, small, encoded[0], ROUND_TRIPS, broker.pid)
            produced.append(costs[0])
            fetched.append(costs[1])
            rss.append(round(process_usage(broker.pid)[1]))
    return {
        "records": total,
        "record_bytes": round(sum(map(len, encoded)) / len(encoded)),
        # Broker CPU µs a record, each step of ``step`` records: the growing topic's
        # writes, then its reads, then a fresh small topic written and read (per record).
        "broker_us_per_record_written_by_step": written,
        "broker_us_per_record_read_by_step": read,
        "broker_us_per_probe_record_by_step": probed,
        # A partition filled only by batches of one record (ROUND_TRIPS more each step):
        # the broker's CPU µs for one produce request and for one fetch at its end.
        "small_batches_by_step": [ROUND_TRIPS * n for n in range(1, len(fetched) + 1)],
        "broker_us_per_produce_by_step": produced,
        "broker_us_per_fetch_by_step": fetched,
        "broker_peak_rss_mb_by_step": rss,
        "written_last_vs_first": round(written[-1] / written[0], 2),
        "read_last_vs_first": round(read[-1] / read[0], 2),
        "probe_last_vs_first": round(probed[-1] / probed[0], 2),
        "produce_last_vs_first": round(produced[-1] / produced[0], 2),
        "fetch_last_vs_first": round(fetched[-1] / fetched[0], 2),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
