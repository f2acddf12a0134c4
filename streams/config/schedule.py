"""Business hours: when a destination takes leads, in its own time zone, minus holidays.

Outside them a lead is not sent (outcome ``skip``, "Outside business hours"); in a
waterfall it moves on to the next destination.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from streams.template.conversions import ConversionError, time_zone

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _known_zone(name: str) -> str:
    try:
        time_zone(name)
    except ConversionError as exc:
        raise ValueError(str(exc)) from None
    return name


# An IANA time zone name, checked when the configuration loads.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: TimeZoneName
    days: list[Day] = Field(default_factory=lambda: list(DAYS[:5]))
    hours: list[str] = Field(default_factory=lambda: ["09:00-17:00"])  # [start, end) each
    holidays: list[date] = Field(default_factory=list)
    # Outside the hours: "skip" the destination (a waterfall moves on), or "hold" the lead
    # (parked, not slept on) until the hours begin, if that is within ``max_hold_s``.
    outside: Literal["skip", "hold"] = "skip"
    max_hold_s: float = Field(default=86_400.0, gt=0)

    @field_validator("hours")
    @classmethod
    def _ranges(cls, hours: list[str]) -> list[str]:
        for text in hours:
            start, end = _range(text)
            if start >= end:
                raise ValueError(f"{text!r}: the start must come before the end")
        return hours

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(time_zone(self.timezone))
        if local.date() in self.holidays or DAYS[local.weekday()] not in self.days:
            return False
        moment = local.time()
        return any(start <= moment < end for start, end in map(_range, self.hours))

    def next_open(self, now: datetime) -> datetime | None:
        """When the hours next begin after ``now`` (within two weeks); None if never."""
        zone = time_zone(self.timezone)
        local = now.astimezone(zone)
        for offset in range(15):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays or DAYS[day.weekday()] not in self.days:
                continue
            starts = sorted(
                datetime.combine(day, start, zone) for start, _ in map(_range, self.hours)
            )
            later = [start for start in starts if start > local]
            if later:
                return later[0]
        return None


def _range(text: str) -> tuple[time, time]:
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{text!r}: write hours as HH:MM-HH:MM") from None
    return start, end
