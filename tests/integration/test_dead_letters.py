"""Malformed records go to the dead-letter topic, untouched and explained; the stream goes on."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from tests.integration.conftest import collect, publish
from tests.integration.recipients import Recipient

TEN_MB = 10 * 1024 * 1024


async def test_malformed_records_are_dead_lettered_and_good_ones_delivered(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    huge = orjson.dumps({"id": "huge", "lead": {"notes": "x" * TEN_MB}})
    malformed = {
        b"{this is not json": "Not JSON",
        b'{"lead": {"email": "a@example.com"}}': "Missing id",
        b'{"id": ["L-1"], "lead": {}}': "Invalid id",
        b'{"id": "L-2", "lead": "email=a@example.com"}': "Invalid section",
        b"[1, 2, 3]": "Not a JSON object",
        huge: "Record too large",
    }
    good = [{"id": f"G-{i}", "lead": {"email": f"g{i}@example.com"}} for i in range(6)]
    records: list[Any] = []
    for n, bad in enumerate(malformed):
        records += [good[n], bad]

    start_worker(
        f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{ref: id}}
"""
    )
    await publish(kafka, topics.leads, records)

    dead = await collect(kafka, topics.dlq, len(malformed))
    events = await collect(kafka, topics.events, len(good))

    by_reason = {}
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        by_reason[headers["courier.dlq.reason"]] = (record, headers)
    assert set(by_reason) == set(malformed.values())
    for raw, reason in malformed.items():
        record, headers = by_reason[reason]
        # The original bytes, whole, so the record can be fixed and replayed.
        assert hashlib.sha256(record.value).digest() == hashlib.sha256(raw).digest()
        assert headers["courier.dlq.topic"] == topics.leads
        assert int(headers["courier.dlq.offset"]) >= 0
        assert headers["courier.dlq.detail"]
    assert "id" in by_reason["Invalid id"][1]["courier.dlq.detail"]
    assert "lead" in by_reason["Invalid section"][1]["courier.dlq.detail"]

    assert sorted(r.key.decode() for r in events) == sorted(g["id"] for g in good)
    assert sorted(b["ref"] for b in recipient.bodies()) == sorted(g["id"] for g in good)
