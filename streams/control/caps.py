"""Caps: at most N leads per hour, day, week or month for a destination, in its time zone.

Counts are kept per window ("day 2026-11-22", "week 2026-W47", ...) in a small plain dict,
so a Faust table can hold them; a new window starts from zero, which is the reset at the
boundary. By default accepted deliveries count (what a buyer pays for); ``count: attempts``
counts every request sent. The functions here decide with ``now`` passed in and never wait.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from streams.config.policies import CapPolicy
from streams.model import Outcome, OutcomeCategory, OutcomeKind

if TYPE_CHECKING:
    from streams.stages.attempt import Attempt

Period = Literal["hour", "day", "week", "month"]
Counts = dict[str, int]  # window key → count, only the current windows

CAP_EXCEEDED = "Cap exceeded"


def full(counts: Counts, policy: CapPolicy, now: datetime, pending: int = 0) -> str | None:
    """The first window whose cap ``counts`` plus ``pending`` deliveries reach; None: room."""
    for key, cap in policy.limits(now).items():
        if counts.get(key, 0) + pending >= cap:
            return key
    return None


def usage(counts: Counts, policy: CapPolicy, now: datetime) -> list[tuple[str, int, int]]:
    """Each window that applies at ``now``: its key, the leads counted, its cap."""
    return [(key, counts.get(key, 0), cap) for key, cap in policy.limits(now).items()]


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
