"""Live configuration: a worker reads its destinations file again when it changes (or on
SIGHUP) and delivers by the new one, without a restart; a file that does not validate
is refused, line by line in the log, and the running configuration kept."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient


def crm_at(url: str) -> str:
    return f"destinations:\n  - id: crm\n    url: {url}\n"


async def logged(worker: Any, line: str, times: int = 1) -> None:
    async with asyncio.timeout(30):
        while worker.log_path.read_text().count(line) < times:
            await asyncio.sleep(0.2)


async def test_a_changed_file_is_delivered_by_without_a_restart(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    first = await Recipient().start()
    second = await Recipient().start()
    try:
        worker = start_worker(crm_at(first.url("/first")))
        await publish(kafka, topics.leads, [{"id": "LC-1", "lead": {}}])
        await first.wait_for(1)

        worker.destinations.write_text(
            crm_at(second.url("/second"))
            + f"  - id: backup\n    url: {second.url('/backup')}\n"
            + "flows:\n  - id: f\n    plan: {waterfall: [crm, backup]}\n"
        )
        await logged(worker, "destinations reloaded")
        assert "added: backup; changed: crm" in worker.log_path.read_text()
        await publish(kafka, topics.leads, [{"id": "LC-2", "lead": {}}])
        await second.wait_for(1)

        # A file with a mistake is refused; the running configuration delivers on.
        worker.destinations.write_text(crm_at("http://plain.example.com/leads"))
        await logged(worker, "destinations file changed but is refused")
        assert "plain http to plain.example.com is refused" in worker.log_path.read_text()
        await publish(kafka, topics.leads, [{"id": "LC-3", "lead": {}}])
        await second.wait_for(2)

        # SIGHUP reads it again even when nothing on disk seems to have changed.
        worker.destinations.write_text(crm_at(first.url("/first")))
        await logged(worker, "destinations reloaded", times=2)
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGHUP)
        await logged(worker, "destinations reloaded", times=3)
        await publish(kafka, topics.leads, [{"id": "LC-4", "lead": {}}])
        outcomes = await collect(kafka, topics.outcomes, 4)
    finally:
        await first.stop()
        await second.stop()
    assert [r.path for r in first.requests] == ["/first", "/first"]
    assert [r.path for r in second.requests] == ["/second", "/second"]
    sold = {
        o["lead_id"]: o["accepted_by"]
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    assert sold == {"LC-1": ["crm"], "LC-2": ["crm"], "LC-3": ["crm"], "LC-4": ["crm"]}
