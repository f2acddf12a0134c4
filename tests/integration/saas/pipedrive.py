"""A local Pipedrive for persons (API v2) and leads (API v1), answering as Pipedrive does:
``POST /api/v2/persons`` (``emails``/``phones`` as lists of ``{"value", "primary",
"label"}``) and ``POST /v1/leads``, authenticated by the ``x-api-token`` header → 200/201
``{"success": true, "data": {"id": …}}`` (lead ids are UUIDs); the deprecated
``POST /v1/persons`` → 410 (out of support since 1 August 2026); a lead for an unknown
person → 400 ``{"success": false, "error": …}``; a wrong or missing token → 401
``"unauthorized access"``; a plan without API access → 402; over the limit → 429.
Every answer carries ``x-daily-requests-left`` (POST/PUT requests left today, UTC; the
rate limiting page); with the day's budget spent, 429 with ``x-daily-requests-left: 0``.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from aiohttp import web

from tests.integration.local_server import LocalServer

TOKEN = "pd-token-123"


class PipedriveDouble(LocalServer):
    def __init__(self, limit: int = 1000, paid: bool = True, daily_budget: int = 10_000) -> None:
        super().__init__()
        self.paid = paid
        self.daily_left = daily_budget
        self.persons: dict[int, dict[str, Any]] = {}
        self.leads: list[dict[str, Any]] = []
        self.searches: list[dict[str, str]] = []
        self.calls = 0
        self.limit = limit
        self._ids = itertools.count(101)

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._daily_header])
        app.router.add_post("/api/v2/persons", self._person)
        app.router.add_get("/api/v2/persons/search", self._search)
        app.router.add_post("/v1/persons", self._retired)
        app.router.add_post("/v1/leads", self._lead)
        return app

    @web.middleware
    async def _daily_header(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers["x-daily-requests-left"] = str(self.daily_left)
        return response

    @staticmethod
    def _error(status: int, error: str, **extra: Any) -> web.Response:
        body = {
            "success": False,
            "error": error,
            "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
            "data": None,
            "additional_data": None,
            **extra,
        }
        return web.json_response(body, status=status)

    def _refusal(self, request: web.Request, spends_budget: bool = True) -> web.Response | None:
        """``spends_budget``: POST/PUT count against the day's budget; a search does not."""
        self.calls += 1
        if request.headers.get("x-api-token") != TOKEN:
            return self._error(401, "unauthorized access", errorCode=401)
        if not self.paid:
            return self._error(402, "Payment required: the plan has no API access")
        if self.calls > self.limit or (spends_budget and self.daily_left == 0):
            return self._error(429, "Request over limit")
        if spends_budget:
            self.daily_left -= 1
        return None

    async def _search(self, request: web.Request) -> web.Response:
        """GET /api/v2/persons/search?term=…&fields=email&exact_match=true: the persons whose
        e-mail is the term (case-insensitive with exact_match), as ``data.items[].item``."""
        refusal = self._refusal(request, spends_budget=False)
        if refusal is not None:
            return refusal
        self.searches.append(dict(request.query))
        term = request.query.get("term", "")
        if len(term) < 2 and request.query.get("exact_match") != "true":
            return self._error(400, "Search term must be at least 2 characters long")
        items = [
            {
                "result_score": 1.0,
                "item": {"id": person_id, "type": "person", "name": person.get("name")},
            }
            for person_id, person in self.persons.items()
            if any(
                str(e.get("value", "")).lower() == term.lower() for e in person.get("emails", [])
            )
        ]
        return web.json_response(
            {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": None}}
        )

    async def _retired(self, request: web.Request) -> web.Response:
        return self._error(410, "This endpoint is deprecated; use /api/v2/persons")

    async def _person(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        if not body.get("name"):
            return self._error(400, "Name must be given.")
        if "email" in body or "phone" in body:  # v1 names: v2 takes emails and phones
            return self._error(400, "Unknown fields: email, phone")
        person_id = next(self._ids)
        self.persons[person_id] = body
        return web.json_response({"success": True, "data": {"id": person_id, **body}}, status=201)

    async def _lead(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        if body.get("person_id") not in self.persons:
            return self._error(400, f"Person with id {body.get('person_id')} not found")
        self.leads.append(body)
        return web.json_response(
            {"success": True, "data": {"id": str(uuid.uuid4()), **body}}, status=201
        )
