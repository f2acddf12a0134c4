"""Real HTTP recipients on 127.0.0.1 that record every request and answer as scripted.

The default script reads the ``behaviour`` field of the JSON body: ``ok`` (201 with an id
and a price), ``reject`` (400 "Duplicate lead"), ``error`` (500), ``slow`` (answers after
``slow_s``), ``html`` (a 502 HTML error page).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.integration.local_server import LocalServer


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


Answer = Callable[["Recipient", Received], Awaitable[web.Response]]


async def scripted(recipient: Recipient, received: Received) -> web.Response:
    behaviour = received.json().get("behaviour", "ok")
    if behaviour == "reject":
        return web.json_response({"message": "Duplicate lead"}, status=400)
    if behaviour == "error":
        return web.json_response({"error": "boom"}, status=500)
    if behaviour == "html":
        return web.Response(text="<html><body>Bad gateway</body></html>", status=502)
    if behaviour == "slow":
        await asyncio.sleep(recipient.slow_s)
    reference = f"R-{next(recipient.ids)}"
    return web.json_response({"id": reference, "price": "2.50", "status": "accepted"}, status=201)


class Recipient(LocalServer):
    def __init__(
        self, answer: Answer = scripted, delay_s: float = 0.0, slow_s: float = 3.0
    ) -> None:
        super().__init__()
        self.answer = answer
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.requests: list[Received] = []
        self.ids = itertools.count(1)

    def url(self, path: str = "/leads") -> str:
        return self.base_url(path)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.method, request.path_qs, dict(request.headers), await request.read()
        )
        self.requests.append(received)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await self.answer(self, received)

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.requests]

    async def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.requests) < count:
                await asyncio.sleep(0.05)
