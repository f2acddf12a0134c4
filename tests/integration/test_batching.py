"""Batch delivery: several leads per request, each with its own outcome."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import orjson
import pytest
from aiohttp import web

from streams.config import parse_destinations
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.batching import Batches
from streams.stages.delivery import HttpSender
from tests.integration.recipients import Received, Recipient


async def per_item(recipient: Recipient, received: Received) -> web.Response:
    items = received.json()
    if any(i["ref"] == "L-boom" for i in items):
        return web.json_response({"error": "boom"}, status=500)
    results = [
        {"id": f"R-{i['ref']}", "status": "rejected" if i["ref"].endswith("3") else "accepted"}
        for i in items
    ]
    return web.json_response({"results": results})


def lead(ref: str) -> Lead:
    return Lead(ref, {"id": ref, "lead": {}})


def batched(url: str, **extra: Any) -> Any:
    (dest,) = parse_destinations(
        {
            "destinations": [
                {
                    "id": "bulk",
                    "url": url,
                    "mapping": {"ref": "id"},
                    "batch": {"size": 4, "max_wait_ms": 50, "results": "$.results"},
                    "response": {
                        "rules": [
                            {
                                "when": {"json": {"path": "$.status", "equals": "rejected"}},
                                "outcome": "failure",
                            }
                        ],
                        "capture": {"reference_id": {"json": "$.id"}},
                    },
                    **extra,
                }
            ]
        }
    ).destinations
    return dest


async def test_ten_leads_go_in_three_requests_and_each_gets_its_own_outcome(
    sender: HttpSender,
) -> None:
    server = await Recipient(answer=per_item).start()
    batches = Batches()
    try:
        dest = batched(server.url())
        refs = [f"L-{n}" for n in range(10)]
        attempts = await asyncio.gather(
            *(attempt_delivery(lead(r), dest, sender, batches=batches) for r in refs)
        )
    finally:
        await server.stop()
    assert sorted(len(r.json()) for r in server.requests) == [2, 4, 4]
    assert batches.requests == 3
    for ref, attempt in zip(refs, attempts, strict=True):
        expected = OutcomeKind.FAILURE if ref.endswith("3") else OutcomeKind.SUCCESS
        assert attempt.outcome.kind is expected, (ref, attempt.outcome)
        if expected is OutcomeKind.SUCCESS:
            assert attempt.outcome.reference_id == f"R-{ref}"
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(keys) == 3  # one per batch


async def test_a_failed_batch_fails_every_lead_in_it(sender: HttpSender) -> None:
    server = await Recipient(answer=per_item).start()
    try:
        dest = batched(server.url())
        attempts = await asyncio.gather(
            *(attempt_delivery(lead(r), dest, sender, batches=Batches()) for r in ["L-boom"])
        )
    finally:
        await server.stop()
    assert [a.outcome.reason for a in attempts] == ["Recipient error (HTTP 500)"]


async def test_hmac_signature_covers_the_whole_array(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULK_SECRET", "s3cret")
    server = await Recipient(answer=per_item).start()
    batches = Batches()
    try:
        dest = batched(server.url(), auth={"type": "hmac", "secret": "${env:BULK_SECRET}"})
        await asyncio.gather(
            *(attempt_delivery(lead(f"L-{n}"), dest, sender, batches=batches) for n in range(4))
        )
    finally:
        await server.stop()
    (received,) = server.requests
    assert len(orjson.loads(received.body)) == 4
    expected = hmac.new(b"s3cret", received.body, hashlib.sha256).hexdigest()
    assert received.headers["X-Signature"] == expected


def test_batching_is_refused_where_arrays_cannot_go() -> None:
    with pytest.raises(Exception, match="batch: only json_post"):
        parse_destinations(
            {
                "destinations": [
                    {
                        "id": "f",
                        "url": "https://f.example.com",
                        "integration": "form_post",
                        "batch": {"size": 5},
                    }
                ]
            }
        )
