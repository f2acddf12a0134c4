"""Events as billing reads them: the Avro contract, the single-object header, evolution."""

from __future__ import annotations

import io
import itertools
import json
import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from schemas import CIRCUIT_EVENT, DELIVERY_EVENT, LEAD_OUTCOME, load_schema, schema_json
from streams.avro import AvroDecodeError, EventDecoder, EventEncoder, schema_fingerprint
from streams.model import Outcome
from streams.stages.attempt import Attempt
from streams.stages.delivery import RequestSummary
from streams.stages.events import delivery_event, lead_outcome
from tests.avro_spec import far_future, spec_fingerprint


def attempt(outcome: Outcome, status: int | None = 200, number: int = 1) -> Attempt:
    now = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)
    return Attempt(
        "L-1",
        "buyer",
        "json_post",
        number,
        now,
        now,
        12.5,
        0.4,
        status,
        outcome,
        RequestSummary("POST", "https://b.example.com/x", {"X-Api-Key": "****"}, 42),
    )


def test_the_header_is_the_specs_fingerprint_of_the_canonical_schema() -> None:
    from fastavro.schema import to_parsing_canonical_form

    for name in (DELIVERY_EVENT, LEAD_OUTCOME):
        canonical = to_parsing_canonical_form(load_schema(name)).encode()
        assert schema_fingerprint(load_schema(name)) == struct.pack(
            "<Q", spec_fingerprint(canonical)
        )
    # The test vector from Avro's share/test/data/schema-tests.txt proves the reference.
    assert spec_fingerprint(b'"null"') == 7195948357588979594


async def test_a_delivery_event_round_trips_as_any_avro_reader_sees_it() -> None:
    outcome = Outcome.success(
        reference_id="R-7", price=Decimal("12.5"), appended={"status": "ok"}, raw="{}"
    )
    event = delivery_event(attempt(outcome))
    data = EventEncoder(DELIVERY_EVENT).encode(event)

    assert data[:2] == b"\xc3\x01"
    plain = fastavro.schemaless_reader(io.BytesIO(data[10:]), load_schema(DELIVERY_EVENT), None)
    assert isinstance(plain, dict)
    assert plain["price"] == Decimal("12.5000")
    assert plain["started_at"] == datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)
    assert plain["request"]["headers"] == {"X-Api-Key": "****"}

    name, decoded = await EventDecoder().decode(data)
    assert name == "io.leadcourier.delivery.v1.DeliveryEvent"
    assert decoded == plain


async def test_a_transport_error_event_has_nulls_where_there_was_no_answer() -> None:
    event = delivery_event(attempt(Outcome.error("Timeout", retryable=True), status=None))
    _, decoded = await EventDecoder().decode(EventEncoder(DELIVERY_EVENT).encode(event))
    assert decoded["http_status"] is None
    assert decoded["reference_id"] is None and decoded["price"] is None
    assert (decoded["outcome"], decoded["retryable"]) == ("error", True)


async def test_the_lead_outcome_names_who_accepted() -> None:
    attempts = [
        attempt(Outcome.failure("Duplicate lead"), 409),
        attempt(Outcome.success(reference_id="R-1", price=Decimal("3")), number=3),
    ]
    record = lead_outcome("L-1", attempts)
    _, decoded = await EventDecoder().decode(EventEncoder(LEAD_OUTCOME).encode(record))
    assert decoded["outcome"] == "delivered"
    assert decoded["accepted_by"] == ["buyer"]
    assert decoded["attempts"] == 4  # one, then three (two retries) at the second
    assert [d["reason"] for d in decoded["destinations"]] == ["Duplicate lead", "Accepted"]


def test_nothing_delivered_reports_the_last_reason() -> None:
    record = lead_outcome("L-1", [attempt(Outcome.failure("Outside service area"), 422)])
    assert (record["outcome"], record["reason"]) == ("not_delivered", "Outside service area")
    assert lead_outcome("L-2", [])["reason"] == "No destination"


@pytest.mark.parametrize("name", [DELIVERY_EVENT, LEAD_OUTCOME, CIRCUIT_EVENT])
def test_schemas_are_namespaced_and_documented_for_evolution(name: str) -> None:
    schema: dict[str, Any] = json.loads(schema_json(name))
    assert schema["namespace"] == "io.leadcourier.delivery.v1"
    for field in schema["fields"]:
        assert field.get("doc"), f"{name}.{field['name']} has no doc"
        # Nullable fields default to null, so a reader on a newer schema reads old events.
        if isinstance(field["type"], list) and "null" in field["type"]:
            assert field["type"][0] == "null" and field.get("default", "x") is None


async def test_bytes_that_are_not_our_events_are_refused_clearly() -> None:
    decoder = EventDecoder()
    with pytest.raises(AvroDecodeError, match="unknown schema fingerprint"):
        await decoder.decode(b"\xc3\x01" + b"\x00" * 12)
    with pytest.raises(AvroDecodeError, match="no schema registry"):
        await decoder.decode(b"\x00\x00\x00\x00\x01body")
    with pytest.raises(AvroDecodeError, match="not an Avro"):
        await decoder.decode(b'{"json": true}')


async def test_a_circuit_change_round_trips() -> None:
    from streams.model import CircuitChange
    from streams.stages.events import circuit_event

    record = circuit_event("buyer", CircuitChange("closed", "open", "5 errors in a row"), "host:1")
    name, decoded = await EventDecoder().decode(EventEncoder(CIRCUIT_EVENT).encode(record))
    assert name == "io.leadcourier.delivery.v1.CircuitEvent"
    assert (decoded["before"], decoded["after"], decoded["reason"]) == (
        "closed",
        "open",
        "5 errors in a row",
    )


@pytest.mark.parametrize("name", [DELIVERY_EVENT, LEAD_OUTCOME])
async def test_events_of_an_earlier_schema_version_are_still_read(name: str) -> None:
    """Events an older worker wrote stay on the topics: read, with fields added since at
    their defaults (``trace_id`` came with the traces)."""
    from schemas import earlier_schemas

    (first, *_) = earlier_schemas(name)
    assert "trace_id" not in {f["name"] for f in first["fields"]}
    if name == DELIVERY_EVENT:
        record = delivery_event(attempt(Outcome.success(reference_id="R-1")))
    else:
        record = lead_outcome("L-1", [attempt(Outcome.success(reference_id="R-1"))])
    del record["trace_id"]
    out = io.BytesIO()
    fastavro.schemaless_writer(out, first, record)
    old = b"\xc3\x01" + schema_fingerprint(first) + out.getvalue()

    _, read = await EventDecoder().decode(old)
    assert read["trace_id"] is None
    assert read["lead_id"] == "L-1"


def test_fields_are_only_ever_added_last_and_with_a_default() -> None:
    """Each version keeps the one before as its first fields, and what it adds has a
    default (``trace_id`` with the traces; ``phase``, ``bid`` with auctions; ``source`` for
    reports per source): a compatible
    change for readers on either version (and for a registry's BACKWARD check)."""
    from schemas import earlier_schemas

    for name in (DELIVERY_EVENT, LEAD_OUTCOME):
        versions = [*earlier_schemas(name), load_schema(name)]
        assert len(versions) >= 3
        for before, after in itertools.pairwise(versions):
            names = [f["name"] for f in after["fields"]]
            kept = [f["name"] for f in before["fields"]]
            assert names[: len(kept)] == kept
            assert all("default" in f for f in after["fields"][len(kept) :])
    assert load_schema(DELIVERY_EVENT)["fields"][-1]["name"] == "source"


async def test_an_event_that_cannot_be_read_is_a_decode_error_whatever_the_reader_raises() -> None:
    """Truncated (fastavro: EOFError), a timestamp no datetime holds (OverflowError), a
    union or enum index out of range: all ``AvroDecodeError``, which every follower of a
    topic catches, never an exception that would end it."""
    circuit = {
        "event_id": "e-1",
        "destination_id": "crm",
        "at": datetime(2026, 12, 2, tzinfo=UTC),
        "before": "closed",
        "after": "open",
        "reason": "5 errors in a row",
        "worker": "w:1",
    }
    good = EventEncoder(CIRCUIT_EVENT).encode(circuit)
    unreadable = [
        good[:-8],  # cut short
        far_future(good, schema_json(CIRCUIT_EVENT), circuit),
        good[:10] + good[10:].replace(b"\x02", b"\x7f", 1),  # an enum index past the symbols
    ]
    decoder = EventDecoder()
    assert (await decoder.decode(good))[1]["after"] == "open"
    for data in unreadable:
        with pytest.raises(AvroDecodeError, match="cannot be read"):
            await decoder.decode(data)
