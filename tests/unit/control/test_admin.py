"""Operators' actions as every desk applies them: a paused destination is skipped by a
waterfall and holds a lead with nowhere else to go until it is resumed; a circuit reset
closes a circuit that opened before it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams.control.admin import AdminState
from streams.control.desk import PAUSED
from streams.control.tables import Owned
from streams.model import Outcome
from tests.unit.control.test_desk import NOW, Clock, Recipient, desk, destination, item


def action(verb: str, at: float = NOW, reason: str = "buyer asked") -> dict[str, Any]:
    return {
        "action": verb,
        "destination_id": "buyer",
        "by": "alice@ops",
        "reason": reason,
        "at": datetime.fromtimestamp(at, UTC),
    }


async def test_a_paused_destination_holds_a_lead_until_it_is_resumed() -> None:
    clock, recipient = Clock(), Recipient()
    buyer = desk(destination(), recipient, clock)
    buyer.admin.apply(action("pause"))
    moved_on = await buyer.handle(item("L1", has_fallback=True))
    assert moved_on.result is not None and moved_on.result.outcome.reason == PAUSED
    assert moved_on.result.outcome.raw == "paused by alice@ops: buyer asked"
    held = await buyer.handle(item("L2"))  # nowhere else to go: it waits
    assert held.result is None and held.attempt is not None
    assert held.attempt.outcome.reason == PAUSED and recipient.calls == []
    assert held.attempt.outcome.raw == "paused by alice@ops: buyer asked"
    everything = Owned(frozenset({0}), 1)  # this worker owns every id
    assert buyer.due(everything) == []  # still paused: not due
    assert buyer.due(everything) == []  # (the second look reads only what is due)
    buyer.admin.apply(action("resume", NOW + 60))
    [(key, value, due)] = buyer.due(everything)  # at once, not in a week
    assert due.lead.id == "L2"
    buyer.release(key, value)
    delivered = await buyer.handle(due)
    assert delivered.result is not None and delivered.result.outcome.reason == "Accepted"
    assert recipient.calls == [("L2", 1)]


async def test_a_reset_closes_a_circuit_that_opened_before_it() -> None:
    clock = Clock()
    recipient = Recipient(lambda _: Outcome.error("Recipient error (HTTP 503)", retryable=False))
    buyer = desk(
        destination(circuit={"consecutive_errors": 2, "cool_down_s": 600}), recipient, clock
    )
    for n in range(2):
        await buyer.handle(item(f"E{n}"))
    skipped = await buyer.handle(item("L1", has_fallback=True))
    assert skipped.result is not None and "circuit open" in skipped.result.outcome.reason
    clock.now += 5
    buyer.admin.apply(action("reset_circuit", clock.now))
    recipient.answer = lambda _: Outcome.success()
    sent = await buyer.handle(item("L2", has_fallback=True))  # 595 s before its cool-down
    assert sent.result is not None and sent.result.outcome.reason == "Accepted"


def test_the_last_action_wins_and_a_resume_of_nothing_is_harmless() -> None:
    state = AdminState()
    state.apply(action("resume"))
    state.apply(action("pause", reason=""))
    assert state.pause_reason("buyer") == "paused by alice@ops"
    state.apply(action("resume"))
    assert state.pause_reason("buyer") is None
