"""Records handled in any order are acknowledged in their partition's order: a committed
offset must never pass a record still in progress (Faust commits the first run of
acknowledged offsets it finds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.agents import InOrder


@dataclass
class Message:
    tp: str
    offset: int


@dataclass
class Event:
    message: Message
    acked: list[tuple[str, int]] = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append((self.message.tp, self.message.offset))


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
