"""A local Salesforce org: the OAuth 2.0 token endpoint (client credentials flow) and the
REST API's Lead sObject, answering as Salesforce does:

- ``POST /services/oauth2/token`` → ``{"access_token", "instance_url", "token_type":
  "Bearer", "issued_at", "signature"}`` (no ``expires_in``: sessions last per org policy);
- ``POST /services/data/v60.0/sobjects/Lead`` → 201 ``{"id": "00Q…", "success": true,
  "errors": []}``;
- a revoked/expired session → 401 ``[{"message": "Session expired or invalid",
  "errorCode": "INVALID_SESSION_ID"}]``;
- a duplicate rule → 400 ``DUPLICATES_DETECTED`` (saved anyway with
  ``Sforce-Duplicate-Rule-Header: allowSave=true``, the rule being an alerting one); a value
  already on another record's unique field → 400 ``DUPLICATE_VALUE``; no LastName or no
  Company (both required on the Lead object) → 400 ``REQUIRED_FIELD_MISSING`` with
  ``fields``; over the org's limit → 403 ``REQUEST_LIMIT_EXCEEDED``; an org without API
  access → 403 ``API_DISABLED_FOR_ORG``; a field the Lead object does not have → 400
  ``INVALID_FIELD`` ("No such column 'Foo__c' on sobject of type Lead"); a record another
  transaction holds (``locked``) → 400 ``UNABLE_TO_LOCK_ROW``; a full org (``storage_full``) →
  400 ``STORAGE_LIMIT_EXCEEDED``; every API answer carries ``Sforce-Limit-Info:
  api-usage=N/M``.

The token endpoint takes the connected app's ``client_id`` and ``client_secret`` in the
form body, as Salesforce's client credentials flow documents, and refuses wrong ones with
400 ``invalid_client``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from tests.integration.local_server import LocalServer

CLIENT_ID = "3MVG9courier"
CLIENT_SECRET = "sf-secret"
LEAD_PATH = "/services/data/v60.0/sobjects/Lead"
# The Lead object's fields this org has: standard ones, and one custom external id.
LEAD_FIELDS = frozenset(
    {"FirstName", "LastName", "Email", "Phone", "Company", "State", "PostalCode", "LeadSource",
     "Description", "Title", "Street", "City", "Country", "External_Id__c"}
)  # fmt: skip


class SalesforceDouble(LocalServer):
    def __init__(self, api_limit: int = 1000, api_enabled: bool = True) -> None:
        super().__init__()
        self.api_enabled = api_enabled
        self.external_ids: set[str] = set()
        self.sessions: set[str] = set()
        self.token_requests = 0
        self.emails: set[str] = set()
        self.leads: list[dict[str, Any]] = []
        self.api_calls = 0
        self.api_limit = api_limit
        self._ids = itertools.count(1)
        self.locked = 0  # creates that meet a record lock before one goes through
        self.storage_full = False

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/oauth2/token", self._token)
        app.router.add_post(LEAD_PATH, self._create_lead)
        return app

    def expire_sessions(self) -> None:
        self.sessions.clear()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                status=400,
            )
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response(
                {"error": "invalid_client", "error_description": "invalid client credentials"},
                status=400,
            )
        token = f"00Dxx0000001gPL!AQ{self.token_requests}"
        self.sessions.add(token)
        return web.json_response(
            {
                "access_token": token,
                "instance_url": self.base_url(),
                "id": self.base_url("/id/00D/005"),
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": "c2ln",
            }
        )

    def _errors(self, status: int, *errors: dict[str, Any]) -> web.Response:
        return web.json_response(list(errors), status=status, headers=self._limit_info())

    def _limit_info(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_calls}/{self.api_limit}"}

    async def _create_lead(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.sessions:
            return self._errors(
                401, {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
            )
        if not self.api_enabled:
            return self._errors(
                403,
                {
                    "message": "The REST API is not enabled for this Organization.",
                    "errorCode": "API_DISABLED_FOR_ORG",
                },
            )
        self.api_calls += 1
        if self.api_calls > self.api_limit:
            return self._errors(
                403,
                {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"},
            )
        body = await request.json()
        unknown = sorted(set(body) - LEAD_FIELDS)
        if unknown:
            return self._errors(
                400,
                {
                    "message": f"No such column '{unknown[0]}' on sobject of type Lead",
                    "errorCode": "INVALID_FIELD",
                },
            )
        if self.locked:
            self.locked -= 1
            return self._errors(
                400,
                {
                    "message": "unable to obtain exclusive access to this record or 1 records: "
                    "00Q5e0000000001",
                    "errorCode": "UNABLE_TO_LOCK_ROW",
                    "fields": [],
                },
            )
        if self.storage_full:
            return self._errors(
                400,
                {
                    "message": "storage limit exceeded",
                    "errorCode": "STORAGE_LIMIT_EXCEEDED",
                    "fields": [],
                },
            )
        missing = [f for f in ("LastName", "Company") if not str(body.get(f) or "").strip()]
        if missing:
            return self._errors(
                400,
                {
                    "message": f"Required fields are missing: [{', '.join(missing)}]",
                    "errorCode": "REQUIRED_FIELD_MISSING",
                    "fields": missing,
                },
            )
        external = body.get("External_Id__c")
        if external is not None and external in self.external_ids:
            return self._errors(
                400,
                {
                    "message": "duplicate value found: External_Id__c duplicates value on "
                    "record with id: 00Q5e0000000001",
                    "errorCode": "DUPLICATE_VALUE",
                    "fields": [],
                },
            )
        allow_save = request.headers.get("Sforce-Duplicate-Rule-Header") == "allowSave=true"
        email = str(body.get("Email", "")).lower()
        if email and email in self.emails and not allow_save:
            return self._errors(
                400,
                {
                    "message": "Use one of these records?",
                    "errorCode": "DUPLICATES_DETECTED",
                    "fields": [],
                    "duplicateResult": {
                        "allowSave": False,
                        "duplicateRule": "Standard_Lead_Duplicate_Rule",
                    },
                },
            )
        self.emails.add(email)
        if external is not None:
            self.external_ids.add(external)
        self.leads.append(body)
        return web.json_response(
            {"id": f"00Q5e00000{next(self._ids):05d}AAA", "success": True, "errors": []},
            status=201,
            headers=self._limit_info(),
        )
