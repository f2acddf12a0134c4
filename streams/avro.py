"""Avro on the wire: single-object encoding by default, Confluent's format with a registry.

- Single-object encoding (Avro spec): ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint
  of the schema's canonical form + the binary body. Any Avro library can read it given the
  ``.avsc`` files in ``schemas/``.
- Confluent wire format, when a schema registry URL is set: ``00`` + 4-byte big-endian schema
  id + the binary body; schemas are registered under ``<topic>-value`` (TopicNameStrategy).
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any, cast

import aiohttp
import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import (
    ADMIN_ACTION,
    ALERT_EVENT,
    CAP_USAGE,
    CIRCUIT_EVENT,
    DELIVERY_EVENT,
    LEAD_FEEDBACK,
    LEAD_OUTCOME,
    PERFORMANCE_TALLY,
    earlier_schemas,
    load_schema,
    schema_json,
)
from streams.errors import CourierError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
REGISTRY_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class AvroDecodeError(CourierError):
    """Bytes that are not an event we can read."""


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    # fastavro's hex string already lists the bytes in little-endian order, as the spec's
    # single-object header wants them: decode it, do not re-pack it as an integer.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


class EventEncoder:
    """Encodes records of one schema; ``schema_id`` switches to the Confluent format."""

    def __init__(self, schema_name: str, schema_id: int | None = None) -> None:
        self.schema = load_schema(schema_name)
        if schema_id is None:
            self._header = SINGLE_OBJECT_MAGIC + schema_fingerprint(self.schema)
        else:
            self._header = CONFLUENT_MAGIC + struct.pack(">I", schema_id)

    def encode(self, record: dict[str, Any]) -> bytes:
        return self._header + _body(self.schema, record)


class SchemaRegistry:
    """The two calls of Confluent's Schema Registry REST API we need, with ids cached."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}

    async def register(self, subject: str, schema_text: str) -> int:
        """POST /subjects/{subject}/versions → the schema's global id (idempotent)."""
        key = (subject, schema_text)
        if key not in self._ids:
            async with self._session.post(
                f"{self.url}/subjects/{subject}/versions",
                data=json.dumps({"schema": schema_text}),
                headers={"Content-Type": REGISTRY_CONTENT_TYPE},
            ) as res:
                body = await res.json(content_type=None)
                if res.status != 200:
                    raise CourierError(f"schema registry refused {subject}: {res.status} {body}")
                self._ids[key] = int(body["id"])
        return self._ids[key]

    async def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """GET /schemas/ids/{id} → the writer's schema, parsed."""
        if schema_id not in self._schemas:
            async with self._session.get(f"{self.url}/schemas/ids/{schema_id}") as res:
                body = await res.json(content_type=None)
                if res.status != 200:
                    raise AvroDecodeError(f"schema id {schema_id} unknown to the registry")
                self._schemas[schema_id] = cast(
                    dict[str, Any], fastavro.parse_schema(json.loads(body["schema"]))
                )
        return self._schemas[schema_id]


async def registered_encoder(
    registry: SchemaRegistry, topic: str, schema_name: str
) -> EventEncoder:
    schema_id = await registry.register(f"{topic}-value", schema_json(schema_name))
    return EventEncoder(schema_name, schema_id)


class EventDecoder:
    """Reads both formats; Confluent-framed events need the registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self._registry = registry
        # fingerprint → (writer's schema, reader's schema): an earlier version's events are
        # read as the current version (its added fields at their defaults).
        self._by_fingerprint: dict[bytes, tuple[dict[str, Any], dict[str, Any]]] = {}
        for name in (
            DELIVERY_EVENT,
            LEAD_OUTCOME,
            CIRCUIT_EVENT,
            ALERT_EVENT,
            LEAD_FEEDBACK,
            ADMIN_ACTION,
            CAP_USAGE,
            PERFORMANCE_TALLY,
        ):
            current = load_schema(name)
            for writer in (*earlier_schemas(name), current):
                self._by_fingerprint[schema_fingerprint(writer)] = (writer, current)

    async def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """→ (the record's full Avro name, record)."""
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            known = self._by_fingerprint.get(data[2:10])
            if known is None:
                raise AvroDecodeError("single-object event with an unknown schema fingerprint")
            writer, reader = known
            return str(reader["name"]), _read(data[10:], writer, reader)
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            if self._registry is None:
                raise AvroDecodeError("Confluent-framed event but no schema registry configured")
            (schema_id,) = struct.unpack(">I", data[1:5])
            writer = await self._registry.schema_by_id(schema_id)
            return str(writer["name"]), _read(data[5:], writer, None)
        raise AvroDecodeError("not an Avro single-object or Confluent-framed record")


def _read(body: bytes, writer: dict[str, Any], reader: dict[str, Any] | None) -> dict[str, Any]:
    """The record in ``body``. Whatever the reader raises on bytes it cannot read
    (truncated: EOFError; a timestamp past year 9999: OverflowError; a union index out of
    range: IndexError; …) is an ``AvroDecodeError``: one bad record must not end whoever
    follows the topic (a control topic is read again at every start)."""
    try:
        return cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(body), writer, reader))
    except Exception as exc:
        raise AvroDecodeError(f"an event that cannot be read ({type(exc).__name__})") from exc


class Encoders:
    """The encoders a worker needs, built once (registering schemas when a registry is set)."""

    def __init__(
        self,
        delivery: EventEncoder,
        outcome: EventEncoder,
        circuit: EventEncoder,
        feedback: EventEncoder | None = None,
    ) -> None:
        self.delivery = delivery
        self.outcome = outcome
        self.circuit = circuit
        self.feedback = feedback or EventEncoder(LEAD_FEEDBACK)
        self.cap_usage = EventEncoder(CAP_USAGE)  # control topic, beside circuit events
        self.performance = EventEncoder(PERFORMANCE_TALLY)  # control topic too

    @classmethod
    async def build(
        cls,
        registry_url: str | None,
        events_topic: str,
        outcomes_topic: str,
        control_topic: str,
        feedback_topic: str = "leads.delivery.feedback",
    ) -> Encoders:
        if registry_url is None:
            return cls(
                EventEncoder(DELIVERY_EVENT),
                EventEncoder(LEAD_OUTCOME),
                EventEncoder(CIRCUIT_EVENT),
            )
        async with aiohttp.ClientSession() as session:
            registry = SchemaRegistry(registry_url, session)
            return cls(
                await registered_encoder(registry, events_topic, DELIVERY_EVENT),
                await registered_encoder(registry, outcomes_topic, LEAD_OUTCOME),
                await registered_encoder(registry, control_topic, CIRCUIT_EVENT),
                await registered_encoder(registry, feedback_topic, LEAD_FEEDBACK),
            )
