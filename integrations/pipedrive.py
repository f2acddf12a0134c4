"""Pipedrive (developers.pipedrive.com/docs/api/v1): persons and leads, with an API token.

Persons go to API v2, ``POST /api/v2/persons`` (v1 ``/v1/persons`` is deprecated and out
of support since 1 August 2026); leads to ``POST /v1/leads`` (the Leads API is v1). The
token travels in the ``x-api-token`` header, never the URL. The host is the company's:
``url: https://<companydomain>.pipedrive.com`` (or ``settings.company_domain``).

A lead in Pipedrive belongs to a person, so it takes two calls: configure two
destinations — ``object: person`` then ``object: lead`` — in a ``sequence`` flow, and map
the lead's ``person_id`` from ``appended.<person destination>.reference_id``. Scalar
``email``/``phone`` fields are sent as v2's ``emails``/``phones`` lists of
``{"value", "primary", "label"}``. Answers: ``{"success": true, "data": {"id", …}}``;
errors ``{"success": false, "error", …}``. 402 (payment required) and 403 (no permission)
are every lead's answer: configuration errors, the circuit opens at once.

Pipedrive does not refuse duplicate persons, so by default (``find_person_by_email``) a
person is looked up first: ``GET /api/v2/persons/search?term=<email>&fields=email&
exact_match=true`` (developers.pipedrive.com/docs/api/v1/Persons#searchPersons, v2); a
match is the lead's person ("Existing person", its id as the reference), and nothing is
created; a retried timeout then finds the person the first try made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from streams.auth import Secret
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    REASON_LIMIT,
    auth_failed,
    configuration_refused,
    default_outcome,
    normalize_reason,
    quota_spent,
    rate_limited,
)

NAME = "pipedrive"
DEFAULT_URL = "https://api.pipedrive.com"
DEFAULT_MAPPING: dict[str, str] = {}  # depends on ``object``; see docs/integrations.md for both


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_token: Secret
    object: Literal["person", "lead"]
    # The company's own host, https://<company_domain>.pipedrive.com, in place of the URL's.
    company_domain: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    # Persons: search by e-mail first, and create only when there is none.
    find_person_by_email: bool = True


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    body = dict(payload)
    if settings.object == "person":
        for scalar, listed in (("email", "emails"), ("phone", "phones")):
            value = body.pop(scalar, None)
            if value is not None and listed not in body:
                values = value if isinstance(value, list) else [value]
                body[listed] = [
                    v
                    if isinstance(v, dict)
                    else {"value": str(v), "primary": n == 0, "label": "work"}
                    for n, v in enumerate(values)
                ]
        path = "api/v2/persons"
    else:
        person = body.get("person_id")
        if isinstance(person, str) and person.isascii() and person.isdigit():
            body["person_id"] = int(person)
        path = "v1/leads"
    return HttpRequest.json(
        "POST",
        f"{_base(settings, target)}/{path}",
        body,
        headers={"x-api-token": settings.api_token.get_secret_value()},
        secret_headers=frozenset({"x-api-token"}),
    )


def lookup(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest | None:
    """The person search that comes before creating one (persons with an e-mail only)."""
    if settings.object != "person" or not settings.find_person_by_email:
        return None
    email = _first_email(payload)
    if email is None:
        return None
    query = urlencode({"term": email, "fields": "email", "exact_match": "true", "limit": 1})
    return HttpRequest(
        "GET",
        f"{_base(settings, target)}/api/v2/persons/search?{query}",
        {"x-api-token": settings.api_token.get_secret_value()},
        b"",
        secret_headers=frozenset({"x-api-token"}),
    )


def found(req: HttpRequest, res: HttpResponse) -> Outcome | None:
    """An existing person is the lead's person; a failed search is the attempt's outcome."""
    if res.status != 200:
        return response(req, res)
    body = res.json()
    data = body.get("data") if isinstance(body, dict) else None
    items = data.get("items") if isinstance(data, dict) else None
    for entry in items or []:
        item = entry.get("item") if isinstance(entry, dict) else None
        if isinstance(item, dict) and item.get("id") is not None:
            return Outcome.success(
                "Existing person", reference_id=str(item["id"]), raw=res.text[:RAW_LIMIT] or None
            )
    return None


def _first_email(payload: dict[str, Any]) -> str | None:
    value = payload.get("email", payload.get("emails"))
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("value")
    text = str(value).strip() if value is not None else ""
    return text or None


def _base(settings: Config, target: Target) -> str:
    if settings.company_domain:
        return f"https://{settings.company_domain}.pipedrive.com"
    return target.url.rstrip("/").removesuffix("/v1").removesuffix("/api/v2")


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    body = res.json()
    raw = res.text[:RAW_LIMIT] or None
    answer = body if isinstance(body, dict) else {}
    data = answer.get("data")
    if answer.get("success") is True and isinstance(data, dict) and data.get("id") is not None:
        return Outcome.success(reference_id=str(data["id"]), raw=raw)
    error = str(answer.get("error") or "")
    if res.status == 401:
        return auth_failed("API token", raw)
    if res.status == 429:
        if res.header("x-daily-requests-left") == "0":
            # The day's budget is spent; it resets at midnight UTC (Pipedrive's rate limiting
            # page): the destination waits until then.
            return quota_spent("Pipedrive daily budget", raw, _until_utc_midnight())
        return rate_limited(raw)
    if res.status in (402, 403):
        return configuration_refused(f"Pipedrive {res.status} {error[:40]}".strip(), raw)
    if 400 <= res.status < 500 and error:
        known = normalize_reason(error)
        if known is not None:
            return Outcome.failure(known[0], raw=raw, category=known[1])
        return Outcome.failure(error[:REASON_LIMIT], raw=raw, category=OutcomeCategory.INVALID_DATA)
    return default_outcome(res)


def _until_utc_midnight() -> float:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def quota_left(res: HttpResponse) -> tuple[int, int | None] | None:
    """``x-daily-requests-left``: POST/PUT requests left today (UTC); the budget is not said."""
    left = res.header("x-daily-requests-left")
    return (int(left), None) if left is not None and left.isascii() and left.isdigit() else None
