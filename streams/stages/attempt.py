"""Lead + Destination → Attempt: map, validate, build the request, send, interpret.

The one place the stages are put in order for a single delivery attempt. It takes ``send``
as a parameter, so it runs in tests with a plain function instead of a network.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from streams.errors import DeliveryError, MappingError
from streams.model import HttpRequest, Lead, Outcome
from streams.stages.delivery import RequestSummary, Send, summarize
from streams.stages.outcome import RAW_LIMIT, outcome_for_error

if TYPE_CHECKING:
    from streams.config import Destination

log = logging.getLogger(__name__)
# Long enough to name the template and the sub-expression that failed.
MAPPING_REASON_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try to deliver one lead to one destination, with its timing and outcome."""

    lead_id: str
    destination_id: str
    integration: str
    number: int
    started_at: datetime
    finished_at: datetime
    recipient_ms: float  # time spent waiting on the recipient
    overhead_ms: float  # our own time: mapping, building, interpreting
    http_status: int | None
    outcome: Outcome
    request: RequestSummary | None


def idempotency_key(lead_id: str, destination_id: str) -> str:
    """Same lead, same destination → same key, so a recipient can drop our resends."""
    return hashlib.sha256(f"{lead_id}\x00{destination_id}".encode()).hexdigest()[:32]


async def attempt_delivery(
    lead: Lead, destination: Destination, send: Send, number: int = 1
) -> Attempt:
    started_at = datetime.now(UTC)
    clock_start = time.perf_counter()
    recipient_s = 0.0
    status: int | None = None
    request: HttpRequest | None = None
    module = destination.module

    def finish(outcome: Outcome) -> Attempt:
        total_ms = (time.perf_counter() - clock_start) * 1000
        recipient_ms = recipient_s * 1000
        return Attempt(
            lead.id,
            destination.id,
            destination.integration,
            number,
            started_at,
            datetime.now(UTC),
            round(recipient_ms, 3),
            round(max(total_ms - recipient_ms, 0.0), 3),
            status,
            outcome,
            summarize(request) if request is not None else None,
        )

    try:
        payload = destination.compiled_mapping.apply(lead)
    except MappingError as exc:
        # The reason names the field ("Invalid data: phone_1 is required"), never its value.
        reason = f"Invalid data: {exc.reason}"
        return finish(Outcome.failure(reason[:MAPPING_REASON_LIMIT], raw=reason))
    refusal = module.validate(lead, destination)
    if refusal:
        return finish(Outcome.skip("Invalid data", raw=refusal))
    request = module.request(payload, destination)
    request = replace(
        request,
        headers={"Idempotency-Key": idempotency_key(lead.id, destination.id), **request.headers},
    )
    sent_at = time.perf_counter()
    try:
        response = await send(request, destination)
    except DeliveryError as exc:
        recipient_s = time.perf_counter() - sent_at
        return finish(outcome_for_error(exc))
    recipient_s = time.perf_counter() - sent_at
    status = response.status
    try:
        outcome = module.response(request, response)
    except Exception as exc:  # an integration must never crash the agent on a strange answer
        log.exception("integration %s could not read an HTTP %s answer", module.NAME, status)
        outcome = Outcome.error(
            "Unreadable response", retryable=False, raw=f"{type(exc).__name__}"[:RAW_LIMIT]
        )
    return finish(outcome)
