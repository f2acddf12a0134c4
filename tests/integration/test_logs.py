"""What a worker says: a start-up summary at any log level, JSON lines on request with
the lead, destination and trace, and no terminal escape codes in a log file (issue #14).

Reproduced first: at the default level the worker printed nothing but a stray
``\\e[?25h`` (Faust's spinner), so a user could not tell it was working."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient


async def logged(worker: Any, text: str, timeout_s: float = 60) -> str:
    async with asyncio.timeout(timeout_s):
        while text not in (log := worker.log_path.read_text(errors="replace")):
            await asyncio.sleep(0.1)
    return log


async def test_the_default_level_says_what_the_worker_does_and_nothing_else(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email}}
  - id: paused_buyer
    url: {recipient.url("/buyer")}
    enabled: false
"""
    worker = start_worker(yaml, env={"COURIER_LOG_LEVEL": "warn"})
    await publish(kafka, topics.leads, [{"id": "G-1", "lead": {"email": "g@example.com"}}])
    await collect(kafka, topics.outcomes, 1)
    log = await logged(worker, "courier: destination crm")
    assert "courier: broker 127.0.0.1:" in log and ", PLAINTEXT" in log
    assert f"courier: reads {topics.leads} as group {worker.app_id}" in log
    assert "courier: destination crm: json_post → 127.0.0.1" in log
    assert "courier: disabled: paused_buyer" in log
    assert "courier: flow all: parallel(crm)" in log  # no flows: all enabled, at once
    assert "courier: warning: COURIER_EGRESS=any" in log  # the test suite's setting
    # COURIER_KAFKA_IDEMPOTENCE=auto: as the broker answered (Tansu refuses one)
    if kafka.kind == "tansu":
        assert "courier: producer: not idempotent (COURIER_KAFKA_IDEMPOTENCE=auto)" in log
        assert "courier: warning: the broker does not take an idempotent producer" in log
    else:
        assert "courier: producer: idempotent" in log
    assert "\x1b" not in log and "g@example.com" not in log


async def test_json_lines_name_the_lead_the_destination_and_the_trace(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    failing = await Recipient(answer=_server_error).start()
    yaml = f"""
destinations:
  - id: crm
    url: {failing.url()}
    mapping: {{email: email}}
    retry: {{max_attempts: 1}}
    circuit: {{consecutive_errors: 2, min_requests: 1}}
"""
    try:
        worker = start_worker(yaml, env={"COURIER_LOG_FORMAT": "json", "COURIER_LOG_LEVEL": "info"})
        leads = [{"id": f"J-{n}", "lead": {"email": f"j{n}@example.com"}} for n in range(3)]
        await publish(kafka, topics.leads, leads)
        outcomes = await collect(kafka, topics.outcomes, 3)
        traces = {
            o["lead_id"]: o["trace_id"]
            for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
        }
        await logged(worker, "closed → open")
        lines = [orjson.loads(line) for line in worker.log_path.read_text().splitlines() if line]
    finally:
        await failing.stop()
    # Every line is a JSON object, the start-up summary included.
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    assert any(line["message"] == "destination crm: json_post → 127.0.0.1" for line in lines)
    (opened,) = [line for line in lines if "closed → open" in line["message"]]
    assert opened["level"] == "warning"
    assert opened["lead_id"] in traces
    assert opened["trace_id"] == traces[opened["lead_id"]]
    assert not any("@example.com" in orjson.dumps(line).decode() for line in lines)


async def _server_error(recipient: Recipient, received: Any) -> Any:
    from aiohttp import web

    return web.json_response({"error": "down"}, status=500)
