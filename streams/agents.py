"""Agents: read a record → call the stages → send what they decided. No business logic here.

Three agents, so that all state of a destination lives in one partition:

- ``intake`` (leads topic): parse the envelope (malformed → dead-letter topic), pick the
  flow, hand the lead to its routing partition (routing topic, keyed by lead id).
- ``routing`` (routing topic): a lead's plan, one step at a time (streams/control/router.py;
  state in the ``routes`` table). Asks destinations for attempts (work topic, keyed by
  destination id); when the plan is finished, writes the lead's outcome.
- ``work`` (work topic): one attempt at one destination with its caps, circuit, remembered
  acceptances and retries (streams/control/desk.py; state in four tables). Writes the
  delivery event and sends the attempt back to the lead's routing partition.

A timer hands parked work (retries, held leads) back to the work topic when it is due.
Every agent takes events in batches, handles them concurrently, and acknowledges a batch
(its offsets become committable) only after everything it sent is confirmed: at least
once, with repeats made harmless by the routing state and the remembered acceptances.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from streams.avro import Encoders
from streams.config import Destination, DestinationsFile, Settings
from streams.control.desk import DeliveryDesk, Handled, owner_key
from streams.control.messages import MessageError, WorkItem, attempt_to_dict
from streams.control.router import Router, Step
from streams.control.tables import keyed_table, partition_of
from streams.errors import SenderClosed
from streams.model import Lead
from streams.stages.attempt import Attempt, attempt_delivery
from streams.stages.batching import Batches
from streams.stages.delivery import Send
from streams.stages.envelope import Rejected, dead_letter_headers, parse_envelope
from streams.stages.events import circuit_event, delivery_event, lead_outcome
from streams.stages.oauth import TokenCache
from streams.stages.routing import select_flow
from streams.topics import Topics

log = logging.getLogger(__name__)
# How long a batch waits to fill before it is handled anyway.
BATCH_WAIT_S = 0.02
BATCH_ACTORS = 2
PARKED_CHECK_S = 0.2  # how often parked work is looked at: the lateness of a retry
FORGET_CHECK_S = 300.0
DELIVERY_FAILED = "Delivery failed"  # dead-letter reason of a lead whose retries ran out

# A future the producer resolves once the broker has stored the record.
Confirmation = Any
Confirmations = list[Confirmation]


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
    partitions = settings.partitions
    worker_name = f"{socket.gethostname()}:{os.getpid()}"

    def by_destination(name: str) -> Any:
        return keyed_table(app, name, partitions, owner_key)

    def by_lead(name: str) -> Any:
        return keyed_table(app, name, partitions, lambda key: key)

    async def attempt_at(lead: Lead, destination: Destination, number: int) -> Attempt:
        return await attempt_delivery(
            lead, destination, send, number, tokens=tokens, batches=batches
        )

    desk = DeliveryDesk(
        by_id,
        attempt_at,
        circuits=by_destination("circuits"),
        caps=by_destination("caps"),
        delivered=by_destination("delivered"),
        parked=by_destination("parked"),
    )
    router = Router({flow.id: flow for flow in flows}, by_lead("routes"))

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

    async def to_routing(lead_id: str, message: dict[str, Any]) -> Confirmation:
        return await topics.routing.send(
            key=lead_id.encode(),
            value=orjson.dumps(message),
            partition=partition_of(lead_id, partitions),
            force=True,
        )

    async def to_work(item: WorkItem) -> Confirmation:
        return await topics.work.send(
            key=item.destination_id.encode(),
            value=item.to_json(),
            partition=partition_of(item.destination_id, partitions),
            force=True,
        )

    async def dead_letter(
        event: Any, value: bytes, key: bytes | None, rejected: Rejected
    ) -> Confirmation:
        msg = event.message
        headers = dead_letter_headers(rejected, msg.topic, msg.partition, msg.offset)
        return await topics.dlq.send(key=key, value=value, headers=headers, force=True)

    async def outcome(lead_id: str, attempts: list[Attempt], reason: str) -> Confirmation:
        record = lead_outcome(lead_id, attempts, reason)
        codec = await encoders()
        return await topics.outcomes.send(
            key=lead_id.encode(), value=codec.outcome.encode(record), force=True
        )

    # ── intake: leads topic ──────────────────────────────────────────────────
    async def take_in(event: Any) -> Confirmations:
        parsed = parse_envelope(event.value, settings.max_lead_bytes)
        if isinstance(parsed, Rejected):
            return [await dead_letter(event, event.value, event.key, parsed)]
        flow = select_flow(parsed, flows)
        if flow is None:
            return [await outcome(parsed.id, [], "No matching flow")]
        message = {"type": "lead", "flow": flow.id, "lead": parsed.envelope}
        return [await to_routing(parsed.id, message)]

    # ── routing: a lead's plan, keyed by lead id ─────────────────────────────
    async def go_on(event: Any) -> Confirmations:
        try:
            message = orjson.loads(event.value)
            if message["type"] == "lead":
                lead = Lead(str(message["lead"]["id"]), message["lead"])
                flow = router.flow(message["flow"])
                if flow is None:
                    return [await outcome(lead.id, [], "No matching flow")]
                step = router.start(lead, flow)
            else:
                step = router.record(message["lead_id"], message["path"], message["attempt"])
        except (orjson.JSONDecodeError, KeyError, TypeError, MessageError) as exc:
            unreadable = Rejected("Unreadable routing record", f"{type(exc).__name__}: {exc}")
            return [await dead_letter(event, event.value, event.key, unreadable)]
        return await follow(step)

    async def follow(step: Step) -> Confirmations:
        sends = [
            await to_work(WorkItem(need.lead, need.destination_id, need.path, 1, need.has_fallback))
            for need in step.needed
        ]
        finished, lead = step.finished, step.lead
        if finished is None or lead is None:
            return sends
        sends.append(await outcome(lead.id, finished.attempts, "No destination"))
        exhausted = [a for a in finished.attempts if a.outcome.retryable]
        if not finished.accepted and exhausted:
            # Nobody took it and retries ran out somewhere: keep it for ``courier replay``.
            why = Rejected(
                DELIVERY_FAILED, f"{exhausted[-1].destination_id}: {exhausted[-1].outcome.reason}"
            )
            sends.append(
                await topics.dlq.send(
                    key=lead.id.encode(),
                    value=orjson.dumps(lead.envelope),
                    headers=dead_letter_headers(why, settings.leads_topic, -1, -1),
                    force=True,
                )
            )
        return sends

    # ── work: one attempt at one destination, keyed by destination id ────────
    async def work_on(event: Any) -> Confirmations:
        try:
            item = WorkItem.from_json(event.value)
        except MessageError as exc:
            unreadable = Rejected("Unreadable work record", str(exc))
            return [await dead_letter(event, event.value, event.key, unreadable)]
        handled = await desk.handle(item)
        return await report(item, handled)

    async def report(item: WorkItem, handled: Handled) -> Confirmations:
        codec = await encoders()
        key = item.lead.id.encode()
        sends: Confirmations = []
        if handled.attempt is not None:
            record = delivery_event(handled.attempt, handled.next_attempt_at)
            sends.append(
                await topics.events.send(key=key, value=codec.delivery.encode(record), force=True)
            )
        if handled.change is not None:
            change = handled.change
            log.warning(
                "circuit of %s: %s → %s (%s)",
                item.destination_id,
                change.before,
                change.after,
                change.reason,
            )
            record = circuit_event(item.destination_id, change, worker_name)
            sends.append(
                await topics.control.send(
                    key=item.destination_id.encode(),
                    value=codec.circuit.encode(record),
                    force=True,
                )
            )
        if handled.result is not None:
            message = {
                "type": "attempt",
                "lead_id": item.lead.id,
                "path": item.path,
                "attempt": attempt_to_dict(handled.result),
            }
            sends.append(await to_routing(item.lead.id, message))
        return sends

    # ── wiring ───────────────────────────────────────────────────────────────
    # Events are taken in batches of up to ``in_flight`` / 2 and handled concurrently; two
    # actors per agent, so one batch is handled while the other waits for confirmations.
    batch_size = max(1, settings.in_flight // BATCH_ACTORS)

    def batched(topic: Any, name: str, handle: Callable[[Any], Awaitable[Confirmations]]) -> None:
        async def agent(stream: Any) -> None:
            async for events in stream.take_events(batch_size, within=BATCH_WAIT_S):
                handled = await asyncio.gather(
                    *(handle(event) for event in events), return_exceptions=True
                )
                failures = [h for h in handled if isinstance(h, BaseException)]
                if any(isinstance(f, SenderClosed) for f in failures):
                    # Stopping: this batch stays unacknowledged and is handled after the
                    # restart; what it did is made harmless by remembered acceptances.
                    log.info("%s: stopping with %d events unfinished", name, len(events))
                    return
                if failures:
                    raise failures[0]
                sends = [h for h in handled if not isinstance(h, BaseException)]
                await asyncio.gather(*(confirmation for batch in sends for confirmation in batch))

        agent.__name__ = agent.__qualname__ = name
        app.agent(topic, name=name, concurrency=BATCH_ACTORS)(agent)

    batched(topics.leads, "intake", take_in)
    batched(topics.routing, "routing", go_on)
    batched(topics.work, "work", work_on)

    def owned() -> Callable[[str], bool]:
        """Is a destination's partition this worker's now, with its tables recovered?

        Only then may a timer act on its keys: a table keeps keys of partitions that have
        moved to another worker until they come back and are recovered again."""
        if app.rebalancing or app.in_recovery:
            return lambda _: False
        work_topic = settings.work_topic
        mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == work_topic}
        return lambda destination_id: partition_of(destination_id, partitions) in mine

    @app.timer(PARKED_CHECK_S, name="release_parked")
    async def release_parked() -> None:
        for key, item in desk.due(owned()):
            await (await to_work(item))  # confirmed before it leaves the table
            desk.parked.pop(key, None)

    @app.timer(FORGET_CHECK_S, name="forget_delivered")
    async def forget_delivered() -> None:
        desk.forget_delivered(settings.remember_delivered_h * 3600, owned())
