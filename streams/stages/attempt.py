"""Lead + Destination → Attempt: map, validate, build the request, send, interpret.

The one place the stages are put in order for a single delivery attempt. It takes ``send``
as a parameter, so it runs in tests with a plain function instead of a network.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, overload

from streams import logs, telemetry
from streams.auth import OAuth2Auth
from streams.errors import DeliveryError, MappingError
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, OutcomeKind
from streams.outcome import (
    RATE_LIMITED,
    RAW_LIMIT,
    RETRY_AFTER_LIMIT_S,
    endpoint_retirement,
    outcome_for_error,
    parse_retry_after,
    rate_limit_reset,
    to_price,
)
from streams.secrets import SCRUBBER, Scrubber
from streams.stages.batching import Batches
from streams.stages.delivery import RequestSummary, Send, summarize
from streams.stages.oauth import TokenCache
from streams.stages.request import build_lookup, build_request

if TYPE_CHECKING:
    from streams.config import Destination

log = logging.getLogger(__name__)
# Long enough to name the template and the sub-expression that failed.
MAPPING_REASON_LIMIT = 200
# Redacted values shorter than this are not looked for: "CA" would blank every text.
REDACT_SHORTEST = 3
# A lead's values looked for in a reason in the recipient's words: its personal data, by
# field name (e-mail, phone, names, address, birth date, SSN, IP) or by look (an "@", four
# digits or more), at least this long, and at most this many of them (a hostile lead's
# thousands of fields would make every refusal slow). Words any lead may hold ("refinance",
# "excellent") are not: they would blank the reasons' own words.
QUOTED_SHORTEST = 4
QUOTED_MOST = 200
_PERSONAL_FIELD = re.compile(
    r"mail|phone|mobile|cell|name|address|street|city|zip|postal|ssn|social|birth|dob"
    r"|(?:^|_)ip(?:$|_)",
    re.IGNORECASE,
)
_PERSONAL_LOOK = re.compile(r"@|\d{4}")


def _personal_values(document: Any) -> list[str]:
    """The lead's personal values worth looking for, up to ``QUOTED_MOST``."""
    found: list[str] = []
    pending: list[tuple[str, Any]] = [("", document)]
    while pending and len(found) < QUOTED_MOST:
        name, item = pending.pop()
        if isinstance(item, dict):
            pending.extend((str(key), value) for key, value in item.items())
        elif isinstance(item, list):
            pending.extend((name, value) for value in item)
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            text = str(item).strip()
            personal = _PERSONAL_FIELD.search(name) or _PERSONAL_LOOK.search(text)
            if len(text) >= QUOTED_SHORTEST and personal:
                found.append(text)
    return found


def unquoted(outcome: Outcome, lead: Lead) -> Outcome:
    """A refusal's reason, when in the recipient's words, may quote the lead ("Email
    ada@example.com is blacklisted"). Reasons are counted, labelled in metrics and shown
    in every event and report, so the lead's personal values in one become ****; its
    ``raw`` keeps the recipient's words (``privacy.redact`` keeps values out of it too)."""
    if outcome.kind is OutcomeKind.SUCCESS or len(outcome.reason) < QUOTED_SHORTEST:
        return outcome
    reason = outcome.reason
    for value in _personal_values(lead.envelope.get("lead")):
        if value in reason:
            reason = reason.replace(value, "****")
    return outcome if reason is outcome.reason else replace(outcome, reason=reason)


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
    # "ping": a ping-post auction's ping (its success is a bid, never a sale); "post": the
    # full lead to the best bid; "delivery": any other.
    phase: str = "delivery"
    source: str | None = None  # the lead's source.name (reports per source)


def _redaction(values: list[str]) -> Scrubber | None:
    if not values:
        return None
    scrubber = Scrubber(shortest=REDACT_SHORTEST)
    for value in values:
        scrubber.keep_secret(value)
    return scrubber


@overload
def scrubbed(item: Outcome, scrubber: Scrubber | None) -> Outcome: ...
@overload
def scrubbed(item: RequestSummary, scrubber: Scrubber | None) -> RequestSummary: ...
def scrubbed(item: Outcome | RequestSummary, scrubber: Scrubber | None) -> Outcome | RequestSummary:
    """What an attempt reports, with ``scrubber``'s values as ****: our credentials (the
    recipient's words, or an error text quoting our request, may carry them) and the
    lead's ``privacy.redact`` values. From here it goes to tables, events and logs."""
    if scrubber is None:
        return item
    # Mostly nothing is secret: then the item as it is (a copy costs a delivery ~20 calls).
    if isinstance(item, RequestSummary):
        url, headers = scrubber.scrub(item.url), scrubber.scrub_any(item.headers)
        if url is item.url and headers == item.headers:
            return item
        return replace(item, url=url, headers=headers)
    reason = scrubber.scrub(item.reason)
    raw = None if item.raw is None else scrubber.scrub(item.raw)
    reference_id = None if item.reference_id is None else scrubber.scrub(item.reference_id)
    appended = scrubber.scrub_any(item.appended)
    if (
        reason is item.reason
        and raw is item.raw
        and reference_id is item.reference_id
        and appended == item.appended
    ):
        return item
    return replace(item, reason=reason, raw=raw, reference_id=reference_id, appended=appended)


def _bid(lead: Lead, destination_id: str) -> Decimal | None:
    """The bid this destination's ping made for the lead (``appended.<id>.bid``), if any."""
    appended = lead.envelope.get("appended")
    section = appended.get(destination_id) if isinstance(appended, dict) else None
    return to_price(section.get("bid")) if isinstance(section, dict) else None


def invalid_data(exc: MappingError) -> Outcome:
    """A lead that cannot be put into this destination's request: a failure naming the field
    ("Invalid data: phone_1 is required"), never its value."""
    reason = f"Invalid data: {exc.reason}"
    return Outcome.failure(
        reason[:MAPPING_REASON_LIMIT], raw=reason, category=OutcomeCategory.INVALID_DATA
    )


def not_sent(lead: Lead, destination: Destination, outcome: Outcome, number: int = 1) -> Attempt:
    """An attempt that ended before any request: disabled, closed, circuit open, ..."""
    return ended_before_sending(lead, destination.id, destination.integration, outcome, number)


def ended_before_sending(
    lead: Lead, destination_id: str, integration: str, outcome: Outcome, number: int = 1
) -> Attempt:
    """``not_sent`` for a destination known only by its id (removed from the file)."""
    now = datetime.now(UTC)
    return Attempt(
        lead.id,
        destination_id,
        integration,
        number,
        now,
        now,
        0.0,
        0.0,
        None,
        outcome,
        None,
        source=lead.source_name,
    )


async def attempt_delivery(
    lead: Lead,
    destination: Destination,
    send: Send,
    number: int = 1,
    tokens: TokenCache | None = None,
    batches: Batches | None = None,
) -> Attempt:
    """``tokens``: the worker's OAuth 2.0 token cache; ``batches``: its open batches
    (for destinations with ``batch``). Either is made if not given. Traced as a client
    span (streams/telemetry.py)."""
    with (
        logs.about_destination(destination.id),
        telemetry.attempting(destination.id, lead.id, number) as span,
    ):
        # Carries the lead's source already (``finish`` and ``not_sent`` both set it).
        attempt = await _attempt(lead, destination, send, number, tokens, batches)
        outcome = attempt.outcome
        request = attempt.request
        telemetry.attempted(
            span,
            method=None if request is None else request.method,
            url=None if request is None else request.url,
            status=attempt.http_status,
            outcome=outcome.kind,
            category=outcome.category,
            reason=outcome.reason,
            failed=outcome.kind is OutcomeKind.ERROR,
        )
        return attempt


async def _attempt(
    lead: Lead,
    destination: Destination,
    send: Send,
    number: int,
    tokens: TokenCache | None,
    batches: Batches | None,
) -> Attempt:
    started_at = datetime.now(UTC)
    clock_start = time.perf_counter()
    recipient_s = 0.0
    status: int | None = None
    request: HttpRequest | None = None
    module = destination.module
    # The lead's values at its redacted paths: kept out of everything the attempt says.
    private = _redaction(destination.privacy.values(lead.envelope))

    def finish(outcome: Outcome) -> Attempt:
        summary = None
        if request is not None:
            summary = summarize(request, destination.url_template, destination.templated_headers)
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
            unquoted(scrubbed(scrubbed(outcome, SCRUBBER), private), lead),
            scrubbed(summary, private) if summary is not None else None,
            source=lead.source_name,
        )

    if not destination.enabled:
        return not_sent(lead, destination, Outcome.skip("Destination disabled"), number)
    if destination.schedule is not None and not destination.schedule.is_open(started_at):
        return not_sent(lead, destination, Outcome.skip("Outside business hours"), number)
    try:
        payload = destination.compiled_mapping.apply(lead)
    except MappingError as exc:
        return finish(invalid_data(exc))
    refusal = module.validate(lead, destination.integration_settings)
    if refusal:
        return finish(
            Outcome.skip("Invalid data", raw=refusal, category=OutcomeCategory.INVALID_DATA)
        )
    # Set for OAuth destinations only; made here only when the caller has none to share.
    oauth = (tokens or TokenCache()) if isinstance(destination.auth, OAuth2Auth) else None
    token: str | None = None
    exchange: Send = send
    if destination.batch is not None:
        batcher = batches if batches is not None else Batches()

        async def in_batch(req: HttpRequest, dest: Destination) -> HttpResponse:
            return await batcher.send(req, dest, send)

        exchange = in_batch
    sent_at = time.perf_counter()
    looked_up_s = 0.0  # a search before creating (an integration's lookup) waits too
    try:
        if oauth is not None:
            token = await oauth.token(destination, send)
        search = build_lookup(lead, payload, destination, token)
        if search is not None:
            sent_at = time.perf_counter()
            answer = await send(search, destination)
            looked_up_s = time.perf_counter() - sent_at
            existing = module.found(search, answer)
            if existing is not None:  # it exists (nothing to create), or the search failed
                request, status, recipient_s = search, answer.status, looked_up_s
                return finish(existing)
        instance = oauth.instance_url(destination) if oauth is not None else None
        request = build_request(lead, payload, destination, token, instance)
        sent_at = time.perf_counter()
        response = await exchange(request, destination)
        if oauth is not None and response.status == 401:
            # The token may have been revoked or expired early: one new token, one retry.
            token = await oauth.token(destination, send, stale=token)
            instance = oauth.instance_url(destination)
            request = build_request(lead, payload, destination, token, instance)
            sent_at = time.perf_counter()
            response = await exchange(request, destination)
    except DeliveryError as exc:
        recipient_s = looked_up_s + time.perf_counter() - sent_at
        return finish(outcome_for_error(exc))
    except MappingError as exc:  # a URL or header template that does not fit this lead
        return finish(invalid_data(exc))
    recipient_s = looked_up_s + time.perf_counter() - sent_at
    status = response.status
    try:
        rules = destination.response
        outcome = rules.outcome(response) or module.response(request, response)
        outcome = rules.captured(outcome, response)
        if outcome.kind is OutcomeKind.SUCCESS and (outcome.price is None or outcome.price <= 0):
            # Its fixed price; else, for an auction's post, the bid it won with. An answer's
            # price of 0 is a default field, not a price: a buyer's post answering
            # {"price": 0} was billed at nothing for the bid it had won with.
            fixed = destination.price
            price = fixed if fixed is not None else _bid(lead, destination.id)
            if price is not None:
                outcome = replace(outcome, price=price)
        reading = getattr(module, "quota_left", None)
        if reading is not None:
            outcome = replace(outcome, quota_left=reading(response))
        retiring = endpoint_retirement(response)
        if retiring is not None:  # Deprecation or Sunset: the operators are told
            outcome = replace(outcome, retiring=retiring)
        if outcome.retryable:
            # The recipient's Retry-After, else what the integration read (a vendor's
            # quota), else when a 429's rate limit resets.
            asked = parse_retry_after(response.header("Retry-After"))
            if asked is None:
                asked = outcome.retry_after_s
            if asked is None and (status == 429 or outcome.reason == RATE_LIMITED):
                asked = rate_limit_reset(response)
            if asked is not None:
                # A recipient may ask anything ("Retry-After: 9223372036854775"): past a
                # year it is a year, which the event's milliseconds can carry (the
                # destination's max_retry_after_s decides whether to wait that long).
                asked = min(asked, RETRY_AFTER_LIMIT_S)
            outcome = replace(outcome, retry_after_s=asked)
    except Exception as exc:  # an integration must never crash the agent on a strange answer
        log.exception("integration %s could not read an HTTP %s answer", module.NAME, status)
        outcome = Outcome.error(
            "Unreadable response", retryable=False, raw=f"{type(exc).__name__}"[:RAW_LIMIT]
        )
    return finish(outcome)
