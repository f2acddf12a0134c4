"""With a schema registry configured, events use Confluent's wire format and registered ids."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from schemas import DELIVERY_EVENT, schema_json
from streams.avro import EventDecoder, SchemaRegistry
from streams.errors import CourierError
from tests.integration.conftest import collect, publish
from tests.integration.recipients import Recipient
from tests.integration.schema_registry import SchemaRegistryDouble


@pytest.fixture
async def registry() -> AsyncIterator[SchemaRegistryDouble]:
    double = await SchemaRegistryDouble().start()
    yield double
    await double.stop()


async def test_registration_is_cached_and_invalid_schemas_are_refused_clearly(
    registry: SchemaRegistryDouble,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = SchemaRegistry(registry.url, session)
        first = await client.register("t-value", schema_json(DELIVERY_EVENT))
        again = await client.register("t-value", schema_json(DELIVERY_EVENT))
        assert first == again
        assert registry.requests == [("POST", "t-value")]  # asked once, then cached
        with pytest.raises(CourierError, match="refused broken-value: 422"):
            await client.register("broken-value", "{not avro")


async def test_worker_writes_confluent_framed_events(
    kafka: Any,
    recipient: Recipient,
    topics: Any,
    start_worker: Any,
    registry: SchemaRegistryDouble,
) -> None:
    start_worker(
        f"""
destinations:
  - id: crm
    url: {recipient.url()}
""",
        env={"COURIER_SCHEMA_REGISTRY_URL": registry.url},
    )
    await publish(kafka, topics.leads, [{"id": f"S-{i}", "lead": {}} for i in range(5)])
    events = await collect(kafka, topics.events, 5)
    outcomes = await collect(kafka, topics.outcomes, 5)

    assert set(registry.subjects) == {
        f"{topics.events}-value",
        f"{topics.outcomes}-value",
        f"{topics.control}-value",
        f"{topics.feedback_events}-value",
    }
    event_id = registry.subjects[f"{topics.events}-value"][0]
    outcome_id = registry.subjects[f"{topics.outcomes}-value"][0]
    for record in events:
        assert record.value[:5] == b"\x00" + struct.pack(">I", event_id)
    for record in outcomes:
        assert record.value[:5] == b"\x00" + struct.pack(">I", outcome_id)

    async with aiohttp.ClientSession() as session:
        decoder = EventDecoder(SchemaRegistry(registry.url, session))
        decoded = [await decoder.decode(r.value) for r in events]
    assert {name for name, _ in decoded} == {"io.leadcourier.delivery.v1.DeliveryEvent"}
    assert sorted(event["lead_id"] for _, event in decoded) == [f"S-{i}" for i in range(5)]
