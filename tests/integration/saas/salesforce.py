"""A local Salesforce org: the OAuth 2.0 token endpoint (client credentials flow) and the
REST API's Lead sObject, answering as Salesforce does:

- ``POST /services/oauth2/token`` → ``{"access_token", "instance_url", "token_type":
  "Bearer", "issued_at", "signature"}`` (no ``expires_in``: sessions last per org policy);
- ``POST /services/data/v60.0/sobjects/Lead`` → 201 ``{"id": "00Q…", "success": true,
  "errors": []}``;
- a revoked/expired session → 401 ``[{"message": "Session expired or invalid",
  "errorCode": "INVALID_SESSION_ID"}]``;
- a duplicate rule → 400 ``DUPLICATES_DETECTED``; no LastName → 400
  ``REQUIRED_FIELD_MISSING`` with ``fields``; over the org's limit → 403
  ``REQUEST_LIMIT_EXCEEDED``.
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


class SalesforceDouble(LocalServer):
    def __init__(self, api_limit: int = 1000) -> None:
        super().__init__()
        self.sessions: set[str] = set()
        self.token_requests = 0
        self.emails: set[str] = set()
        self.leads: list[dict[str, Any]] = []
        self.api_calls = 0
        self.api_limit = api_limit
        self._ids = itertools.count(1)

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
        if request.headers.get("Authorization") is None:
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

    @staticmethod
    def _errors(status: int, *errors: dict[str, Any]) -> web.Response:
        return web.json_response(list(errors), status=status)

    async def _create_lead(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.sessions:
            return self._errors(
                401, {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
            )
        self.api_calls += 1
        if self.api_calls > self.api_limit:
            return self._errors(
                403,
                {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"},
            )
        body = await request.json()
        if not body.get("LastName"):
            return self._errors(
                400,
                {
                    "message": "Required fields are missing: [LastName]",
                    "errorCode": "REQUIRED_FIELD_MISSING",
                    "fields": ["LastName"],
                },
            )
        email = str(body.get("Email", "")).lower()
        if email and email in self.emails:
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
        self.leads.append(body)
        return web.json_response(
            {"id": f"00Q5e00000{next(self._ids):05d}AAA", "success": True, "errors": []}, status=201
        )
