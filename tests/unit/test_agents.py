"""Records handled in any order are acknowledged in their partition's order: a committed
offset must never pass a record still in progress (Faust commits the first run of
acknowledged offsets it finds)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.agents import Holds, InOrder, safe_commit
from streams.app import CourierConsumer


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


def faust_bookkeeping(holds: Holds | None, tp: TP, committed: int) -> Any:
    """A consumer with Faust's own acknowledgement and commit bookkeeping, as after the seek
    that follows a group join: it had read 8..20, the seek moved its read offset back to
    8, and the rest of the batch (21) made it count 9..20 as records that do not exist."""
    consumer: Any = object.__new__(CourierConsumer)
    consumer.app = SimpleNamespace(
        holds=holds, topics=SimpleNamespace(acks_enabled_for=lambda topic: True)
    )
    consumer._unacked_messages = set()
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._committed_offset[tp] = committed
    consumer._gap[tp].addi(committed + 1, 21)
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
