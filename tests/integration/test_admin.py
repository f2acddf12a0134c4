"""``courier admin`` against a running worker: a pause holds a destination's leads (each
with a skip event saying so) until the resume delivers them; a circuit reset lets
deliveries through before the cool-down; ``courier admin log`` is the audit trail."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from aiohttp import web

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient


def courier_admin(worker: Any, topics: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COURIER_BROKER": worker.kafka.url,
        "COURIER_CONTROL_TOPIC": topics.control,
        "COURIER_DESTINATIONS": str(worker.destinations),
    }
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def applied(worker: Any, line: str) -> None:
    async with asyncio.timeout(30):
        while line not in worker.log_path.read_text():
            await asyncio.sleep(0.2)


async def test_pause_resume_reset_and_the_audit_trail(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    failing = [True]

    async def answer(recipient: Recipient, received: Received) -> web.Response:
        if failing[0]:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"id": "R-1"}, status=201)

    recipient = await Recipient(answer=answer).start()
    try:
        worker = start_worker(
            f"""
destinations:
  - id: crm
    url: {recipient.url("/crm")}
    retry: {{max_attempts: 1}}
    circuit: {{consecutive_errors: 2, cool_down_s: 3600}}
"""
        )
        # Two failures open the circuit for an hour.
        await publish(kafka, topics.leads, [{"id": f"E-{i}", "lead": {}} for i in range(2)])
        await collect(kafka, topics.control, 1)  # the circuit opened
        failing[0] = False
        reset = courier_admin(worker, topics, "reset-circuit", "crm", "--by", "bob")
        assert reset.returncode == 0, reset.stderr
        assert "crm: reset circuit by bob, sent to every worker" in reset.stdout
        await applied(worker, "crm: reset_circuit by bob")
        await publish(kafka, topics.leads, [{"id": "OK-1", "lead": {}}])
        await recipient.wait_for(3, timeout_s=30)  # delivered: no hour's wait

        paused = courier_admin(
            worker, topics, "pause", "crm", "--reason", "CRM maintenance", "--by", "alice"
        )
        assert paused.returncode == 0, paused.stderr
        await applied(worker, "crm: pause by alice (CRM maintenance)")
        await publish(kafka, topics.leads, [{"id": f"P-{i}", "lead": {}} for i in range(3)])
        held = await collect(kafka, topics.events, 2 + 1 + 3)
        reasons = [decode_with_schema_file(r.value, "delivery_event") for r in held[3:]]
        assert {(e["lead_id"], e["reason"], e["raw"]) for e in reasons} == {
            (f"P-{i}", "Destination paused", "paused by alice: CRM maintenance") for i in range(3)
        }
        assert len(recipient.requests) == 3  # nothing sent while paused

        resumed = courier_admin(worker, topics, "resume", "crm", "--by", "alice")
        assert resumed.returncode == 0, resumed.stderr
        outcomes = await collect(kafka, topics.outcomes, 6)  # the held leads went at once
        sold = {
            decoded["lead_id"]: decoded["accepted_by"]
            for decoded in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
        }
        assert {sold[f"P-{i}"][0] for i in range(3)} == {"crm"}

        log = courier_admin(worker, topics, "log")
        assert log.returncode == 0, log.stderr
        lines = log.stdout.splitlines()
        assert [line.split()[3] for line in lines[:3]] == ["reset", "pause", "resume"]
        assert "alice@" not in log.stdout and "CRM maintenance" in lines[1]
        assert lines[-1] == "paused now: none"
        unknown = courier_admin(worker, topics, "pause", "nobody")
        assert unknown.returncode == 2 and "no destination 'nobody'" in unknown.stderr
    finally:
        await recipient.stop()
