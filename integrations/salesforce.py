"""Salesforce: create a Lead through the REST API's sObject resource
(``POST {instance}/services/data/vXX.X/sobjects/Lead``), authenticated by the destination's
``auth: {type: oauth2, token_url: https://MyDomain.my.salesforce.com/services/oauth2/token,
…}`` (the client credentials flow of a connected app). The core caches the token and, on
``401 INVALID_SESSION_ID``, fetches a new one once and retries.

Answers: 201 ``{"id", "success": true, "errors": []}``; errors are a JSON list of
``{"message", "errorCode", "fields"}``: ``DUPLICATES_DETECTED`` (a duplicate rule blocked
it), ``REQUIRED_FIELD_MISSING`` / ``FIELD_CUSTOM_VALIDATION_EXCEPTION`` /
``INVALID_EMAIL_ADDRESS`` / ``STRING_TOO_LONG`` (invalid data), ``REQUEST_LIMIT_EXCEEDED``
(403, the org's API limit: try later).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    REASON_LIMIT,
    auth_failed,
    default_outcome,
    rate_limited,
)

NAME = "salesforce"
# The core authenticates: a destination must say how (checked when the file loads).
AUTH_TYPES = ("oauth2", "bearer", "jwt")
DEFAULT_MAPPING: dict[str, str] = {
    "FirstName": "lead.first_name",
    "LastName": "lead.last_name",
    "Email": "lead.email",
    "Phone": "lead.phone_1",
    "Company": "lead.company",
    "State": "lead.state",
    "PostalCode": "lead.zip",
    "LeadSource": "source.name",
}
INVALID_DATA_CODES = frozenset(
    {
        "REQUIRED_FIELD_MISSING",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "INVALID_EMAIL_ADDRESS",
        "STRING_TOO_LONG",
        "INVALID_FIELD",
        "JSON_PARSER_ERROR",
        "MALFORMED_ID",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    }
)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


def validate(lead: Lead, settings: Config) -> str | None:
    # LastName and Company are required on the standard Lead object.
    return None if str(lead.get("last_name") or "").strip() else "last_name is required"


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    return HttpRequest.json("POST", target.url, payload)


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    body = res.json()
    raw = res.text[:RAW_LIMIT] or None
    if res.status == 201 and isinstance(body, dict) and body.get("success"):
        return Outcome.success(reference_id=str(body.get("id")), raw=raw)
    errors = [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
    codes = {str(e.get("errorCode", "")) for e in errors}
    message = str(errors[0].get("message", "")) if errors else ""
    if "DUPLICATES_DETECTED" in codes:
        return Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
    if codes & INVALID_DATA_CODES:
        fields = ", ".join(f for e in errors for f in e.get("fields") or [])
        reason = f"Invalid data: {fields}" if fields else "Invalid data"
        return Outcome.failure(
            reason[:REASON_LIMIT], raw=raw, category=OutcomeCategory.INVALID_DATA
        )
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        return rate_limited(raw)
    if "INVALID_SESSION_ID" in codes or res.status == 401:
        return auth_failed("session", raw)
    if errors and 400 <= res.status < 500:
        return Outcome.failure(message[:REASON_LIMIT] or f"Rejected (HTTP {res.status})", raw=raw)
    return default_outcome(res)
