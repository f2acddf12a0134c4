"""A destination's desk with plain dicts for tables, an explicit clock and scripted attempts:
caps exact under concurrency, remembered acceptances, circuits, parking for retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.config import Destination
from streams.control.crowds import BACK_WITHIN_S, RECHECK_S, Crowds
from streams.control.desk import AttemptAt, DeliveryDesk, Handled
from streams.control.messages import WorkItem
from streams.control.tables import Owned
from streams.errors import StoppedWhileWaiting
from streams.model import Lead, Outcome
from streams.stages.attempt import Attempt, not_sent
from tests.unit.clock import Clock

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()


def destination(**settings: Any) -> Destination:
    return Destination.model_validate({"id": "buyer", "url": "http://127.0.0.1:9/x", **settings})


def item(lead_id: str, number: int = 1, has_fallback: bool = False) -> WorkItem:
    return WorkItem(Lead(lead_id, {"id": lead_id}), "buyer", "plan", number, has_fallback)


class Recipient:
    """Answers every attempt with ``answer(lead_id)``, after letting others run."""

    def __init__(self, answer: Callable[[str], Outcome] = lambda _: Outcome.success()) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int]] = []
        # What the sender says when a delivery's wait for its slot ends with the destination
        # taking no leads (paused, or its circuit opened): nothing is sent.
        self.stops_while_waiting = False

    async def __call__(self, lead: Lead, dest: Destination, number: int) -> Attempt:
        if self.stops_while_waiting:
            raise StoppedWhileWaiting
        self.calls.append((lead.id, number))
        await asyncio.sleep(0)  # others may start meanwhile: concurrency is real
        sent = not_sent(lead, dest, self.answer(lead.id), number)
        return replace(sent, request=object())  # type: ignore[arg-type]  # "a request went out"


def desk(dest: Destination, recipient: AttemptAt, clock: Clock | None = None) -> DeliveryDesk:
    return DeliveryDesk(
        {dest.id: dest},
        recipient,
        circuits={},
        caps={},
        delivered={},
        parked={},
        clock=clock or Clock(NOW),
        draw=lambda low, high: high,
    )


async def test_a_cap_is_exact_with_many_deliveries_in_flight() -> None:
    rejected = {f"L{i}" for i in range(0, 40, 4)}  # a quarter refused: their slots come back
    recipient = Recipient(
        lambda lead_id: Outcome.failure("No") if lead_id in rejected else Outcome.success()
    )
    buyer = desk(destination(caps={"day": 50}, retry={"max_attempts": 1}), recipient)
    handled = await asyncio.gather(*(buyer.handle(item(f"L{i}")) for i in range(200)))
    reasons = [h.result.outcome.reason for h in handled if h.result is not None]
    assert reasons.count("Accepted") == 50
    assert reasons.count("No") == len(rejected)
    assert reasons.count("Cap exceeded") == 200 - 50 - len(rejected)
    assert buyer.caps["buyer"] == {"day 2026-11-23": 50}


async def test_counting_attempts_counts_rejections_too() -> None:
    recipient = Recipient(lambda _: Outcome.failure("No"))
    buyer = desk(destination(caps={"hour": 3, "count": "attempts"}), recipient)
    handled = [await buyer.handle(item(f"L{i}")) for i in range(5)]
    assert [h.attempt.outcome.reason for h in handled if h.attempt] == ["No"] * 3 + [
        "Cap exceeded"
    ] * 2
    assert handled[3].attempt is not None and handled[3].attempt.outcome.raw == "hour 2026-11-23T12"


async def test_an_accepted_lead_is_never_sent_twice() -> None:
    recipient = Recipient()
    buyer = desk(destination(), recipient)
    first = await buyer.handle(item("L1"))
    again = await buyer.handle(item("L1"))  # a restart or a replay brings it back
    assert recipient.calls == [("L1", 1)]
    assert again.attempt is None  # no second delivery event
    assert again.result is not None and first.result is not None
    assert (again.result.outcome.kind, again.result.outcome.category) == (
        first.result.outcome.kind,
        first.result.outcome.category,
    )


async def test_a_parked_entry_that_cannot_be_read_holds_no_other(caplog: Any) -> None:
    clock = Clock(NOW)
    recipient = Recipient(lambda _: Outcome.error("Recipient error (HTTP 503)", retryable=True))
    buyer = desk(destination(circuit={"enabled": False}), recipient, clock)
    await buyer.handle(item("L1"))
    buyer.parked["buyer|BAD|plan"] = {"due": 0.0, "item": "not a work item"}
    buyer.parked["buyer|WORSE|plan"] = {"item": None}  # no time, no item
    clock.now += 1.0
    everything = Owned(frozenset({0}), 1)
    for _ in range(3):
        assert [again.lead.id for _, _, again in buyer.due(everything)] == ["L1"]
    assert "buyer|BAD|plan" in buyer.parked  # left for an operator to see: nothing lost
    unreadable = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(unreadable) == 2  # each said once


async def test_a_retryable_outcome_is_parked_and_comes_back_when_due() -> None:
    clock = Clock(NOW)
    recipient = Recipient(lambda _: Outcome.error("Recipient error (HTTP 503)", retryable=True))
    buyer = desk(destination(circuit={"enabled": False}), recipient, clock)
    handled = await buyer.handle(item("L1"))
    assert handled.result is None  # the lead's routing waits
    assert handled.next_attempt_at == datetime.fromtimestamp(NOW + 1.0, UTC)
    assert buyer.due(lambda _: True) == []
    clock.now += 1.0
    ((key, value, again),) = buyer.due(lambda _: True)
    assert (key, again.number) == ("buyer|L1|plan", 2)
    assert buyer.due(lambda _: False) == []  # another worker owns the destination now
    buyer.release(key, {**value, "due": 0.0})  # parked again meanwhile: stays
    assert buyer.is_parked(again)
    buyer.release(key, value)  # handed back as it was: gone
    assert not buyer.is_parked(again)
    for number, wait in ((2, 2.0), (3, 4.0), (4, 8.0)):
        handled = await buyer.handle(replace(again, number=number))
        assert handled.next_attempt_at == datetime.fromtimestamp(clock.now + wait, UTC)
    last = await buyer.handle(replace(again, number=5))
    assert last.next_attempt_at is None and last.result is not None  # retries exhausted
    assert last.result.outcome.retryable


async def test_a_handed_back_items_copy_is_stale_once_it_is_parked_again() -> None:
    """What the work agent and the lead's home ask of a due item's record before making
    it (a worker may have written it twice): stale only if parked since for later."""
    clock = Clock(NOW)
    recipient = Recipient(lambda _: Outcome.error("Recipient error (HTTP 503)", retryable=True))
    buyer = desk(destination(circuit={"enabled": False}), recipient, clock)
    first = item("L1")
    assert not buyer.superseded(first)  # nothing parked: a first attempt, or released
    await buyer.handle(first)  # parked for attempt 2
    clock.now += 1.0
    ((_, _, second),) = buyer.due(lambda _: True)
    assert not buyer.superseded(second)  # the record of what is parked
    assert buyer.superseded(first)  # an older copy
    waited = replace(second, quota_waits=1)
    buyer._store_parked(waited, clock.now + 60)  # waits for its quota since
    assert buyer.superseded(second) and not buyer.superseded(waited)


async def test_retry_after_sets_the_next_attempt() -> None:
    asked = replace(Outcome.error("Rate limited", retryable=True), retry_after_s=120.0)
    buyer = desk(destination(), Recipient(lambda _: asked))
    handled = await buyer.handle(item("L1"))
    assert handled.next_attempt_at == datetime.fromtimestamp(NOW + 120.0, UTC)


async def test_an_auctions_post_is_not_retried_or_sent_past_its_bids_validity() -> None:
    """A post carries its bid's end (``deadline``): a retry that would come after it is not
    parked (the auction moves to the next bid), and a post handled after it is not sent."""
    clock = Clock(NOW)
    recipient = Recipient(lambda _: Outcome.error("Recipient error (HTTP 503)", retryable=True))
    buyer = desk(destination(circuit={"enabled": False}), recipient, clock)
    post = replace(item("L1", has_fallback=True), deadline=NOW + 1.5)
    first = await buyer.handle(post)
    assert first.next_attempt_at == datetime.fromtimestamp(NOW + 1.0, UTC)  # in time
    clock.now += 1.0
    ((_, _, again),) = buyer.due(lambda _: True)
    assert again.deadline == NOW + 1.5  # kept while parked
    second = await buyer.handle(again)  # the next retry (2 s) would be past the bid
    assert second.next_attempt_at is None and second.result is not None
    assert second.result.outcome.reason == "Recipient error (HTTP 503)"
    clock.now += 1.0
    late = await buyer.handle(replace(item("L2", has_fallback=True), deadline=NOW + 1.5))
    assert late.result is not None and late.result.outcome.reason == "Bid expired"
    assert recipient.calls == [("L1", 1), ("L1", 2)]  # L2 never sent
    assert WorkItem.from_json(post.to_json()).deadline == NOW + 1.5


async def test_an_open_circuit_skips_or_parks_and_a_waterfall_always_moves_on() -> None:
    clock = Clock(NOW)
    failing = Recipient(lambda _: Outcome.error("Connection failed", retryable=False))
    circuit = {"consecutive_errors": 2, "cool_down_s": 30}
    buyer = desk(destination(circuit=circuit), failing, clock)
    await buyer.handle(item("L1"))
    opened = await buyer.handle(item("L2"))
    assert [change.after for change in opened.changes] == ["open"]
    skipped = await buyer.handle(item("L3"))
    assert skipped.result is not None
    assert skipped.result.outcome.reason == "System unavailable (circuit open)"
    assert len(failing.calls) == 2  # nothing sent while open

    parking = desk(destination(circuit={**circuit, "when_open": "park"}), failing, clock)
    parking.circuits["buyer"] = buyer.circuits["buyer"]
    held = await parking.handle(item("L4"))
    assert held.result is None and held.next_attempt_at == datetime.fromtimestamp(NOW + 30, UTC)
    in_waterfall = await parking.handle(item("L5", has_fallback=True))
    assert in_waterfall.result is not None  # a next destination is waiting: skip, not park


async def test_a_lead_refused_after_its_wait_frees_its_cap_slot_and_ends_circuit_open() -> None:
    clock = Clock(NOW)
    circuit = {"consecutive_errors": 1, "cool_down_s": 30}
    failing = Recipient(lambda _: Outcome.error("Connection failed", retryable=False))
    capped = destination(circuit=circuit, caps={"day": 5})
    buyer = desk(capped, failing, clock)
    assert buyer.lets_through(capped)
    await buyer.handle(item("L1"))  # opens it
    assert not buyer.lets_through(capped)
    clock.now += 30  # the cool-down is over: a trial may go
    assert buyer.lets_through(capped)

    recipient = Recipient()
    recipient.stops_while_waiting = True
    waited = desk(capped, recipient, clock)
    handled = await waited.handle(item("L2"))
    assert handled.result is not None and handled.attempt is not None
    assert handled.result.outcome.reason == "System unavailable (circuit open)"
    assert handled.attempt.request is None  # nothing went out
    recipient.stops_while_waiting = False  # its cap slot was given back: five more fit
    reasons = [(await waited.handle(item(f"M{n}"))).result for n in range(6)]
    assert [r.outcome.reason for r in reasons if r is not None] == ["Accepted"] * 5 + [
        "Cap exceeded"
    ]


async def test_a_lead_paused_while_it_waits_for_its_slot_is_skipped_or_held() -> None:
    clock = Clock(NOW)
    capped = destination(caps={"day": 1})
    at = datetime.fromtimestamp(NOW, UTC)
    pause = {"destination_id": "buyer", "action": "pause", "by": "al", "reason": "audit", "at": at}
    accepting = Recipient()
    pauses = [pause, pause]  # one for each of the first two leads

    async def paused_meanwhile(lead: Lead, dest: Destination, number: int) -> Attempt:
        if not pauses:
            return await accepting(lead, dest, number)
        buyer.admin.apply(pauses.pop())  # an operator pauses it while this lead waits for a slot
        assert not buyer.lets_through(dest)
        raise StoppedWhileWaiting  # what the sender says when the wait ends so

    buyer = desk(capped, paused_meanwhile, clock)
    assert buyer.lets_through(capped)
    skipped = await buyer.handle(item("L1", has_fallback=True))
    assert skipped.result is not None and skipped.attempt is not None
    assert skipped.result.outcome.reason == "Destination paused"
    assert skipped.result.outcome.raw == "paused by al: audit"
    assert skipped.attempt.request is None  # nothing went out
    buyer.admin.apply({**pause, "action": "resume"})
    held = await buyer.handle(item("L2"))
    assert held.result is None and buyer.is_parked(item("L2"))
    assert held.attempt is not None and held.attempt.outcome.reason == "Destination paused"
    assert "buyer" in buyer.admin.paused
    buyer.admin.apply({**pause, "action": "resume"})  # neither took the day's one slot
    accepted = await buyer.handle(item("L3"))
    assert accepted.result is not None and accepted.result.outcome.reason == "Accepted"
    assert accepting.calls == [("L3", 1)]


class CountingTable(dict[str, Any]):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


async def test_a_closed_circuit_is_written_when_it_matters_not_per_delivery() -> None:
    clock = Clock(NOW)
    outcomes = iter([Outcome.success()] * 100 + [Outcome.error("Timeout", retryable=False)])
    buyer = desk(destination(retry={"max_attempts": 1}), Recipient(lambda _: next(outcomes)), clock)
    buyer.circuits = table = CountingTable()
    for n in range(100):
        clock.now = NOW + n * 0.01  # one bucket
        await buyer.handle(item(f"L{n}"))
    assert table.writes == 1  # the bucket's first count; the other 99 wait in memory
    await buyer.handle(item("L-error"))
    assert table.writes == 2
    # What the table holds is what a worker taking the partition over would start from.
    assert table["buyer"]["consecutive"] == 1
    assert table["buyer"]["buckets"] == [[NOW - NOW % 10, 101, 1]]


async def test_a_circuit_written_by_another_worker_replaces_what_this_one_had() -> None:
    failing = Recipient(lambda _: Outcome.error("Connection failed", retryable=False))
    circuit = {"consecutive_errors": 2, "cool_down_s": 30}
    first = desk(destination(circuit=circuit), Recipient())
    await first.handle(item("L1"))  # closed, known to this worker
    # Meanwhile the partition was another worker's, whose recipient kept failing.
    second = desk(destination(circuit=circuit), failing)
    second.circuits = first.circuits
    await second.handle(item("L2"))
    await second.handle(item("L3"))
    # Back with the first worker: the table's state wins over what it remembered.
    skipped = await first.handle(item("L4"))
    assert skipped.result is not None
    assert skipped.result.outcome.reason == "System unavailable (circuit open)"


async def test_an_ask_repeated_while_the_first_is_under_way_is_dropped() -> None:
    recipient = Recipient()
    buyer = desk(destination(), recipient)
    first, repeat = await asyncio.gather(buyer.handle(item("L1")), buyer.handle(item("L1")))
    assert first.result is not None and first.result.outcome.reason == "Accepted"
    assert (repeat.attempt, repeat.result) == (None, None)  # nothing sent, nothing reported
    assert recipient.calls == [("L1", 1)]
    # Once it is done, the same ask is answered from what was remembered, not sent again.
    later = await buyer.handle(item("L1"))
    assert later.result is not None and later.attempt is None
    assert recipient.calls == [("L1", 1)]


async def test_outside_business_hours_a_held_lead_waits_for_the_opening() -> None:
    clock = Clock(NOW)
    clock.now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC).timestamp()  # Monday 06:00 UTC
    schedule = {"timezone": "UTC", "hours": ["09:00-17:00"], "outside": "hold"}
    buyer = desk(destination(schedule=schedule), Recipient(), clock)
    held = await buyer.handle(item("L1"))
    assert held.next_attempt_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert held.attempt is not None and held.attempt.outcome.reason == "Outside business hours"


def test_a_work_item_that_is_not_json_is_a_typed_error() -> None:
    from streams.control.messages import MessageError

    with pytest.raises(MessageError, match="work item"):
        WorkItem.from_json(b'{"lead": 1}')


async def test_a_spent_quota_closes_the_destination_until_it_resets_and_spends_no_attempt() -> None:
    """issue #17: a vendor's daily quota parks the destination's work until the reset,
    instead of burning retries (5 tries in seconds, then a dead letter)."""
    from streams.outcome import quota_spent

    clock = Clock(NOW)
    spent = Recipient(lambda _: quota_spent("HubSpot DAILY", None, 3600.0))
    buyer = desk(destination(), spent, clock)
    first = await buyer.handle(item("L1", number=2))
    assert [(c.before, c.after, c.reason) for c in first.changes] == [
        ("closed", "open", "Quota spent (HubSpot DAILY)")
    ]
    reset = datetime.fromtimestamp(NOW + 3600, UTC)
    assert first.result is None and first.next_attempt_at == reset
    # Every other lead waits for the reset too, without a request.
    second = await buyer.handle(item("L2"))
    assert second.result is None and second.next_attempt_at == reset
    assert len(spent.calls) == 1
    # In a waterfall a lead moves on instead.
    moving = await buyer.handle(item("L3", has_fallback=True))
    assert moving.result is not None and moving.result.outcome.reason.startswith("System")
    # At the reset: the lead comes back with the attempt number it had, not one more.
    assert buyer.due(lambda _: True) == []
    clock.now += 3600
    due = {again.lead.id: again for _, _, again in buyer.due(lambda _: True)}
    assert (due["L1"].number, due["L1"].quota_waits) == (2, 1)
    assert due["L2"].number == 1
    spent.answer = lambda _: Outcome.success()
    trial = await buyer.handle(due["L1"])
    assert trial.result is not None and trial.result.outcome.reason == "Accepted"
    assert [(c.before, c.after) for c in trial.changes][-1] == ("half_open", "closed")


async def test_past_a_full_queue_deliveries_wait_in_the_table_and_go_on_oldest_first() -> None:
    """Two deliveries may wait in memory for the destination's turn; the next ones are
    parked (no event, no attempt) and let go as the queue has room: first come, first
    served, new ones behind the parked ones."""
    queued: dict[str, int] = {"buyer": 0}
    recipient = Recipient()
    clock = Clock(NOW)
    buyer = DeliveryDesk(
        {"buyer": destination()},
        recipient,
        circuits={},
        caps={},
        delivered={},
        parked={},
        clock=clock,
        crowds=Crowds(queued.__getitem__, limit=2, clock=clock),
    )
    everything = Owned(frozenset({0}), 1)
    queued["buyer"] = 2  # the sender has two waiting for a slot
    for lead_id in ("L1", "L2", "L3"):
        handled = await buyer.handle(item(lead_id))
        assert (handled.attempt, handled.result, handled.next_attempt_at) == (None, None, None)
    assert recipient.calls == []
    assert buyer.due(everything) == []  # no room yet
    queued["buyer"] = 0  # the two went out: room for two more
    queued_after_the_room = await buyer.handle(item("L4"))
    assert queued_after_the_room.result is None  # older ones wait: it goes behind them
    released = buyer.due(everything)
    assert [again.lead.id for _, _, again in released] == ["L1", "L2"]
    for key, value, _ in released:
        buyer.handing_back(key, value)  # their records are being written
    (_, _, first_back), (_, _, second_back) = released
    # A record may be read back before the broker's confirmation of its write reaches us:
    # it is on its way all the same, and is sent (parked again, it would be first in line
    # again next time, and again: measured in a loaded CI, 50 of 200 in two minutes).
    handled = await buyer.handle(first_back)
    assert handled.result is not None and handled.result.outcome.reason == "Accepted"
    for key, value, _ in released:
        buyer.release(key, value)  # confirmed
    # L1 is back (sent), L2 is on its way and keeps its place: room for one more.
    assert [again.lead.id for _, _, again in buyer.due(everything)] == ["L3"]
    handled = await buyer.handle(second_back)  # back from its record: it is sent
    assert handled.result is not None and handled.result.outcome.reason == "Accepted"
    assert recipient.calls == [("L1", 1), ("L2", 1)]
    assert [again.lead.id for _, _, again in buyer.due(everything)] == ["L3", "L4"]


def crowded_desk(
    queued: dict[str, int],
    recipient: Recipient,
    clock: Clock,
    parked: dict[str, Any],
    delivered: dict[str, Any] | None = None,
) -> DeliveryDesk:
    return DeliveryDesk(
        {"buyer": destination()},
        recipient,
        circuits={},
        caps={},
        delivered={} if delivered is None else delivered,
        parked=parked,
        clock=clock,
        crowds=Crowds(queued.__getitem__, limit=2, clock=clock),
    )


async def taken(desk: DeliveryDesk, work: WorkItem) -> Handled | None:
    """A work record's item, as the agents take it: None when its parked copy answers."""
    return None if desk.superseded(work) else await desk.handle(work)


async def test_one_let_go_for_room_and_not_sent_gives_its_place_back() -> None:
    """A delivery let go for room that comes back accepted already (not sent twice) gives
    back its place in the queue at once. Seen after a restart, before asks read again
    were left to their parked copies: they were sent at once, their copies, let go later,
    came back accepted, and kept their places for half a minute: five places a destination
    let five leads through every 30 s (test_engine's SIGKILL test with a capped
    destination: 160 of 200 leads late)."""
    queued: dict[str, int] = {"buyer": 2}
    recipient = Recipient()
    clock = Clock(NOW)
    table: dict[str, Any] = {}
    delivered: dict[str, Any] = {}
    first = crowded_desk(queued, recipient, clock, table, delivered)
    for lead_id in ("L1", "L2", "L3", "L4"):
        await first.handle(item(lead_id))  # the queue is full: each is parked
        clock.now += 1.0
    queued["buyer"] = 0
    for lead_id in ("L1", "L2"):  # accepted another way (an operator's replay, say)
        handled = await crowded_desk(queued, recipient, clock, {}, delivered).handle(item(lead_id))
        assert handled.result is not None and handled.result.outcome.reason == "Accepted"
    restarted = crowded_desk(queued, recipient, clock, dict(table), delivered)
    everything = Owned(frozenset({0}), 1)
    released = restarted.due(everything)  # the table read whole: all four still there
    assert [again.lead.id for _, _, again in released] == ["L1", "L2"]
    for key, value, again in released:
        restarted.handing_back(key, value)
        handled = await restarted.handle(again)  # accepted already: not sent again
        assert handled.attempt is None and handled.result is not None
        restarted.release(key, value)
    assert recipient.calls == [("L1", 1), ("L2", 1)]
    # Their places are free again at once, not half a minute later.
    assert [again.lead.id for _, _, again in restarted.due(everything)] == ["L3", "L4"]


async def test_asked_again_while_parked_for_room_it_waits_its_turn() -> None:
    """After a restart the agent reads again the records whose deliveries were parked for
    room, before the first whole read of the table finds them. Sent at once, those leads
    passed every older one parked before them (seen in test_engine's SIGKILL test with a
    capped destination). The parked copy answers for the ask, in its turn."""
    queued: dict[str, int] = {"buyer": 2}
    recipient = Recipient()
    clock = Clock(NOW)
    table: dict[str, Any] = {}
    first = crowded_desk(queued, recipient, clock, table)
    for lead_id in ("L1", "L2", "L3", "L4"):
        await first.handle(item(lead_id))  # the queue is full: each is parked
        clock.now += 1.0
    queued["buyer"] = 0
    restarted = crowded_desk(queued, recipient, clock, dict(table))
    for lead_id in ("L4", "L3"):  # their records read again, the newest first
        assert await taken(restarted, item(lead_id)) is None  # its copy answers
    assert recipient.calls == []
    everything = Owned(frozenset({0}), 1)
    for _ in range(2):
        released = restarted.due(everything)
        for key, value, again in released:
            restarted.handing_back(key, value)
            handled = await taken(restarted, again)
            assert handled is not None and handled.result is not None
            assert handled.result.outcome.reason == "Accepted"
            restarted.release(key, value)
    assert recipient.calls == [("L1", 1), ("L2", 1), ("L3", 1), ("L4", 1)]  # oldest first


async def test_a_hand_back_read_late_is_still_sent() -> None:
    """A record read back after its place was given up (its write confirmed late, past
    ``BACK_WITHIN_S``) while its entry is still parked: it is the parked item on its way,
    not a repeat. Dropped, its entry would then be released and the lead lost."""
    queued: dict[str, int] = {"buyer": 2}
    recipient = Recipient()
    clock = Clock(NOW)
    buyer = crowded_desk(queued, recipient, clock, {})
    await buyer.handle(item("L1"))  # parked for room
    queued["buyer"] = 0
    everything = Owned(frozenset({0}), 1)
    ((key, value, again),) = buyer.due(everything)
    buyer.handing_back(key, value)
    clock.now += BACK_WITHIN_S + 1.0
    buyer.due(everything)  # its place given up
    handled = await taken(buyer, again)
    assert handled is not None and handled.result is not None
    assert handled.result.outcome.reason == "Accepted"
    buyer.release(key, value)
    assert recipient.calls == [("L1", 1)] and key not in buyer.parked


async def test_parked_for_room_is_found_again_when_the_table_is_read_whole() -> None:
    """After a restart (or a rebalance) the index is rebuilt from the table: the parked
    deliveries go on in the order they were parked."""
    queued: dict[str, int] = {"buyer": 5}
    clock = Clock(NOW)

    def new_desk(parked: dict[str, Any]) -> DeliveryDesk:
        return DeliveryDesk(
            {"buyer": destination()},
            Recipient(),
            circuits={},
            caps={},
            delivered={},
            parked=parked,
            clock=clock,
            crowds=Crowds(queued.__getitem__, limit=5, clock=clock),
        )

    table: dict[str, Any] = {}
    first = new_desk(table)
    for lead_id in ("L3", "L1", "L2"):
        await first.handle(item(lead_id))
        clock.now += 1.0
    queued["buyer"] = 3
    restarted = new_desk(dict(table))
    everything = Owned(frozenset({0}), 1)
    assert [again.lead.id for _, _, again in restarted.due(everything)] == ["L3", "L1"]
    clock.now += RECHECK_S  # and whatever happens, each comes back in the end
    assert len(restarted.due(everything)) == 3
