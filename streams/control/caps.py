"""Caps: at most N leads per hour, day, week or month for a destination, in its time zone.

Counts are kept per window ("day 2026-11-22", "week 2026-W47", ...) in a small plain dict,
so a Faust table can hold them; a new window starts from zero, which is the reset at the
boundary. By default accepted deliveries count (what a buyer pays for); ``count: attempts``
counts every request sent. The functions here decide with ``now`` passed in and never wait.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.model import Outcome, OutcomeCategory, OutcomeKind
from streams.stages.conversions import time_zone
from streams.stages.schedule import DAYS, Day, TimeZoneName

if TYPE_CHECKING:
    from streams.stages.attempt import Attempt

Period = Literal["hour", "day", "week", "month"]
Counts = dict[str, int]  # window key → count, only the current windows

CAP_EXCEEDED = "Cap exceeded"


class CapPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hour: int | None = Field(default=None, ge=0)
    day: int | None = Field(default=None, ge=0)
    week: int | None = Field(default=None, ge=0)
    month: int | None = Field(default=None, ge=0)
    # A day's cap by day of the week (``sat: 20, sun: 0``), in place of ``day`` on those days.
    weekdays: dict[Day, int] = Field(default_factory=dict)
    timezone: TimeZoneName = "UTC"  # windows start at midnight (and Monday, the 1st) here
    count: Literal["accepted", "attempts"] = "accepted"

    @field_validator("weekdays")
    @classmethod
    def _caps_not_negative(cls, caps: dict[Day, int]) -> dict[Day, int]:
        for day, cap in caps.items():
            if cap < 0:
                raise ValueError(f"{day}: a cap cannot be negative")
        return caps

    def limits(self, now: datetime) -> dict[str, int]:
        """The caps that apply at ``now``: window key → cap."""
        local = now.astimezone(time_zone(self.timezone))
        iso_year, iso_week, _ = local.isocalendar()
        day_cap = self.weekdays.get(DAYS[local.weekday()], self.day)
        caps = {
            f"hour {local:%Y-%m-%dT%H}": self.hour,
            f"day {local:%Y-%m-%d}": day_cap,
            f"week {iso_year}-W{iso_week:02d}": self.week,
            f"month {local:%Y-%m}": self.month,
        }
        return {key: cap for key, cap in caps.items() if cap is not None}


def full(counts: Counts, policy: CapPolicy, now: datetime, pending: int = 0) -> str | None:
    """The first window whose cap ``counts`` plus ``pending`` deliveries reach; None: room."""
    for key, cap in policy.limits(now).items():
        if counts.get(key, 0) + pending >= cap:
            return key
    return None


def counts_toward(policy: CapPolicy, attempt: Attempt) -> bool:
    if policy.count == "accepted":
        return attempt.outcome.kind is OutcomeKind.SUCCESS
    return attempt.request is not None  # a request went out


def counted(counts: Counts, policy: CapPolicy, now: datetime) -> Counts:
    """``counts`` with one more delivery in each current window; past windows dropped."""
    return {key: counts.get(key, 0) + 1 for key in policy.limits(now)}


def cap_exceeded(window: str) -> Outcome:
    """Not sent: the destination has had its fill for this window; a waterfall moves on."""
    return Outcome.skip(CAP_EXCEEDED, raw=window, category=OutcomeCategory.NOT_SENT)
