"""What a running worker's web port answers while its broker is gone: the writes it is
asked for (an operator's action, a recipient's feedback) cannot be confirmed, so it
answers 503 with Retry-After and the reason, promptly, and logs one line for each.

Reproduced first (a worker on a broker of its own, the broker then stopped): the admin
action answered 500 with a traceback in the log, and the feedback request stayed open for
minutes (the client gave up at 200 s) while Faust's producer waited. And a SIGTERM took
63.7 s: aiokafka's fetcher let a cancelled fetch's error end the consumer thread, which
never said it had stopped, so the worker waited out mode's 60 s stop timeout, printing
the traceback line by line (now 3.6 s, no warning)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from streams.cli.broker import EmbeddedBroker, free_port
from streams.stages.feedback import sign
from tests.integration.kafka import KafkaTarget
from tests.integration.worker import TopicNames, WorkerProcess

TOKEN = "a-token-for-the-ops-bot"
SECRET = "the-buyers-feedback-secret"


@pytest.fixture
async def orphaned(tmp_path: Path) -> AsyncIterator[tuple[WorkerProcess, str]]:
    """A ready worker (web port, API token, a destination taking feedback) whose broker
    has been stopped; its web address."""
    broker = EmbeddedBroker()
    broker.start()
    port = free_port()
    worker = WorkerProcess(
        KafkaTarget("tansu", broker.bootstrap),
        "destinations:\n  - id: crm\n    url: https://crm.example.com/leads\n"
        "    feedback: {secret: '${env:CRM_FEEDBACK}', lead_id: $.lead, kind: $.kind}\n",
        tmp_path, TopicNames.unique(),
        env={"COURIER_WEB_PORT": str(port), "COURIER_API_TOKENS": f'{{"ops-bot": "{TOKEN}"}}',
             "CRM_FEEDBACK": SECRET},
    ).start()  # fmt: skip
    try:
        await worker.logged("Worker ready")
        broker.stop()
        yield worker, f"http://127.0.0.1:{port}"
    finally:
        worker.stop(signal.SIGKILL)  # a no-op when a test has stopped it
        broker.stop()


async def test_an_action_and_feedback_get_503_and_a_reason_while_the_broker_is_gone(
    orphaned: tuple[WorkerProcess, str],
) -> None:
    worker, web = orphaned
    body = orjson.dumps({"lead": "L-1", "kind": "converted"})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        bot = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{web}/api/admin/crm/pause", headers=bot) as res:
            assert (res.status, res.headers.get("Retry-After")) == (503, "5")
            assert (await res.json())["error"] == (
                "the action was not recorded (the broker could not be written to: "
                "KafkaConnectionError); try again"
            )
        signed = {"X-Courier-Signature": sign(SECRET, body)}
        async with http.post(f"{web}/feedback/crm", data=body, headers=signed) as res:
            assert (res.status, res.headers.get("Retry-After")) == (503, "5")
            assert (await res.json())["error"].startswith("the feedback was not recorded (")
        async with http.get(f"{web}/healthz") as res:  # the worker itself goes on
            assert res.status == 200
    log = worker.log_path.read_text(errors="replace")
    assert "pause of crm: not recorded" in log and "feedback from crm: not recorded" in log
    assert "Error handling request" not in log


async def test_a_worker_whose_broker_is_gone_stops_on_sigterm_without_waiting_out_timeouts(
    orphaned: tuple[WorkerProcess, str],
) -> None:
    worker, _ = orphaned
    # Under mode's 60 s stop timeout, which it waited out before: a kill answers -9.
    # Whether a fetch is still pending at the signal depends on where aiokafka's fetcher
    # is ("consumer: stopped with a fetch to the broker still pending" in the log when it
    # is, as in most runs): either way the stop is prompt and clean. Asserting that line
    # failed one CI run in which the signal came between two fetches.
    assert await asyncio.to_thread(worker.stop, signal.SIGTERM, 45.0) == 0
    log = worker.log_path.read_text(errors="replace")
    assert "Exception in thread" not in log and "Error while stopping" not in log, log[-3000:]
