"""The circuit breaker's states, decided with an explicit clock."""

from __future__ import annotations

from streams.config.policies import CircuitPolicy
from streams.control.circuit import CircuitState, admit, record, worth_writing
from streams.model import Outcome, OutcomeCategory
from streams.outcome import quota_spent, rate_limited

POLICY = CircuitPolicy(
    consecutive_errors=3, min_requests=10, error_rate=0.7, cool_down_s=30, trial_requests=1
)
ERROR = Outcome.error("Recipient error (HTTP 503)", retryable=True)
OK = Outcome.success()
REJECT = Outcome.failure("Duplicate lead")


def run(state: CircuitState, outcomes: list[Outcome], now: float = 0.0) -> CircuitState:
    for outcome in outcomes:
        state, _ = record(state, POLICY, outcome, now)
    return state


def test_consecutive_errors_open_it_and_a_success_in_between_resets_the_count() -> None:
    assert run(CircuitState(), [ERROR, ERROR, OK, ERROR, ERROR]).state == "closed"
    state, change = record(run(CircuitState(), [ERROR, ERROR]), POLICY, ERROR, 5.0)
    assert state.state == "open" and state.opened_at == 5.0
    assert change is not None and change.reason == "3 errors in a row"


def test_business_rejects_and_rate_limits_never_count() -> None:
    assert run(CircuitState(), [REJECT] * 50).state == "closed"
    assert run(CircuitState(), [rate_limited("429")] * 50).state == "closed"


def test_error_rate_over_the_window_opens_it_once_there_are_enough_requests() -> None:
    nine = run(CircuitState(), [ERROR, ERROR, OK] * 3)  # 6 of 9: too few requests to judge
    assert nine.state == "closed"
    state, change = record(nine, POLICY, ERROR, 0.0)  # 7 of 10 = 70 %
    assert state.state == "open"
    assert change is not None and change.reason == "7 errors in 10 requests"


def test_requests_older_than_the_window_no_longer_count() -> None:
    policy = CircuitPolicy(consecutive_errors=100, min_requests=10, error_rate=0.5, window_s=60)
    state = CircuitState()
    for _ in range(20):
        state, _ = record(state, policy, OK, 0.0)
    for _ in range(5):  # a minute and more later: 5 errors in 10, the old 20 successes gone
        state, _ = record(state, policy, OK, 100.0)
        state, _ = record(state, policy, ERROR, 100.0)
    assert state.state == "open"


def test_open_refuses_until_the_cool_down_then_half_opens_for_one_trial() -> None:
    opened = run(CircuitState(), [ERROR] * 3, now=0.0)
    allowed, state = admit(opened, POLICY, 29.9)
    assert not allowed and state.state == "open"
    allowed, state = admit(opened, POLICY, 30.0)
    assert allowed and state.state == "half_open"
    second, state = admit(state, POLICY, 30.1)
    assert not second  # one trial at a time


def test_a_trial_success_closes_it_and_a_trial_error_opens_it_again() -> None:
    _, half_open = admit(run(CircuitState(), [ERROR] * 3), POLICY, 31.0)
    closed, change = record(half_open, POLICY, OK, 31.5)
    assert closed.state == "closed" and change is not None and change.after == "closed"
    reopened, change = record(half_open, POLICY, ERROR, 31.5)
    assert reopened.state == "open" and reopened.opened_at == 31.5


def test_an_authentication_error_opens_it_at_once() -> None:
    auth = Outcome.error(
        "Authentication failed (HTTP 401)", retryable=False, category=OutcomeCategory.AUTH_ERROR
    )
    state, change = record(CircuitState(), POLICY, auth, 1.0)
    assert state.state == "open" and change is not None
    assert change.reason == "Authentication failed (HTTP 401)"


def test_state_round_trips_as_a_plain_dict_for_a_table() -> None:
    state = run(CircuitState(), [ERROR, OK, ERROR], now=12.0)
    assert CircuitState.from_dict(state.as_dict()) == state


def test_a_disabled_policy_always_admits() -> None:
    off = CircuitPolicy(enabled=False)
    state = CircuitState()
    for _ in range(20):
        state, _ = record(state, off, ERROR, 0.0)
    assert admit(state, off, 0.0)[0]


def test_only_a_closed_circuit_counting_one_more_success_may_wait_to_be_written() -> None:
    counted = run(CircuitState(), [OK], now=1.0)
    assert worth_writing(CircuitState(), counted)  # the first bucket
    assert not worth_writing(counted, run(counted, [OK], now=2.0))  # same bucket, a success
    assert not worth_writing(counted, counted)
    assert worth_writing(counted, run(counted, [OK], now=11.0))  # a new bucket
    assert worth_writing(counted, run(counted, [ERROR], now=2.0))  # an error
    failing = run(counted, [ERROR], now=2.0)
    assert worth_writing(failing, run(failing, [OK], now=3.0))  # the error streak ends
    opened = run(counted, [ERROR] * 3, now=3.0)
    assert worth_writing(counted, opened)
    assert worth_writing(opened, admit(opened, POLICY, 40.0)[1])  # half-open


def test_a_spent_quota_opens_until_the_reset_and_a_later_one_extends_it() -> None:
    policy = CircuitPolicy(cool_down_s=30)
    state, change = record(CircuitState(), policy, quota_spent("X", None, 600.0), 1000.0)
    assert change is not None and (change.after, change.reason) == ("open", "Quota spent (X)")
    assert admit(state, policy, 1000.0 + 31)[0] is False  # the cool-down is not enough
    assert admit(state, policy, 1000.0 + 600)[0] is True  # the reset is
    longer, again = record(state, policy, quota_spent("X", None, 900.0), 1100.0)
    assert again is None and longer.until == 2000.0
    # A state written before quotas existed reads as one without.
    old = {k: v for k, v in state.as_dict().items() if k != "until"}
    assert CircuitState.from_dict(old).until == 0.0
