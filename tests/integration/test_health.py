"""The web port: health for probes, and nothing that shows a lead.

Reproduced first (issue #14): with COURIER_WEB_PORT set, GET /table/routes/L-20/ returned
the lead's name, e-mail and SSN digits while it was in flight (Faust's table views)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from streams.cli.broker import free_port
from tests.integration.conftest import collect, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient


async def answer(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as res:
        return res.status, await res.text()


async def test_health_answers_and_no_table_view_shows_a_lead(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    port = free_port()
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email}}
"""
    start_worker(yaml, env={"COURIER_WEB_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):  # until the worker has its partitions and tables
        try:
            status, body = await answer(f"{base}/readyz")
        except aiohttp.ClientConnectionError:
            status, body = 0, ""
        if status == 200:
            break
        assert status in (0, 503), body  # not ready yet says why, with 503
        await asyncio.sleep(0.5)
    assert (status, body) == (200, '{"status":"ready"}')
    assert await answer(f"{base}/healthz") == (200, '{"status":"live"}')
    # the names of earlier releases still answer
    assert await answer(f"{base}/health") == (200, '{"status":"ready"}')
    assert await answer(f"{base}/health/live") == (200, '{"status":"live"}')

    lead = {"id": "W-1", "lead": {"email": "jane@example.com", "ssn": "123-45-6789"}}
    await publish(kafka, topics.leads, [lead])
    await collect(kafka, topics.outcomes, 1)
    for path in ("/table/leads/W-1/", "/table/leads/", "/router/", "/graph/", "/stats/"):
        status, body = await answer(base + path)
        assert status == 404, (path, status)
        assert "jane@example.com" not in body and "123-45-6789" not in body


async def test_a_worker_with_records_waiting_and_none_finished_is_not_ready(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """Its event loop answers /healthz, but /readyz says it is stalled (and the metric
    shows for how long), until a record finishes again."""
    stuck = await Recipient(delay_s=8).start()
    port = free_port()
    yaml = f"""
destinations:
  - id: crm
    url: {stuck.url()}
    timeouts: {{read: 30, total: 30}}
"""
    try:
        start_worker(yaml, env={"COURIER_WEB_PORT": str(port), "COURIER_STALL_S": "2"})
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if (await answer(f"{base}/readyz"))[0] == 200:
                    break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.5)
        await publish(kafka, topics.leads, [{"id": "ST-1", "lead": {"email": "s@example.com"}}])
        await stuck.wait_for(1)
        async with asyncio.timeout(6):
            while (state := await answer(f"{base}/readyz"))[0] == 200:
                await asyncio.sleep(0.2)
        assert state[0] == 503 and '"stalled: no record finished for' in state[1]
        assert await answer(f"{base}/healthz") == (200, '{"status":"live"}')
        _, metrics = await answer(f"{base}/metrics")
        (line,) = [m for m in metrics.splitlines() if m.startswith("courier_worker_stalled")]
        assert float(line.split()[-1]) > 2
        await collect(kafka, topics.outcomes, 1)
        async with asyncio.timeout(10):
            while (await answer(f"{base}/readyz"))[0] != 200:
                await asyncio.sleep(0.2)
    finally:
        await stuck.stop()
