"""integrations/pipedrive.py: a person then a lead, in a sequence flow, against a local double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from streams.config import DestinationsFile, parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import Attempt, attempt_delivery
from streams.stages.delivery import HttpSender
from streams.stages.routing import route, select_flow
from tests.integration.saas.pipedrive import TOKEN, PipedriveDouble


@pytest.fixture
async def pipedrive() -> AsyncIterator[PipedriveDouble]:
    # nameless lead: search + create; wrong token: search; named: person; its lead: over
    double = await PipedriveDouble(limit=4).start()
    yield double
    await double.stop()


def config(
    double: PipedriveDouble, monkeypatch: pytest.MonkeyPatch, token: str = TOKEN
) -> DestinationsFile:
    monkeypatch.setenv("PIPEDRIVE_TOKEN", token)
    common = {"integration": "pipedrive", "url": double.base_url()}
    return parse_destinations(
        {
            "destinations": [
                {
                    **common,
                    "id": "pd_person",
                    "settings": {"api_token": "${env:PIPEDRIVE_TOKEN}", "object": "person"},
                    "mapping": {
                        "name": "{{first_name}} {{last_name}}",
                        "email": "email",
                        "phone": "phone_1",
                    },
                },
                {
                    **common,
                    "id": "pd_lead",
                    "settings": {"api_token": "${env:PIPEDRIVE_TOKEN}", "object": "lead"},
                    "mapping": {
                        "title": "Lead {{id}}",
                        "person_id": "appended.pd_person.reference_id",
                    },
                },
            ],
            "flows": [{"id": "crm", "plan": {"sequence": ["pd_person", "pd_lead"]}}],
        }
    )


async def deliver_lead(file: DestinationsFile, lead: Lead, sender: HttpSender) -> list[Attempt]:
    by_id = file.by_id()
    flow = select_flow(lead, file.compiled_flows)
    assert flow is not None

    async def deliver(current: Lead, destination_id: str) -> Attempt:
        return await attempt_delivery(current, by_id[destination_id], sender)

    return (await route(flow.plan, lead, deliver)).attempts


async def test_person_then_lead_linked_by_the_returned_id(
    pipedrive: PipedriveDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    lead = Lead(
        "L-9",
        {
            "id": "L-9",
            "lead": {
                "first_name": "Ada",
                "last_name": "L",
                "email": "ada@example.com",
                "phone_1": "2015550123",
            },
        },
    )
    person, created = await deliver_lead(config(pipedrive, monkeypatch), lead, sender)
    assert (person.outcome.kind, person.outcome.reference_id) == (OutcomeKind.SUCCESS, "101")
    assert pipedrive.persons[101] == {
        "name": "Ada L",
        "emails": [{"value": "ada@example.com", "primary": True, "label": "work"}],
        "phones": [{"value": "2015550123", "primary": True, "label": "work"}],
    }
    assert created.outcome.kind is OutcomeKind.SUCCESS
    assert pipedrive.leads == [{"title": "Lead L-9", "person_id": 101}]
    # The token goes in the x-api-token header (masked in events), never in the URL.
    assert person.request is not None and person.request.url.endswith("/api/v2/persons")
    assert person.request.headers["x-api-token"] == "****"


async def test_no_lead_without_a_person_wrong_token_and_rate_limit(
    pipedrive: PipedriveDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    nameless = Lead("L-1", {"id": "L-1", "lead": {"email": "x@example.com"}})
    (person,) = await deliver_lead(
        config(pipedrive, monkeypatch), nameless, sender
    )  # the sequence stops
    assert (person.outcome.kind, person.outcome.category) == (
        OutcomeKind.FAILURE,
        OutcomeCategory.INVALID_DATA,
    )

    (refused,) = await deliver_lead(config(pipedrive, monkeypatch, token="wrong"), nameless, sender)
    assert refused.outcome.category is OutcomeCategory.AUTH_ERROR

    named = Lead("L-2", {"id": "L-2", "lead": {"first_name": "Grace"}})
    person, limited = await deliver_lead(
        config(pipedrive, monkeypatch), named, sender
    )  # 4th, 5th call (no e-mail: no search)
    assert person.outcome.kind is OutcomeKind.SUCCESS
    assert (limited.outcome.reason, limited.outcome.retryable) == ("Rate limited", True)


async def test_a_person_is_looked_up_by_email_and_never_created_twice(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue #17: Pipedrive does not refuse duplicate persons; a retried timeout made a
    second one. Now a person is searched by e-mail first."""
    pipedrive = await PipedriveDouble().start()
    try:
        lead = Lead("L-7", {"id": "L-7", "lead": {"first_name": "Ada", "email": "Ada@Example.com"}})
        first, _ = await deliver_lead(config(pipedrive, monkeypatch), lead, sender)
        again, _ = await deliver_lead(config(pipedrive, monkeypatch), lead, sender)
        assert first.outcome.reason == "Accepted"
        assert (again.outcome.kind, again.outcome.reason) == (
            OutcomeKind.SUCCESS,
            "Existing person",
        )
        assert again.outcome.reference_id == first.outcome.reference_id
        assert len(pipedrive.persons) == 1
        assert pipedrive.searches[-1] == {
            "term": "Ada@Example.com",
            "fields": "email",
            "exact_match": "true",
            "limit": "1",
        }
        assert again.request is not None and again.request.method == "GET"
        assert again.request.headers["x-api-token"] == "****"
    finally:
        await pipedrive.stop()


async def test_a_spent_daily_budget_waits_for_midnight_utc(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    double = await PipedriveDouble(daily_budget=1).start()
    try:
        named = Lead("L-3", {"id": "L-3", "lead": {"first_name": "Ada"}})
        # the person takes the day's last request; the lead finds the budget spent
        first, spent = await deliver_lead(config(double, monkeypatch), named, sender)
    finally:
        await double.stop()
    assert first.outcome.kind is OutcomeKind.SUCCESS
    assert spent.outcome.reason == "Quota spent (Pipedrive daily budget)"
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert spent.outcome.quota_s is not None
    assert abs(spent.outcome.quota_s - (midnight - now).total_seconds()) < 60


async def test_a_plan_without_api_access_is_a_configuration_error(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpaid = await PipedriveDouble(paid=False).start()
    try:
        lead = Lead("L-3", {"id": "L-3", "lead": {"first_name": "Ada", "last_name": "L"}})
        (person,) = await deliver_lead(config(unpaid, monkeypatch), lead, sender)
    finally:
        await unpaid.stop()
    assert person.outcome.reason.startswith("Configuration refused (Pipedrive 402")
    assert person.outcome.category is OutcomeCategory.AUTH_ERROR
