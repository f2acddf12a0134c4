"""Caps windows and retry delays, decided with an explicit clock and a fixed jitter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from streams.config.policies import CapPolicy, RetryPolicy
from streams.control.caps import counted, full
from streams.control.retry import retry_delay
from streams.model import Outcome
from streams.outcome import parse_retry_after

NOON_UTC = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def test_windows_are_named_in_the_destination_time_zone() -> None:
    policy = CapPolicy(hour=5, day=50, week=200, month=800, timezone="America/Los_Angeles")
    # 02:30 UTC on the 23rd is 18:30 on the 22nd in Los Angeles.
    assert policy.limits(datetime(2026, 11, 23, 2, 30, tzinfo=UTC)) == {
        "hour 2026-11-22T18": 5,
        "day 2026-11-22": 50,
        "week 2026-W47": 200,
        "month 2026-11": 800,
    }


def test_a_cap_is_reached_at_its_count_and_a_new_day_starts_from_zero() -> None:
    policy = CapPolicy(day=2)
    counts: dict[str, int] = {}
    assert full(counts, policy, NOON_UTC) is None
    counts = counted(counted(counts, policy, NOON_UTC), policy, NOON_UTC)
    assert full(counts, policy, NOON_UTC) == "day 2026-11-23"
    tomorrow = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert full(counts, policy, tomorrow) is None
    assert counted(counts, policy, tomorrow) == {"day 2026-11-24": 1}  # yesterday dropped


def test_deliveries_in_flight_hold_slots() -> None:
    policy = CapPolicy(hour=3)
    counts = counted({}, policy, NOON_UTC)
    assert full(counts, policy, NOON_UTC, pending=1) is None
    assert full(counts, policy, NOON_UTC, pending=2) == "hour 2026-11-23T12"


def test_a_day_of_the_week_has_its_own_cap() -> None:
    policy = CapPolicy(day=50, weekdays={"mon": 0, "sat": 10})
    assert full({}, policy, NOON_UTC) == "day 2026-11-23"  # Monday: none at all
    saturday = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert policy.limits(saturday)["day 2026-11-28"] == 10
    assert policy.limits(datetime(2026, 11, 24, 12, tzinfo=UTC))["day 2026-11-24"] == 50


def test_bad_cap_settings_name_the_field() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        CapPolicy(day=1, timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="sun: a cap cannot be negative"):
        CapPolicy(weekdays={"sun": -1})


RETRYABLE = Outcome.error("Recipient error (HTTP 503)", retryable=True)


def highest(low: float, high: float) -> float:
    return high  # the jitter's upper bound: the schedule itself


def test_backoff_doubles_from_one_second_with_full_jitter() -> None:
    policy = RetryPolicy()
    assert [retry_delay(policy, RETRYABLE, n, highest) for n in range(1, 6)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        None,  # the fifth attempt was the last
    ]
    draws: list[tuple[float, float]] = []
    retry_delay(policy, RETRYABLE, 3, lambda low, high: draws.append((low, high)) or 0.5)
    assert draws == [(0.0, 4.0)]  # full jitter: anywhere from nothing to the ceiling


def test_only_retryable_outcomes_are_retried_and_the_delay_is_capped() -> None:
    assert retry_delay(RetryPolicy(), Outcome.failure("Duplicate lead"), 1, highest) is None
    policy = RetryPolicy(max_attempts=20, max_delay_s=30)
    assert retry_delay(policy, RETRYABLE, 10, highest) == 30


def test_retry_after_is_a_floor_and_a_too_long_one_ends_the_retries() -> None:
    asked = replace(Outcome.error("Rate limited", retryable=True), retry_after_s=60.0)
    assert retry_delay(RetryPolicy(), asked, 1, highest) == 60.0
    assert retry_delay(RetryPolicy(max_retry_after_s=30), asked, 1, highest) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("1.5") == 1.5  # not the RFC's, but APIs under a second write it
    assert parse_retry_after("soon") is None
    assert parse_retry_after("1e9") is None and parse_retry_after("-5") is None
    assert parse_retry_after(None) is None
