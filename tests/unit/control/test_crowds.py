"""Which deliveries parked for room go on, and when (``streams.control.crowds``)."""

from __future__ import annotations

from streams.control.crowds import BACK_WITHIN_S, Crowds
from tests.unit.clock import Clock


def test_room_is_the_queue_limit_less_what_waits_and_what_is_on_its_way_back() -> None:
    queued = {"crm": 3}
    clock = Clock()
    crowds = Crowds(queued.__getitem__, limit=4, clock=clock)
    assert not crowds.must_wait("crm")  # room in the queue: it joins it
    queued["crm"] = 4
    assert crowds.must_wait("crm")
    for key in ("a", "b", "c"):
        crowds.parked("crm", key)
    assert crowds.with_room() == []
    queued["crm"] = 2
    assert crowds.with_room() == [("crm", "a"), ("crm", "b")]
    crowds.let_go("crm", "a")
    assert crowds.with_room() == [("crm", "b")]  # "a" takes one of the two places
    queued["crm"] = 0
    assert not crowds.back("crm", "new") and crowds.must_wait("crm")  # behind "b" and "c"
    assert crowds.back("crm", "a")  # back from its record: into the queue
    assert not crowds.must_wait("crm", back=True)
    assert not crowds.back("crm", "a")  # its place is given back once
    crowds.let_go("crm", "b")
    queued["crm"] = 3
    assert crowds.with_room() == []  # the last place is "b"'s
    clock.now += BACK_WITHIN_S + 1  # "b" never came back (another worker took its partition)
    assert crowds.with_room() == [("crm", "c")]
    crowds.gone("crm", "c")  # left the table another way (a drain)
    assert crowds.with_room() == []
    assert not crowds.must_wait("crm")


def test_reading_the_table_again_orders_the_parked_by_when_they_were_parked() -> None:
    crowds = Crowds(lambda destination_id: 0, limit=2)
    crowds.parked("crm", "stale")  # not in the table any more: forgotten
    crowds.read_again(
        [
            ("crm|L2|p", {"crowded": "crm", "parked_at": 20.0}),
            ("crm|L1|p", {"crowded": "crm", "parked_at": 10.0}),
            ("crm|L9|p", {"due": 5.0, "parked_at": 1.0}),  # a retry: not parked for room
            ("erp|L3|p", {"crowded": "erp", "parked_at": 30.0}),
        ]
    )
    assert crowds.with_room() == [("crm", "crm|L1|p"), ("crm", "crm|L2|p"), ("erp", "erp|L3|p")]


def test_one_whose_record_could_not_be_written_waits_again_first() -> None:
    crowds = Crowds(lambda destination_id: 0, limit=1)
    for key in ("a", "b"):
        crowds.parked("crm", key)
    assert crowds.with_room() == [("crm", "a")]
    crowds.let_go("crm", "a")
    assert crowds.with_room() == []  # its place is taken while its record is written
    crowds.kept("crm", "a")  # the write failed: it is in the table still, first in line
    assert crowds.with_room() == [("crm", "a")]
    crowds.kept("crm", "b")  # never let go: nothing changes
    assert crowds.with_room() == [("crm", "a")]
