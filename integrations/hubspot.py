"""HubSpot CRM contacts on the date-versioned API (developers.hubspot.com/docs/api-reference/
2026-03/crm/objects/contacts/create-contact: ``POST /crm/objects/2026-03/contacts``; the v3
paths, ``/crm/v3/objects/contacts``, are "legacy" there and still answer the same way), with
a private app's access token: create, or upsert by e-mail through the batch upsert endpoint. 409 means the contact exists: a duplicate, never retried; its
"Existing ID" is captured as ``appended.<destination>.existing_id``. A 429 whose
``policyName`` is ``DAILY`` (the account's daily allowance; developers.hubspot.com/docs/
api/usage-details) waits an hour, not seconds; ``SECONDLY`` ones are retried as usual. A
207 (batch/upsert with errors) is the error of its one input. ``url`` names another version
(``…/crm/objects/2026-09/contacts``, or the legacy v3 path).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from streams.auth import Secret
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    REASON_LIMIT,
    auth_failed,
    configuration_refused,
    default_outcome,
    quota_spent,
    rate_limited,
)

NAME = "hubspot"
DEFAULT_URL = "https://api.hubapi.com/crm/objects/2026-03/contacts"
DEFAULT_MAPPING: dict[str, str] = {
    "properties.email": "lead.email",
    "properties.firstname": "lead.first_name",
    "properties.lastname": "lead.last_name",
    "properties.phone": "lead.phone_1",
    "properties.state": "lead.state",
    "properties.zip": "lead.zip",
}
_EXISTING_ID = re.compile(r"Existing ID: (\d+)")
DAILY_LIMIT_WAIT_S = 3600.0


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token: Secret  # a private app's token: ${env:HUBSPOT_TOKEN}
    # create: POST …/contacts (an existing e-mail is a duplicate); upsert: POST
    # …/contacts/batch/upsert with idProperty email (an existing contact is updated).
    mode: Literal["create", "upsert"] = "create"


def validate(lead: Lead, settings: Config) -> str | None:
    # HubSpot de-duplicates contacts by e-mail; without one every lead would be a new contact.
    return None if lead.get("email") else "email is required"


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    token = settings.access_token.get_secret_value()
    body: dict[str, Any] = payload
    url = target.url
    if settings.mode == "upsert":
        email = payload.get("properties", {}).get("email")
        body = {"inputs": [{"idProperty": "email", "id": email, **payload}]}
        url = f"{url.rstrip('/')}/batch/upsert"
    return HttpRequest.json(
        "POST",
        url,
        body,
        headers={"Authorization": f"Bearer {token}"},
        secret_headers=frozenset({"authorization"}),
    )


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    body = res.json()
    error = body if isinstance(body, dict) and body.get("status") == "error" else {}
    category = error.get("category") or error.get("errorType")
    message = str(error.get("message", ""))
    raw = res.text[:RAW_LIMIT] or None
    if res.status == 201 and isinstance(body, dict) and body.get("id"):
        return Outcome.success(reference_id=str(body["id"]), raw=raw)
    results = body.get("results") if isinstance(body, dict) else None
    if res.status == 200 and isinstance(results, list) and results and isinstance(results[0], dict):
        upserted = results[0]  # batch/upsert: {"status": "COMPLETE", "results": [{"id", "new"}]}
        appended = {"new": str(upserted.get("new", "")).lower()}
        return Outcome.success(reference_id=str(upserted.get("id")), appended=appended, raw=raw)
    if res.status == 409 or category == "CONFLICT":
        existing = _EXISTING_ID.search(message)
        outcome = Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
        if existing:
            outcome.appended["existing_id"] = existing.group(1)
        return outcome
    if res.status == 400 and category == "VALIDATION_ERROR":
        return Outcome.failure("Invalid data", raw=raw, category=OutcomeCategory.INVALID_DATA)
    if res.status == 401:
        expired = category == "EXPIRED_AUTHENTICATION"
        return auth_failed("token expired" if expired else "HTTP 401", raw)
    if res.status == 403:
        # MISSING_SCOPES: the private app may not write contacts; every lead would meet it.
        return configuration_refused(f"HubSpot {category or 'HTTP 403'}", raw)
    if res.status == 429:
        limited = rate_limited(raw)
        if isinstance(body, dict) and body.get("policyName") == "DAILY":
            # The account's daily allowance is spent (it resets at midnight in the account's
            # time zone, which the answer does not say): the destination waits, and asks
            # again in an hour, not in seconds.
            return quota_spent("HubSpot DAILY", raw, DAILY_LIMIT_WAIT_S)
        return limited
    if res.status == 207 and isinstance(body, dict):
        # batch/upsert with errors: one input each, so its error is the lead's.
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        if errors:
            if errors[0].get("category") == "VALIDATION_ERROR":
                return Outcome.failure(
                    "Invalid data", raw=raw, category=OutcomeCategory.INVALID_DATA
                )
            reason = str(errors[0].get("message") or "Rejected (HTTP 207)")[:REASON_LIMIT]
            return Outcome.failure(reason, raw=raw)
    return default_outcome(res)


def quota_left(res: HttpResponse) -> tuple[int, int | None] | None:
    """``X-HubSpot-RateLimit-Daily-Remaining`` of ``X-HubSpot-RateLimit-Daily``."""
    left = res.header("X-HubSpot-RateLimit-Daily-Remaining")
    limit = res.header("X-HubSpot-RateLimit-Daily")
    if left is None or not (left.isascii() and left.isdigit()):
        return None
    return int(left), int(limit) if limit and limit.isascii() and limit.isdigit() else None
