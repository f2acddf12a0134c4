"""Avro specification pieces written out independently of fastavro, for tests."""

from __future__ import annotations

import io
import json

import fastavro

# The Avro specification's reference CRC-64-AVRO ("Schema Fingerprints"), written out
# independently of fastavro so a wrong header cannot pass by agreeing with itself.
EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


def spec_fingerprint(canonical: bytes) -> int:
    table = _table()
    fp = EMPTY
    for byte in canonical:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def far_future(encoded: bytes, schema_text: str, record: dict[str, object]) -> bytes:
    """``record`` as a single-object event with ``encoded``'s header (its schema's) whose
    timestamps are ~146 million years ahead: valid Avro longs that no datetime can hold."""
    schema = json.loads(schema_text)
    for field in schema["fields"]:
        if isinstance(field["type"], dict) and field["type"].get("logicalType"):
            field["type"] = "long"
            record = {**record, field["name"]: 2**62}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return encoded[:10] + body.getvalue()
