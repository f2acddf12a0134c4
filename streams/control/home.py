"""A lead at home: its plan run in the partition of its id, its state in one table entry.

A lead is routed and delivered in the worker that owns its partition. Deliveries to
destinations without caps happen right here, concurrently (``LocalDesk``: circuits,
schedules, retries); a destination with caps is asked through its own partition (the
work topic), where its counts are exact across workers, and its answer comes back here.

The lead's state (keyed by lead id: ``leads`` while it is in progress, ``finished`` once
it ended, see ``LeadStates``) is written only when it matters:

- when an attempt is known and the plan goes on (a crash does not resend to a recipient
  that has already answered), and when the plan has to wait (for a destination's own
  partition, a parked retry, a hold): the state then carries the lead itself;
- once when the plan ends: who accepted it and that its outcome is written. A lead seen
  again after that (a restart, a repeat) writes nothing more: one outcome per lead. A
  replayed dead letter starts a new run that skips every destination that accepted.

A lead to one destination without caps thus costs one table write. The caller writes the
records of a ``Report`` only after the table writes it made are confirmed (``confirmed``),
so an acceptance is durable before any event or outcome that depends on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from streams.config.flows import CompiledFlow, Distribute
from streams.control.desk import DeliveryDesk, Handled, unsent
from streams.control.distribution import Distributor
from streams.control.messages import WorkItem, attempt_from_dict, attempt_to_dict
from streams.control.tables import confirmed, forget_older
from streams.errors import SenderClosed
from streams.model import CircuitChange, Lead, OutcomeKind
from streams.outcome import internal_error
from streams.stages.attempt import Attempt
from streams.stages.feedback import Notice, Verdict, judge
from streams.stages.routing import Needed, Progress, advance

LeadState = dict[str, Any]


class LeadStates(MutableMapping[str, LeadState]):
    """Leads' states in two tables: ``waiting`` holds leads still in progress (kept until
    they end, however long they wait), ``finished`` holds what is kept of ended leads, for
    a time (``forget``). Only the finished table grows with traffic, and it can expire by
    time without a scan (``streams.control.tables.expiring``); a waiting lead is never
    expired under a long hold or quota wait."""

    def __init__(
        self, waiting: MutableMapping[str, Any], finished: MutableMapping[str, Any]
    ) -> None:
        self.waiting = waiting
        self.finished = finished
        # Kept in write order only where ``forget`` reads the oldest first: a table that
        # expires by itself (RocksDB's TTL) has no order to keep.
        self._in_write_order = not getattr(finished, "expires_itself", False)

    def __getitem__(self, lead_id: str) -> LeadState:
        state = self.get(lead_id)
        if state is None:
            raise KeyError(lead_id)
        return state  # type: ignore[no-any-return]

    def get(self, lead_id: str, default: Any = None) -> Any:
        # Waiting first: a replayed lead runs again while its last run's end is kept. Most
        # lookups are of a new lead, in neither table: one miss each, without the KeyError
        # that ``Mapping.get`` would raise and catch through ``__getitem__``.
        state = self.waiting.get(lead_id)
        if state is None:
            state = self.finished.get(lead_id)
        return default if state is None else state

    def __setitem__(self, lead_id: str, state: LeadState) -> None:
        if state["finished"] is None:
            self.waiting[lead_id] = state
            return
        if self._in_write_order and lead_id in self.finished:
            # Written again at the end (a new run): at the end of the write order, where
            # ``forget_older`` expects the youngest.
            del self.finished[lead_id]
        self.finished[lead_id] = state
        if lead_id in self.waiting:
            del self.waiting[lead_id]

    def __delitem__(self, lead_id: str) -> None:
        found = False
        for table in (self.waiting, self.finished):
            if lead_id in table:
                del table[lead_id]
                found = True
        if not found:
            raise KeyError(lead_id)

    def __iter__(self) -> Iterator[str]:
        yield from self.waiting
        yield from (lead_id for lead_id in self.finished if lead_id not in self.waiting)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def forget(self, horizon: float, owns: Callable[[str], bool]) -> int:
        """Drop finished leads that ended before ``horizon``."""
        return forget_older(self.finished, horizon, lambda state: state["finished"], owns)


log = logging.getLogger(__name__)


@dataclass
class Report:
    """What handling one record for a lead came to, to write in this order: delivery
    events, circuit changes, asks to destinations' partitions, then (when the plan ended)
    the lead's outcome."""

    lead_id: str
    attempts: list[tuple[Attempt, datetime | None]] = field(default_factory=list)
    changes: list[tuple[str, CircuitChange]] = field(default_factory=list)
    asks: list[WorkItem] = field(default_factory=list)
    finished: Progress | None = None
    lead: Lead | None = None  # as it came in, with ``finished`` (for its dead letter)
    run: int = 1
    reason: str = "No destination"  # the outcome's reason when no destination was tried
    # Each attempt's table form, made once (the lead's state and its ending both keep it).
    # Keyed by id, holding the attempt too: an id is never reused while its entry lives.
    docs: dict[int, tuple[Attempt, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def doc(self, attempt: Attempt) -> dict[str, Any]:
        """``attempt_to_dict(attempt)``, shared by every place of the state that keeps it
        (nothing changes a kept attempt in place)."""
        found = self.docs.get(id(attempt))
        if found is None:
            found = self.docs[id(attempt)] = (attempt, attempt_to_dict(attempt))
        return found[1]


class Home:
    def __init__(
        self,
        flows: Mapping[str, CompiledFlow],
        capped: Callable[[str], bool],
        leads: LeadStates,
        desk: DeliveryDesk,
        clock: Callable[[], float] = time.time,
        distributor: Distributor | None = None,
        references: MutableMapping[str, str] | None = None,
        polls: MutableMapping[str, Any] | None = None,
    ) -> None:
        """``capped(destination_id)``: its deliveries go through its own partition;
        ``desk``: delivers here (acceptances are remembered in the lead's state, not by it);
        ``distributor``: orders distribution steps (``weighted``, ``priority``, ...);
        ``references``: "destination|their reference id" → lead id, for recipients whose
        feedback names a lead by their own id (kept in the reference's partition)."""
        self.references: MutableMapping[str, str] = {} if references is None else references
        # "destination|lead" → when to ask a polled recipient about a lead it accepted next
        # (streams/stages/feedback.py, ``poll_entry``), in the lead's partition.
        self.polls: MutableMapping[str, Any] = {} if polls is None else polls
        self.distributor = distributor or Distributor({}, clock)
        self._flows = flows
        self._capped = capped
        self.leads = leads
        self.desk = desk
        self._clock = clock
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def flow(self, flow_id: str) -> CompiledFlow | None:
        return self._flows.get(flow_id)

    async def take(
        self, lead: Lead, flow: CompiledFlow, source: str, replayed: bool = False
    ) -> AsyncIterator[Report]:
        """A lead came in (or again: a restart, a repeat, a replayed dead letter).
        ``source``: the record's topic, partition and offset."""
        async with self._one_at_a_time(lead.id):
            state = self.leads.get(lead.id)
            if state is None:
                state = _new_state(lead, flow.id, 1, {})
            elif state["finished"] is not None:
                if replayed:
                    returned = state.get("returned")
                    state = _new_state(lead, flow.id, state["run"] + 1, state["accepted"])
                    if returned:
                        state["returned"] = returned  # a return is never taken twice
                else:
                    async for report in self._ended(state, lead.id, source):
                        yield report
                    return
            else:
                # Seen again while it waits: its asks may have been lost with a stopped
                # worker, so they are made again (a destination's partition drops an ask
                # it is already working on, and never resends to who accepted).
                state = {**state, "asked": []}
            async for report in self._run(state, source):
                yield report

    async def answer(
        self, lead_id: str, path: str, attempt: dict[str, Any], source: str
    ) -> AsyncIterator[Report]:
        """An attempt came back from a destination's partition (``attempt_to_dict``)."""

        def with_answer(state: LeadState) -> tuple[LeadState, None] | None:
            if path in state["known"]:
                return None  # a repeat
            self.distributor.saw(attempt_from_dict(attempt))
            asked = [p for p in state["asked"] if p != path]
            return {**state, "known": {**state["known"], path: attempt}, "asked": asked}, None

        async for report in self._resume(lead_id, source, with_answer):
            yield report

    async def retry(self, item: WorkItem, source: str) -> AsyncIterator[Report]:
        """A parked delivery is due (its item carries its attempt number)."""

        def due(state: LeadState) -> tuple[LeadState, WorkItem] | None:
            if item.path in state["known"] or self.desk.superseded(item):
                return None  # answered already, or its parked copy answers for it
            return (dict(state), item)

        async for report in self._resume(item.lead.id, source, due):
            yield report

    def give_up(self, lead_id: str, source: str, reason: str) -> int:
        """Our own code failed on this lead: it is finished, its outcome says ``reason``
        (written again if ``source`` is handled again); who accepted it stays remembered.
        Its run number."""
        state = self.leads.get(lead_id) or _new_state(Lead(lead_id, {}), "", 1, {})
        kept = _finished(state, self._clock())
        kept["ending"] = {
            "source": source,
            "attempts": [],
            "events": [],
            "lead": None,
            "reason": reason,
        }
        self.leads[lead_id] = kept
        run: int = state["run"]
        return run

    async def feedback(self, notice: Notice, return_window_days: float) -> Verdict:
        """A recipient's notice about a lead, judged against the lead's state; an accepted
        return is noted there, so a second one is refused."""
        lead_id = str(notice.lead_id)
        async with self._one_at_a_time(lead_id):
            state = self.leads.get(lead_id)
            verdict = judge(notice, state, return_window_days)
            if state is not None and verdict.accepted and notice.kind == "returned":
                returned = {**state.get("returned", {}), notice.destination_id: notice.at_ms}
                self.leads[lead_id] = {**state, "returned": returned}
            return verdict

    def forget(self, older_than_s: float, owns: Callable[[str], bool]) -> int:
        """Drop finished leads older than ``older_than_s``: how many were dropped."""
        return self.leads.forget(self._clock() - older_than_s, owns)

    # ── inside ─────────────────────────────────────────────────────────────
    @asynccontextmanager
    async def _one_at_a_time(self, lead_id: str) -> AsyncIterator[None]:
        """One record of a lead at a time in this worker; the lock goes with its last user."""
        entry = self._locks.get(lead_id)
        if entry is None:
            entry = self._locks[lead_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[lead_id]

    async def _resume(
        self,
        lead_id: str,
        source: str,
        step: Callable[[LeadState], tuple[LeadState, WorkItem | None] | None],
    ) -> AsyncIterator[Report]:
        """A waiting lead goes on with what ``step`` makes of its state (None: nothing to
        do), and a due delivery to make first, if any."""
        async with self._one_at_a_time(lead_id):
            state = self.leads.get(lead_id)
            if state is None:
                return
            if state["finished"] is not None:
                async for report in self._ended(state, lead_id, source):
                    yield report
                return
            resumed = step(state)
            if resumed is not None:
                async for report in self._run(resumed[0], source, first=resumed[1]):
                    yield report

    async def _ended(self, state: LeadState, lead_id: str, source: str) -> AsyncIterator[Report]:
        """A finished lead's record seen again. The very record that finished it, handled
        again (the worker stopped before it was acknowledged): its last records may not
        have been written, so they are, again, with the same event ids. Any other record
        (an upstream repeat): nothing, ever: one outcome per lead."""
        ending = state.get("ending")
        if ending is None or ending["source"] != source:
            return
        lead = Lead(lead_id, ending["lead"] or {"id": lead_id})
        attempts = [attempt_from_dict(doc) for doc in ending["attempts"]]
        accepted = any(a.outcome.kind is OutcomeKind.SUCCESS for a in attempts)
        report = Report(lead_id, run=state["run"], lead=lead)
        report.reason = ending.get("reason", report.reason)
        report.attempts = [
            (attempt_from_dict(doc), None if at is None else datetime.fromtimestamp(at, UTC))
            for doc, at in ending["events"]
        ]
        report.finished = Progress(attempts, accepted, lead, [])
        yield report

    async def _run(
        self, state: LeadState, source: str, first: WorkItem | None = None
    ) -> AsyncIterator[Report]:
        """Go on with the plan until it ends or waits; ``first``: a due retry to make.

        A report comes out as soon as an attempt is known and the plan goes on, with the
        state written first: a fast destination's event never waits for a slow one's."""
        state = {**state, "known": dict(state["known"]), "asked": list(state["asked"])}
        state["accepted"] = dict(state["accepted"])
        orders = state["orders"] = dict(state.get("orders", {}))
        fresh: list[str] = []  # distribution orders chosen in this step, not yet written
        lead = Lead(str(state["lead"]["id"]), state["lead"])
        flow = self._flows.get(state["flow"])

        def order(step: Distribute, path: str) -> list[str]:
            chosen: list[str] | None = orders.get(path)
            if chosen is None:
                chosen = orders[path] = self.distributor.order(step)
                fresh.append(path)
            return chosen

        known = {path: attempt_from_dict(doc) for path, doc in state["known"].items()}
        running: dict[str, tuple[str, asyncio.Future[Handled]]] = {}
        pinging: set[str] = set()  # the paths in ``running`` that are an auction's pings
        if first is not None:
            running[first.path] = (
                first.destination_id,
                asyncio.ensure_future(self._deliver(first)),
            )
        report = Report(lead.id, run=state["run"])
        ended: Progress | None = None  # the plan's end, seen as the last delivery settled
        try:
            while True:
                if ended is not None:
                    progress = ended
                elif flow is None:  # the flow left the configuration while the lead waited
                    progress = Progress(list(known.values()), False, lead, [])
                else:
                    progress = advance(flow.plan, lead, known, order=order)
                if fresh and not progress.finished:
                    # The order this lead got is written (and confirmed) before anything
                    # is sent by it: after a crash the lead goes on in the same order,
                    # never to another buyer first.
                    fresh.clear()
                    self.leads[lead.id] = state
                    await confirmed()
                if progress.finished:
                    report.finished, report.lead = progress, lead
                    self.leads[lead.id] = _finished(state, self._clock(), source, report)
                    yield report
                    return
                if self._start(state, progress.needed, known, running, report, pinging):
                    continue  # acceptances of an earlier run moved the plan on
                if not running:
                    # Waiting for a destination's partition or a parked retry: the lead
                    # and what is known so far, so any worker can go on from here.
                    self.leads[lead.id] = state
                    yield report
                    return
                futures = [future for _, future in running.values()]
                # An auction's pings are judged together: waiting for all of them (each
                # is bounded by the ping timeout) writes the lead's state and its events
                # once, not once per buyer. Deliveries go on as each one ends.
                together = all(path in pinging for path in running)
                done, _ = await asyncio.wait(
                    futures,
                    return_when=asyncio.ALL_COMPLETED if together else asyncio.FIRST_COMPLETED,
                )
                for path, (destination_id, future) in list(running.items()):
                    if future in done:
                        del running[path]
                        self._note(state, known, path, destination_id, future.result(), report)
                if flow is not None:
                    after = advance(flow.plan, lead, known, order=order)
                    if after.finished:
                        ended = after
                        continue  # the last one: its report is the lead's last
                self.leads[lead.id] = state  # what is known survives a crash
                yield report
                report = Report(lead.id, run=state["run"])
        finally:
            for _, future in running.values():
                future.cancel()

    def _start(
        self,
        state: LeadState,
        needed: list[Needed],
        known: dict[str, Attempt],
        running: dict[str, tuple[str, asyncio.Future[Handled]]],
        report: Report,
        pinging: set[str],
    ) -> bool:
        """Start what the plan needs and nobody is doing; True if it knew some already."""
        remembered = False
        for need in needed:
            path, destination_id = need.path, need.destination_id
            if path in running or path in state["asked"]:
                continue
            item = WorkItem(
                need.lead, destination_id, path, 1, need.has_fallback, deadline=need.deadline
            )
            if need.ping_timeout_s is not None:  # an auction's ping: here, never parked
                ping = self._deliver(item, need.ping_timeout_s)
                running[path] = (destination_id, asyncio.ensure_future(ping))
                pinging.add(path)
                continue
            accepted = state["accepted"].get(destination_id)
            if accepted is not None:  # accepted in an earlier run: never sent twice
                known[path] = attempt_from_dict(accepted)
                state["known"][path] = accepted
                remembered = True
            elif self.desk.is_parked(item):
                continue  # its retry comes back through ``retry``
            elif self._capped(destination_id):
                report.asks.append(item)
                state["asked"].append(path)
            else:
                running[path] = (destination_id, asyncio.ensure_future(self._deliver(item)))
        return remembered

    async def _deliver(self, item: WorkItem, ping_timeout_s: float | None = None) -> Handled:
        """One delivery (or an auction's ping); what it raises for this lead is its error
        attempt, so the plan goes on (a waterfall's next buyer) and the lead's other
        deliveries stand."""
        try:
            if ping_timeout_s is not None:
                return await self.desk.ping(item, ping_timeout_s)
            return await self.desk.handle(item)
        except SenderClosed:
            raise
        except Exception as exc:
            log.error("delivery to %s failed: %s", item.destination_id, type(exc).__name__)
            broken = unsent(item, internal_error(exc))
            if ping_timeout_s is not None:
                broken = replace(broken, phase="ping")
            return Handled(broken, broken)

    def _note(
        self,
        state: LeadState,
        known: dict[str, Attempt],
        path: str,
        destination_id: str,
        handled: Handled,
        report: Report,
    ) -> None:
        if handled.attempt is not None:
            report.attempts.append((handled.attempt, handled.next_attempt_at))
            if handled.attempt.phase != "ping":  # a bid is not a sale
                self.distributor.saw(handled.attempt)
        report.changes += [(destination_id, change) for change in handled.changes]
        result = handled.result
        if result is None:  # parked: a retry or a hold; it comes back through ``retry``
            return
        known[path] = result
        doc = report.doc(result)
        state["known"][path] = doc
        if result.outcome.kind is OutcomeKind.SUCCESS and result.phase != "ping":
            state["accepted"][destination_id] = doc


def _new_state(lead: Lead, flow_id: str, run: int, accepted: dict[str, Any]) -> LeadState:
    return {
        "flow": flow_id,
        "run": run,
        "lead": lead.envelope,
        "known": {},
        "asked": [],
        "accepted": dict(accepted),
        "finished": None,
        "orders": {},  # plan path → the order a distribution step chose for this lead
    }


def _finished(
    state: LeadState, now: float, source: str = "", report: Report | None = None
) -> LeadState:
    """What is kept of a finished lead: who accepted it (never sent twice), when, and what
    its last records were, to write them again if the record that ended it comes again.
    The lead itself only when it may be dead-lettered (nobody took it)."""
    kept: LeadState = {"run": state["run"], "accepted": state["accepted"], "finished": now}
    if state.get("returned"):
        kept["returned"] = state["returned"]
    if report is not None and report.finished is not None:
        sold = report.finished.accepted
        kept["ending"] = {
            "source": source,
            "attempts": [report.doc(a) for a in report.finished.attempts],
            "events": [
                [report.doc(a), None if at is None else at.timestamp()] for a, at in report.attempts
            ],
            "lead": None if sold else state["lead"],
        }
    return kept
