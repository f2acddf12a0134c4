"""Retries: when to try a destination again after a retryable outcome, or not at all.

Exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter"): the n-th
retry waits a random time in [0, base·2ⁿ⁻¹], capped at ``max_delay_s``; so by default
up to 1 s, 2 s, 4 s, 8 s. A recipient's Retry-After is a floor: we never come back sooner
than it asked. The caller parks the lead until then; nothing here sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, ConfigDict, Field

from streams.model import Outcome


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=100)  # the first try included
    base_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    # A Retry-After longer than this is not waited for: the attempt counts as the last.
    max_retry_after_s: float = Field(default=3600.0, ge=0)


def retry_delay(
    policy: RetryPolicy,
    outcome: Outcome,
    attempt: int,
    draw: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``; None when there is none to make.

    ``draw`` picks the jittered wait in [low, high] (a fixed function in tests)."""
    if not outcome.retryable or attempt >= policy.max_attempts:
        return None
    ceiling = min(policy.base_s * 2 ** (attempt - 1), policy.max_delay_s)
    delay = draw(0.0, ceiling)
    asked = outcome.retry_after_s
    if asked is not None:
        if asked > policy.max_retry_after_s:
            return None
        delay = max(delay, asked)
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an obsolete date form without a zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
