"""A local stand-in for Confluent Schema Registry's REST API (the calls we make).

Reproduces the documented requests and answers: ``POST /subjects/{subject}/versions``
with ``{"schema": "..."}`` → ``200 {"id": N}`` (the same id for the same schema, in any
subject), ``422 {"error_code": 42201, ...}`` for a schema that does not parse, and
``GET /schemas/ids/{id}`` → ``200 {"schema": "..."}`` or ``404 {"error_code": 40403}``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.integration.local_server import LocalServer

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryDouble(LocalServer):
    def __init__(self) -> None:
        super().__init__()
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/subjects/{subject}/versions", self._register)
        app.router.add_get("/schemas/ids/{id}", self._by_id)
        return app

    @property
    def url(self) -> str:
        return self.base_url()

    @staticmethod
    def _answer(status: int, body: dict[str, Any]) -> web.Response:
        return web.Response(status=status, text=json.dumps(body), content_type=CONTENT_TYPE)

    async def _register(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        self.requests.append(("POST", subject))
        try:
            schema_text = (await request.json())["schema"]
            canonical = _canonical(schema_text)
        except (ValueError, KeyError, TypeError):
            return self._answer(422, {"error_code": 42201, "message": "Invalid schema"})
        same = [i for i, known in self.schemas.items() if _canonical(known) == canonical]
        schema_id = same[0] if same else len(self.schemas) + 1
        self.schemas.setdefault(schema_id, schema_text)
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return self._answer(200, {"id": schema_id})

    async def _by_id(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.match_info["id"]))
        schema = self.schemas.get(int(request.match_info["id"]))
        if schema is None:
            return self._answer(404, {"error_code": 40403, "message": "Schema not found"})
        return self._answer(200, {"schema": schema})


def _canonical(schema_text: str) -> str:
    return json.dumps(json.loads(schema_text), sort_keys=True)
