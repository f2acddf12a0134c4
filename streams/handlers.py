"""Handlers: what the agents do with one record, as plain functions that return what to send.

Each handler takes a record's bytes and where it came from, and returns ``Out`` records;
the agents (streams/agents.py) send them and know nothing else. Nothing here talks to
Kafka, so every decision is tested with plain objects (tests/unit/test_handlers.py).

``failed`` is the other half of every handler: whatever a handler raises for one record
ends that record's lead alone, as an ``error`` outcome ("Internal error: TypeError": the
exception's type, never the lead's values) and a dead letter with the detail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from streams.avro import Encoders
from streams.control.desk import DeliveryDesk, Handled, unsent
from streams.control.messages import MessageError, WorkItem, attempt_to_dict
from streams.control.router import Router, Step
from streams.control.tables import partition_of
from streams.model import Lead, OutcomeCategory
from streams.stages.attempt import Attempt
from streams.stages.envelope import Rejected, dead_letter_headers, parse_envelope
from streams.stages.events import circuit_event, delivery_event, lead_outcome
from streams.stages.outcome import internal_error
from streams.stages.routing import CompiledFlow, select_flow

log = logging.getLogger(__name__)

DELIVERY_FAILED = "Delivery failed"  # dead-letter reason of a lead whose retries ran out
INTERNAL_ERROR = "Internal error"  # dead-letter reason of a lead a handler failed on
NO_MATCHING_FLOW = "No matching flow"
# A dead letter must fit the broker's largest record (topics.py gives the DLQ 16 MiB): a
# larger value is kept as its first bytes, with its size and the reason in the headers.
DEAD_LETTER_MAX_BYTES = 15 * 1024 * 1024
DEAD_LETTER_KEPT_BYTES = 1024 * 1024
DETAIL_LIMIT = 1000
TOO_DEEP = Rejected("Too deeply nested", "the envelope nests deeper than 254 levels")

Stage = Literal["intake", "routing", "work"]
TopicName = Literal["events", "outcomes", "dlq", "control", "routing", "work"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was read: a dead letter names it, so it can be found and replayed."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Out:
    """A record to send: to which of our topics, with what key, value and headers."""

    topic: TopicName
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None


def dead_letter(value: bytes | None, key: bytes | None, why: Rejected, origin: Origin) -> Out:
    """The record's own bytes, with why and where from; too large ones cut to their start."""
    headers = dead_letter_headers(why, origin.topic, origin.partition, origin.offset)
    body = value or b""
    if len(body) > DEAD_LETTER_MAX_BYTES:
        headers += [
            ("courier.dlq.size", str(len(body)).encode()),
            ("courier.dlq.truncated", b"true"),
        ]
        body = body[:DEAD_LETTER_KEPT_BYTES]
    return Out("dlq", key, body, headers)


def failure_detail(stage: Stage, exc: BaseException) -> str:
    """For the dead letter only (it holds the lead anyway): the stage and the exception."""
    return f"{stage}: {type(exc).__name__}: {exc}"[:DETAIL_LIMIT]


class Handlers:
    def __init__(
        self,
        *,
        flows: list[CompiledFlow],
        router: Router,
        desk: DeliveryDesk,
        codec: Encoders,
        partitions: int,
        max_lead_bytes: int,
        leads_topic: str,
        worker_name: str,
    ) -> None:
        self._flows = flows
        self._router = router
        self.desk = desk
        self._codec = codec
        self._partitions = partitions
        self._max_lead_bytes = max_lead_bytes
        self._leads_topic = leads_topic
        self._worker_name = worker_name

    # ── intake: leads topic ──────────────────────────────────────────────────
    def take_in(self, value: bytes | None, key: bytes | None, origin: Origin) -> list[Out]:
        parsed = parse_envelope(value, self._max_lead_bytes)
        if isinstance(parsed, Rejected):
            return [dead_letter(value, key, parsed, origin)]
        flow = select_flow(parsed, self._flows)
        if flow is None:
            return [self.outcome(parsed.id, [], NO_MATCHING_FLOW)]
        return [
            self.to_routing(parsed.id, {"type": "lead", "flow": flow.id, "lead": parsed.envelope})
        ]

    # ── routing: a lead's plan, keyed by lead id ─────────────────────────────
    def go_on(self, value: bytes | None, key: bytes | None, origin: Origin) -> list[Out]:
        try:
            message = orjson.loads(value or b"")
            if message["type"] == "lead":
                lead = Lead(str(message["lead"]["id"]), message["lead"])
                flow = self._router.flow(message["flow"])
                if flow is None:
                    return [self.outcome(lead.id, [], NO_MATCHING_FLOW)]
                step = self._router.start(lead, flow)
            else:
                step = self._router.record(message["lead_id"], message["path"], message["attempt"])
        except (orjson.JSONDecodeError, KeyError, TypeError, MessageError) as exc:
            unreadable = Rejected("Unreadable routing record", f"{type(exc).__name__}: {exc}")
            return [dead_letter(value, key, unreadable, origin)]
        return self.follow(step)

    def follow(self, step: Step) -> list[Out]:
        sends = [
            self.to_work(WorkItem(need.lead, need.destination_id, need.path, 1, need.has_fallback))
            for need in step.needed
        ]
        finished, lead = step.finished, step.lead
        if finished is None or lead is None:
            return sends
        sends.append(self.outcome(lead.id, finished.attempts, "No destination"))
        broken = [a for a in finished.attempts if a.outcome.category is OutcomeCategory.INTERNAL]
        exhausted = [a for a in finished.attempts if a.outcome.retryable]
        if broken:
            why = Rejected(INTERNAL_ERROR, f"{broken[-1].destination_id}: {broken[-1].outcome.raw}")
        elif not finished.accepted and exhausted:
            # Nobody took it and retries ran out somewhere: keep it for ``courier replay``.
            last = exhausted[-1]
            why = Rejected(DELIVERY_FAILED, f"{last.destination_id}: {last.outcome.reason}")
        else:
            return sends
        origin = Origin(self._leads_topic, -1, -1)
        sends.append(dead_letter(orjson.dumps(lead.envelope), lead.id.encode(), why, origin))
        return sends

    # ── work: one attempt at one destination, keyed by destination id ────────
    async def work_on(self, value: bytes | None, key: bytes | None, origin: Origin) -> list[Out]:
        try:
            item = WorkItem.from_json(value or b"")
        except MessageError as exc:
            unreadable = Rejected("Unreadable work record", str(exc))
            return [dead_letter(value, key, unreadable, origin)]
        return self.report(item, await self.desk.handle(item))

    def report(self, item: WorkItem, handled: Handled) -> list[Out]:
        key = item.lead.id.encode()
        sends: list[Out] = []
        if handled.attempt is not None:
            record = delivery_event(handled.attempt, handled.next_attempt_at)
            sends.append(Out("events", key, self._codec.delivery.encode(record)))
        if handled.change is not None:
            change = handled.change
            log.warning(
                "circuit of %s: %s → %s (%s)",
                item.destination_id,
                change.before,
                change.after,
                change.reason,
            )
            record = circuit_event(item.destination_id, change, self._worker_name)
            destination = item.destination_id.encode()
            sends.append(Out("control", destination, self._codec.circuit.encode(record)))
        if handled.result is not None:
            message = {
                "type": "attempt",
                "lead_id": item.lead.id,
                "path": item.path,
                "attempt": attempt_to_dict(handled.result),
            }
            sends.append(self.to_routing(item.lead.id, message))
        return sends

    # ── one lead's failure ───────────────────────────────────────────────────
    def failed(
        self,
        stage: Stage,
        value: bytes | None,
        key: bytes | None,
        origin: Origin,
        exc: BaseException,
    ) -> list[Out]:
        """What to send when a handler raised for this record: the lead ends here, alone.

        Intake and routing: an ``error`` lead outcome and a dead letter. Work: an ``error``
        attempt that goes back to the lead's routing like any other (its event, then the
        lead's outcome and dead letter when its plan ends), so the rest of the plan (a
        waterfall's next buyer, a parallel branch) still happens."""
        log.error("%s could not handle a record (%s)", stage, failure_detail(stage, exc))
        why = Rejected(INTERNAL_ERROR, failure_detail(stage, exc))
        if stage == "work":
            try:
                item = WorkItem.from_json(value or b"")
            except MessageError:
                return [dead_letter(value, key, why, origin)]
            broken = unsent(item, internal_error(exc))
            return self.report(item, Handled(broken, broken))
        lead_id = _lead_id(stage, value)
        sends = [dead_letter(value, key, why, origin)]
        if lead_id is not None:
            if stage == "routing":
                self._router.routes.pop(lead_id, None)  # the lead ends here
            sends.append(self.outcome(lead_id, [], internal_error(exc).reason))
        return sends

    # ── records ──────────────────────────────────────────────────────────────
    def outcome(self, lead_id: str, attempts: list[Attempt], reason: str) -> Out:
        record = lead_outcome(lead_id, attempts, reason)
        return Out("outcomes", lead_id.encode(), self._codec.outcome.encode(record))

    def to_routing(self, lead_id: str, message: dict[str, Any]) -> Out:
        partition = partition_of(lead_id, self._partitions)
        return Out("routing", lead_id.encode(), orjson.dumps(message), partition=partition)

    def to_work(self, item: WorkItem) -> Out:
        destination = item.destination_id
        partition = partition_of(destination, self._partitions)
        return Out("work", destination.encode(), item.to_json(), partition=partition)


def _lead_id(stage: Stage, value: bytes | None) -> str | None:
    """The lead a failed record belongs to, if it can be read at all."""
    try:
        document = orjson.loads(value or b"")
        if stage == "routing":
            document = document["lead"] if document.get("type") == "lead" else document
            lead_id = document.get("id", document.get("lead_id"))
        else:
            lead_id = document.get("id")
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None
    return None if lead_id is None or isinstance(lead_id, dict | list) else str(lead_id)[:200]
