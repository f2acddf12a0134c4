"""The worker runs on asyncio's own loop unless told otherwise (``COURIER_EVENT_LOOP``:
``uvloop``), with its own garbage collector threshold (``COURIER_GC_YOUNG``): it says both
at start, and delivers the same on either loop."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.recipients import Recipient


async def test_a_worker_delivers_on_asyncio_by_default_and_on_uvloop_when_asked(
    recipient: Recipient, kafka: Any, topics: Any, start_worker: Any
) -> None:
    yaml = f"destinations:\n  - id: crm\n    url: {recipient.url()}\n"
    on_asyncio = start_worker(yaml)
    await publish(kafka, topics.leads, [{"id": "LOOP-1", "lead": {}}])
    await recipient.wait_for(1)
    await asyncio.to_thread(on_asyncio.stop)
    # the same application (consumer group, tables) restarted on the other loop: a new
    # application id would be a second reader of the topic and deliver LOOP-1 again
    on_uvloop = start_worker(
        yaml,
        app_id=on_asyncio.app_id,
        env={"COURIER_EVENT_LOOP": "uvloop", "COURIER_GC_YOUNG": "700"},
        name="uvloop",
    )
    await publish(kafka, topics.leads, [{"id": "LOOP-2", "lead": {}}])
    outcomes = await collect(kafka, topics.outcomes, 2, settle_s=2.0)
    sold = [
        (o["lead_id"], o["accepted_by"])
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    ]
    assert sorted(sold) == [("LOOP-1", ["crm"]), ("LOOP-2", ["crm"])]
    assert len(recipient.requests) == 2
    said = on_asyncio.log_path.read_text()
    assert "event loop: asyncio; young garbage collections every 10000 allocations" in said
    said = on_uvloop.log_path.read_text()
    assert "event loop: uvloop; young garbage collections every 700 allocations" in said
