"""Capped destinations' room, as every worker hears it, and the ``capacity`` distribution
that ranks by it; reports leave the counting worker only when a count changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams import handlers as handlers_module
from streams.config import DestinationsFile
from streams.control.capacity import CapacityBoard
from streams.control.distribution import SKEW_MINUTES, Distributor
from streams.control.lookback import CAP_REFRESH_S, CLOCK_SKEW_S, control_lookback_s
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


def test_unchanged_counts_are_reported_again_after_the_refresh(monkeypatch: Any) -> None:
    """A starting worker reads only the last minutes of the control topic: the latest
    counts must be that recent even when nothing was delivered for days."""
    file = DestinationsFile.model_validate(
        {"destinations": [{"id": "a", "url": "https://a.example.com", "caps": {"day": 10}}]}
    )
    on = handlers(file=file)
    now = [1000.0]
    monkeypatch.setattr(handlers_module.time, "monotonic", lambda: now[0])
    assert len(on.cap_reports(lambda _: True)) == 1
    now[0] += CAP_REFRESH_S - 1
    assert on.cap_reports(lambda _: True) == []
    now[0] += 1
    assert [out.key for out in on.cap_reports(lambda _: True)] == [b"a"]
    assert on.cap_reports(lambda _: True) == []


def test_a_starting_worker_reads_back_what_circuits_caps_and_rankings_need() -> None:
    file = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": "a", "url": "https://a.example.com", "circuit": {"cool_down_s": 900}},
                {"id": "b", "url": "https://b.example.com", "circuit": {"enabled": False}},
            ],
        }
    )
    assert control_lookback_s(file.destinations, file.compiled_flows) == 900 + CLOCK_SKEW_S
    ranked = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": d, "url": f"https://{d}.example.com", "circuit": {"cool_down_s": 5}}
                for d in "ab"
            ],
            "flows": [
                {"id": "f", "plan": {"performance": {"among": ["a", "b"], "window_min": 120}}}
            ],
        }
    )
    # two hours of tallies, the minutes a tally may run ahead, the clocks' skew
    expected = 120 * 60 + (SKEW_MINUTES + 1) * 60 + CLOCK_SKEW_S
    assert control_lookback_s(ranked.destinations, ranked.compiled_flows) == expected
    none = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": "a", "url": "https://a.example.com", "circuit": {"cool_down_s": 5}}
            ]
        }
    )
    assert (
        control_lookback_s(none.destinations, none.compiled_flows)
        == 2 * CAP_REFRESH_S + CLOCK_SKEW_S
    )
    quiet = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": "a", "url": "https://a.example.com", "circuit": {"enabled": False}}
            ]
        }
    )
    assert (
        control_lookback_s(quiet.destinations, quiet.compiled_flows)
        == 2 * CAP_REFRESH_S + CLOCK_SKEW_S
    )
