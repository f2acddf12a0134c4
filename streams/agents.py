"""Agents: read a lead → call the stages → send events. No business logic here."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable
from typing import Any

from streams.avro import Encoders
from streams.config import DestinationsFile, Settings
from streams.control.circuit import Circuits
from streams.model import Lead
from streams.stages.attempt import Attempt, attempt_delivery
from streams.stages.batching import Batches
from streams.stages.delivery import Send
from streams.stages.envelope import Rejected, dead_letter_headers, parse_envelope
from streams.stages.events import circuit_event, delivery_event, lead_outcome
from streams.stages.oauth import TokenCache
from streams.stages.routing import route, select_flow
from streams.topics import Topics

log = logging.getLogger(__name__)
# How long a batch waits to fill before it is delivered anyway.
BATCH_WAIT_S = 0.02
BATCH_ACTORS = 2


def register_agents(
    app: Any,
    topics: Topics,
    destinations: DestinationsFile,
    settings: Settings,
    send: Send,
) -> None:
    tokens = TokenCache()  # OAuth 2.0 tokens, shared by every actor of this worker
    batches = Batches()  # open batches of batch-taking destinations
    flows = destinations.compiled_flows
    by_id = destinations.by_id()

    worker_name = f"{socket.gethostname()}:{os.getpid()}"
    circuits = Circuits()  # in memory, per worker (README: not yet table-backed)

    async def deliver_to(lead: Lead, destination_id: str) -> Attempt:
        destination = by_id[destination_id]
        attempt, change = await circuits.deliver(
            destination,
            lead,
            lambda: attempt_delivery(lead, destination, send, tokens=tokens, batches=batches),
        )
        if change is not None:
            log.warning(
                "circuit of %s: %s → %s (%s)",
                destination_id,
                change.before,
                change.after,
                change.reason,
            )
            codec = await encoders()
            record = circuit_event(destination_id, change, worker_name)
            await topics.control.send(
                key=destination_id.encode(), value=codec.circuit.encode(record), force=True
            )
        return attempt

    encoders_ready: asyncio.Future[Encoders] | None = None

    async def encoders() -> Encoders:
        # Built once per worker, by whichever actor gets here first.
        nonlocal encoders_ready
        if encoders_ready is None:
            encoders_ready = asyncio.ensure_future(
                Encoders.build(
                    settings.schema_registry_url,
                    settings.events_topic,
                    settings.outcomes_topic,
                    settings.control_topic,
                )
            )
        return await encoders_ready

    async def handle(event: Any) -> list[Awaitable[Any]]:
        """One lead: route it, write its events; → the sends still to be confirmed."""
        parsed = parse_envelope(event.value, settings.max_lead_bytes)
        if isinstance(parsed, Rejected):
            msg = event.message
            headers = dead_letter_headers(parsed, msg.topic, msg.partition, msg.offset)
            return [
                await topics.dlq.send(key=event.key, value=event.value, headers=headers, force=True)
            ]
        flow = select_flow(parsed, flows)
        attempts = [] if flow is None else (await route(flow.plan, parsed, deliver_to)).attempts
        codec = await encoders()
        key = parsed.id.encode()
        sends = [
            await topics.events.send(
                key=key, value=codec.delivery.encode(delivery_event(attempt)), force=True
            )
            for attempt in attempts
        ]
        reason_if_none = "No destination" if flow else "No matching flow"
        outcome = lead_outcome(parsed.id, attempts, reason_if_none)
        sends.append(
            await topics.outcomes.send(key=key, value=codec.outcome.encode(outcome), force=True)
        )
        return sends

    # Leads are taken in batches of up to ``in_flight`` and delivered concurrently. A batch
    # is acknowledged (and its offsets become committable) only after every event it wrote
    # is confirmed by the broker: at-least-once, without Faust's per-event send machinery.
    # Two actors, so one batch is delivered while the other waits for its confirmations.
    batch_size = max(1, settings.in_flight // BATCH_ACTORS)

    @app.agent(topics.leads, name="deliver", concurrency=BATCH_ACTORS)
    async def deliver(stream: Any) -> None:
        async for events in stream.take_events(batch_size, within=BATCH_WAIT_S):
            sends = await asyncio.gather(*(handle(event) for event in events))
            await asyncio.gather(*(confirmation for batch in sends for confirmation in batch))
