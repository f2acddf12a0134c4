"""A local Pipedrive API v1 for persons and leads, answering as Pipedrive does:
``POST /v1/persons`` and ``POST /v1/leads`` authenticated by the ``api_token`` query
parameter → 201 ``{"success": true, "data": {"id": …}}`` (lead ids are UUIDs); a lead for an
unknown person → 400 ``{"success": false, "error": …}``; a wrong token → 401
``"unauthorized access"``; over the limit → 429.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from aiohttp import web

from tests.integration.local_server import LocalServer

TOKEN = "pd-token-123"


class PipedriveDouble(LocalServer):
    def __init__(self, limit: int = 1000) -> None:
        super().__init__()
        self.persons: dict[int, dict[str, Any]] = {}
        self.leads: list[dict[str, Any]] = []
        self.calls = 0
        self.limit = limit
        self._ids = itertools.count(101)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/persons", self._person)
        app.router.add_post("/v1/leads", self._lead)
        return app

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

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.calls += 1
        if request.query.get("api_token") != TOKEN:
            return self._error(401, "unauthorized access", errorCode=401)
        if self.calls > self.limit:
            return self._error(429, "Request over limit")
        return None

    async def _person(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        if not body.get("name"):
            return self._error(400, "Name must be given.")
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
