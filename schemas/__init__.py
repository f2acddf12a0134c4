"""The Avro schemas that are our contract with billing, loaded from the ``.avsc`` files here.

Each file is self-contained (no references across files), so each can be registered in a
schema registry or fingerprinted on its own.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any, cast

import fastavro

DELIVERY_EVENT = "delivery_event"
LEAD_OUTCOME = "lead_outcome"
CIRCUIT_EVENT = "circuit_event"
ALERT_EVENT = "alert_event"
LEAD_FEEDBACK = "lead_feedback"
ADMIN_ACTION = "admin_action"
CAP_USAGE = "cap_usage"
PERFORMANCE_TALLY = "performance_tally"


@cache
def schema_json(name: str) -> str:
    return files(__package__).joinpath(f"{name}.avsc").read_text(encoding="utf-8")


@cache
def load_schema(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], fastavro.parse_schema(json.loads(schema_json(name))))


@cache
def earlier_schemas(name: str) -> tuple[dict[str, Any], ...]:
    """The schema's earlier versions (``history/<name>.<n>.avsc``), oldest first: events
    written by an older worker are still on the topics, and readers resolve them to the
    current schema (every field added since has a default)."""
    history = files(__package__).joinpath("history")
    found = sorted(
        (int(entry.name.rsplit(".", 2)[1]), entry)
        for entry in history.iterdir()
        if entry.name.startswith(f"{name}.") and entry.name.endswith(".avsc")
    )
    return tuple(
        cast(dict[str, Any], fastavro.parse_schema(json.loads(entry.read_text(encoding="utf-8"))))
        for _, entry in found
    )
