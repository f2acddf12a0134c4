"""Circuit breakers: stop sending to a recipient that keeps failing, try it again later.

closed → open after ``consecutive_errors`` errors in a row, or an error rate of at least
``error_rate`` over ``window_s`` with at least ``min_requests`` (Convoy's defaults: 70 %
over 5 minutes, 10 requests); an authentication error opens it at once, and a vendor's
spent quota opens it until the quota resets. Open for
``cool_down_s``, then half-open: up to ``trial_requests`` deliveries go through; a success
closes it, an error opens it again. Recipient errors and timeouts count; business
rejects (failure outcomes) and rate limits (soft rejects) do not.

The state is a small plain dict (``CircuitState.as_dict``), so a Faust table can hold it;
the functions here decide, with ``now`` passed in, and never wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from streams.config.policies import CircuitPolicy
from streams.model import CircuitChange, CircuitStateName, Outcome, OutcomeCategory, OutcomeKind

if TYPE_CHECKING:
    pass

State = CircuitStateName
BUCKET_S = 10.0  # error-rate window resolution: bounded memory whatever the traffic


@dataclass(frozen=True, slots=True)
class CircuitState:
    state: State = "closed"
    opened_at: float = 0.0
    consecutive: int = 0
    trials: int = 0  # deliveries let through while half-open
    buckets: tuple[tuple[float, int, int], ...] = field(default=())  # (start, requests, errors)
    # Open at least until then: a vendor's spent quota (0: the cool-down alone).
    until: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "opened_at": self.opened_at,
            "consecutive": self.consecutive,
            "trials": self.trials,
            "buckets": [list(b) for b in self.buckets],
            "until": self.until,
        }

    def reopens_at(self, policy: CircuitPolicy) -> float:
        """When an open circuit lets a trial through."""
        return max(self.opened_at + policy.cool_down_s, self.until)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CircuitState:
        return cls(
            data["state"],
            data["opened_at"],
            data["consecutive"],
            data["trials"],
            tuple((float(s), int(r), int(e)) for s, r, e in data["buckets"]),
            float(data.get("until", 0.0)),  # written before quotas: none
        )


def shut(state: CircuitState, policy: CircuitPolicy, now: float) -> bool:
    """Open and still cooling down: nothing goes (``admit`` says so before a delivery; the
    desk asks again after a delivery's wait for its slot, without counting a trial)."""
    return policy.enabled and state.state == "open" and now < state.reopens_at(policy)


def admit(state: CircuitState, policy: CircuitPolicy, now: float) -> tuple[bool, CircuitState]:
    """May a delivery go now? Half-opens an open circuit whose cool-down is over."""
    if not policy.enabled or state.state == "closed":
        return True, state
    if state.state == "open":
        if shut(state, policy, now):
            return False, state
        state = replace(state, state="half_open", trials=0)
    if state.trials >= policy.trial_requests:
        return False, state
    return True, replace(state, trials=state.trials + 1)


def record(
    state: CircuitState, policy: CircuitPolicy, outcome: Outcome, now: float
) -> tuple[CircuitState, CircuitChange | None]:
    """Account for one finished delivery; the new state, and the change if there was one."""
    if not policy.enabled or outcome.kind is OutcomeKind.SKIP:
        return state, None
    # A rate limit ("slow down", retried after its Retry-After) is not an outage.
    counts = (
        outcome.kind is OutcomeKind.ERROR and outcome.category is not OutcomeCategory.SOFT_REJECT
    )
    buckets = _count(state.buckets, now, policy.window_s, counts)
    if outcome.quota_s is not None:
        # The vendor's allowance is spent: closed to every lead until it resets.
        until = now + outcome.quota_s
        if state.state == "open":  # already: it stays so until the later of the two
            return replace(state, until=max(state.until, until), buckets=buckets), None
        opened = replace(_open(state, now, buckets), until=until)
        return opened, CircuitChange(state.state, "open", outcome.reason)
    if outcome.category is OutcomeCategory.AUTH_ERROR and state.state != "open":
        # Its reason says which: "Authentication failed (...)", "Configuration refused (...)".
        return _open(state, now, buckets), CircuitChange(state.state, "open", outcome.reason)
    if not counts:
        if state.state == "half_open":
            closed = CircuitState("closed", buckets=buckets)
            return closed, CircuitChange("half_open", "closed", "Trial delivery succeeded")
        return replace(state, consecutive=0, buckets=buckets), None
    if state.state == "half_open":
        return _open(state, now, buckets), CircuitChange(
            "half_open", "open", "Trial delivery failed"
        )
    if state.state == "open":
        return replace(state, buckets=buckets), None
    consecutive = state.consecutive + 1
    if consecutive >= policy.consecutive_errors:
        why = f"{consecutive} errors in a row"
        return _open(state, now, buckets), CircuitChange("closed", "open", why)
    requests = sum(r for _, r, _ in buckets)
    errors = sum(e for _, _, e in buckets)
    if requests >= policy.min_requests and errors / requests >= policy.error_rate:
        why = f"{errors} errors in {requests} requests"
        return _open(state, now, buckets), CircuitChange("closed", "open", why)
    return replace(state, consecutive=consecutive, buckets=buckets), None


def worth_writing(before: CircuitState, after: CircuitState) -> bool:
    """Must ``after`` reach the table now, or may it wait in memory for the next write?

    The common change, one per delivery, is a closed circuit counting one more success in
    the same bucket: it waits (a changelog write per delivery saved). What a restart
    forgets then is at most one bucket's successes, which can only make the error rate
    look higher than it was. Errors, state changes and a new bucket are written at once."""
    if after == before:
        return False
    if after.state != "closed" or before.state != "closed":
        return True
    if after.consecutive or before.consecutive or not before.buckets:
        return True
    (start, _, errors), (then_start, _, then_errors) = after.buckets[-1], before.buckets[-1]
    return len(after.buckets) != len(before.buckets) or (start, errors) != (
        then_start,
        then_errors,
    )


def _open(
    state: CircuitState, now: float, buckets: tuple[tuple[float, int, int], ...]
) -> CircuitState:
    return CircuitState("open", opened_at=now, consecutive=0, trials=0, buckets=buckets)


def _count(
    buckets: tuple[tuple[float, int, int], ...], now: float, window_s: float, error: bool
) -> tuple[tuple[float, int, int], ...]:
    start = now - now % BUCKET_S
    kept = [b for b in buckets if b[0] > now - window_s]
    if kept and kept[-1][0] == start:
        _, requests, errors = kept[-1]
        kept[-1] = (start, requests + 1, errors + int(error))
    else:
        kept.append((start, 1, int(error)))
    return tuple(kept)


def open_outcome() -> Outcome:
    """What a delivery gets while the circuit is open: not sent; a waterfall moves on."""
    return Outcome.skip("System unavailable (circuit open)", category=OutcomeCategory.NOT_SENT)


def heard(after: str, at: float) -> CircuitState | None:
    """Another worker's circuit for a destination changed: open here too (its cool-down
    counted from when it opened there), or closed again. Half-open is each worker's own."""
    if after == "open":
        return CircuitState("open", at)
    if after == "closed":
        return CircuitState()
    return None
