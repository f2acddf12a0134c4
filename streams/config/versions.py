"""Versions of the destinations file on the config topic: what every worker runs.

``courier config apply`` publishes a file as a new version; every worker follows the topic
and switches to each version it can load, between leads, without a restart. The topic has
one partition, so versions are in order and a version's number is its offset + 1. Each
record is keyed by a fresh id and the topic is compacted: nothing expires by time, and
compaction never drops a version (no two share a key), so the topic is the history too.

A record's value is JSON: ``{"at", "by", "note", "source", "text"}``, ``text`` being the
file as written (credentials are references, ``${env:…}``: each worker resolves them in its
own environment, so the topic holds no secret).
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.config.destinations import DestinationsFile, parse_destinations, yaml_document

CONFIG_TOPIC_CONFIG = {"cleanup.policy": "compact"}


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One version: ``number`` is its offset on the config topic + 1."""

    number: int
    at: datetime
    by: str
    note: str
    source: str  # apply, rollback, start (a worker's file when there was none), file
    text: str


def version_record(text: str, by: str, note: str, source: str) -> tuple[bytes, bytes]:
    """The key and value to publish."""
    value = {"at": datetime.now(UTC).isoformat(), "by": by, "note": note, "source": source,
             "text": text}  # fmt: skip
    return uuid.uuid4().hex.encode(), orjson.dumps(value)


def read_version(offset: int, value: bytes | None) -> ConfigVersion | None:
    """None for a record that is not a version (written by something else)."""
    try:
        found: Any = orjson.loads(value or b"")
        return ConfigVersion(
            number=offset + 1,
            at=datetime.fromisoformat(found["at"]),
            by=str(found["by"]),
            note=str(found.get("note") or ""),
            source=str(found.get("source") or "apply"),
            text=str(found["text"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def load_text(text: str, source: str) -> DestinationsFile:
    """A destinations file from its text; ConfigError listing every problem."""
    return parse_destinations(yaml_document(text, source), source)


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """Destinations added, removed and changed, by id (each given as its settings' JSON)."""
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(d for d in after.keys() & before.keys() if after[d] != before[d])
    parts = [
        f"{what}: {', '.join(ids)}"
        for what, ids in (("added", added), ("removed", removed), ("changed", changed))
        if ids
    ]
    return "; ".join(parts) or "no destination changed (flows or other settings may have)"


def destinations_in(loaded: DestinationsFile) -> dict[str, str]:
    """Each destination's settings as JSON, by id: what ``changes`` compares."""
    return {d.id: d.model_dump_json() for d in loaded.destinations}


def text_diff(before: ConfigVersion | None, after: ConfigVersion) -> list[str]:
    """A unified diff of one version against the one before it."""
    old = before.text if before is not None else ""
    name = f"v{before.number}" if before is not None else "(none)"
    return list(
        difflib.unified_diff(
            old.splitlines(), after.text.splitlines(), name, f"v{after.number}", lineterm=""
        )
    )
