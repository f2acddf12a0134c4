"""Fixtures for tests against a real broker process and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastavro.schema import to_parsing_canonical_form

from streams.cli.console import publish_lines, read_records
from streams.stages.delivery import HttpSender
from tests.avro_spec import spec_fingerprint
from tests.integration.https_recipient import https_url  # noqa: F401 (a fixture for all)
from tests.integration.kafka import KafkaTarget, kafka_target
from tests.integration.recipients import Recipient
from tests.integration.worker import TopicNames, WorkerProcess

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaTarget]:
    with kafka_target() as target:
        yield target


@pytest.fixture
async def recipient() -> AsyncIterator[Recipient]:
    server = await Recipient().start()
    yield server
    await server.stop()


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    """The worker's HTTP sender, for tests that deliver without Kafka."""
    http = HttpSender(max_connections=200)
    yield http
    await http.close()


@pytest.fixture
def topics() -> TopicNames:
    return TopicNames.unique()


@pytest.fixture
def start_worker(
    kafka: KafkaTarget, tmp_path: Path, topics: TopicNames
) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(destinations_yaml: str, **options: Any) -> WorkerProcess:
        worker = WorkerProcess(kafka, destinations_yaml, tmp_path, topics, **options).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


async def create_topic(kafka: KafkaTarget, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def publish(kafka: KafkaTarget, topic: str, records: list[Any]) -> None:
    """Publish dicts as JSON and bytes as they are."""
    lines = [r if isinstance(r, bytes) else orjson.dumps(r) for r in records]
    await publish_lines(kafka.bootstrap, topic, lines)


async def collect(
    kafka: KafkaTarget, topic: str, count: int, timeout_s: float = 90.0, settle_s: float = 0.0
) -> list[Any]:
    """At least ``count`` records of ``topic``; then ``settle_s`` more seconds for strays."""
    found: list[Any] = []

    async def gather() -> None:
        async for record in read_records(kafka.bootstrap, topic, follow=True):
            found.append(record)
            if len(found) >= count and not settle_s:
                return

    task = asyncio.ensure_future(gather())
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                await asyncio.sleep(0.05)
        if settle_s:
            await asyncio.sleep(settle_s)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return found


def schema_file(name: str) -> dict[str, Any]:
    return fastavro.parse_schema(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text()))


def decode_with_schema_file(value: bytes, name: str) -> dict[str, Any]:
    """Decode an event as any Avro reader would: check the single-object header, then read."""
    schema = schema_file(name)
    canonical = to_parsing_canonical_form(schema).encode()
    expected = struct.pack("<Q", spec_fingerprint(canonical))
    assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
    assert value[2:10] == expected, f"fingerprint is not that of schemas/{name}.avsc"
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
    return record


async def trail(kafka: KafkaTarget, topics: TopicNames, app_id: str, lead_ids: set[str]) -> str:
    """Where ``lead_ids`` are on the worker's topics and the leads table's changelog, and
    the group's lag: a failure message that says where a lead stopped."""
    from streams.insight.lag import group_lag

    lines = []
    names = (
        topics.leads,
        topics.routing,
        topics.work,
        topics.events,
        f"{app_id}-leads-changelog",
        f"{app_id}-finished-changelog",
    )
    for topic in names:
        async for record in read_records(kafka.bootstrap, topic, follow=False):
            text = (record.key or b"").decode(errors="replace") + " " + repr(record.value)[:300]
            if any(lead_id in text for lead_id in lead_ids):
                lines.append(f"{topic}[{record.partition}]@{record.offset}: {text}")
    lag = await group_lag(kafka.bootstrap, app_id, [topics.leads, topics.routing, topics.work])
    lines.append(f"lag: {lag}")
    return "\n".join(lines)
