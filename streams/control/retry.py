"""Retries: when to try a destination again after a retryable outcome, or not at all.

Exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter"): the n-th
retry waits a random time in [0, base·2ⁿ⁻¹], capped at ``max_delay_s``; so by default
up to 1 s, 2 s, 4 s, 8 s. A recipient's Retry-After is a floor: we never come back sooner
than it asked. The caller parks the lead until then; nothing here sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from streams.config.policies import RetryPolicy
from streams.model import Outcome


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
