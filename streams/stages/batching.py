"""Batch delivery for recipients that take an array of leads in one request.

Leads bound for a destination with ``batch: {size, max_wait_ms}`` are collected until
``size`` are waiting or the oldest has waited ``max_wait_ms``; one POST carries their
payloads as a JSON array. Each lead still gets its own outcome: from the matching item of
an array answer (the answer itself, or the list at ``batch.results``), else from the
answer as a whole (a 500 fails every lead in the batch).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import orjson

from streams.auth import HmacAuth, sign
from streams.config.policies import BatchConfig
from streams.config.response_rules import compile_json_path, first_json
from streams.model import HttpRequest, HttpResponse
from streams.stages.delivery import Send

if TYPE_CHECKING:
    from streams.config import Destination


@dataclass
class _Open:
    destination: Destination
    send: Send
    requests: list[HttpRequest] = field(default_factory=list)
    waiting: list[asyncio.Future[HttpResponse]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batches:
    """One per worker: the batches being filled, one per destination."""

    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.requests = 0  # batch requests sent, for tests and metrics

    async def send(
        self, request: HttpRequest, destination: Destination, send: Send
    ) -> HttpResponse:
        """Put one lead's request in its destination's batch; → this lead's part of the answer."""
        config = destination.batch
        assert config is not None
        loop = asyncio.get_running_loop()
        batch = self._open.get(destination.id)
        if batch is None:
            batch = self._open[destination.id] = _Open(destination, send)
            batch.timer = loop.call_later(config.max_wait_ms / 1000, self._flush, destination.id)
        answer: asyncio.Future[HttpResponse] = loop.create_future()
        batch.requests.append(request)
        batch.waiting.append(answer)
        if len(batch.requests) >= config.size:
            self._flush(destination.id)
        return await answer

    def _flush(self, destination_id: str) -> None:
        batch = self._open.pop(destination_id, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.ensure_future(self._deliver(batch))
        self._sending.add(task)  # held until done: a task nobody references may vanish
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, batch: _Open) -> None:
        self.requests += 1
        try:
            response = await batch.send(
                batch_request(batch.requests, batch.destination), batch.destination
            )
        except Exception as exc:  # DeliveryError above all: every lead in the batch gets it
            for answer in batch.waiting:
                if not answer.done():
                    answer.set_exception(exc)
            return
        config = batch.destination.batch
        assert config is not None
        for answer, part in zip(
            batch.waiting, split_answer(response, len(batch.waiting), config), strict=True
        ):
            if not answer.done():
                answer.set_result(part)


def batch_request(requests: list[HttpRequest], destination: Destination) -> HttpRequest:
    """The leads' bodies as one JSON array; headers of the first, a batch Idempotency-Key."""
    first = requests[0]
    body = b"[" + b",".join(r.body for r in requests) + b"]"
    keys = "".join(r.headers.get("Idempotency-Key", "") for r in requests)
    headers = {**first.headers, "Idempotency-Key": hashlib.sha256(keys.encode()).hexdigest()[:32]}
    combined = replace(first, headers=headers, body=body)
    auth = destination.auth
    if isinstance(auth, HmacAuth):  # the signature must cover the array, not the first body
        unsigned = {
            k: v for k, v in headers.items() if k not in (auth.header, auth.timestamp_header)
        }
        combined = sign(replace(combined, headers=unsigned), auth)
    return combined


def split_answer(response: HttpResponse, count: int, config: BatchConfig) -> list[HttpResponse]:
    body = response.json()
    items = first_json(compile_json_path(config.results), body) if config.results else body
    if isinstance(items, list) and len(items) == count:
        return [
            HttpResponse(response.status, response.headers, orjson.dumps(item)) for item in items
        ]
    return [response] * count
