"""Handlers: what the agents do with one record, as plain functions that return what to send.

Each handler takes a record's bytes and where it came from, and returns ``Out`` records;
the agents (streams/agents.py) send them and know nothing else. Nothing here talks to
Kafka, so every decision is tested with plain objects (tests/unit/test_handlers.py).

``failed`` is the other half of every handler: whatever a handler raises for one record
ends that record's lead alone, as an ``error`` outcome ("Internal error: TypeError": the
exception's type, never the lead's values) and a dead letter with the detail.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from streams import logs, telemetry
from streams.avro import Encoders
from streams.config.feedback import DEFAULT_RETURN_WINDOW_DAYS, FeedbackConfig
from streams.config.flows import CompiledFlow
from streams.control.desk import KEY_SEPARATOR, DeliveryDesk, Handled, lead_key, unsent
from streams.control.due import DueIndex
from streams.control.home import Home, Report
from streams.control.lookback import CAP_REFRESH_S
from streams.control.messages import MessageError, WorkItem, attempt_to_dict
from streams.control.tables import partition_of
from streams.model import CircuitChange, Lead, OutcomeCategory, OutcomeKind, Retirement
from streams.outcome import internal_error
from streams.secrets import SCRUBBER
from streams.stages.attempt import Attempt
from streams.stages.envelope import (
    ENVELOPE_REASONS,
    Rejected,
    dead_letter_headers,
    parse_envelope,
)
from streams.stages.events import (
    cap_usage,
    circuit_event,
    delivery_event,
    lead_feedback,
    lead_outcome,
    performance_tally,
)
from streams.stages.feedback import (
    UNKNOWN_REFERENCE,
    FeedbackError,
    Notice,
    Unread,
    Verdict,
    poll_entry,
    poll_url,
    read_poll,
    reference_key,
)
from streams.stages.routing import Progress, select_flow

log = logging.getLogger(__name__)


def retirement_said(said: Retirement) -> str:
    """An endpoint's Deprecation and Sunset headers in words, for the operators."""
    text = "the recipient says its endpoint"
    if said.deprecated:
        since = f" since {_day(said.deprecated_at)}" if said.deprecated_at is not None else ""
        text += f" is deprecated{since}"
    if said.sunset_at is not None:
        text += f"{' and' if said.deprecated else ''} stops answering on {_day(said.sunset_at)}"
    return f"{text}; see {said.link}" if said.link else text


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


DELIVERY_FAILED = "Delivery failed"  # dead-letter reason of a lead whose retries ran out
INTERNAL_ERROR = "Internal error"  # dead-letter reason of a lead a handler failed on
NO_MATCHING_FLOW = "No matching flow"
# A dead letter must fit the broker's largest record (topics.py gives the DLQ 16 MiB): a
# larger value is kept as its first bytes, with its size and the reason in the headers.
DEAD_LETTER_MAX_BYTES = 15 * 1024 * 1024
DEAD_LETTER_KEPT_BYTES = 1024 * 1024
DETAIL_LIMIT = 1000
TOO_DEEP = Rejected("Too deeply nested", "the envelope nests deeper than 254 levels")
UNREADABLE_ROUTING = "Unreadable routing record"
UNREADABLE_WORK = "Unreadable work record"
UNREADABLE_FEEDBACK = "Unreadable feedback"
# A notice in a list a recipient sent to /feedback/<destination> that could not be read
# (the rest of the list was taken): not replayed, since no topic ever held it.
UNREADABLE_NOTICE = "Unreadable feedback notice"
# Every reason a dead letter can carry (``courier replay --reason`` takes only these;
# tests/unit/test_handlers.py checks the list against the code).
DEAD_LETTER_REASONS = (
    *ENVELOPE_REASONS,
    TOO_DEEP.reason,
    DELIVERY_FAILED,
    INTERNAL_ERROR,
    UNREADABLE_ROUTING,
    UNREADABLE_WORK,
    UNREADABLE_FEEDBACK,
    UNREADABLE_NOTICE,
)

Stage = Literal["intake", "routing", "work", "feedback"]
TopicName = Literal["events", "outcomes", "dlq", "control", "routing", "work", "feedback_events"]
# Routing records about a recipient's feedback, not a lead's delivery: a failure on one
# dead-letters it and leaves the lead as it is.
FEEDBACK_MESSAGES = ("feedback", "reference", "poll", "polled")
MAX_POLLS_AT_ONCE = 50  # asks to polled recipients per check, at most


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was read: a dead letter names it, so it can be found and replayed.
    ``replayed``: ``courier replay`` sent it (a finished lead then runs again)."""

    topic: str
    partition: int
    offset: int
    replayed: bool = False
    timestamp_ms: int = 0  # the record's own (its producer's time, or the broker's)

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


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
    telemetry.dead_letters.add(why.reason)
    return Out("dlq", key, body, headers)


def unread_notice(destination_id: str, unread: Unread) -> Out:
    """A list's notice that could not be read, as the dead-letter topic keeps it: what the
    recipient sent of it (as JSON), why, and from where (the endpoint and its place in the
    list). Before, it was named in the answer and the log, and then lost. No key: it names
    no lead that could be read."""
    headers = [
        ("courier.dlq.reason", UNREADABLE_NOTICE.encode()),
        ("courier.dlq.detail", f"{unread.field}: {unread.error}"[:1000].encode()),
        ("courier.dlq.topic", f"/feedback/{destination_id}".encode()),
        ("courier.dlq.notice", str(unread.index).encode()),
    ]
    telemetry.dead_letters.add(UNREADABLE_NOTICE)
    return Out("dlq", None, unread.document, headers)  # within max_body_bytes (1 MiB at most)


def failure_detail(stage: Stage, exc: BaseException) -> str:
    """For the dead letter only (it holds the lead anyway): the stage and the exception."""
    return SCRUBBER.scrub(f"{stage}: {type(exc).__name__}: {exc}")[:DETAIL_LIMIT]


# Event ids are derived from what they describe, so a record written again after a
# restart has the id it had: consumers (billing) de-duplicate on it.
EVENT_IDS = uuid.UUID("6f1c2a8e-3b7d-4c55-9a0e-2d4b8c7f1e90")


class Handlers:
    def __init__(
        self,
        *,
        flows: list[CompiledFlow],
        home: Home,
        desk: DeliveryDesk,
        codec: Encoders,
        partitions: int,
        max_lead_bytes: int,
        leads_topic: str,
        worker_name: str,
        at_home: Callable[[Origin, str], bool],
        confirmed: Callable[[], Awaitable[None]],
        feedback: Mapping[str, FeedbackConfig | None] | None = None,
        poll: Callable[[str, str], Awaitable[tuple[int, bytes] | None]] | None = None,
    ) -> None:
        """``home``: leads in their own partition; ``desk``: deliveries to destinations with
        caps, in the destination's partition; ``at_home(origin, lead_id)``: a record read
        there is in its lead's partition; ``confirmed()``: returns once every table write
        made so far is stored by the broker; ``feedback``: each destination's feedback
        block (None: none), for the destinations a recipient may send feedback about;
        ``poll(destination_id, url)``: a GET to a polled recipient's status URL with its
        credentials, (status, body), or None when it could not be asked."""
        self._feedback = feedback or {}
        self._poll = poll
        self._asked: dict[str, float] = {}  # polls asked, by the next_at they were asked at
        # When each poll is due, so a check reads only those (the polls table holds one
        # entry per sale to a polled recipient, for as long as it polls: days).
        self._polls = DueIndex(home.polls, lambda entry: float(entry["next_at"]), lead_key)
        # destination → (the counts last reported, when: monotonic seconds)
        self._caps_reported: dict[str, tuple[list[tuple[str, int, int]], float]] = {}
        self._flows = flows
        self.home = home
        self.desk = desk
        self._codec = codec
        self._partitions = partitions
        self._max_lead_bytes = max_lead_bytes
        self._leads_topic = leads_topic
        self._worker_name = worker_name
        self._at_home = at_home
        self._confirmed = confirmed

    # ── intake: leads topic ──────────────────────────────────────────────────
    async def take_in(
        self, value: bytes | None, key: bytes | None, origin: Origin
    ) -> AsyncIterator[list[Out]]:
        parsed = parse_envelope(value, self._max_lead_bytes)
        if isinstance(parsed, Rejected):
            yield [dead_letter(value, key, parsed, origin)]
            return
        logs.about_lead(parsed.id)
        flow = select_flow(parsed, self._flows)
        if flow is None:
            yield [self.outcome(parsed.id, [], NO_MATCHING_FLOW, 1, parsed.source_name)]
            return
        if self._at_home(origin, parsed.id):
            try:
                orjson.dumps(parsed.envelope)  # it must be writable wherever it waits
            except orjson.JSONEncodeError:
                yield [dead_letter(value, key, TOO_DEEP, origin)]
                return
            async for report in self.home.take(parsed, flow, origin.source, origin.replayed):
                yield await self.written(report)
            return
        message = {
            "type": "lead",
            "flow": flow.id,
            "lead": parsed.envelope,
            "replayed": origin.replayed,
        }
        try:
            passed_on = self.to_routing(parsed.id, message)
        except orjson.JSONEncodeError:
            # The reader takes 1,024 levels of nesting, the writer 254: a lead we could
            # read but cannot pass on.
            passed_on = dead_letter(value, key, TOO_DEEP, origin)
        yield [passed_on]

    # ── routing: a lead in its own partition (keyed by lead id) ──────────────
    async def go_on(
        self, value: bytes | None, key: bytes | None, origin: Origin
    ) -> AsyncIterator[list[Out]]:
        if key:  # routing records are keyed by lead id
            logs.about_lead(key.decode(errors="replace")[:200])
        try:
            message = orjson.loads(value or b"")
            kind = message["type"]
            if kind == "lead":
                lead = Lead(str(message["lead"]["id"]), message["lead"])
                flow = self.home.flow(message["flow"])
                if flow is None:
                    yield [self.outcome(lead.id, [], NO_MATCHING_FLOW, 1)]
                    return
                reports = self.home.take(lead, flow, origin.source, bool(message.get("replayed")))
            elif kind == "attempt":
                reports = self.home.answer(
                    message["lead_id"], message["path"], message["attempt"], origin.source
                )
            elif kind in FEEDBACK_MESSAGES:
                yield await self._about_feedback(message)
                return
            else:
                item = WorkItem.from_json(message["item"].encode())
                reports = self.home.retry(item, origin.source)
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            AttributeError,
            MessageError,
            FeedbackError,
        ) as exc:
            unreadable = Rejected(UNREADABLE_ROUTING, f"{type(exc).__name__}: {exc}")
            yield [dead_letter(value, key, unreadable, origin)]
            return
        async for report in reports:
            yield await self.written(report)

    async def written(self, report: Report) -> list[Out]:
        """The records of a report, once the table writes behind them are confirmed."""
        await self._confirmed()
        sends = [self.event(attempt, next_at, report.run) for attempt, next_at in report.attempts]
        sends += [
            self.reference(attempt) for attempt, _ in report.attempts if self._referenced(attempt)
        ]
        sends += [self._start_polling(a) for a, _ in report.attempts if self._polled(a)]
        sends += [self.circuit(destination, change) for destination, change in report.changes]
        sends += [self.to_work(item) for item in report.asks]
        if report.finished is not None and report.lead is not None:
            sends += self.finish(report.lead, report.finished, report.run, report.reason)
        return sends

    def finish(self, lead: Lead, finished: Progress, run: int, reason: str) -> list[Out]:
        """The lead's outcome; and its dead letter when its plan ended on our own failure,
        or with nobody accepting it after retries ran out (for ``courier replay``)."""
        sends = [self.outcome(lead.id, finished.attempts, reason, run, lead.source_name)]
        broken = [a for a in finished.attempts if a.outcome.category is OutcomeCategory.INTERNAL]
        exhausted = [a for a in finished.attempts if a.outcome.retryable]
        if broken:
            why = Rejected(INTERNAL_ERROR, f"{broken[-1].destination_id}: {broken[-1].outcome.raw}")
        elif not finished.accepted and exhausted:
            last = exhausted[-1]
            why = Rejected(DELIVERY_FAILED, f"{last.destination_id}: {last.outcome.reason}")
        else:
            return sends
        origin = Origin(self._leads_topic, -1, -1)
        sends.append(dead_letter(orjson.dumps(lead.envelope), lead.id.encode(), why, origin))
        return sends

    # ── feedback: what recipients say of leads they took ─────────────────────
    async def take_feedback(
        self, value: bytes | None, key: bytes | None, origin: Origin
    ) -> AsyncIterator[list[Out]]:
        """A notice on the feedback topic (from our web endpoint, or written upstream): on to
        its lead's partition, or its reference's to find the lead first."""
        try:
            # Written upstream without a time: received when it was written (the record's
            # time, the same if it is read again, so its event id is too).
            notice = Notice.from_json(value, received_at_ms=origin.timestamp_ms)
            config = self._feedback.get(notice.destination_id)
            if config is None:
                raise FeedbackError("destination_id", f"no destination {notice.destination_id!r}")
        except FeedbackError as exc:
            yield [dead_letter(value, key, Rejected(UNREADABLE_FEEDBACK, str(exc)), origin)]
            return
        normal = config.reason_of(notice.reason) if notice.raw_reason is None else None
        if normal is not None:  # their words, read as the endpoint reads them
            notice = replace(notice, reason=normal, raw_reason=notice.reason)
        yield [self._feedback_to(notice.key, notice)]

    async def _about_feedback(self, message: dict[str, Any]) -> list[Out]:
        """A routing record of type ``reference`` (a sale's reference id, to find its lead
        by) or ``feedback`` (a notice, in its lead's or its reference's partition)."""
        if message["type"] == "reference":
            key = reference_key(message["destination_id"], message["reference_id"])
            self.home.references[key] = str(message["lead_id"])
            await self._confirmed()
            return []
        if message["type"] in ("poll", "polled"):
            return await self._about_poll(message)
        notice = Notice.from_json(message["notice"].encode())
        if notice.lead_id is None:
            lead_id = self.home.references.get(notice.key)
            if lead_id is None:
                return [self._judged(notice, Verdict(False, UNKNOWN_REFERENCE))]
            return [self._feedback_to(lead_id, replace(notice, lead_id=lead_id))]
        return await self._judge(notice)

    async def _judge(self, notice: Notice) -> list[Out]:
        config = self._feedback.get(notice.destination_id)
        window = config.return_window_days if config is not None else DEFAULT_RETURN_WINDOW_DAYS
        verdict = await self.home.feedback(notice, window)
        await self._confirmed()
        if verdict.accepted and notice.kind == "returned" and verdict.credit:
            self.home.distributor.returned(notice.destination_id, verdict.credit, time.time())
        return [self._judged(notice, verdict)]

    # ── polling: recipients that only offer a status API ───────────────────────
    def _polled(self, attempt: Attempt) -> bool:
        config = self._feedback.get(attempt.destination_id)
        return (
            config is not None
            and config.poll is not None
            and attempt.phase != "ping"
            and attempt.outcome.kind is OutcomeKind.SUCCESS
        )

    def _start_polling(self, attempt: Attempt) -> Out:
        message = {
            "type": "poll",
            "destination_id": attempt.destination_id,
            "lead_id": attempt.lead_id,
            "reference_id": attempt.outcome.reference_id,
        }
        return self.to_routing(attempt.lead_id, message)

    async def _about_poll(self, message: dict[str, Any]) -> list[Out]:
        """In the lead's partition: a sale to a polled recipient starts its polls; a poll's
        result moves its entry on (or ends it), and a change it heard is judged."""
        key = f"{message['destination_id']}{KEY_SEPARATOR}{message['lead_id']}"
        if message["type"] == "poll":
            config = self._feedback.get(message["destination_id"])
            if config is None or config.poll is None:  # unset since the sale
                return []
            self._polls.put(key, poll_entry(
                message["destination_id"], str(message["lead_id"]), message.get("reference_id"),
                config.poll, time.time(),
            ))  # fmt: skip
            await self._confirmed()
            return []
        if message["entry"] is None:
            self._polls.remove(key)
        else:
            self._polls.put(key, message["entry"])
        if message.get("notice") is None:
            await self._confirmed()
            return []
        return await self._judge(Notice.from_json(message["notice"].encode()))

    async def polls_due(self, owns: Callable[[str], bool]) -> list[Out]:
        """Ask the polled recipients about the leads whose time has come (this worker's
        partitions): each answer goes back to the lead's partition as a record, which moves
        the entry on; until it does, the entry is not asked again."""
        now = time.time()
        due = [
            (key, entry)
            for key, entry in self._polls.due(owns, now)
            if self._asked.get(key) != entry["next_at"]  # else asked; its answer is on the way
        ][:MAX_POLLS_AT_ONCE]
        self._asked = {k: v for k, v in self._asked.items() if k in self.home.polls}
        return list(await asyncio.gather(*(self._ask(key, entry, now) for key, entry in due)))

    async def _ask(self, key: str, entry: dict[str, Any], now: float) -> Out:
        self._asked[key] = entry["next_at"]
        config = self._feedback.get(entry["destination_id"])
        notice: Notice | None = None
        kept: dict[str, Any] | None = None
        if config is not None and config.poll is not None and self._poll is not None:
            answer = await self._poll(entry["destination_id"], poll_url(config.poll, entry))
            status, body = answer if answer is not None else (None, b"")
            try:
                notice, kept = read_poll(config, entry, status, body, now)
            except Exception as exc:
                # One recipient's answer about one lead is that lead's alone: raised here,
                # it ended the whole check's gather, and every lead asked with it was marked
                # asked and never heard again. Read as no answer: asked at the next interval.
                log.warning(
                    "a poll's answer from %s could not be read (%s); asked again later",
                    entry["destination_id"], type(exc).__name__,
                )  # fmt: skip
                notice, kept = read_poll(config, entry, None, b"", now)
        message = {
            "type": "polled",
            "destination_id": entry["destination_id"],
            "lead_id": entry["lead_id"],
            "entry": kept,
            "notice": notice.to_json().decode() if notice is not None else None,
        }
        return self.to_routing(entry["lead_id"], message)

    def _feedback_to(self, key: str, notice: Notice) -> Out:
        message = {"type": "feedback", "notice": notice.to_json().decode()}
        return self.to_routing(key, message)

    def _judged(self, notice: Notice, verdict: Verdict) -> Out:
        record = lead_feedback(notice, verdict)
        telemetry.feedback.add(notice.destination_id, notice.kind, record["status"])
        return Out("feedback_events", notice.key.encode(), self._codec.feedback.encode(record))

    def _referenced(self, attempt: Attempt) -> bool:
        """A sale whose recipient may send feedback naming the lead by its own id."""
        config = self._feedback.get(attempt.destination_id)
        return (
            config is not None
            and config.reference_id is not None
            and attempt.phase != "ping"  # a bid's id is not the lead's
            and attempt.outcome.kind is OutcomeKind.SUCCESS
            and attempt.outcome.reference_id is not None
        )

    def reference(self, attempt: Attempt) -> Out:
        reference_id = str(attempt.outcome.reference_id)
        message = {
            "type": "reference",
            "destination_id": attempt.destination_id,
            "reference_id": reference_id,
            "lead_id": attempt.lead_id,
        }
        return self.to_routing(reference_key(attempt.destination_id, reference_id), message)

    # ── work: one attempt at a destination with caps, keyed by its id ────────
    async def work_on(
        self, value: bytes | None, key: bytes | None, origin: Origin
    ) -> AsyncIterator[list[Out]]:
        try:
            item = WorkItem.from_json(value or b"")
        except MessageError as exc:
            unreadable = Rejected(UNREADABLE_WORK, str(exc))
            yield [dead_letter(value, key, unreadable, origin)]
            return
        logs.about_lead(item.lead.id)
        if self.desk.superseded(item):  # its parked copy answers for it
            return
        yield self.report(item, await self.desk.handle(item))

    def report(self, item: WorkItem, handled: Handled) -> list[Out]:
        sends: list[Out] = []
        if handled.attempt is not None:
            sends.append(self.event(handled.attempt, handled.next_attempt_at, 0))
        sends += [self.circuit(item.destination_id, change) for change in handled.changes]
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

        Intake and routing: an ``error`` lead outcome and a dead letter, and the lead is
        marked finished (one outcome). Work: an ``error`` attempt that goes back to the
        lead's partition like any other, so the rest of its plan still happens."""
        # The exception's type and where, not its text: that may quote the lead (the dead
        # letter, which holds the lead anyway, has the whole detail).
        log.error(
            "%s could not handle the record at %s[%s]@%s (%s)",
            stage,
            origin.topic,
            origin.partition,
            origin.offset,
            type(exc).__name__,
        )
        why = Rejected(INTERNAL_ERROR, failure_detail(stage, exc))
        if stage == "feedback" or _is_about_feedback(stage, value):
            return [dead_letter(value, key, why, origin)]  # the lead is left as it is
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
            reason = internal_error(exc).reason
            run = self.home.give_up(lead_id, origin.source, reason)
            sends.append(self.outcome(lead_id, [], reason, run))
        return sends

    # ── capped destinations' room, for every worker ──────────────────────────
    def cap_reports(self, owns: Callable[[str], bool]) -> list[Out]:
        """A ``CapUsage`` record for each capped destination this worker counts for whose
        counts changed since its last report, that it has not reported yet, or reported
        more than ``CAP_REFRESH_S`` ago (a starting worker reads only that far back)."""
        sends = []
        now = time.monotonic()
        for destination_id, windows in self.desk.cap_usage(owns).items():
            last = self._caps_reported.get(destination_id)
            if last is not None and last[0] == windows and now - last[1] < CAP_REFRESH_S:
                continue
            self._caps_reported[destination_id] = (windows, now)
            record = cap_usage(destination_id, windows, self._worker_name)
            value = self._codec.cap_usage.encode(record)
            sends.append(Out("control", destination_id.encode(), value))
        return sends

    def performance_tallies(self) -> list[Out]:
        """A ``PerformanceTally`` for each destination ranked by performance whose
        attempts this worker made changed since its last tally: every worker ranks by all."""
        sends = []
        for destination_id, minutes in self.home.distributor.tallies():
            record = performance_tally(destination_id, minutes, self._worker_name)
            value = self._codec.performance.encode(record)
            sends.append(Out("control", destination_id.encode(), value))
        return sends

    def performance_told(self) -> None:
        """The tallies ``performance_tallies`` gave are on the control topic."""
        self.home.distributor.told()

    # ── records ──────────────────────────────────────────────────────────────
    def event(self, attempt: Attempt, next_at: datetime | None, run: int) -> Out:
        outcome = attempt.outcome
        name = "|".join(
            (attempt.lead_id, attempt.destination_id, str(attempt.number), str(run),
             outcome.kind, outcome.reason)
        )  # fmt: skip
        event_id = str(uuid.uuid5(EVENT_IDS, name))
        record = delivery_event(attempt, next_at, event_id, telemetry.current_trace_id())
        destination = {"destination": attempt.destination_id}
        telemetry.deliveries.add(
            attempt.destination_id,
            str(outcome.kind),
            str(outcome.category),
            telemetry.reason_label(attempt.destination_id, outcome.reason),
        )
        if outcome.quota_left is not None:
            telemetry.quota_left[attempt.destination_id] = outcome.quota_left
        if outcome.retiring is not None and telemetry.note_retirement(
            attempt.destination_id, outcome.retiring
        ):
            log.warning(
                "destination %s: %s", attempt.destination_id, retirement_said(outcome.retiring)
            )
        if attempt.http_status is not None:  # a request was made
            telemetry.recipient_duration.record(attempt.recipient_ms / 1000, destination)
            telemetry.overhead_duration.record(attempt.overhead_ms / 1000, destination)
        return Out("events", attempt.lead_id.encode(), self._codec.delivery.encode(record))

    def outcome(
        self,
        lead_id: str,
        attempts: list[Attempt],
        reason: str,
        run: int,
        source: str | None = None,
    ) -> Out:
        event_id = str(uuid.uuid5(EVENT_IDS, f"{lead_id}|outcome|{run}"))
        trace_id = telemetry.current_trace_id()
        record = lead_outcome(lead_id, attempts, reason, event_id, trace_id, source)
        telemetry.leads.add(record["outcome"])
        return Out("outcomes", lead_id.encode(), self._codec.outcome.encode(record))

    def circuit(self, destination_id: str, change: CircuitChange) -> Out:
        log.warning(
            "circuit of %s: %s → %s (%s)",
            destination_id,
            change.before,
            change.after,
            change.reason,
        )
        record = circuit_event(destination_id, change, self._worker_name)
        return Out("control", destination_id.encode(), self._codec.circuit.encode(record))

    def to_routing(self, lead_id: str, message: dict[str, Any]) -> Out:
        partition = partition_of(lead_id, self._partitions)
        return Out("routing", lead_id.encode(), orjson.dumps(message), partition=partition)

    def retry(self, item: WorkItem) -> Out:
        """A parked delivery at home, due: back to the lead's partition as a record."""
        retry = {"type": "retry", "item": item.to_json().decode()}
        return replace(self.to_routing(item.lead.id, retry), headers=item.headers)

    def to_work(self, item: WorkItem) -> Out:
        destination = item.destination_id
        partition = partition_of(destination, self._partitions)
        return Out("work", destination.encode(), item.to_json(), item.headers, partition)


def _is_about_feedback(stage: Stage, value: bytes | None) -> bool:
    if stage != "routing":
        return False
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("type") in FEEDBACK_MESSAGES


def _lead_id(stage: Stage, value: bytes | None) -> str | None:
    """The lead a failed record belongs to, if it can be read at all."""
    try:
        document = orjson.loads(value or b"")
        if stage == "routing":
            if document.get("type") == "lead":
                document = document["lead"]
            elif document.get("type") == "retry":
                document = orjson.loads(document["item"])["lead"]
            lead_id = document.get("id", document.get("lead_id"))
        else:
            lead_id = document.get("id")
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None
    return None if lead_id is None or isinstance(lead_id, dict | list) else str(lead_id)[:200]
