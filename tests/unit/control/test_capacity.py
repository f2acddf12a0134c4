"""Capped destinations' room, as every worker hears it, and the ``capacity`` distribution
that ranks by it; reports leave the counting worker only when a count changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams.config import DestinationsFile
from streams.control.capacity import CapacityBoard
from streams.control.distribution import Distributor
from tests.unit.test_handlers import handlers


def report(destination_id: str, *windows: tuple[str, int, int]) -> dict[str, Any]:
    return {
        "destination_id": destination_id,
        "windows": [{"window": w, "used": used, "cap": cap} for w, used, cap in windows],
        "at": datetime.now(UTC),
        "worker": "w",
    }


def test_room_is_the_share_left_of_the_tightest_window() -> None:
    board = CapacityBoard()
    assert board.room("a") == 1.0  # not heard of: all of it
    board.heard(report("a", ("hour 2026-12-01T09", 9, 10), ("day 2026-12-01", 10, 100)))
    assert board.room("a") == 0.1
    board.heard(report("a", ("day 2026-12-01", 120, 100)))  # over (a cap lowered): none
    assert board.room("a") == 0.0


def test_capacity_puts_the_most_room_first() -> None:
    flows = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": d, "url": f"https://{d}.example.com", "caps": {"day": 10}} for d in "abc"
            ],
            "flows": [{"id": "f", "plan": {"capacity": ["a", "b", "c"]}}],
        }
    ).compiled_flows
    step = flows[0].plan
    board = CapacityBoard()
    distributor = Distributor({}, capacity=board)
    assert distributor.order(step) == ["a", "b", "c"]  # nothing heard: as listed
    board.heard(report("a", ("day 2026-12-01", 8, 10)))
    board.heard(report("b", ("day 2026-12-01", 5, 10)))
    assert distributor.order(step) == ["c", "b", "a"]


def test_a_report_leaves_only_when_the_counts_changed() -> None:
    file = DestinationsFile.model_validate(
        {"destinations": [{"id": "a", "url": "https://a.example.com", "caps": {"day": 10}}]}
    )
    on = handlers(file=file)
    first = on.cap_reports(lambda _: True)
    assert [out.key for out in first] == [b"a"]
    assert on.cap_reports(lambda _: True) == []  # nothing changed
    assert on.cap_reports(lambda _: False) == []  # not this worker's to count
    day = next(iter(file.destinations[0].caps.limits(datetime.now(UTC))))  # type: ignore[union-attr]
    on.desk.caps["a"] = {day: 3}
    [again] = on.cap_reports(lambda _: True)
    assert again.topic == "control"
