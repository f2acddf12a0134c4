"""Mailchimp Marketing API 3.0 list members (mailchimp.com/developer/marketing/api/list-members).

Basic auth with any user name and the API key; the key's suffix (``…-us6``) is the data
center, so the host is ``us6.api.mailchimp.com``. ``upsert`` (default) PUTs to
``/lists/{list_id}/members/{md5(lowercase email)}``; ``create`` POSTs to
``/lists/{list_id}/members``, where "Member Exists" is a duplicate. The subscriber hash is
the MD5 of the address lowercased and trimmed. Errors are problem+json: ``{"title",
"status", "detail", "instance"}``; a 404 (no such list) or 403 (the key may not use it)
would be every lead's answer: a configuration error, and the circuit opens at once.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from streams.auth import Secret
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    auth_failed,
    configuration_refused,
    default_outcome,
    rate_limited,
)
from streams.secrets import SCRUBBER, is_unresolved

NAME = "mailchimp"
DEFAULT_URL = "https://{dc}.api.mailchimp.com/3.0"
DEFAULT_MAPPING: dict[str, str] = {
    "email_address": "lead.email",
    "merge_fields.FNAME": "lead.first_name",
    "merge_fields.LNAME": "lead.last_name",
    # No PHONE: only FNAME and LNAME come with every audience; a merge field the audience
    # lacks makes Mailchimp refuse the member. Map it when the audience has one.
}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: Secret  # ${env:MAILCHIMP_API_KEY}, e.g. 0123…-us6
    list_id: str
    mode: Literal["upsert", "create"] = "upsert"
    status: Literal["subscribed", "pending", "unsubscribed", "transactional"] = "subscribed"

    @field_validator("api_key")
    @classmethod
    def _has_data_center(cls, key: SecretStr) -> SecretStr:
        if is_unresolved(key.get_secret_value()):
            return key  # courier check --no-secrets: the value is not here to check
        if "-" not in key.get_secret_value():
            raise ValueError("a Mailchimp API key ends in its data center, like -us6")
        SCRUBBER.keep_basic("courier", key.get_secret_value())  # how request() sends it
        return key

    @property
    def data_center(self) -> str:
        return self.api_key.get_secret_value().rsplit("-", 1)[1]


def validate(lead: Lead, settings: Config) -> str | None:
    return None if lead.get("email") else "email is required"


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lowercased address (not for security)."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    members = f"{target.url.replace('{dc}', settings.data_center)}/lists/{settings.list_id}/members"
    body = {"status": settings.status, **payload}
    if settings.mode == "upsert":
        body = {"status_if_new": settings.status, **payload}
        members = f"{members}/{subscriber_hash(str(payload.get('email_address', '')))}"
    credentials = base64.b64encode(f"courier:{settings.api_key.get_secret_value()}".encode())
    return HttpRequest.json(
        "PUT" if settings.mode == "upsert" else "POST",
        members,
        body,
        headers={"Authorization": f"Basic {credentials.decode()}"},
        secret_headers=frozenset({"authorization"}),
    )


# A member's status that keeps it off the list, whatever an upsert says: the reason.
_KEPT_OUT = {"unsubscribed": "Contact unsubscribed", "cleaned": "Contact bounced (cleaned)"}


def _asked_to_subscribe(req: HttpRequest) -> bool:
    """Whether the request asked for the member on the list (subscribed or pending), not
    for an opt-out synced as one (``status: unsubscribed``)."""
    try:
        sent = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        return False
    asked = (sent.get("status") or sent.get("status_if_new")) if isinstance(sent, dict) else None
    return asked in ("subscribed", "pending")


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    body = res.json()
    problem = body if isinstance(body, dict) else {}
    title = str(problem.get("title", ""))
    raw = res.text[:RAW_LIMIT] or None
    if res.status == 200 and problem.get("id"):
        kept_out = _KEPT_OUT.get(str(problem.get("status")))
        if kept_out is not None and _asked_to_subscribe(req):
            # An upsert of a member who unsubscribed or bounced updates its fields and leaves
            # it so (status_if_new is for new members only): the lead is not on the list.
            return Outcome.failure(kept_out, raw=raw, category=OutcomeCategory.HARD_REJECT)
        appended = {k: str(problem[k]) for k in ("status", "unique_email_id") if k in problem}
        return Outcome.success(reference_id=str(problem["id"]), appended=appended, raw=raw)
    if title == "Member Exists":
        return Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
    if title == "Member In Compliance State":
        # "… is in a compliance state due to unsubscribe, bounce, or compliance review and
        # cannot be subscribed": only the contact can subscribe again (Mailchimp's own form).
        return Outcome.failure(
            "Contact in compliance state", raw=raw, category=OutcomeCategory.HARD_REJECT
        )
    if title in ("Invalid Resource", "Forgotten Email Not Subscribed"):
        return Outcome.failure("Invalid data", raw=raw, category=OutcomeCategory.INVALID_DATA)
    if res.status == 401 or title == "API Key Invalid":
        return auth_failed("API key", raw)
    if res.status in (403, 404):
        # The list (audience) id is wrong, or the key may not use it: every lead would
        # get this answer, so it is the configuration's, and the circuit opens at once.
        return configuration_refused(f"Mailchimp {res.status} {title or 'Resource Not Found'}", raw)
    if res.status == 429:
        return rate_limited(raw)
    return default_outcome(res)
