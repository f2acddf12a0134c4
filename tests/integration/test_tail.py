"""``courier tail`` starts at the end and filters by lead, destination and outcome (issue
#15). Reproduced first: it started at the beginning of the topic and could not filter."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import orjson

from tests.integration.conftest import collect, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient


async def test_tail_shows_new_events_of_the_lead_asked_for(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    start_worker(f"destinations: [{{id: crm, url: '{recipient.url()}'}}]\n")
    await publish(kafka, topics.leads, [{"id": "T-old", "lead": {}}])
    await collect(kafka, topics.events, 1)
    env = {**os.environ, "COURIER_BROKER": kafka.url, "COURIER_EVENTS_TOPIC": topics.events}
    tail = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "streams.cli", "tail", "--lead", "T-new"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        await asyncio.sleep(4)  # it has found the topic's end
        await publish(
            kafka, topics.leads, [{"id": "T-new", "lead": {}}, {"id": "T-other", "lead": {}}]
        )
        await collect(kafka, topics.events, 3)
        await asyncio.sleep(3)
    finally:
        tail.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(tail.communicate, timeout=30)
    shown = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert [(e["lead_id"], e["outcome"]) for e in shown] == [("T-new", "success")], err
