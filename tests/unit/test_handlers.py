"""The handlers with plain dicts for tables: the records they return, and what a failure for
one lead turns into (its outcome and dead letter, never an exception)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import fastavro
import orjson
import pytest

from schemas import CIRCUIT_EVENT, DELIVERY_EVENT, LEAD_OUTCOME, load_schema
from streams.avro import Encoders, EventEncoder
from streams.config import DestinationsFile
from streams.control.desk import DeliveryDesk
from streams.control.messages import WorkItem
from streams.control.router import Router
from streams.handlers import (
    DEAD_LETTER_KEPT_BYTES,
    DEAD_LETTER_MAX_BYTES,
    Handlers,
    Origin,
    Out,
    dead_letter,
)
from streams.model import Lead
from streams.stages.attempt import Attempt
from streams.stages.envelope import Rejected

FILE = DestinationsFile.model_validate(
    {
        "destinations": [{"id": d, "url": f"http://127.0.0.1:9/{d}"} for d in ("a", "b")],
        "flows": [{"id": "sell", "plan": {"waterfall": ["a", "b"]}}],
    }
)
ORIGIN = Origin("leads", 2, 40)


async def refuse(lead: Lead, destination: Any, number: int) -> Attempt:
    raise ArithmeticError("lead value 123-45-6789 in the message")


def handlers(attempt_at: Any = refuse) -> Handlers:
    desk = DeliveryDesk(FILE.by_id(), attempt_at, circuits={}, caps={}, delivered={}, parked={})
    codec = Encoders(
        EventEncoder(DELIVERY_EVENT), EventEncoder(LEAD_OUTCOME), EventEncoder(CIRCUIT_EVENT)
    )
    flows = FILE.compiled_flows
    return Handlers(
        flows=flows,
        router=Router({f.id: f for f in flows}, {}),
        desk=desk,
        codec=codec,
        partitions=4,
        max_lead_bytes=1 << 20,
        leads_topic="leads",
        worker_name="test",
    )


def decoded(out: Out, schema: str) -> dict[str, Any]:
    record: dict[str, Any] = fastavro.schemaless_reader(
        io.BytesIO(out.value[10:]), fastavro.parse_schema(load_schema(schema)), None
    )
    return record


def test_a_dead_letter_too_large_for_the_topic_keeps_its_start_size_and_reason() -> None:
    value = b"x" * (DEAD_LETTER_MAX_BYTES + 1)
    out = dead_letter(value, b"k", Rejected("Record too large", "big"), ORIGIN)
    headers = dict(out.headers or [])
    assert out.value == value[:DEAD_LETTER_KEPT_BYTES]
    assert headers["courier.dlq.size"] == str(len(value)).encode()
    assert headers["courier.dlq.truncated"] == b"true"
    assert headers["courier.dlq.reason"] == b"Record too large"
    whole = dead_letter(b"{}", b"k", Rejected("Not JSON", "x"), ORIGIN)
    assert whole.value == b"{}" and "courier.dlq.truncated" not in dict(whole.headers or [])


def test_a_failed_intake_ends_the_lead_with_an_error_outcome_and_a_dead_letter() -> None:
    raw = b'{"id": "L-1", "lead": {"ssn": "123-45-6789"}}'
    sends = handlers().failed("intake", raw, b"L-1", ORIGIN, TypeError("123-45-6789"))
    (letter,) = [s for s in sends if s.topic == "dlq"]
    (outcome,) = [s for s in sends if s.topic == "outcomes"]
    assert letter.value == raw and letter.key == b"L-1"
    headers = dict(letter.headers or [])
    assert headers["courier.dlq.reason"] == b"Internal error"
    assert headers["courier.dlq.detail"].startswith(b"intake: TypeError")
    record = decoded(outcome, LEAD_OUTCOME)
    assert record["lead_id"] == "L-1"
    assert record["outcome"] == "not_delivered"
    assert record["reason"] == "Internal error: TypeError"  # never the lead's values


def test_a_failed_record_without_a_readable_lead_is_only_dead_lettered() -> None:
    sends = handlers().failed("routing", b"\xff", None, ORIGIN, KeyError("x"))
    assert [s.topic for s in sends] == ["dlq"]


def test_a_routing_failure_forgets_the_lead_in_flight() -> None:
    on = handlers()
    lead = {"id": "L-2", "lead": {}}
    on.go_on(orjson.dumps({"type": "lead", "flow": "sell", "lead": lead}), b"L-2", ORIGIN)
    assert "L-2" in on._router.routes
    message = orjson.dumps({"type": "attempt", "lead_id": "L-2", "path": "x", "attempt": {}})
    sends = on.failed("routing", message, b"L-2", ORIGIN, TypeError())
    assert {s.topic for s in sends} == {"dlq", "outcomes"}
    assert "L-2" not in on._router.routes


def test_a_failed_attempt_goes_back_to_routing_as_an_internal_error() -> None:
    on = handlers()
    item = WorkItem(Lead("L-3", {"id": "L-3", "lead": {}}), "a", "plan.0", 1, True)
    with pytest.raises(ArithmeticError) as raised:
        asyncio.run(on.work_on(item.to_json(), b"a", ORIGIN))
    sends = on.failed("work", item.to_json(), b"a", ORIGIN, raised.value)
    (event,) = [s for s in sends if s.topic == "events"]
    (back,) = [s for s in sends if s.topic == "routing"]
    record = decoded(event, DELIVERY_EVENT)
    assert (record["outcome"], record["category"]) == ("error", "internal_error")
    assert record["reason"] == "Internal error: ArithmeticError"
    assert "123-45-6789" not in (record["raw"] or "")
    # The waterfall goes on to its next buyer; the lead is dead-lettered when it ends.
    attempt = orjson.loads(back.value)
    step = on._router.start(Lead("L-3", {"id": "L-3", "lead": {}}), FILE.compiled_flows[0])
    assert [n.destination_id for n in step.needed] == ["a"]
    after = on.go_on(back.value, b"L-3", ORIGIN)
    assert attempt["attempt"]["category"] == "internal_error"
    assert [(s.topic, s.key) for s in after] == [("work", b"b")]


def test_a_plan_that_ends_on_an_internal_error_dead_letters_the_lead() -> None:
    one = DestinationsFile.model_validate(
        {"destinations": [{"id": "a", "url": "http://127.0.0.1:9/a"}]}
    )
    on = handlers()
    on._router = Router({f.id: f for f in one.compiled_flows}, {})
    lead = {"id": "L-4", "lead": {}}
    (ask,) = on.go_on(orjson.dumps({"type": "lead", "flow": "all", "lead": lead}), b"L-4", ORIGIN)
    item = WorkItem.from_json(ask.value)
    back = next(
        s for s in on.failed("work", ask.value, b"a", ORIGIN, ValueError()) if s.topic == "routing"
    )
    sends = on.go_on(back.value, b"L-4", ORIGIN)
    assert item.lead.id == "L-4"
    assert sorted(s.topic for s in sends) == ["dlq", "outcomes"]
    letter = next(s for s in sends if s.topic == "dlq")
    assert dict(letter.headers or [])["courier.dlq.reason"] == b"Internal error"
    assert orjson.loads(letter.value) == lead
