"""Flows: single, parallel, waterfall, conditional, nested; schedules; appended values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streams.config import parse_destinations
from streams.config.schedule import Schedule
from streams.errors import ConfigError
from streams.model import Lead, Outcome, OutcomeKind
from streams.stages.attempt import Attempt
from streams.stages.routing import route, select_flow

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # a Monday


class Recipients:
    """``deliver`` for route(): each destination answers as scripted, and is recorded."""

    def __init__(self, **answers: Outcome) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Lead]] = []

    async def __call__(self, lead: Lead, destination_id: str) -> Attempt:
        self.calls.append((destination_id, lead))
        outcome = self.answers.get(destination_id, Outcome.success())
        return Attempt(
            lead.id, destination_id, "json_post", 1, NOW, NOW, 1.0, 0.1, 200, outcome, None
        )

    @property
    def order(self) -> list[str]:
        return [d for d, _ in self.calls]


def flows(*flow: dict[str, Any], ids: str = "a b c crm premium standard small") -> Any:
    destinations = [{"id": i, "url": f"http://127.0.0.1:9/{i}"} for i in ids.split()]
    return parse_destinations({"destinations": destinations, "flows": list(flow)}).compiled_flows


LEAD = Lead(
    "L-1", {"id": "L-1", "lead": {"loan_amount": 30000, "state": "CA"}, "source": {"type": "paid"}}
)


async def run(flow: dict[str, Any], recipients: Recipients, lead: Lead = LEAD) -> Any:
    (compiled,) = flows(flow)
    return await route(compiled.plan, lead, recipients)


async def test_single_destination() -> None:
    recipients = Recipients()
    routed = await run({"id": "one", "plan": "a"}, recipients)
    assert recipients.order == ["a"] and routed.accepted


async def test_waterfall_moves_on_after_a_reject_and_stops_when_sold() -> None:
    recipients = Recipients(
        a=Outcome.failure("Outside service area"),
        b=Outcome.error("System unavailable (circuit open)", retryable=False),
        c=Outcome.success(reference_id="C-1"),
    )
    routed = await run({"id": "w", "plan": {"waterfall": ["a", "b", "c", "crm"]}}, recipients)
    assert recipients.order == ["a", "b", "c"]  # crm never sees a sold lead
    assert routed.accepted
    assert [a.outcome.kind for a in routed.attempts] == [
        OutcomeKind.FAILURE,
        OutcomeKind.ERROR,
        OutcomeKind.SUCCESS,
    ]


async def test_a_waterfall_nobody_accepts_tries_everyone() -> None:
    recipients = Recipients(a=Outcome.failure("x"), b=Outcome.skip("Outside business hours"))
    routed = await run({"id": "w", "plan": {"waterfall": ["a", "b"]}}, recipients)
    assert recipients.order == ["a", "b"] and not routed.accepted


async def test_parallel_sends_to_every_branch_independently() -> None:
    recipients = Recipients(a=Outcome.failure("Duplicate lead"))
    routed = await run({"id": "p", "plan": {"parallel": ["a", "b", "crm"]}}, recipients)
    assert sorted(recipients.order) == ["a", "b", "crm"]
    assert routed.accepted and len(routed.attempts) == 3


@pytest.mark.parametrize(
    ("amount", "expected"), [(60000, ["premium"]), (30000, ["standard"]), (1000, ["small"])]
)
async def test_conditional_first_match(amount: int, expected: list[str]) -> None:
    plan = {
        "conditional": {
            "rules": [
                {"when": "lead.loan_amount > 50000", "then": "premium"},
                {"when": "lead.loan_amount > 25000", "then": "standard"},
            ],
            "else": "small",
        }
    }
    recipients = Recipients()
    lead = Lead("L", {"id": "L", "lead": {"loan_amount": amount}})
    await run({"id": "c", "plan": plan}, recipients, lead)
    assert recipients.order == expected


async def test_conditional_all_matches_runs_each() -> None:
    plan = {
        "conditional": {
            "mode": "all",
            "rules": [
                {"when": "lead.state == 'CA'", "then": "a"},
                {"when": "lead.loan_amount > 100", "then": "b"},
                {"when": "lead.state == 'TX'", "then": "c"},
            ],
        }
    }
    recipients = Recipients()
    await run({"id": "c", "plan": plan}, recipients)
    assert sorted(recipients.order) == ["a", "b"]


async def test_nested_crm_copy_in_parallel_with_a_buyer_waterfall() -> None:
    recipients = Recipients(a=Outcome.failure("Cap exceeded"))
    routed = await run(
        {"id": "n", "plan": {"parallel": ["crm", {"waterfall": ["a", "b", "c"]}]}}, recipients
    )
    assert sorted(recipients.order) == ["a", "b", "crm"]
    assert routed.accepted


async def test_values_a_destination_returns_reach_the_next_step() -> None:
    recipients = Recipients(
        a=Outcome.failure("x"),
        b=Outcome.success(reference_id="B-7", appended={"url": "https://b/7"}),
    )
    routed = await run(
        {"id": "w", "plan": {"waterfall": ["a", "b", {"parallel": ["crm"]}]}}, recipients
    )
    assert routed.lead.envelope["appended"]["b"] == {"url": "https://b/7", "reference_id": "B-7"}
    # a sold lead stops the waterfall; a later step in a parallel copy would see the values
    recipients = Recipients(a=Outcome.success(reference_id="A-1"))
    await run({"id": "s", "plan": {"waterfall": [{"parallel": ["a"]}, "crm"]}}, recipients)
    assert recipients.order == ["a"]


async def test_flows_select_leads_by_their_data_first_match() -> None:
    compiled = flows(
        {"id": "organic", "when": "source.type == 'organic'", "plan": "a"},
        {"id": "california", "when": "lead.state == 'CA'", "plan": "b"},
        {"id": "rest", "plan": "c"},
    )
    assert select_flow(LEAD, compiled).id == "california"  # type: ignore[union-attr]
    other = Lead("L", {"id": "L", "lead": {"state": "TX"}, "source": {"type": "paid"}})
    assert select_flow(other, compiled).id == "rest"  # type: ignore[union-attr]
    assert select_flow(other, compiled[:2]) is None


def test_without_flows_every_enabled_destination_gets_every_lead() -> None:
    (compiled,) = parse_destinations(
        {
            "destinations": [
                {"id": "a", "url": "http://127.0.0.1:9/a"},
                {"id": "b", "url": "http://127.0.0.1:9/b", "enabled": False},
            ]
        }
    ).compiled_flows
    assert compiled.id == "all"


@pytest.mark.parametrize(
    ("flow", "problem"),
    [
        ({"id": "x", "plan": "nope"}, "flows[0].plan: no destination 'nope'"),
        (
            {"id": "x", "plan": {"waterfall": ["a", "zz"]}},
            "flows[0].plan.waterfall[1]: no destination 'zz'",
        ),
        (
            {"id": "x", "plan": {"conditional": {"rules": [{"when": "a ==", "then": "a"}]}}},
            "flows[0].plan.conditional.rules[0].when: column",
        ),
        ({"id": "x", "when": "lead.state = 'CA'", "plan": "a"}, "flows[0].when: column"),
    ],
)
def test_a_wrong_flow_is_refused_at_start_with_its_place(
    flow: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        flows(flow)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (datetime(2026, 11, 23, 14, 0, tzinfo=UTC), True),  # Mon 09:00 in New York
        (datetime(2026, 11, 23, 13, 59, tzinfo=UTC), False),  # 08:59
        (datetime(2026, 11, 23, 22, 0, tzinfo=UTC), False),  # 17:00: the end is not included
        (datetime(2026, 11, 28, 15, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), False),  # Thanksgiving, a holiday
    ],
)
def test_business_hours_in_the_destinations_time_zone(moment: datetime, open_: bool) -> None:
    schedule = Schedule(timezone="America/New_York", holidays=["2026-11-26"])  # type: ignore[list-item]
    assert schedule.is_open(moment) is open_


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"timezone": "Mars/Base"}, "unknown time zone"),
        ({"timezone": "UTC", "hours": ["17:00-09:00"]}, "start must come before"),
        ({"timezone": "UTC", "hours": ["9-5"]}, "HH:MM-HH:MM"),
    ],
)
def test_bad_schedules_are_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Schedule.model_validate(fields)


def test_hours_take_a_one_digit_hour_and_end_at_24_00() -> None:
    """``9:00`` was refused (ISO wants ``09:00``), and the last minute of a day could not
    be open: ``24:00`` was refused and ``23:59`` ends a minute early."""
    night = Schedule(timezone="UTC", days=["sat"], hours=["9:00-12:00", "22:00-24:00"])  # type: ignore[list-item]
    assert night.is_open(datetime(2026, 12, 5, 23, 59, 59, tzinfo=UTC))  # a Saturday
    assert night.is_open(datetime(2026, 12, 5, 9, 0, tzinfo=UTC))
    assert not night.is_open(datetime(2026, 12, 5, 21, 59, tzinfo=UTC))
    assert night.next_open(datetime(2026, 12, 5, 13, 0, tzinfo=UTC)) == datetime(
        2026, 12, 5, 22, 0, tzinfo=UTC
    )


async def test_a_sequence_runs_each_step_with_what_the_last_returned_and_stops_at_a_failure() -> (
    None
):
    recipients = Recipients(a=Outcome.success(reference_id="P-1"))
    routed = await run({"id": "s", "plan": {"sequence": ["a", "b"]}}, recipients)
    assert recipients.order == ["a", "b"] and routed.accepted
    assert recipients.calls[1][1].envelope["appended"]["a"]["reference_id"] == "P-1"

    recipients = Recipients(a=Outcome.failure("Invalid data"))
    routed = await run({"id": "s", "plan": {"sequence": ["a", "b"]}}, recipients)
    assert recipients.order == ["a"] and not routed.accepted
