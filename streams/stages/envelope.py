"""Bytes from the leads topic → a Lead, or the reason the record goes to the dead-letter topic.

The envelope (documented in docs/configuration.md)::

    {"id": "L-1", "submission": {"timestamp": "..."}, "source": {...},
     "lead": {"email": "...", ...}, "appended": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streams.model import ENVELOPE_SECTIONS, Lead, json_loads

MAX_ID_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a record cannot be a lead: a countable ``reason`` and a ``detail`` naming the field."""

    reason: str
    detail: str


# The reasons a record is refused here, as dead letters say them.
ENVELOPE_REASONS = (
    "Empty record",
    "Record too large",
    "Not JSON",
    "Not a JSON object",
    "Missing id",
    "Invalid id",
    "Missing lead",
    "Invalid section",
)


def parse_envelope(raw: bytes | None, max_bytes: int) -> Lead | Rejected:
    if not raw:  # a tombstone (None) or zero bytes
        return Rejected("Empty record", "the record has no value")
    if len(raw) > max_bytes:
        return Rejected("Record too large", f"{len(raw)} bytes > the {max_bytes}-byte limit")
    try:
        document: Any = json_loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected("Not JSON", str(exc))
    if not isinstance(document, dict):
        return Rejected("Not a JSON object", f"top level is {_json_type(document)}")
    return _check_fields(document)


def _check_fields(document: dict[str, Any]) -> Lead | Rejected:
    lead_id = document.get("id")
    if lead_id is None or lead_id == "":
        return Rejected("Missing id", "id: required")
    # Integers are accepted (some sources number their leads); booleans are not integers here.
    if isinstance(lead_id, bool) or not isinstance(lead_id, str | int):
        return Rejected("Invalid id", f"id: expected a string, got {_json_type(lead_id)}")
    lead_id = str(lead_id)
    if len(lead_id) > MAX_ID_LENGTH:
        return Rejected("Invalid id", f"id: longer than {MAX_ID_LENGTH} characters")
    for section in ENVELOPE_SECTIONS:
        value = document.get(section)
        if value is not None and not isinstance(value, dict):
            return Rejected(
                "Invalid section", f"{section}: expected an object, got {_json_type(value)}"
            )
    if "lead" not in document:
        return Rejected("Missing lead", "lead: required")
    return Lead(lead_id, document)


def _json_type(value: Any) -> str:
    match value:
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case None:
            return "null"
    return "an object"


def dead_letter_headers(
    rejected: Rejected, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Headers that travel with the untouched bytes to the DLQ: why, and where from (replay)."""
    return [
        ("courier.dlq.reason", rejected.reason.encode()),
        ("courier.dlq.detail", rejected.detail[:1000].encode()),
        ("courier.dlq.topic", topic.encode()),
        ("courier.dlq.partition", str(partition).encode()),
        ("courier.dlq.offset", str(offset).encode()),
    ]
