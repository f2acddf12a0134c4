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
        problems = []
        for number, text in enumerate(hours):
            try:
                start, end = _range(text)
            except ValueError as exc:
                problems.append(f"[{number}]: {exc}")
                continue
            if start >= end:
                problems.append(f"[{number}]: {text!r}: the start must come before the end")
        if problems:
            raise ValueError("\n".join(problems))
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
    """``09:00-17:00``: from the start up to (not including) the end; an end of ``24:00``
    is midnight at the end of the day."""
    try:
        start, end = (_two_digit_hour(part.strip()) for part in text.split("-"))
        return time.fromisoformat(start), time.max if end == "24:00" else time.fromisoformat(end)
    except ValueError:
        raise ValueError(f"{text!r}: write hours as HH:MM-HH:MM (24:00 for midnight)") from None


def _two_digit_hour(clock: str) -> str:
    """``9:00`` as ``09:00``: ISO times want two digits for the hour."""
    return f"0{clock}" if len(clock) == 4 and clock[1] == ":" else clock
