"""The handlers with plain dicts for tables: the records they return, and what a failure for
one lead turns into (its outcome and dead letter, never an exception)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import fastavro
import orjson
import pytest

from schemas import CIRCUIT_EVENT, DELIVERY_EVENT, LEAD_OUTCOME, load_schema
from streams.avro import Encoders, EventEncoder
from streams.config import DestinationsFile
from streams.config.feedback import FeedbackConfig
from streams.control.desk import DeliveryDesk, Unremembered
from streams.control.home import Home, LeadStates
from streams.handlers import (
    DEAD_LETTER_KEPT_BYTES,
    DEAD_LETTER_MAX_BYTES,
    Handlers,
    Origin,
    Out,
    dead_letter,
)
from streams.model import Lead, Outcome
from streams.stages.attempt import Attempt, not_sent
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


async def nothing_to_confirm() -> None:
    pass


def handlers(attempt_at: Any = refuse, file: DestinationsFile = FILE) -> Handlers:
    """Home delivers uncapped destinations in the lead's partition; plain dicts for tables."""
    by_id = file.by_id()
    desk = DeliveryDesk(by_id, attempt_at, circuits={}, caps={}, delivered={}, parked={})
    at_home = DeliveryDesk(
        by_id, attempt_at, circuits={}, caps={}, delivered=Unremembered(), parked={}
    )
    flows = file.compiled_flows
    home = Home(
        {f.id: f for f in flows}, lambda d: by_id[d].caps is not None, LeadStates({}, {}), at_home
    )
    codec = Encoders(
        EventEncoder(DELIVERY_EVENT), EventEncoder(LEAD_OUTCOME), EventEncoder(CIRCUIT_EVENT)
    )
    return Handlers(
        flows=flows,
        home=home,
        desk=desk,
        codec=codec,
        partitions=4,
        max_lead_bytes=1 << 20,
        leads_topic="leads",
        worker_name="test",
        at_home=lambda origin, lead_id: origin.topic == "leads",
        confirmed=nothing_to_confirm,
    )


async def sent(batches: AsyncIterator[list[Out]]) -> list[Out]:
    return [out async for batch in batches for out in batch]


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


async def test_a_failure_ends_the_lead_for_good_with_one_outcome() -> None:
    on = handlers()
    raw = orjson.dumps({"id": "L-2", "lead": {}})
    sends = on.failed("intake", raw, b"L-2", ORIGIN, TypeError())
    assert {s.topic for s in sends} == {"dlq", "outcomes"}
    (outcome,) = [decoded(s, LEAD_OUTCOME) for s in sends if s.topic == "outcomes"]
    assert await sent(on.take_in(raw, b"L-2", Origin("leads", 0, 41))) == []  # seen again: no more
    # The same record again (its worker was killed before acknowledging it): its outcome
    # again, the same event, in case the first never reached the broker.
    (again,) = [decoded(s, LEAD_OUTCOME) for s in await sent(on.take_in(raw, b"L-2", ORIGIN))]
    assert (again["event_id"], again["reason"]) == (
        outcome["event_id"],
        "Internal error: TypeError",
    )


async def test_a_delivery_that_raises_is_its_own_error_and_the_waterfall_goes_on() -> None:
    calls: list[str] = []

    async def second_buyer_takes_it(lead: Lead, destination: Any, number: int) -> Attempt:
        calls.append(destination.id)
        if destination.id == "a":
            raise ArithmeticError("lead value 123-45-6789 in the message")
        return not_sent(lead, destination, Outcome.success(), number)

    on = handlers(second_buyer_takes_it)
    sends = await sent(on.take_in(orjson.dumps({"id": "L-3", "lead": {}}), b"L-3", ORIGIN))
    assert calls == ["a", "b"]
    events = [decoded(s, DELIVERY_EVENT) for s in sends if s.topic == "events"]
    assert [(e["destination_id"], e["category"]) for e in events] == [
        ("a", "internal_error"),
        ("b", "accepted"),
    ]
    assert events[0]["reason"] == "Internal error: ArithmeticError"
    assert "123-45-6789" not in str(events[0])
    (outcome,) = [decoded(s, LEAD_OUTCOME) for s in sends if s.topic == "outcomes"]
    assert outcome["accepted_by"] == ["b"]
    # Sold in the end, but our own failure on the way is kept for a look: a dead letter.
    (letter,) = [s for s in sends if s.topic == "dlq"]
    assert dict(letter.headers or [])["courier.dlq.reason"] == b"Internal error"


async def test_a_failed_attempt_at_a_capped_destination_goes_back_as_an_internal_error() -> None:
    capped = DestinationsFile.model_validate(
        {"destinations": [{"id": "a", "url": "http://127.0.0.1:9/a", "caps": {"day": 5}}]}
    )
    on = handlers(file=capped)
    (ask,) = await sent(on.take_in(orjson.dumps({"id": "L-4", "lead": {}}), b"L-4", ORIGIN))
    assert (ask.topic, ask.key) == ("work", b"a")  # caps are counted in a's own partition
    with pytest.raises(ArithmeticError) as raised:
        await sent(on.work_on(ask.value, b"a", ORIGIN))
    back = next(
        s for s in on.failed("work", ask.value, b"a", ORIGIN, raised.value) if s.topic == "routing"
    )
    sends = await sent(on.go_on(back.value, b"L-4", ORIGIN))
    assert sorted(s.topic for s in sends) == ["dlq", "outcomes"]
    letter = next(s for s in sends if s.topic == "dlq")
    assert dict(letter.headers or [])["courier.dlq.reason"] == b"Internal error"
    assert orjson.loads(letter.value) == {"id": "L-4", "lead": {}}


def test_every_dead_letter_reason_in_the_code_is_known_to_replay() -> None:
    import pathlib
    import re

    from streams.handlers import DEAD_LETTER_REASONS

    root = pathlib.Path(__file__).parents[2] / "streams"
    said = {
        reason
        for path in root.rglob("*.py")
        for reason in re.findall(r'Rejected\(\s*"([^"]+)"', path.read_text())
    }
    assert said and said <= set(DEAD_LETTER_REASONS)
    named = {
        name
        for path in root.rglob("*.py")
        for name in re.findall(r"Rejected\(\s*([A-Z_]+)\s*,", path.read_text())
    }
    import streams.handlers

    assert {getattr(streams.handlers, n) for n in named} <= set(DEAD_LETTER_REASONS)


def test_a_failure_on_feedback_is_dead_lettered_and_leaves_the_lead_alone() -> None:
    on = handlers()
    notice = b'{"destination_id": "a", "kind": "returned", "lead_id": "L-1"}'
    for stage, value in (
        ("feedback", notice),
        ("routing", b'{"type": "feedback", "notice": ' + orjson.dumps(notice.decode()) + b"}"),
        ("routing", b'{"type": "reference", "lead_id": "L-1"}'),
    ):
        sends = on.failed(stage, value, b"L-1", ORIGIN, KeyError("x"))  # type: ignore[arg-type]
        assert [s.topic for s in sends] == ["dlq"]  # no outcome: the lead is not ended
    assert "L-1" not in on.home.leads


async def test_a_polled_answer_that_raises_is_that_leads_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poll's answer that raised while read ended the check's gather: every lead asked
    with it was marked asked, its answer never written, and never asked again. Now that one
    is read as no answer (asked again at the next interval) and the others are heard."""
    import streams.handlers

    feedback = FeedbackConfig.model_validate(
        {"lead_id": None, "reference_id": "$.ref", "kind": "$.status", "reason": None,
         "amount": None, "at": None, "poll": {"url": "http://127.0.0.1:9/s/{reference_id}"}}
    )  # fmt: skip

    async def poll(destination_id: str, url: str) -> tuple[int, bytes]:
        return 200, orjson.dumps({"ref": url.rsplit("/", 1)[1], "status": "Converted"})

    on = handlers()
    on = Handlers(
        flows=on._flows, home=on.home, desk=on.desk, codec=on._codec, partitions=4,
        max_lead_bytes=1 << 20, leads_topic="leads", worker_name="test",
        at_home=lambda origin, lead_id: True, confirmed=nothing_to_confirm,
        feedback={"a": feedback}, poll=poll,
    )  # fmt: skip
    for lead in ("L-1", "L-2", "L-3"):
        on.home.polls[f"a|{lead}"] = {
            "destination_id": "a", "lead_id": lead, "reference_id": f"R-{lead}",
            "next_at": 0.0, "until": 9e12, "seen": None,
        }  # fmt: skip
    real = streams.handlers.read_poll

    def read(config: Any, entry: dict[str, Any], *args: Any) -> Any:
        if entry["lead_id"] == "L-2" and args[0] is not None:
            raise ArithmeticError("an answer nobody foresaw")
        return real(config, entry, *args)

    monkeypatch.setattr(streams.handlers, "read_poll", read)
    sends = await on.polls_due(lambda lead_id: True)
    heard = {orjson.loads(out.value)["lead_id"]: orjson.loads(out.value) for out in sends}
    assert set(heard) == {"L-1", "L-2", "L-3"}
    assert heard["L-1"]["notice"] and heard["L-3"]["notice"]
    assert heard["L-2"]["notice"] is None and heard["L-2"]["entry"]["next_at"] > 0
