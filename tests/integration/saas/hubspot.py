"""A local HubSpot CRM contacts endpoint, answering as HubSpot documents and answers:

- ``POST /crm/objects/2026-03/contacts`` (and the legacy ``/crm/v3/objects/contacts``) with ``{"properties": {...}}`` and a private app token
  → 201 with ``{"id", "properties", "createdAt", "updatedAt", "archived"}``;
- an e-mail it already holds → 409 ``{"status": "error", "message": "Contact already
  exists. Existing ID: N", "correlationId", "category": "CONFLICT"}``;
- a malformed e-mail → 400 ``category: VALIDATION_ERROR`` with HubSpot's message format;
- an expired token → 401 ``category: EXPIRED_AUTHENTICATION``; an unknown one → 401
  ``INVALID_AUTHENTICATION``;
- a token without the contacts write scope → 403 ``category: MISSING_SCOPES`` naming the
  scopes required;
- over the per-second limit → 429 ``{"status": "error", "message": "You have reached
  your secondly limit.", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}``.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

from aiohttp import web

from tests.integration.local_server import LocalServer

VALID_TOKEN = "pat-na1-valid"
EXPIRED_TOKEN = "pat-na1-expired"
READ_ONLY_TOKEN = "pat-na1-read-only"  # a private app granted crm.objects.contacts.read only


class HubSpotDouble(LocalServer):
    def __init__(self, per_second_limit: int = 1000, daily_limit: int = 1_000_000) -> None:
        super().__init__()
        self.daily_limit = daily_limit
        self.today = 0
        self.contacts: dict[str, str] = {}  # email → id
        self.requests: list[dict[str, Any]] = []
        self.per_second_limit = per_second_limit
        self._window: list[float] = []
        self._ids = itertools.count(501)

    @property
    def url(self) -> str:
        return self.base_url("/crm/objects/2026-03/contacts")

    def build_app(self) -> web.Application:
        app = web.Application()
        # The date-versioned path (the current reference) and the legacy v3 one: the same.
        for base in ("/crm/objects/2026-03/contacts", "/crm/v3/objects/contacts"):
            app.router.add_post(base, self._create)
            app.router.add_post(f"{base}/batch/upsert", self._upsert)
        return app

    @staticmethod
    def _error(status: int, message: str, **fields: Any) -> web.Response:
        body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), **fields}
        return web.json_response(body, status=status, content_type="application/json")

    async def _upsert(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.requests.append(body)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in body.get("inputs", []):
            if item.get("idProperty") != "email":
                return self._error(
                    400, "idProperty must be a unique property", category="VALIDATION_ERROR"
                )
            email = str(item.get("id", ""))
            if "@" not in email:  # an input in error: the batch answers 207 Multi-Status
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": f"Property values were not valid: email {email!r}",
                        "context": {"ids": [email]},
                    }
                )
                continue
            new = email not in self.contacts
            if new:
                self.contacts[email] = str(next(self._ids))
            stamp = "2026-11-22T10:00:00.000Z"
            results.append(
                {
                    "id": self.contacts[email],
                    "properties": item.get("properties", {}),
                    "createdAt": stamp,
                    "updatedAt": stamp,
                    "archived": False,
                    "new": new,
                }
            )
        now = "2026-11-22T10:00:00.000Z"
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": now,
            "completedAt": now,
        }
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        return web.json_response(answer, status=207 if errors else 200)

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.today += 1
        if self.today > self.daily_limit:
            return self._error(
                429,
                "You have reached your daily limit.",
                errorType="RATE_LIMIT",
                policyName="DAILY",
            )
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < 1.0]
        if len(self._window) >= self.per_second_limit:
            return self._error(
                429,
                "You have reached your secondly limit.",
                errorType="RATE_LIMIT",
                policyName="SECONDLY",
            )
        self._window.append(now)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token == EXPIRED_TOKEN:
            return self._error(
                401,
                "The OAuth token used to make this call expired 7 second(s) ago.",
                category="EXPIRED_AUTHENTICATION",
            )
        if token == READ_ONLY_TOKEN:
            return self._error(
                403,
                "This app hasn't been granted all required scopes to make this call. Read more "
                "about required scopes here: https://developers.hubspot.com/scopes.",
                category="MISSING_SCOPES",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]},
                    }
                ],
            )
        if token != VALID_TOKEN:
            return self._error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
                category="INVALID_AUTHENTICATION",
            )
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.requests.append(body)
        properties = body.get("properties", {})
        email = str(properties.get("email", ""))
        if email and "@" not in email:
            detail = [
                {
                    "isValid": False,
                    "message": f"Email address {email} is invalid",
                    "error": "INVALID_EMAIL",
                    "name": "email",
                }
            ]
            return self._error(
                400,
                f"Property values were not valid: {json.dumps(detail)}",
                category="VALIDATION_ERROR",
            )
        if email in self.contacts:
            return self._error(
                409,
                f"Contact already exists. Existing ID: {self.contacts[email]}",
                category="CONFLICT",
            )
        contact_id = str(next(self._ids))
        self.contacts[email] = contact_id
        stamp = "2026-11-22T10:00:00.000Z"
        return web.json_response(
            {
                "id": contact_id,
                "properties": properties,
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": False,
            },
            status=201,
        )
