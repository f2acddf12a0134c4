"""Pipedrive API v1 (developers.pipedrive.com): persons and leads, with an API token.

A lead in Pipedrive belongs to a person, so it takes two calls: configure two
destinations — ``object: person`` then ``object: lead`` — in a ``sequence`` flow, and map
the lead's ``person_id`` from ``appended.<person destination>.reference_id``. Scalar
``email``/``phone`` fields are sent as Pipedrive's ``[{"value", "primary"}]`` lists.
Answers: ``{"success": true, "data": {"id", …}}``; errors ``{"success": false, "error",
"error_info"}``. Pipedrive does not refuse duplicate persons.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from streams.auth import Secret
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    REASON_LIMIT,
    auth_failed,
    default_outcome,
    normalize_reason,
    rate_limited,
)

NAME = "pipedrive"
DEFAULT_URL = "https://api.pipedrive.com/v1"
DEFAULT_MAPPING: dict[str, str] = {}  # depends on ``object``; see README for both


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_token: Secret
    object: Literal["person", "lead"]


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    body = dict(payload)
    if settings.object == "person":
        for channel in ("email", "phone"):
            value = body.get(channel)
            if value is not None and not isinstance(value, list):
                body[channel] = [{"value": str(value), "primary": True}]
        path = "persons"
    else:
        person = body.get("person_id")
        if isinstance(person, str) and person.isdigit():
            body["person_id"] = int(person)
        path = "leads"
    query = urlencode({"api_token": settings.api_token.get_secret_value()})
    return HttpRequest.json("POST", f"{target.url.rstrip('/')}/{path}?{query}", body)


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
        return rate_limited(raw)
    if 400 <= res.status < 500 and error:
        known = normalize_reason(error)
        if known is not None:
            return Outcome.failure(known[0], raw=raw, category=known[1])
        return Outcome.failure(error[:REASON_LIMIT], raw=raw, category=OutcomeCategory.INVALID_DATA)
    return default_outcome(res)
