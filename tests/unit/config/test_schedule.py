"""Business hours by day: a call centre open 09:00-20:00 on weekdays and 10:00-14:00 on
Saturday, in its own time zone. Before, one set of hours held for every open day."""

from __future__ import annotations

from datetime import datetime

import pytest

from streams.config.schedule import Schedule

CALL_CENTRE = Schedule(
    timezone="America/New_York",
    hours={"mon-fri": ["09:00-20:00"], "sat": ["10:00-14:00"]},
    holidays=["2026-12-25"],  # pydantic reads the date
)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        ("2026-12-05T11:00:00-05:00", True),  # Saturday morning
        ("2026-12-05T15:00:00-05:00", False),  # Saturday afternoon: closed at 14:00
        ("2026-12-06T11:00:00-05:00", False),  # Sunday
        ("2026-12-07T18:30:00-05:00", True),  # Monday evening: open until 20:00
        ("2026-12-07T20:00:00-05:00", False),
        ("2026-12-25T11:00:00-05:00", False),  # a Friday, and a holiday
    ],
)
def test_each_day_has_its_own_hours(moment: str, is_open: bool) -> None:
    assert CALL_CENTRE.is_open(datetime.fromisoformat(moment)) is is_open


def test_the_next_opening_follows_each_days_hours() -> None:
    saturday_evening = datetime.fromisoformat("2026-12-05T15:00:00-05:00")
    assert CALL_CENTRE.next_open(saturday_evening) == datetime.fromisoformat(
        "2026-12-07T09:00:00-05:00"
    )
    friday_night = datetime.fromisoformat("2026-12-04T21:00:00-05:00")
    assert CALL_CENTRE.next_open(friday_night) == datetime.fromisoformat(
        "2026-12-05T10:00:00-05:00"
    )


def test_a_run_of_days_may_go_round_the_weekend() -> None:
    weekend_shift = Schedule(timezone="UTC", hours={"fri-mon": ["00:00-24:00"]})
    assert weekend_shift.is_open(datetime.fromisoformat("2026-12-06T12:00:00+00:00"))  # Sun
    assert not weekend_shift.is_open(datetime.fromisoformat("2026-12-08T12:00:00+00:00"))  # Tue


def test_hours_for_every_day_and_the_default_days_still_hold() -> None:
    weekdays = Schedule(timezone="UTC", hours=["09:00-17:00"])
    assert weekdays.is_open(datetime.fromisoformat("2026-12-07T10:00:00+00:00"))  # Mon
    assert not weekdays.is_open(datetime.fromisoformat("2026-12-05T10:00:00+00:00"))  # Sat
