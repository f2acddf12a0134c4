"""The part every local HTTP server of the tests shares: an aiohttp app on a free
127.0.0.1 port, started and stopped by the test (or the benchmark: ``async with``).
Subclasses say what the app serves."""

from __future__ import annotations

from typing import Self

from aiohttp import web


class LocalServer:
    backlog = 128  # connections waiting to be accepted: a benchmark opens hundreds at once

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def base_url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> Self:
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=self.backlog)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
