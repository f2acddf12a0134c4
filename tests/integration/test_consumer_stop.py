"""A consumer stopped in the step it started in. aiokafka 0.14 re-raises the cancellation
of a task that never ran (aio-libs/aiokafka#647); on Python 3.12 that ended Faust's table
recovery at a worker's first start, and the worker never took a record (stop 45). Python
3.11 hid it only where the stop went through ``wait_for``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from streams.kafka_clients import stop_consumer


def group_less_reader(kafka: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)


def fully_stopped(consumer: AIOKafkaConsumer) -> bool:
    """Every step of aiokafka's stop ran: the client's metadata task is gone last."""
    return consumer._closed and consumer._client._sync_task is None


async def test_aiokafka_stop_in_the_step_after_start_raises_a_cancellation(kafka: Any) -> None:
    consumer = group_less_reader(kafka)
    await consumer.start()
    try:
        with pytest.raises(asyncio.CancelledError):
            await consumer.stop()
        assert not fully_stopped(consumer), "aiokafka's stop now ends cleanly: see stop_consumer"
    finally:
        await consumer._client.close()


@pytest.mark.parametrize("timeout_s", [None, 2.0])
async def test_a_consumer_stopped_in_the_step_after_start_stops_fully(
    kafka: Any, timeout_s: float | None
) -> None:
    consumer = group_less_reader(kafka)
    await consumer.start()
    await stop_consumer(consumer, timeout_s)
    assert fully_stopped(consumer)
