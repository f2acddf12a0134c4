"""What every worker knows of capped destinations' room: the ``CapUsage`` records their
counting workers put on the control topic (at most every 2 s, when a count changes).

A capped destination's counts are exact in its own partition (streams/control/desk.py);
elsewhere they are known as of the last report, which is what a ``capacity``
distribution ranks by and what the dashboard shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Windows = tuple[tuple[str, int, int], ...]  # (window, used, cap)


@dataclass
class CapacityBoard:
    reported: dict[str, Windows] = field(default_factory=dict)

    def heard(self, record: dict[str, Any]) -> None:
        """A decoded ``CapUsage`` record."""
        self.reported[record["destination_id"]] = tuple(
            (w["window"], int(w["used"]), int(w["cap"])) for w in record["windows"]
        )

    def room(self, destination_id: str) -> float:
        """The share of its tightest cap still free (1.0: uncapped, or not heard of yet)."""
        windows = self.reported.get(destination_id)
        if not windows:
            return 1.0
        return min(max(cap - used, 0) / cap if cap else 0.0 for _, used, cap in windows)

    def full_window(self, destination_id: str, current: Iterable[str]) -> str | None:
        """A window among ``current`` (the destination's windows now) that its last report
        says is full; a reported window that has passed says nothing."""
        now = set(current)
        for window, used, cap in self.reported.get(destination_id, ()):
            if window in now and used >= cap:
                return window
        return None
