"""What travels between the routing and delivery agents: work items and attempts, as JSON.

A lead's routing lives in the partition of its id; a destination's caps and circuit in the
partition of the destination's id. A ``WorkItem`` asks a destination's partition for one
attempt; the attempt goes back to the lead's partition. Both are plain JSON (orjson) so a
record on either topic can be read, and replayed, by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from streams.model import Lead, Outcome, OutcomeCategory, OutcomeKind
from streams.stages.attempt import Attempt


class MessageError(ValueError):
    """A control record we cannot read (written by another version, or by hand)."""


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One attempt to make: this lead (as the plan had it at that step) to this destination."""

    lead: Lead
    destination_id: str
    path: str  # the step of the lead's plan that asked for it
    number: int  # attempt number at this destination, 1 for the first
    has_fallback: bool  # a waterfall has a destination after this one
    # The W3C trace context it was parked in: a retry hours later is in the lead's trace.
    traceparent: str | None = None
    # How often it has waited for the destination's spent quota (not counted in ``number``)
    quota_waits: int = 0
    # An operator drained the destination's waiting work while this waited: who and why.
    # It ends without a request (the plan moves on).
    drained_by: str | None = None
    # An auction's post: the end of its bid's validity (epoch seconds). Past it the post
    # is not sent, and not retried (the buyer would refuse it): the auction moves on.
    deadline: float | None = None

    def to_json(self) -> bytes:
        doc = {
            "lead": self.lead.envelope,
            "destination_id": self.destination_id,
            "path": self.path,
            "number": self.number,
            "has_fallback": self.has_fallback,
        }
        if self.traceparent is not None:
            doc["traceparent"] = self.traceparent
        if self.quota_waits:
            doc["quota_waits"] = self.quota_waits
        if self.drained_by is not None:
            doc["drained_by"] = self.drained_by
        if self.deadline is not None:
            doc["deadline"] = self.deadline
        return orjson.dumps(doc)

    @property
    def headers(self) -> list[tuple[str, bytes]] | None:
        """Its record's headers: the trace it belongs to, if any."""
        if self.traceparent is None:
            return None
        return [("traceparent", self.traceparent.encode("ascii", "replace"))]

    @classmethod
    def from_json(cls, data: bytes) -> WorkItem:
        try:
            doc = orjson.loads(data)
            envelope = doc["lead"]
            return cls(
                Lead(str(envelope["id"]), envelope),
                str(doc["destination_id"]),
                str(doc["path"]),
                int(doc["number"]),
                bool(doc["has_fallback"]),
                _traceparent(doc.get("traceparent")),
                int(doc.get("quota_waits", 0)),
                str(doc["drained_by"]) if doc.get("drained_by") is not None else None,
                float(doc["deadline"]) if doc.get("deadline") is not None else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"work item: {type(exc).__name__}: {exc}") from None


def _traceparent(value: Any) -> str | None:
    return value if isinstance(value, str) and value.isascii() and len(value) < 128 else None


def attempt_to_dict(attempt: Attempt) -> dict[str, Any]:
    """What routing needs of an attempt: who, how it went, what it returned (no request)."""
    outcome = attempt.outcome
    return {
        "lead_id": attempt.lead_id,
        "destination_id": attempt.destination_id,
        "integration": attempt.integration,
        "number": attempt.number,
        "started_at": attempt.started_at.isoformat(),
        "finished_at": attempt.finished_at.isoformat(),
        "recipient_ms": attempt.recipient_ms,
        "overhead_ms": attempt.overhead_ms,
        "http_status": attempt.http_status,
        # Plain strs: orjson writes an enum member through its Python-level ``.value``.
        "kind": str(outcome.kind),
        "category": str(outcome.category),
        "reason": outcome.reason,
        "raw": outcome.raw,
        "retryable": outcome.retryable,
        "reference_id": outcome.reference_id,
        "price": None if outcome.price is None else str(outcome.price),
        "appended": outcome.appended,
        "phase": attempt.phase,
        "source": attempt.source,
    }


def attempt_from_dict(doc: dict[str, Any]) -> Attempt:
    try:
        outcome = Outcome(
            OutcomeKind(doc["kind"]),
            doc["reason"],
            doc["raw"],
            bool(doc["retryable"]),
            doc["reference_id"],
            None if doc["price"] is None else Decimal(doc["price"]),
            dict(doc["appended"]),
            OutcomeCategory(doc["category"]),
        )
        return Attempt(
            doc["lead_id"],
            doc["destination_id"],
            doc["integration"],
            int(doc["number"]),
            datetime.fromisoformat(doc["started_at"]),
            datetime.fromisoformat(doc["finished_at"]),
            float(doc["recipient_ms"]),
            float(doc["overhead_ms"]),
            doc["http_status"],
            outcome,
            None,
            str(doc.get("phase", "delivery")),
            doc.get("source"),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MessageError(f"attempt: {type(exc).__name__}: {exc}") from None
