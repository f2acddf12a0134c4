"""Salesforce: create a Lead through the REST API's sObject resource
(``POST https://MyDomain.my.salesforce.com/services/data/vXX.X/sobjects/Lead``;
developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm),
authenticated by the destination's ``auth: {type: oauth2, token_url:
https://MyDomain.my.salesforce.com/services/oauth2/token, …}``: the OAuth 2.0 client
credentials flow of a connected app, whose documented request carries ``client_id`` and
``client_secret`` in the form body (so that is our default here; ``client_auth: basic``
to change it). Sandboxes: ``https://MyDomain--SandboxName.sandbox.my.salesforce.com``.
The core caches the token and, on ``401 INVALID_SESSION_ID``, fetches a new one once; the
Lead is created on the ``instance_url`` the token answer names (the URL's path kept).

The standard Lead object requires ``LastName`` and ``Company`` (object reference, Lead):
a lead without a company is sent with ``settings.company_fallback`` ("[not provided]",
the convention lead tools use). ``settings.allow_duplicates: true`` sends
``Sforce-Duplicate-Rule-Header: allowSave=true`` (saved despite an alerting duplicate rule).

Answers: 201 ``{"id", "success": true, "errors": []}``; errors are a JSON list of
``{"message", "errorCode", "fields"}`` (api_rest, "Status Codes and Error Responses"):
``DUPLICATES_DETECTED`` (a duplicate rule) and ``DUPLICATE_VALUE`` (a unique field) are
duplicates; ``REQUIRED_FIELD_MISSING`` / ``FIELD_CUSTOM_VALIDATION_EXCEPTION`` /
``INVALID_EMAIL_ADDRESS`` / ``STRING_TOO_LONG`` … invalid data; ``REQUEST_LIMIT_EXCEEDED``
(403, the org's rolling 24-hour API limit) waits an hour, not seconds; answers that every
lead would get (``API_DISABLED_FOR_ORG``, ``INSUFFICIENT_ACCESS*``, ``NOT_FOUND`` for the
object) are configuration errors: the circuit opens at once.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    REASON_LIMIT,
    auth_failed,
    configuration_refused,
    default_outcome,
    quota_spent,
)

NAME = "salesforce"
# The core authenticates: a destination must say how (checked when the file loads).
AUTH_TYPES = ("oauth2", "bearer", "jwt")
# Where the client credentials go in the token request, unless the destination says.
OAUTH_CLIENT_AUTH = "body"
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
        "FIELD_INTEGRITY_EXCEPTION",
        "INVALID_EMAIL_ADDRESS",
        "STRING_TOO_LONG",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "JSON_PARSER_ERROR",
        "MALFORMED_ID",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    }
)
# A record another transaction holds ("unable to obtain exclusive access to this record"):
# it passes, and Salesforce's own advice is to try again.
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})


# The org's rolling 24-hour API allowance is spent: come back in an hour, not seconds.
DAILY_LIMIT_WAIT_S = 3600.0
DUPLICATE_CODES = frozenset({"DUPLICATES_DETECTED", "DUPLICATE_VALUE"})
CONFIGURATION_CODES = frozenset(
    {
        "API_DISABLED_FOR_ORG",
        "INSUFFICIENT_ACCESS",
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
        "NOT_FOUND",
        "FUNCTIONALITY_NOT_ENABLED",
        # The mapping names a field the Lead object does not have ("No such column
        # 'Foo__c' on sobject of type Lead") or may not set: every lead would meet it, so
        # it is not the lead's invalid data.
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        # The org's data storage is full: no lead can be saved until it is freed.
        "STORAGE_LIMIT_EXCEEDED",
    }
)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company_fallback: str = "[not provided]"
    allow_duplicates: bool = False


def validate(lead: Lead, settings: Config) -> str | None:
    # LastName is required on the standard Lead object (Company too: request() fills it).
    return None if str(lead.get("last_name") or "").strip() else "last_name is required"


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    if not str(payload.get("Company") or "").strip():
        payload = {**payload, "Company": settings.company_fallback}
    headers = (
        {"Sforce-Duplicate-Rule-Header": "allowSave=true"} if settings.allow_duplicates else {}
    )
    return HttpRequest.json("POST", _on_instance(target), payload, headers=headers)


def _on_instance(target: Target) -> str:
    """The URL's path on the host the token answer named (``instance_url``): Salesforce
    says to send REST calls there, whatever host the token came from."""
    if not target.instance_url:
        return target.url
    parts = urlsplit(target.url)
    instance = urlsplit(target.instance_url)
    return urlunsplit((instance.scheme, instance.netloc, parts.path, parts.query, ""))


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    body = res.json()
    raw = res.text[:RAW_LIMIT] or None
    if res.status == 201 and isinstance(body, dict) and body.get("success"):
        return Outcome.success(reference_id=str(body.get("id")), raw=raw)
    errors = [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
    codes = {str(e.get("errorCode", "")) for e in errors}
    message = str(errors[0].get("message", "")) if errors else ""
    if codes & TRANSIENT_CODES:
        code = min(codes & TRANSIENT_CODES)
        return Outcome.error(
            f"Recipient busy (Salesforce {code})",
            retryable=True,
            raw=raw,
            category=OutcomeCategory.SOFT_REJECT,
        )
    if codes & DUPLICATE_CODES:
        return Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
    if codes & INVALID_DATA_CODES:
        fields = ", ".join(f for e in errors for f in e.get("fields") or [])
        reason = f"Invalid data: {fields}" if fields else "Invalid data"
        return Outcome.failure(
            reason[:REASON_LIMIT], raw=raw, category=OutcomeCategory.INVALID_DATA
        )
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        # The org's rolling 24-hour API allowance: the destination waits, asking hourly.
        return quota_spent("Salesforce REQUEST_LIMIT_EXCEEDED", raw, DAILY_LIMIT_WAIT_S)
    if "INVALID_SESSION_ID" in codes or res.status == 401:
        return auth_failed("session", raw)
    if codes & CONFIGURATION_CODES or res.status in (402, 403):
        code = next(iter(sorted(codes & CONFIGURATION_CODES)), f"HTTP {res.status}")
        return configuration_refused(f"Salesforce {code}", raw)
    if errors and 400 <= res.status < 500:
        return Outcome.failure(message[:REASON_LIMIT] or f"Rejected (HTTP {res.status})", raw=raw)
    return default_outcome(res)


_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def quota_left(res: HttpResponse) -> tuple[int, int | None] | None:
    """``Sforce-Limit-Info: api-usage=18/5000`` (on every answer): 4982 left of 5000."""
    match = _USAGE.search(res.header("Sforce-Limit-Info") or "")
    if match is None:
        return None
    used, limit = int(match.group(1)), int(match.group(2))
    return max(limit - used, 0), limit
