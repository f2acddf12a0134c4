"""A worker stopped mid-stream and started again loses nothing and repeats only what was in flight."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

from tests.integration.conftest import collect, publish
from tests.integration.recipients import Recipient

IN_FLIGHT = 8


def destinations_for(recipient: Recipient) -> str:
    return f"""
destinations:
  - id: slow_crm
    url: {recipient.url()}
    mapping: {{ref: id}}
"""


async def test_restart_mid_stream_loses_nothing(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    recipient.delay_s = 0.05  # slow enough to stop the worker with leads still to go
    worker = start_worker(destinations_for(recipient), in_flight=IN_FLIGHT)
    await publish(kafka, topics.leads, [{"id": f"R-{i:03d}", "lead": {}} for i in range(200)])

    await recipient.wait_for(60)
    assert await worker.stopped(signal.SIGTERM) == 0, worker.log()
    seen_before_restart = len(recipient.requests)
    assert seen_before_restart < 200, "the worker finished before it was stopped"

    worker.start()
    await recipient.wait_for(200, timeout_s=120)
    events = await collect(kafka, topics.events, 200, settle_s=3.0)

    received = Counter(body["ref"] for body in recipient.bodies())
    assert set(received) == {f"R-{i:03d}" for i in range(200)}, "a lead was lost"
    repeated = sum(n - 1 for n in received.values())
    # Only leads that were in flight at the stop may be delivered twice.
    assert repeated <= IN_FLIGHT, (repeated, worker.log())
    assert {r.key.decode() for r in events} == set(received)
