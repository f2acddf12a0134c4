"""Records handled in any order are acknowledged in their partition's order: a committed
offset must never pass a record still in progress (Faust commits the first run of
acknowledged offsets it finds)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from intervaltree import IntervalTree

from streams.agents import IDLE_S, Holds, InOrder, OffsetRanges, periodic, safe_commit
from streams.app import CourierConsumer
from streams.commits import Unhandled, UnhandledRecords, left_behind, unhandled
from streams.errors import SenderClosed


@dataclass
class Message:
    tp: Any
    offset: int


@dataclass
class Event:
    message: Message
    acked: list[tuple[str, int]] = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append((self.message.tp, self.message.offset))


@dataclass(eq=False)
class ConsumerMessage:
    tp: Any
    topic: str
    offset: int
    acked: bool = False


def events(acked: list[tuple[str, int]], tp: str, count: int) -> list[Event]:
    return [Event(Message(tp, offset), acked) for offset in range(count)]


def test_a_record_done_early_waits_for_the_ones_before_it_in_its_partition() -> None:
    acked: list[tuple[str, int]] = []
    acks = InOrder(abandon=lambda message: None)
    first, second, third = (acks.hold(e) for e in events(acked, "p0", 3))
    (other,) = (acks.hold(e) for e in events(acked, "p1", 1))
    acks.done(third)
    acks.done(other)  # another partition does not wait for p0
    assert acked == [("p1", 0)]
    acks.done(first)
    assert acked == [("p1", 0), ("p0", 0)]
    acks.done(second)
    assert acked == [("p1", 0), ("p0", 0), ("p0", 1), ("p0", 2)]


def test_a_stopping_worker_acknowledges_nothing_after_a_record_it_gives_up() -> None:
    acked: list[tuple[str, int]] = []
    abandoned: list[Any] = []
    acks = InOrder(abandon=abandoned.append)
    first, second, third = (acks.hold(e) for e in events(acked, "p0", 3))
    acks.done(first)
    acks.give_up(second)
    acks.done(third)
    assert acked == [("p0", 0)]  # the next worker starts at offset 1
    assert [m.offset for m in abandoned] == [1, 2]


def test_held_offsets_are_those_in_progress_done_behind_one_or_given_up() -> None:
    acked: list[tuple[str, int]] = []
    acks = InOrder(abandon=lambda message: None)
    first, second, third, fourth = (acks.hold(e) for e in events(acked, "p0", 4))
    acks.done(second)
    assert acks.held("p0") == [0, 1, 2, 3]
    acks.done(first)
    assert acks.held("p0") == [2, 3]
    acks.give_up(third)
    acks.done(fourth)
    assert acks.held("p0") == [2]  # given up: the next worker starts there
    assert acks.held("p1") == []


def test_a_record_taken_again_is_seen_while_held_and_once_done_but_not_once_given_up() -> None:
    acked: list[tuple[str, int]] = []
    acks = InOrder(abandon=lambda message: None)
    first, second, third = (acks.hold(e) for e in events(acked, "p0", 3))
    assert not acks.seen(Message("p0", 3))  # never taken
    assert acks.seen(Message("p0", 1))  # in progress
    acks.done(second)
    assert acks.seen(Message("p0", 1))  # done behind one in progress: still held
    acks.done(first)
    assert acks.seen(Message("p0", 0)) and acks.seen(Message("p0", 1))  # handled
    acks.give_up(third)
    assert not acks.seen(Message("p0", 2))  # the next worker (or this one) must handle it
    assert not acks.seen(Message("p1", 0))


def test_a_partition_taken_from_the_worker_forgets_what_it_handled_there() -> None:
    # It may come back as another log (a topic created again starts at 0): its new
    # records must not look handled. What is still in progress stays held.
    acked: list[tuple[str, int]] = []
    acks = InOrder(abandon=lambda message: None)
    holds = Holds()
    holds.add("leads", acks)
    first, second, _in_progress = (acks.hold(e) for e in events(acked, TP("leads", 0), 3))
    acks.done(first)
    acks.done(second)
    elsewhere = acks.hold(events(acked, TP("leads", 1), 1)[0])
    acks.done(elsewhere)
    holds.forget({TP("leads", 0), TP("other", 0)})
    assert not acks.seen(Message(TP("leads", 0), 0)) and not acks.seen(Message(TP("leads", 0), 1))
    assert acks.seen(Message(TP("leads", 0), 2))  # in progress
    assert acks.seen(Message(TP("leads", 1), 0))  # not taken: still known
    assert holds.held(TP("leads", 0)) == [2]


def test_offset_ranges_keep_handled_offsets_as_runs() -> None:
    done = OffsetRanges()
    for offset in [0, 1, 2, 5, 6, 4, 9]:
        done.add(offset)
    assert done.runs() == [(0, 3), (4, 7), (9, 10)]
    done.add(3)  # joins the runs on both sides
    done.add(8)
    assert done.runs() == [(0, 7), (8, 10)]
    done.add(5)  # already there
    assert done.runs() == [(0, 7), (8, 10)]
    assert [o for o in range(12) if o in done] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert "3" not in done


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_offset_ranges_hold_what_a_set_holds(offsets: list[int]) -> None:
    done = OffsetRanges()
    for offset in offsets:
        done.add(offset)
    assert {o for o in range(62) if o in done} == set(offsets)
    runs = done.runs()
    assert all(start < end for start, end in runs)
    assert all(a_end < b_start for (_, a_end), (b_start, _) in pairwise(runs))


def test_a_commit_stops_at_the_first_record_still_held() -> None:
    # Nothing held, or held above Faust's offset: Faust's offset.
    assert safe_commit(21, 5, []) == (21, [])
    assert safe_commit(21, 5, [21, 30]) == (21, [])
    # Faust counted 9..20 done (a jump after the seek) while 10 and 11 are in progress.
    assert safe_commit(21, 8, [10, 11, 15]) == (10, [12, 13, 14, 16, 17, 18, 19, 20])
    # The first held record is where the commit already is: nothing new to commit.
    assert safe_commit(21, 10, [10]) == (None, list(range(11, 21)))
    # A record handled again below the committed offset does not hold anything.
    assert safe_commit(21, 10, [3]) == (21, [])


async def never_read(tp: Any, start: int | None, end: int) -> list[Any]:
    raise AssertionError("nothing to look at again here")


async def never_handed(tp: Any, record: Any) -> None:
    raise AssertionError("nothing to hand over here")


def faust_bookkeeping(
    holds: Holds | None, tp: TP, committed: int, records: UnhandledRecords | None = None
) -> Any:
    """A consumer with Faust's own acknowledgement and commit bookkeeping, as after the seek
    that follows a group join: it had read 8..20, the seek moved its read offset back to
    8, and the rest of the batch (21) made it count 9..20 as records that do not exist."""
    consumer: Any = object.__new__(CourierConsumer)
    if holds is not None and records is None:
        records = UnhandledRecords(never_read, never_handed)
    consumer.app = SimpleNamespace(
        holds=holds,
        unhandled=records,
        topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
    )
    consumer._unacked_messages = set()
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._committed_offset[tp] = committed
    return consumer


def commits(consumer: Any, tp: TP) -> int:
    """What the consumer's commits come to now (it commits every second)."""
    while (offset := consumer._new_offset(tp)) is not None:
        consumer._committed_offset[tp] = offset
    committed: int = consumer._committed_offset[tp]
    return committed


def test_the_consumer_never_commits_past_a_record_held_after_faust_filled_a_jump() -> None:
    tp = TP("leads", 0)
    holds = Holds()
    acks = holds.add("leads", InOrder(abandon=lambda message: None))
    ours, faust_alone = faust_bookkeeping(holds, tp, 8), faust_bookkeeping(None, tp, 8)
    for consumer in (ours, faust_alone):
        consumer._gap[tp].addi(9, 21)
    held = {offset: acks.hold(Event(Message(tp, offset))) for offset in range(8, 22)}

    def finish(offset: int) -> None:
        acks.done(held[offset])
        for consumer in (ours, faust_alone):
            Consumer.ack(consumer, ConsumerMessage(tp, tp.topic, offset))

    for offset in (8, 9, 10):
        finish(offset)
    assert commits(faust_alone, tp) == 21  # past 11..20, still in progress
    assert commits(ours, tp) == 11
    for offset in range(11, 21):
        finish(offset)
        assert commits(ours, tp) == offset + 1
    finish(21)
    assert commits(ours, tp) == 22


def test_what_a_commit_would_pass_unacknowledged() -> None:
    tp = TP("leads", 0)
    # Faust lets a run start one past the committed offset: offset 13 was never acknowledged.
    assert unhandled(tp, 13, [14, 15, 16], None, []) == Unhandled(tp, 13, 14)
    assert unhandled(tp, 13, [13, 14], None, []) is None
    assert unhandled(tp, 13, [15, 16], None, []) is None  # a wider gap: Faust waits anyway
    assert unhandled(tp, 13, [14], None, [13]) is None  # an agent has it: the commit waits
    assert unhandled(tp, None, [3, 4], None, []) == Unhandled(tp, None, 3)  # none committed
    assert unhandled(tp, None, [0, 1], None, []) is None
    assert unhandled(tp, 13, [], None, []) is None


async def test_a_record_faust_dropped_is_handed_to_the_agents_before_a_commit_passes_it() -> None:
    """As seen after a SIGKILL and a restart: Faust handed 0..12 and 14..16 of a batch to
    the agent, never 13, and would commit 17 from the acknowledgements alone."""
    tp = TP("leads", 0)
    holds = Holds()
    acks = holds.add("leads", InOrder(abandon=lambda message: None))
    read: list[tuple[int | None, int]] = []
    handed: list[int] = []

    async def read_again(tp: Any, start: int | None, end: int) -> list[Any]:
        read.append((start, end))
        return [SimpleNamespace(offset=offset) for offset in range(start or 0, end)]

    async def hand_over(tp: Any, record: Any) -> None:
        handed.append(record.offset)

    records = UnhandledRecords(read_again, hand_over)
    ours, faust_alone = faust_bookkeeping(holds, tp, 13, records), faust_bookkeeping(None, tp, 13)
    for offset in (14, 15, 16):
        acks.done(acks.hold(Event(Message(tp, offset))))
        for consumer in (ours, faust_alone):
            Consumer.ack(consumer, ConsumerMessage(tp, tp.topic, offset))
    assert commits(faust_alone, tp) == 17  # 13 lost
    assert commits(ours, tp) == 13  # looking at offset 13 on the broker
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert (read, handed) == ([(13, 14)], [13])
    assert commits(ours, tp) == 13  # handed over, not handled yet
    held = acks.hold(Event(Message(tp, 13)))  # the agent took it
    assert commits(ours, tp) == 13
    acks.done(held)
    Consumer.ack(ours, ConsumerMessage(tp, tp.topic, 13))
    assert commits(ours, tp) == 17


async def test_an_offset_with_no_record_lets_the_commit_pass() -> None:
    """A transaction's commit marker takes an offset and holds no record."""
    tp = TP("leads", 0)
    holds = Holds()

    async def nothing_there(tp: Any, start: int | None, end: int) -> list[Any]:
        return []

    records = UnhandledRecords(nothing_there, never_handed)
    ours = faust_bookkeeping(holds, tp, 13, records)
    Consumer.ack(ours, ConsumerMessage(tp, tp.topic, 14))
    assert commits(ours, tp) == 13
    await asyncio.sleep(0)
    assert commits(ours, tp) == 15


def test_records_left_behind_are_those_below_the_end_that_nothing_will_handle() -> None:
    tp = TP("leads", 0)
    # Faust fetched 0..12, handed none over, and has nothing after them to read.
    assert left_behind(tp, None, 13, [], []) == Unhandled(tp, None, 13)
    assert left_behind(tp, 5, 13, [], []) == Unhandled(tp, 5, 13)
    assert left_behind(tp, 5, 13, [5], []) is None  # an agent has one
    assert left_behind(tp, 5, 13, [], [5, 6]) is None  # a commit is on its way
    assert left_behind(tp, 13, 13, [], []) is None  # all handled
    assert left_behind(tp, None, None, [], []) is None  # nothing fetched yet


class TimerApp:
    """What ``periodic`` needs of a Faust app: ``timer`` registers the run."""

    def __init__(self) -> None:
        self.runs: dict[str, Any] = {}

    def timer(self, interval_s: float, name: str) -> Any:
        def register(run: Any) -> Any:
            self.runs[name] = run
            return run

        return register


async def test_a_periodic_job_that_raises_is_logged_and_runs_again(caplog: Any) -> None:
    app = TimerApp()
    calls = []

    @periodic(app, 0.2, "release_parked")
    async def failing() -> None:
        calls.append(1)
        raise ValueError("lead L-1 has jane@example.com")  # its text may quote a lead

    for _ in range(5):
        await app.runs["release_parked"]()  # Faust's timer would end the worker here
    assert len(calls) == 5
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["release_parked failed (ValueError), 1 time(s) since the last report; "
                      "it runs again in 0.2 s"]  # fmt: skip
    assert "jane@example.com" not in caplog.text


async def test_a_periodic_job_stopped_with_the_worker_ends() -> None:
    app = TimerApp()

    @periodic(app, 0.2, "release_parked")
    async def stopping() -> None:
        raise SenderClosed("the worker is stopping")

    with pytest.raises(SenderClosed):
        await app.runs["release_parked"]()


def test_an_agent_is_idle_after_a_second_without_taking_a_record_and_with_a_slot_free() -> None:
    now = [100.0]
    acks = InOrder(abandon=lambda message: None, clock=lambda: now[0])
    assert acks.idle()  # never took anything
    acks.hold(events([], "p0", 1)[0])
    assert not acks.idle()  # records may be queued behind the one it just took
    now[0] += IDLE_S
    assert acks.idle()
    acks.waiting_for_slot = True  # every slot taken: records wait in Faust's queue
    assert not acks.idle()
    acks.waiting_for_slot = False
    holds = Holds()
    holds.add("leads", acks)
    assert holds.idle("leads") and holds.idle("not an agent's topic")
