"""A destination's desk: everything decided before and after one attempt at a destination.

It runs in the partition that owns the destination (work is keyed by destination id), so
its state there is the destination's whole state: caps, circuit, what it has accepted,
what waits for a retry. That state lives in four mappings (Faust tables in the worker,
plain dicts in tests):

- ``circuits``: destination → circuit state (streams/control/circuit.py)
- ``caps``: destination → counts per current window (streams/control/caps.py)
- ``delivered``: "destination|lead" → the accepted attempt: a lead seen again (a restart,
  a replay) is not sent to a destination that has accepted it
- ``parked``: "destination|lead|path" → a work item and when it is due: retries, leads
  held for business hours or an open circuit. A timer hands due items back (``due``).

``handle`` never sleeps on a recipient's behalf: what must wait is parked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streams import telemetry
from streams.control.admin import AdminState
from streams.control.capacity import CapacityBoard
from streams.control.caps import cap_exceeded, counted, counts_toward, full, usage
from streams.control.circuit import (
    CircuitState,
    admit,
    open_outcome,
    record,
    shut,
    worth_writing,
)
from streams.control.crowds import RECHECK_S, Crowds
from streams.control.due import DueIndex
from streams.control.messages import MessageError, WorkItem, attempt_from_dict, attempt_to_dict
from streams.control.retry import retry_delay
from streams.control.tables import forget_older
from streams.errors import StoppedWhileWaiting
from streams.model import CircuitChange, Lead, Outcome, OutcomeCategory, OutcomeKind
from streams.outcome import turn_not_in_time
from streams.stages.attempt import Attempt, ended_before_sending, not_sent
from streams.stages.routing import phase_at

# A lead waits for a spent quota this many times at most (hourly checks: three days),
# then its attempt counts as any other error's.
MAX_QUOTA_WAITS = 72
PAUSED = "Destination paused"  # the skip reason; who paused it and why are in ``raw``


def paused_outcome(paused: str) -> Outcome:
    """Not sent: an operator paused the destination (``paused``: who and why)."""
    return Outcome.skip(PAUSED, raw=paused)


DRAINED = "Waiting work drained"  # the same for an operator's drain
BID_EXPIRED = "Bid expired"  # an auction's post that waited past its bid's validity
MAX_PAUSE_HOLD_S = 7 * 86400.0  # a lead held for a pause is tried again after a week anyway

if TYPE_CHECKING:
    from streams.config import Destination

AttemptAt = Callable[[Lead, "Destination", int], Awaitable[Attempt]]
log = logging.getLogger(__name__)
KEY_SEPARATOR = "|"  # destination ids cannot hold it, so the first part is always the id


def owner_key(key: str) -> str:
    """The part of a table key that decides its partition: the destination id."""
    return key.split(KEY_SEPARATOR, 1)[0]


def lead_key(key: str) -> str:
    """The lead id of a "destination|lead[|path]" key: for tables in the lead's partition."""
    return key.split(KEY_SEPARATOR, 2)[1]


class Unremembered(dict[str, Any]):
    """``delivered`` for a desk whose caller remembers acceptances itself (the lead's state
    at home): nothing is kept here."""

    def __setitem__(self, key: str, value: Any) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Handled:
    """What came of one work item.

    ``attempt``: to write as a delivery event (None when the destination had accepted the
    lead already); ``next_attempt_at``: set when the item was parked for later;
    ``result``: the attempt the lead's routing goes on with (None while parked);
    ``changes``: the circuit's state changes on the way, in order (open -> half_open
    when a cool-down ended, then what the trial made of it)."""

    attempt: Attempt | None
    result: Attempt | None
    next_attempt_at: datetime | None = None
    changes: tuple[CircuitChange, ...] = ()


class DeliveryDesk:
    def __init__(
        self,
        destinations: Mapping[str, Destination],
        attempt_at: AttemptAt,
        *,
        circuits: MutableMapping[str, Any],
        caps: MutableMapping[str, Any],
        delivered: MutableMapping[str, Any],
        parked: MutableMapping[str, Any],
        clock: Callable[[], float] = time.time,
        draw: Callable[[float, float], float] = random.uniform,
        owner: Callable[[str], str] = owner_key,
        admin: AdminState | None = None,
        crowds: Crowds | None = None,
        capacity: CapacityBoard | None = None,
        turn_in: Callable[[str], float] | None = None,
    ) -> None:
        """``owner(key)``: the id whose partition holds a table key (the destination's by
        default; the lead's for a desk that delivers in the lead's partition); ``admin``:
        operators' pauses and circuit resets (streams/control/admin.py); ``crowds``:
        deliveries parked while their destination's queue is full (None: all queue);
        ``capacity``: capped destinations' room as last reported (an auction does not ping
        a buyer whose cap is full); ``turn_in(destination_id)``: seconds at least before a
        request to it would go (the sender's ``turn_in``: an auction does not ping a buyer
        whose turn comes after the ping's timeout)."""
        self._capacity = capacity
        self._turn_in = turn_in
        self._crowds = crowds
        self.admin = admin if admin is not None else AdminState()
        self._owner = owner
        self._destinations = destinations
        self._attempt_at = attempt_at
        self.circuits = circuits
        self.caps = caps
        self.delivered = delivered
        # A desk at a lead's home keeps nothing here: no table form of each acceptance.
        self._remembers = not isinstance(delivered, Unremembered)
        self.parked = parked
        self._due = DueIndex(
            parked,
            lambda value: float(value["due"]),
            owner,
            read_all=None if crowds is None else crowds.read_again,
        )
        self._unreadable: set[str] = set()  # parked keys already logged as unreadable
        # Parked keys whose records this worker is writing (``handing_back`` until
        # ``release`` or ``not_handed_back``): such a record read back is the parked item.
        self._handing_back: set[str] = set()
        self._clock = clock
        # Parked items of the owners this worker owns, as last counted by ``due`` (a metric).
        self.waiting = 0
        self._draw = draw
        # Cap reservations of deliveries in flight in this worker, and a signal for each
        # destination when one settles (a lead waiting for a slot may then have it).
        self._pending: dict[str, int] = {}
        self._settled: dict[str, asyncio.Event] = {}
        # Circuits as this worker knows them, with the table value each was read from or
        # last written as: a closed circuit's success counts are not written every time.
        self._live_circuits: dict[str, tuple[Any, CircuitState]] = {}
        self._working: set[str] = set()  # work keys being handled in this worker

    async def handle(self, item: WorkItem) -> Handled:
        key = _work_key(item)
        back = self._crowds is not None and self._crowds.back(item.destination_id, key)
        if key in self._working:
            # Asked again while this worker is on it (routing asks again for what is still
            # out when it sees a lead or an attempt a second time): the attempt under way
            # answers for both.
            return Handled(None, None)
        self._working.add(key)
        try:
            handled = await self._handle(item, back)
        finally:
            self._working.discard(key)
        phase = phase_at(item.path)
        if phase == "delivery":
            return handled
        # An auction's post: its events say so (billing still counts its success).
        return replace(
            handled,
            attempt=None if handled.attempt is None else replace(handled.attempt, phase=phase),
            result=None if handled.result is None else replace(handled.result, phase=phase),
        )

    async def _handle(self, item: WorkItem, back: bool = False) -> Handled:
        """``back``: let go for room in its destination's queue (``Crowds.back``)."""
        destination = self._destinations.get(item.destination_id)
        if destination is None:  # removed from the configuration while work for it waited
            gone = removed(item)
            return Handled(gone, gone)
        remembered = self.delivered.get(_delivered_key(item))
        if remembered is not None:  # accepted before: never sent twice
            return Handled(None, attempt_from_dict(remembered["attempt"]))
        if item.drained_by is not None:  # an operator ended what waited for it
            drained = Outcome.skip(DRAINED, raw=item.drained_by)
            return self._finish(item, not_sent(item.lead, destination, drained, item.number))
        now = self._clock()
        if item.deadline is not None:  # an auction's post, bound to its bid
            if now > item.deadline:  # the bid ran out
                expired = Outcome.skip(BID_EXPIRED)
                return self._finish(item, not_sent(item.lead, destination, expired, item.number))
            turn = self._turn(destination.id)
            if now + turn > item.deadline:
                # The buyer's rate-limit window is spent until after its bid: the auction
                # moves on now, not when the bid has run out and every other bid with it.
                late = turn_not_in_time(turn)
                return self._finish(item, not_sent(item.lead, destination, late, item.number))
        paused = self.admin.pause_reason(destination.id)
        if paused is not None:
            return self._paused(item, destination, paused, now)
        schedule = destination.schedule
        if schedule is not None and schedule.outside == "hold" and not item.has_fallback:
            moment = datetime.fromtimestamp(now, UTC)
            opens = None if schedule.is_open(moment) else schedule.next_open(moment)
            if opens is not None and opens.timestamp() - now <= schedule.max_hold_s:
                return self._park(item, destination, opens.timestamp(), "Outside business hours")
        if self._crowds is not None and self._crowds.must_wait(destination.id, back):
            # Its destination has a full queue: the lead waits in the table, its record
            # acknowledged, and the agent takes leads for other destinations meanwhile.
            self._store_parked(item, now + RECHECK_S, crowded=True)
            return Handled(None, None)
        circuit = self._circuit(destination.id)
        allowed, admitted = admit(circuit, destination.circuit, now)
        self._keep_circuit(destination.id, circuit, admitted)
        trial: tuple[CircuitChange, ...] = ()
        if circuit.state == "open" and admitted.state == "half_open":
            trial = (CircuitChange("open", "half_open", "Cool-down over: trial deliveries"),)
        if not allowed:
            return self._circuit_open(item, destination, admitted, now, trial)

        try:
            if destination.caps is None:
                attempt = await self._attempt_at(item.lead, destination, item.number)
            else:
                window = await self._reserve(destination)
                if window is not None:
                    outcome = cap_exceeded(window)
                    finished = self._finish(
                        item, not_sent(item.lead, destination, outcome, item.number)
                    )
                    return replace(finished, changes=trial)
                made: Attempt | None = None
                try:
                    made = await self._attempt_at(item.lead, destination, item.number)
                finally:
                    self._release(destination, made)
                attempt = made
        except StoppedWhileWaiting:  # paused, or its circuit opened, while it waited
            now = self._clock()
            paused = self.admin.pause_reason(destination.id)
            if paused is not None:
                return replace(self._paused(item, destination, paused, now), changes=trial)
            return self._circuit_open(item, destination, self._circuit(destination.id), now, trial)

        now = self._clock()
        before = self._circuit(destination.id)
        circuit, change = record(before, destination.circuit, attempt.outcome, now)
        self._keep_circuit(destination.id, before, circuit)
        changes = trial + ((change,) if change is not None else ())
        quota_s = attempt.outcome.quota_s
        if quota_s is not None and not item.has_fallback and item.quota_waits < MAX_QUOTA_WAITS:
            # Not this lead's try: it waits for the reset with its attempts untouched.
            waiting = replace(item, quota_waits=item.quota_waits + 1)
            self._store_parked(waiting, now + quota_s)
            return Handled(attempt, None, datetime.fromtimestamp(now + quota_s, UTC), changes)
        delay = retry_delay(destination.retry, attempt.outcome, item.number, self._draw)
        if delay is not None and (item.deadline is None or now + delay <= item.deadline):
            parked = replace(item, number=item.number + 1)
            self._store_parked(parked, now + delay)
            next_at = datetime.fromtimestamp(now + delay, UTC)
            return Handled(attempt, None, next_at, changes)
        finished = self._finish(item, attempt)
        return replace(finished, changes=changes) if changes else finished

    def _paused(self, item: WorkItem, destination: Destination, paused: str, now: float) -> Handled:
        """An operator paused the destination (``paused``: who and why). A waterfall moves
        on; a lead with nowhere else to go waits for the resume (``due`` hands it back as
        soon as the pause is lifted)."""
        if item.has_fallback:
            skipped = paused_outcome(paused)
            return self._finish(item, not_sent(item.lead, destination, skipped, item.number))
        return self._park(
            item, destination, now + MAX_PAUSE_HOLD_S, PAUSED, paused=True, raw=paused
        )

    def _circuit_open(
        self,
        item: WorkItem,
        destination: Destination,
        circuit: CircuitState,
        now: float,
        trial: tuple[CircuitChange, ...],
    ) -> Handled:
        """The destination's circuit does not let this lead through: it waits for the
        circuit (a spent quota, or ``when_open: park``) or ends "circuit open"."""
        quota = circuit.until > now  # a vendor's spent quota: its leads wait for it
        if (quota or destination.circuit.when_open == "park") and not item.has_fallback:
            until = circuit.reopens_at(destination.circuit)
            # An operator's reset lets it go at once (``_released``).
            return self._park(item, destination, until, open_outcome().reason, circuit=True)
        finished = self._finish(item, not_sent(item.lead, destination, open_outcome(), item.number))
        return replace(finished, changes=trial)

    def _turn(self, destination_id: str) -> float:
        """Seconds at least before a request to the destination would go (0: not known)."""
        return self._turn_in(destination_id) if self._turn_in is not None else 0.0

    def lets_through(self, destination: Destination) -> bool:
        """Asked again (by the HTTP sender) when a delivery that waited for one of the
        destination's in-flight slots has it: False when its circuit opened or an operator
        paused it meanwhile."""
        if destination.id in self.admin.paused:
            return False
        if not destination.circuit.enabled:  # no table read for a circuit that never opens
            return True
        return not shut(self._circuit(destination.id), destination.circuit, self._clock())

    async def ping(self, item: WorkItem, timeout_s: float) -> Handled:
        """A ping-post auction's ping: the buyer's partial lead to its ping URL, answered
        within ``timeout_s`` or not at all. Its circuit, hours, being enabled and its caps
        as last reported apply (a buyer that could not take the lead is not pinged);
        nothing is counted toward its caps, parked for a retry or remembered: a ping is not
        a delivery."""
        destination = self._destinations.get(item.destination_id)
        if destination is None or destination.ping is None:
            gone = replace(removed(item), phase="ping")
            return Handled(gone, gone)

        def refused() -> Attempt:
            """Not pinged: paused, else its circuit is open (at the door or after a wait)."""
            paused = self.admin.pause_reason(destination.id)
            stopped = open_outcome() if paused is None else paused_outcome(paused)
            return not_sent(item.lead, destination, stopped)

        now = self._clock()
        allowed, _ = admit(self._circuit(destination.id), destination.circuit, now)
        # Its cap windows only when it could be pinged at all.
        filled = None if not allowed else self._full_by_report(destination, now)
        if not allowed or destination.id in self.admin.paused:
            attempt = refused()
        elif filled is not None:  # it could not take the lead: not pinged
            attempt = not_sent(item.lead, destination, cap_exceeded(filled))
        elif (turn := self._turn(destination.id)) >= timeout_s:
            # Its rate-limit window is spent (it said so, or this worker's own per-hour or
            # per-day allowance): the ping would only wait out the auction's timeout, its
            # place in the queue taken from the buyer's posts.
            attempt = not_sent(item.lead, destination, turn_not_in_time(turn))
        else:
            try:
                async with asyncio.timeout(timeout_s):
                    attempt = await self._attempt_at(item.lead, destination.pinged, 1)
            except StoppedWhileWaiting:
                attempt = refused()
            except TimeoutError:
                late = Outcome.error(
                    "Ping timed out", retryable=False, category=OutcomeCategory.TIMEOUT
                )
                attempt = not_sent(item.lead, destination, late)
        attempt = replace(attempt, phase="ping")
        return Handled(attempt, attempt)

    def _full_by_report(self, destination: Destination, now: float) -> str | None:
        """Its full cap window as the worker that counts it last reported (within
        ``CAP_REPORT_S``); the count at the post is the exact one."""
        if destination.caps is None or self._capacity is None:
            return None
        windows = destination.caps.limits(datetime.fromtimestamp(now, UTC))
        return self._capacity.full_window(destination.id, windows)

    def cap_usage(self, owns: Callable[[str], bool]) -> dict[str, list[tuple[str, int, int]]]:
        """Each capped destination this worker counts for: its windows, used and cap."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        return {
            destination.id: usage(self.caps.get(destination.id) or {}, destination.caps, now)
            for destination in self._destinations.values()
            if destination.caps is not None and owns(destination.id)
        }

    def due(self, owns: Callable[[str], bool]) -> list[tuple[str, Any, WorkItem]]:
        """Parked items whose time has come, among the owners this worker owns: each with
        its key and table value (``release`` takes them). Only the due ones are read
        (``DueIndex``), and all of them again after an operator's action."""
        found = []
        for key, value in self._due_entries(owns):
            try:
                item = WorkItem.from_json(str(value["item"]).encode())
            except (MessageError, KeyError, TypeError) as exc:
                # Left where it is for an operator to see (nothing lost), and the others
                # go on: one entry that cannot be read must not hold every parked lead.
                if key not in self._unreadable:
                    self._unreadable.add(key)
                    name = type(exc).__name__
                    log.error("parked entry %s cannot be read (%s): left in place", key, name)
                continue
            # Parked before a drain of its destination: it comes back now, to end.
            drained = self.admin.drained_since(item.destination_id, value.get("parked_at", 0.0))
            found.append(
                (key, value, item if drained is None else replace(item, drained_by=drained))
            )
        self.waiting = self._due.waiting
        return found

    def _due_entries(self, owns: Callable[[str], bool]) -> list[tuple[str, Any]]:
        """Due by time, let go early, and parked for room in a queue that has room now."""
        entries = self._due.due(owns, self._clock(), self.admin.version, self._early)
        if self._crowds is None:
            return entries
        seen = {key for key, _ in entries}
        for destination_id, key in self._crowds.with_room():
            value = self.parked.get(key)
            if value is None or value.get("crowded") != destination_id:
                self._crowds.gone(destination_id, key)  # handed back another way
            elif key not in seen:
                entries.append((key, value))
        return entries

    def _early(self, key: str, value: Any) -> bool:
        """Let go before its time: drained, or held for a pause or a circuit since lifted."""
        drained = self.admin.drained_since(owner_key(key), value.get("parked_at", 0.0))
        return drained is not None or self._released(value)

    def _released(self, parked: dict[str, Any]) -> bool:
        """Held for a pause that has been lifted, or for an open circuit that an operator
        has reset since."""
        paused = parked.get("paused")
        if paused is not None:
            return paused not in self.admin.paused
        circuit = parked.get("circuit")
        reset_at = self.admin.circuits_reset_at.get(circuit) if circuit is not None else None
        return reset_at is not None and reset_at >= parked["parked_at"]

    def handing_back(self, key: str, value: Any) -> None:
        """A parked item's record is about to be written (``release`` once it is stored,
        ``not_handed_back`` if it could not be)."""
        self._handing_back.add(key)
        crowded = value.get("crowded")
        if crowded is not None and self._crowds is not None:
            self._crowds.let_go(crowded, key)

    def not_handed_back(self, key: str, value: Any) -> None:
        self._handing_back.discard(key)
        crowded = value.get("crowded")
        if crowded is not None and self._crowds is not None and self.parked.get(key) == value:
            self._crowds.kept(crowded, key)

    def release(self, key: str, value: Any) -> None:
        """Forget a parked item handed back: unless it was parked again meanwhile."""
        self._handing_back.discard(key)
        if self.parked.get(key) == value:
            self._due.remove(key)

    def is_parked(self, item: WorkItem) -> bool:
        return _work_key(item) in self.parked

    def superseded(self, item: WorkItem) -> bool:
        """A record its delivery's parked copy answers for (not to be made):

        - A handed-back item whose record was written twice: a worker stopped after writing
          a batch and before taking its items from the table, and the next worker handed
          them back again. The copy handled second is stale once the delivery has been
          parked again since (for its next attempt, or its next quota wait): made, it would
          repeat an attempt the recipient has had.
        - The same attempt asked for again (its record read again after a restart, before
          the table's first whole read, or a repeat) while it waits parked for room: the
          parked copy goes in its turn; made now, the lead would pass every older one. Not
          a record this worker is handing back (``handing_back`` until ``release``), even
          one read after its place was given up (``BACK_WITHIN_S``): dropped, it would be
          lost when its entry is released. One written by a worker stopped before it
          released the entry is dropped, and the entry, still there, goes on in its turn."""
        key = _work_key(item)
        value = self.parked.get(key)
        if value is None:
            return False
        try:
            parked = WorkItem.from_json(str(value["item"]).encode())
        except (MessageError, KeyError, TypeError):
            return False  # ``due`` says what is wrong with it
        ahead, this = (parked.number, parked.quota_waits), (item.number, item.quota_waits)
        if ahead != this:
            return ahead > this
        return value.get("crowded") is not None and key not in self._handing_back

    def forget_delivered(self, older_than_s: float, owns: Callable[[str], bool]) -> int:
        """Drop remembered acceptances older than ``older_than_s``; how many were dropped."""
        horizon = self._clock() - older_than_s
        return forget_older(
            self.delivered, horizon, lambda value: value["at"], lambda key: owns(self._owner(key))
        )

        # ── inside ─────────────────────────────────────────────────────────────

    def _circuit(self, destination_id: str) -> CircuitState:
        """The live state: this worker's own when the table still holds what it last
        wrote, else the table's (another worker owned the partition meanwhile)."""
        stored = self.circuits.get(destination_id)
        live = self._live_circuits.get(destination_id)
        # Equal, not identical: a store that deserializes (RocksDB) returns a new dict.
        if live is not None and live[0] == stored:
            state = live[1]
        else:
            state = CircuitState() if stored is None else CircuitState.from_dict(stored)
            self._live_circuits[destination_id] = (stored, state)
        reset_at = self.admin.circuits_reset_at.get(destination_id)
        if reset_at is not None and state.state != "closed" and state.opened_at <= reset_at:
            state = CircuitState()  # an operator reset it after it opened
            self._live_circuits[destination_id] = (stored, state)
        return state

    def _keep_circuit(self, destination_id: str, before: CircuitState, after: CircuitState) -> None:
        """After ``_circuit`` gave ``before`` (with no wait in between): keep ``after``."""
        stored = self._live_circuits[destination_id][0]  # what the table holds
        if worth_writing(before, after):
            stored = self.circuits[destination_id] = after.as_dict()
        self._live_circuits[destination_id] = (stored, after)

    def _finish(self, item: WorkItem, attempt: Attempt) -> Handled:
        if self._remembers and attempt.outcome.kind is OutcomeKind.SUCCESS:
            self.delivered[_delivered_key(item)] = {
                "at": self._clock(),
                "attempt": attempt_to_dict(attempt),
            }
        return Handled(attempt, attempt)

    def _park(
        self,
        item: WorkItem,
        destination: Destination,
        until: float,
        why: str,
        paused: bool = False,
        raw: str | None = None,
        circuit: bool = False,
    ) -> Handled:
        """Hold ``item`` until ``until`` (or, ``paused``, until its destination is resumed;
        ``circuit``, until its circuit is reset); its event says why and when it comes back
        at the latest."""
        self._store_parked(item, until, paused, circuit)
        held = not_sent(item.lead, destination, Outcome.skip(why, raw=raw), item.number)
        return Handled(held, None, datetime.fromtimestamp(until, UTC))

    def _store_parked(
        self,
        item: WorkItem,
        due: float,
        paused: bool = False,
        circuit: bool = False,
        crowded: bool = False,
    ) -> None:
        traced = replace(item, traceparent=telemetry.current_headers().get("traceparent"))
        value: dict[str, Any] = {
            "due": due,
            "item": traced.to_json().decode(),
            "parked_at": self._clock(),  # a drain or a circuit reset after it releases it
        }
        if paused:
            value["paused"] = item.destination_id
        if circuit:
            value["circuit"] = item.destination_id
        key = _work_key(item)
        if crowded and self._crowds is not None:
            value["crowded"] = item.destination_id
            self._crowds.parked(item.destination_id, key)
        self._due.put(key, value)

    async def _reserve(self, destination: Destination) -> str | None:
        """Take a cap slot for one delivery; the full window's name if there is none.

        Deliveries in flight hold slots. When only they fill the cap, wait for one to settle:
        a rejected one frees its slot, so the cap is exact either way."""
        policy = destination.caps
        assert policy is not None
        while True:
            moment = datetime.fromtimestamp(self._clock(), UTC)
            counts = self.caps.get(destination.id) or {}
            window = full(counts, policy, moment)
            if window is not None:
                return window
            pending = self._pending.get(destination.id, 0)
            if full(counts, policy, moment, pending) is None:
                self._pending[destination.id] = pending + 1
                return None
            await self._settled.setdefault(destination.id, asyncio.Event()).wait()

    def _release(self, destination: Destination, attempt: Attempt | None) -> None:
        policy = destination.caps
        assert policy is not None
        self._pending[destination.id] -= 1
        if attempt is not None and counts_toward(policy, attempt):
            moment = datetime.fromtimestamp(self._clock(), UTC)
            counts = self.caps.get(destination.id) or {}
            self.caps[destination.id] = counted(counts, policy, moment)
        settled = self._settled.pop(destination.id, None)
        if settled is not None:
            settled.set()


def removed(item: WorkItem) -> Attempt:
    return unsent(item, Outcome.skip("Destination removed", category=OutcomeCategory.NOT_SENT))


def unsent(item: WorkItem, outcome: Outcome) -> Attempt:
    """An attempt that ended before any request, known only by its work item."""
    return ended_before_sending(item.lead, item.destination_id, "", outcome, item.number)


def _delivered_key(item: WorkItem) -> str:
    return KEY_SEPARATOR.join((item.destination_id, item.lead.id))


def _work_key(item: WorkItem) -> str:
    """One delivery a lead's plan asks for: destination, lead and step."""
    return KEY_SEPARATOR.join((item.destination_id, item.lead.id, item.path))
