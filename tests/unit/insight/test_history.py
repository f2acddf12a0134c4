"""A lead's history from decoded records: once each, in time order, bounded, no values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.insight.history import (
    MAX_ENTRIES,
    added,
    from_dead_letter,
    from_delivery_event,
    from_feedback,
    from_lead_outcome,
    timeline,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def event(n: int, outcome: str = "error", at: datetime = T0) -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "lead_id": "L-1",
        "destination_id": "crm",
        "attempt": n,
        "started_at": at,
        "finished_at": at + timedelta(milliseconds=40),
        "recipient_ms": 38.0,
        "http_status": 500 if outcome == "error" else 201,
        "outcome": outcome,
        "category": "recipient_error" if outcome == "error" else "accepted",
        "reason": "HTTP 500" if outcome == "error" else "Accepted",
        "next_attempt_at": at + timedelta(seconds=2) if outcome == "error" else None,
        "reference_id": None,
        "price": Decimal("2.5000") if outcome == "success" else None,
        "trace_id": "ab" * 16,
    }


def test_entries_come_once_in_time_order_whatever_order_they_are_read() -> None:
    second = from_delivery_event(event(2, "success", T0 + timedelta(seconds=2)))
    first = from_delivery_event(event(1))
    outcome = from_lead_outcome(
        {
            "event_id": "o-1",
            "lead_id": "L-1",
            "finished_at": T0 + timedelta(seconds=2, milliseconds=40),
            "outcome": "delivered",
            "accepted_by": ["crm"],
            "reason": "Delivered",
            "attempts": 2,
        }
    )
    history = added(added(added(None, outcome), second), first)
    history = added(history, first)  # read again after a restart
    assert [e["id"] for e in history] == ["e-1", "e-2", "o-1"]
    assert history[1]["price"] == "2.5000"
    lines = timeline("L-1", history)
    assert lines[1].endswith(
        "crm try 1: error (recipient_error) 'HTTP 500', HTTP 500, 38 ms; next try 2026-12-01 09:00:02"
    )
    assert "outcome: delivered (accepted by crm; 2 attempt(s)) 'Delivered'" in lines[3]


def test_entries_of_the_same_millisecond_come_in_the_order_the_worker_writes_them() -> None:
    # A lead whose retries ran out: its last attempt, outcome and dead letter are often
    # stamped the same millisecond (CI saw the dead letter listed before the outcome).
    last = from_delivery_event(event(2, at=T0 - timedelta(milliseconds=40)))
    outcome = from_lead_outcome(
        {
            "event_id": "o-1",
            "lead_id": "L-1",
            "finished_at": T0,
            "outcome": "not_delivered",
            "accepted_by": [],
            "reason": "HTTP 500",
            "attempts": 2,
        }
    )
    dead = from_dead_letter(
        {"courier.dlq.reason": "Delivery failed"}, 0, 7, int(T0.timestamp() * 1000)
    )
    for read_in in ([dead, outcome, last], [outcome, dead, last], [last, dead, outcome]):
        history: list[dict[str, Any]] = []
        for entry in read_in:
            history = added(history, entry)
        assert [e["kind"] for e in history] == ["attempt", "outcome", "dead_letter"]


def test_a_dead_letter_keeps_why_and_where_not_what() -> None:
    entry = from_dead_letter(
        {
            "courier.dlq.reason": "Not JSON",
            "courier.dlq.detail": "line 1: {'ssn': '123-45-6789'",
            "courier.dlq.topic": "leads.processed",
            "courier.dlq.partition": "3",
            "courier.dlq.offset": "17",
        },
        partition=1,
        offset=9,
        timestamp_ms=int(T0.timestamp() * 1000),
    )
    assert entry["source"] == "leads.processed:3:17" and entry["reason"] == "Not JSON"
    assert "123-45-6789" not in str(entry)
    assert timeline("L-1", [entry])[1].endswith(
        "dead letter: 'Not JSON' (from leads.processed:3:17)"
    )


def test_a_long_history_keeps_its_newest_entries() -> None:
    history: list[dict[str, Any]] = []
    for n in range(MAX_ENTRIES + 50):
        history = added(history, from_delivery_event(event(n, at=T0 + timedelta(seconds=n))))
    assert len(history) == MAX_ENTRIES
    assert history[0]["id"] == "e-50" and history[-1]["id"] == f"e-{MAX_ENTRIES + 49}"


def test_an_unknown_lead_says_so() -> None:
    assert "nothing known" in timeline("L-404", [])[0]


def test_feedback_is_in_the_timeline_accepted_with_its_credit_or_refused_with_why() -> None:
    def judged(n: int, kind: str, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": f"f-{n}",
            "lead_id": "L-1",
            "destination_id": "buyer",
            "kind": kind,
            "status": status,
            "refusal": extra.get("refusal"),
            "reason": extra.get("reason", ""),
            "status_text": extra.get("status_text"),
            "amount": extra.get("amount"),
            "credit": extra.get("credit"),
            "reference_id": "B-77",
            "feedback_at": T0 + timedelta(days=1),
            "received_at": T0 + timedelta(days=1, seconds=n),
        }

    sale = from_delivery_event(event(1, "success"))
    history = [sale]
    for entry in (
        judged(1, "converted", "accepted", amount=Decimal("900.0000")),
        judged(2, "returned", "accepted", reason="Bad phone", credit=Decimal("2.5000")),
        judged(3, "returned", "refused", reason="Bad phone", refusal="Already returned"),
        judged(4, "status", "accepted", status_text="appointment set"),
    ):
        history = added(history, from_feedback(entry))
    assert [e["kind"] for e in history] == ["attempt", *["feedback"] * 4]
    assert (history[2]["feedback"], history[2]["credit"]) == ("returned", "2.5000")
    lines = timeline("L-1", history)[2:]
    assert lines[0].endswith("buyer feedback: converted: accepted, amount 900.00")
    assert lines[1].endswith("buyer feedback: returned 'Bad phone': accepted, credit 2.50")
    assert lines[2].endswith("buyer feedback: returned 'Bad phone': refused (Already returned)")
    assert lines[3].endswith("buyer feedback: appointment set: accepted")
    assert lines[1].startswith("  2026-12-02 09:00:02.000  ")


def test_an_auction_shows_its_pings_bids_and_post() -> None:
    bid = {**event(1, "success"), "event_id": "p-1", "outcome": "bid", "phase": "ping",
           "price": Decimal("23.0000"), "reason": "Bid"}  # fmt: skip
    late = {**event(1), "event_id": "p-2", "destination_id": "slow", "outcome": "error",
            "phase": "ping", "reason": "Ping timed out", "http_status": None,
            "recipient_ms": 0.0}  # fmt: skip
    post = {**event(1, "success", T0 + timedelta(seconds=1)), "event_id": "s-1", "phase": "post"}
    history = [from_delivery_event(e) for e in (bid, late, post)]
    assert [e["phase"] for e in history] == ["ping", "ping", "post"]
    lines = timeline("L-1", history)[1:]
    assert lines[0].endswith("crm ping: bid 23.00, HTTP 201, 38 ms")
    assert lines[1].endswith("slow ping: error 'Ping timed out', HTTP -")
    assert lines[2].endswith("crm post 1: success (accepted) 'Accepted', HTTP 201, 38 ms")
