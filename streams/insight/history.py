"""A lead's history: its delivery events, its outcome, its dead letters and what its
recipients said of it later (feedback: returns, conversions), as entries in
time order. Plain functions: the insight agents (streams/insight/app.py) feed them the
decoded records, ``courier lead`` prints what they give.

Entries hold ids, outcomes, categories, reasons, statuses and times: never a lead's values
(events carry none; a dead letter's bytes and detail are left out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Kept per lead: a lead retried for days at many destinations stays bounded.
MAX_ENTRIES = 200


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    return str(value)


def from_delivery_event(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "attempt",
        "id": event["event_id"],
        "at": _iso(event["finished_at"]),
        "started_at": _iso(event["started_at"]),
        "destination": event["destination_id"],
        "attempt": event["attempt"],
        "outcome": event["outcome"],
        "category": event["category"],
        "reason": event["reason"],
        "http_status": event["http_status"],
        "recipient_ms": event["recipient_ms"],
        "next_attempt_at": _iso(event.get("next_attempt_at")),
        "reference_id": event.get("reference_id"),
        "price": None if event.get("price") is None else str(event["price"]),
        "trace_id": event.get("trace_id"),
        "phase": event.get("phase", "delivery"),  # an auction's ping (price: the bid) or post
    }


def from_lead_outcome(outcome: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "outcome",
        "id": outcome["event_id"],
        "at": _iso(outcome["finished_at"]),
        "outcome": outcome["outcome"],
        "accepted_by": list(outcome["accepted_by"]),
        "reason": outcome["reason"],
        "attempts": outcome["attempts"],
        "trace_id": outcome.get("trace_id"),
    }


def from_feedback(feedback: Mapping[str, Any]) -> dict[str, Any]:
    """A recipient's notice as judged: a return (credited or refused), a conversion..."""
    return {
        "kind": "feedback",
        "id": feedback["event_id"],
        "at": _iso(feedback["received_at"]),
        "destination": feedback["destination_id"],
        "feedback": feedback["kind"],
        "status": feedback["status"],
        "refusal": feedback.get("refusal"),
        "reason": feedback["reason"],
        "status_text": feedback.get("status_text"),
        "amount": None if feedback.get("amount") is None else str(feedback["amount"]),
        "credit": None if feedback.get("credit") is None else str(feedback["credit"]),
        "reference_id": feedback.get("reference_id"),
        "feedback_at": _iso(feedback["feedback_at"]),
    }


def from_dead_letter(
    headers: Mapping[str, str], partition: int, offset: int, timestamp_ms: int
) -> dict[str, Any]:
    """Why and where from; not its bytes, not its detail (they may quote the lead)."""
    return {
        "kind": "dead_letter",
        "id": f"dlq:{partition}:{offset}",
        "at": _iso(datetime.fromtimestamp(timestamp_ms / 1000, UTC)),
        "reason": headers.get("courier.dlq.reason", ""),
        "source": ":".join(
            headers.get(f"courier.dlq.{part}", "?") for part in ("topic", "partition", "offset")
        ),
        "truncated": headers.get("courier.dlq.truncated") == "true",
    }


# Entries stamped the same millisecond come in the order the worker writes them: a lead's
# last attempt, its outcome, then the dead letter of a lead whose retries ran out.
_ORDER_AT_THE_SAME_TIME = {"attempt": 0, "outcome": 1, "dead_letter": 2, "feedback": 3}


def added(history: Sequence[dict[str, Any]] | None, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``history`` with ``entry``, once (a record read again after a restart, or written
    again by a worker that was killed, has the same id), in time order, the newest
    ``MAX_ENTRIES`` kept."""
    entries = [e for e in history or () if e["id"] != entry["id"]]
    entries.append(entry)
    entries.sort(key=lambda e: (e["at"] or "", _ORDER_AT_THE_SAME_TIME[e["kind"]]))
    return entries[-MAX_ENTRIES:]


def timeline(lead_id: str, history: Sequence[dict[str, Any]]) -> list[str]:
    """The history as lines for a terminal."""
    if not history:
        return [f"lead {lead_id}: nothing known (never seen, or older than the history kept)"]
    lines = [f"lead {lead_id}"]
    for entry in history:
        at = (entry["at"] or "")[:23].replace("T", " ")
        if entry["kind"] == "attempt":
            status = entry["http_status"] if entry["http_status"] is not None else "-"
            if entry.get("phase") == "ping":
                said = f"bid {Decimal(entry['price']):.2f}" if entry["outcome"] == "bid" else ""
                said = said or f"{entry['outcome'].replace('_', ' ')} {entry['reason']!r}"
                line = f"  {at}  {entry['destination']} ping: {said}, HTTP {status}"
            else:
                step = "post" if entry.get("phase") == "post" else "try"
                line = (
                    f"  {at}  {entry['destination']} {step} {entry['attempt']}: "
                    f"{entry['outcome']} ({entry['category']}) {entry['reason']!r}, HTTP {status}"
                )
            if entry["recipient_ms"]:
                line += f", {entry['recipient_ms']:.0f} ms"
            if entry.get("next_attempt_at") and entry.get("phase") != "ping":  # never retried
                line += f"; next try {entry['next_attempt_at'][:19].replace('T', ' ')}"
        elif entry["kind"] == "outcome":
            by = ", ".join(entry["accepted_by"]) or "nobody"
            line = (
                f"  {at}  outcome: {entry['outcome']} (accepted by {by}; "
                f"{entry['attempts']} attempt(s)) {entry['reason']!r}"
            )
        elif entry["kind"] == "feedback":
            line = f"  {at}  {entry['destination']} feedback: {_feedback_line(entry)}"
        else:
            line = f"  {at}  dead letter: {entry['reason']!r} (from {entry['source']})"
        lines.append(line)
    return lines


def _feedback_line(entry: Mapping[str, Any]) -> str:
    """``returned 'Bad phone': accepted, credit 20.00`` or ``...: refused (Unknown lead)``."""
    said = entry["feedback"] if entry["feedback"] != "status" else entry.get("status_text")
    line = f"{said or 'status'}"
    if entry["reason"]:
        line += f" {entry['reason']!r}"
    if entry["status"] == "refused":
        return line + f": refused ({entry['refusal']})"
    line += ": accepted"
    if entry.get("credit") is not None:
        line += f", credit {Decimal(entry['credit']):.2f}"
    elif entry.get("amount") is not None:
        line += f", amount {Decimal(entry['amount']):.2f}"
    return line
