"""Business hours: when a destination takes leads, in its own time zone, minus holidays.

Outside them a lead is not sent (outcome ``skip``, "Outside business hours"); in a
waterfall it moves on to the next destination.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

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
    days: list[Day] | None = None  # with hours by day, the days are the hours' keys
    # [start, end) each, every day of ``days``; or by day: {mon-fri: [...], sat: [...]}
    # (a call centre open later on weekdays than on Saturday).
    hours: list[str] | dict[str, list[str]] = Field(default_factory=lambda: ["09:00-17:00"])
    holidays: list[date] = Field(default_factory=list)
    # Outside the hours: "skip" the destination (a waterfall moves on), or "hold" the lead
    # (parked, not slept on) until the hours begin, if that is within ``max_hold_s``.
    outside: Literal["skip", "hold"] = "skip"
    max_hold_s: float = Field(default=86_400.0, gt=0)

    _by_weekday: dict[int, list[tuple[time, time]]] = PrivateAttr(default_factory=dict)

    @field_validator("hours")
    @classmethod
    def _ranges(cls, hours: list[str] | dict[str, list[str]]) -> list[str] | dict[str, list[str]]:
        problems = []
        lists = hours.items() if isinstance(hours, dict) else [("", hours)]
        for days, ranges in lists:
            if days:
                try:
                    _days(days)
                except ValueError as exc:
                    problems.append(f"{days}: {exc}")
            for number, text in enumerate(ranges):
                at = f"{days}[{number}]" if days else f"[{number}]"
                try:
                    start, end = _range(text)
                except ValueError as exc:
                    problems.append(f"{at}: {exc}")
                    continue
                if start >= end:
                    problems.append(f"{at}: {text!r}: the start must come before the end")
        if problems:
            raise ValueError("\n".join(problems))
        return hours

    @model_validator(mode="after")
    def _hours_by_weekday(self) -> Schedule:
        if isinstance(self.hours, dict):
            if self.days is not None:
                raise ValueError("days: not with hours by day, whose keys say the days")
            by_weekday: dict[int, list[tuple[time, time]]] = {}
            for named, texts in self.hours.items():
                for day in _days(named):
                    if DAYS.index(day) in by_weekday:
                        raise ValueError(f"hours: {day} is given twice")
                    by_weekday[DAYS.index(day)] = [_range(text) for text in texts]
        else:
            every_day = [_range(text) for text in self.hours]
            open_days = self.days if self.days is not None else list(DAYS[:5])
            by_weekday = {DAYS.index(day): every_day for day in open_days}
        self._by_weekday = by_weekday
        return self

    def _ranges_on(self, day: date) -> list[tuple[time, time]]:
        return [] if day in self.holidays else self._by_weekday.get(day.weekday(), [])

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(time_zone(self.timezone))
        moment = local.time()
        return any(start <= moment < end for start, end in self._ranges_on(local.date()))

    def next_open(self, now: datetime) -> datetime | None:
        """When the hours next begin after ``now`` (within two weeks); None if never."""
        zone = time_zone(self.timezone)
        local = now.astimezone(zone)
        for offset in range(15):
            day = local.date() + timedelta(days=offset)
            starts = sorted(datetime.combine(day, start, zone) for start, _ in self._ranges_on(day))
            later = [start for start in starts if start > local]
            if later:
                return later[0]
        return None


def _days(text: str) -> list[Day]:
    """``sat``, or a run of days ``mon-fri`` (``fri-mon`` goes round the weekend)."""
    first, _, last = (part.strip().lower() for part in text.partition("-"))
    if first not in DAYS or (last and last not in DAYS):
        raise ValueError(f"{text!r}: name a day or days as mon, sat, mon-fri")
    start, end = DAYS.index(first), DAYS.index(last or first)
    return [DAYS[(start + step) % 7] for step in range((end - start) % 7 + 1)]


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
