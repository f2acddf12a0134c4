"""The worker's producer keeps the metadata of every topic it writes to.

aiokafka refreshes metadata only for the topics its client tracks, and a refresh replaces
everything it knew; a topic known from the all-topics fetch at start is not tracked. Its
partitions vanish at the next refresh (the first send to a newer topic causes one) and a
batch queued for it then waits for a leader forever: a worker stalled that way with all
its actors waiting for confirmations. streams/app.py's CourierProducer tracks each topic
before its first record.
"""

from __future__ import annotations

import uuid
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from streams.app import TRANSPORT_SCHEME
from tests.integration.conftest import create_topic
from tests.integration.kafka import KafkaTarget


async def test_aiokafka_alone_forgets_a_topic_it_was_not_tracking(kafka: KafkaTarget) -> None:
    """The library behaviour the worker's producer works around: if this starts failing,
    aiokafka fixed it and CourierProducer can go."""
    tag = uuid.uuid4().hex[:8]
    await create_topic(kafka, f"known-{tag}", 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"known-{tag}", b"x")
        await create_topic(kafka, f"newer-{tag}", 2)
        await producer.send_and_wait(f"newer-{tag}", b"y")
        assert producer.client.cluster.partitions_for_topic(f"known-{tag}") is None
    finally:
        await producer.stop()


async def test_the_worker_producer_keeps_every_topic_it_wrote_to(kafka: KafkaTarget) -> None:
    app = faust.App(
        f"metadata-{uuid.uuid4().hex[:8]}",
        broker=f"{TRANSPORT_SCHEME}://{kafka.bootstrap}",
        autodiscover=False,
    )
    producer: Any = app.producer  # CourierProducer; _ensure_producer is the aiokafka one
    await producer.start()
    try:
        tag = uuid.uuid4().hex[:8]
        await create_topic(kafka, f"known-{tag}", 2)
        # A fresh producer fetched all topics at start; make sure it has seen this one.
        await producer._ensure_producer().client.force_metadata_update()
        await producer.send_and_wait(f"known-{tag}", None, b"x", None, None, None)
        await create_topic(kafka, f"newer-{tag}", 2)
        await producer.send_and_wait(f"newer-{tag}", None, b"y", None, None, None)
        client = producer._ensure_producer().client
        assert client.cluster.partitions_for_topic(f"known-{tag}") == {0, 1}
    finally:
        await producer.stop()
