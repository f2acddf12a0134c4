"""Attempt → DeliveryEvent, a lead's attempts → LeadOutcome, a circuit change → CircuitEvent,
a recipient's feedback → LeadFeedback, an operator's action → AdminAction (records for
schemas/*.avsc)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from streams.model import CircuitChange, OutcomeKind
from streams.outcome import REASON_LIMIT, reason_in_answer
from streams.stages.attempt import Attempt
from streams.stages.feedback import Notice, Verdict
from streams.stages.routing import bid_of

DELIVERY_EVENT_NAME = "io.leadcourier.delivery.v1.DeliveryEvent"
LEAD_OUTCOME_NAME = "io.leadcourier.delivery.v1.LeadOutcome"
ADMIN_ACTION_NAME = "io.leadcourier.delivery.v1.AdminAction"
CAP_USAGE_NAME = "io.leadcourier.delivery.v1.CapUsage"
PERFORMANCE_TALLY_NAME = "io.leadcourier.delivery.v1.PerformanceTally"
_PRICE_STEP = Decimal("0.0001")  # the schema's decimal scale


def delivery_event(
    attempt: Attempt,
    next_attempt_at: datetime | None = None,
    event_id: str | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """``next_attempt_at``: when the lead will be tried at this destination again, if it
    will; ``event_id``: a random one unless given; ``trace_id``: the OpenTelemetry trace."""
    outcome = attempt.outcome
    retry_after = outcome.retry_after_s
    request = attempt.request
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "lead_id": attempt.lead_id,
        "destination_id": attempt.destination_id,
        "integration": attempt.integration,
        "attempt": attempt.number,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "recipient_ms": attempt.recipient_ms,
        "overhead_ms": attempt.overhead_ms,
        "http_status": attempt.http_status,
        "outcome": _ping_outcome(attempt) if attempt.phase == "ping" else outcome.kind,
        "category": outcome.category,
        "reason": _ping_reason(attempt) if attempt.phase == "ping" else outcome.reason,
        "raw": outcome.raw,
        "retryable": outcome.retryable,
        "reference_id": outcome.reference_id,
        "price": _price(outcome.price),
        "appended": outcome.appended,
        "retry_after_ms": None if retry_after is None else round(retry_after * 1000),
        "next_attempt_at": next_attempt_at,
        "request": None
        if request is None
        else {
            "method": request.method,
            "url": request.url,
            "headers": request.headers,
            "body_bytes": request.body_bytes,
        },
        "trace_id": trace_id,
        "phase": attempt.phase,
        "source": attempt.source,
    }


def _ping_outcome(ping: Attempt) -> str:
    """A ping's answer is a bid or not, never a sale: billing counts ``success`` only."""
    if ping.outcome.kind is OutcomeKind.SUCCESS:
        return "bid" if bid_of(ping) is not None else "no_bid"
    if ping.outcome.kind is OutcomeKind.FAILURE:
        return "no_bid"
    return ping.outcome.kind


def _ping_reason(ping: Attempt) -> str:
    """An answered ping without a bid says so, with the buyer's reason when it gives one
    ("No bid: Missing required fields"); it said "Accepted"."""
    if ping.outcome.kind is not OutcomeKind.SUCCESS or bid_of(ping) is not None:
        return ping.outcome.reason
    said = reason_in_answer(ping.outcome.raw)
    return f"No bid: {said}"[:REASON_LIMIT] if said else "No bid"


def lead_outcome(
    lead_id: str,
    attempts: Sequence[Attempt],
    reason_if_none: str = "No destination",
    event_id: str | None = None,
    trace_id: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """``source``: the lead's source.name (else its attempts')."""
    if source is None:
        source = next((a.source for a in attempts if a.source is not None), None)
    # An auction's pings are in the delivery events only: a bid is not a sale.
    bids = {
        a.destination_id: a.outcome.price
        for a in attempts
        if a.phase == "ping" and a.outcome.kind is OutcomeKind.SUCCESS
    }
    attempts = [a for a in attempts if a.phase != "ping"]
    accepted = [a.destination_id for a in attempts if a.outcome.kind is OutcomeKind.SUCCESS]
    last = attempts[-1] if attempts else None
    if accepted:
        reason = "Delivered"
    elif last is not None:
        reason = last.outcome.reason
    else:
        reason = reason_if_none
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "lead_id": lead_id,
        "finished_at": datetime.now(UTC),
        "outcome": "delivered" if accepted else "not_delivered",
        "accepted_by": accepted,
        "reason": reason,
        # Each destination's last attempt carries its number: retries count too.
        "attempts": sum(a.number for a in attempts),
        "destinations": [
            {
                "destination_id": a.destination_id,
                "outcome": a.outcome.kind,
                "category": a.outcome.category,
                "reason": a.outcome.reason,
                "reference_id": a.outcome.reference_id,
                "price": _price(a.outcome.price),
                "bid": _price(bids.get(a.destination_id)) if a.phase == "post" else None,
            }
            for a in attempts
        ],
        "trace_id": trace_id,
        "source": source,
    }


def _price(price: Decimal | None) -> Decimal | None:
    # The schema has 4 decimal places; fastavro refuses a value with more.
    return None if price is None else price.quantize(_PRICE_STEP)


def circuit_event(destination_id: str, change: CircuitChange, worker: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "destination_id": destination_id,
        "at": datetime.now(UTC),
        "before": change.before,
        "after": change.after,
        "reason": change.reason,
        "worker": worker,
    }


def lead_feedback(notice: Notice, verdict: Verdict) -> dict[str, Any]:
    def moment(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    return {
        "event_id": notice.event_id,
        "lead_id": notice.lead_id,
        "destination_id": notice.destination_id,
        "kind": notice.kind,
        "status": "accepted" if verdict.accepted else "refused",
        "refusal": verdict.refusal,
        "reason": notice.reason,
        "raw_reason": notice.raw_reason,
        "status_text": notice.status_text,
        "amount": _price(None if notice.amount is None else Decimal(notice.amount)),
        "credit": _price(verdict.credit),
        "reference_id": notice.reference_id,
        "sold_at": None if verdict.sold_at_ms is None else moment(verdict.sold_at_ms),
        "feedback_at": moment(notice.at_ms),
        "received_at": moment(notice.received_at_ms),
    }


def admin_action(action: str, destination_id: str, by: str, reason: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "action": action,
        "destination_id": destination_id,
        "by": by,
        "reason": reason,
        "at": datetime.now(UTC),
        "before": "",
        "after": "",
    }


def cap_usage(
    destination_id: str, windows: list[tuple[str, int, int]], worker: str
) -> dict[str, Any]:
    return {
        "destination_id": destination_id,
        "windows": [{"window": w, "used": used, "cap": cap} for w, used, cap in windows],
        "at": datetime.now(UTC),
        "worker": worker,
    }


def performance_tally(
    destination_id: str, minutes: list[tuple[int, int, int, Decimal]], worker: str
) -> dict[str, Any]:
    """``minutes``: (minute, attempts, accepted, revenue) for each minute that changed."""
    return {
        "destination_id": destination_id,
        "worker": worker,
        "minutes": [
            {"minute": m, "attempts": a, "accepted": ok, "revenue": revenue.quantize(_PRICE_STEP)}
            for m, a, ok, revenue in minutes
        ],
        "at": datetime.now(UTC),
    }
