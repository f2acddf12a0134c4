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


@cache
def schema_json(name: str) -> str:
    return files(__package__).joinpath(f"{name}.avsc").read_text(encoding="utf-8")


@cache
def load_schema(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], fastavro.parse_schema(json.loads(schema_json(name))))
