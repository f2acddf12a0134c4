"""integrations/hubspot.py against a local double of HubSpot's contacts API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from streams.config import Destination, parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.saas.hubspot import (
    EXPIRED_TOKEN,
    READ_ONLY_TOKEN,
    VALID_TOKEN,
    HubSpotDouble,
)


@pytest.fixture
async def hubspot() -> AsyncIterator[HubSpotDouble]:
    double = await HubSpotDouble(per_second_limit=3).start()
    yield double
    await double.stop()


def hubspot_destination(
    double: HubSpotDouble, monkeypatch: pytest.MonkeyPatch, token: str = VALID_TOKEN, **extra: Any
) -> Destination:
    monkeypatch.setenv("HUBSPOT_TOKEN", token)
    return parse_destinations(
        {
            "destinations": [
                {
                    "id": "hubspot",
                    "integration": "hubspot",
                    "url": double.url,
                    "settings": {"access_token": "${env:HUBSPOT_TOKEN}"},
                    **extra,
                }
            ]
        }
    ).destinations[0]


def lead(email: str, **fields: Any) -> Lead:
    return Lead(
        email,
        {"id": email, "lead": {"email": email, "first_name": "Ada", "last_name": "L", **fields}},
    )


async def test_create_then_duplicate(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = hubspot_destination(hubspot, monkeypatch)
    created = await attempt_delivery(lead("ada@example.com", phone_1="2015550123"), dest, sender)
    assert created.outcome.kind is OutcomeKind.SUCCESS
    assert created.outcome.reference_id == "501"
    assert hubspot.requests[0] == {
        "properties": {
            "email": "ada@example.com",
            "firstname": "Ada",
            "lastname": "L",
            "phone": "2015550123",
        }
    }
    assert created.request is not None and created.request.headers["Authorization"] == "Bearer ****"

    again = await attempt_delivery(lead("ada@example.com"), dest, sender)
    assert (again.outcome.kind, again.outcome.reason, again.outcome.category) == (
        OutcomeKind.FAILURE,
        "Duplicate lead",
        OutcomeCategory.DUPLICATE,
    )
    assert again.outcome.appended == {"existing_id": "501"}
    assert not again.outcome.retryable


async def test_validation_error_is_invalid_data(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = await attempt_delivery(
        lead("not-an-email"), hubspot_destination(hubspot, monkeypatch), sender
    )
    assert (attempt.outcome.kind, attempt.outcome.category) == (
        OutcomeKind.FAILURE,
        OutcomeCategory.INVALID_DATA,
    )
    assert attempt.outcome.raw is not None and "INVALID_EMAIL" in attempt.outcome.raw


async def test_expired_token_is_an_authentication_error(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = hubspot_destination(hubspot, monkeypatch, token=EXPIRED_TOKEN)
    attempt = await attempt_delivery(lead("a@example.com"), dest, sender)
    assert attempt.outcome.reason == "Authentication failed (token expired)"
    assert (attempt.outcome.category, attempt.outcome.retryable) == (
        OutcomeCategory.AUTH_ERROR,
        False,
    )


async def test_a_token_without_the_write_scope_is_a_configuration_refused(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, "Authentication failed (HTTP 403)": the token is good, the app's scopes are not."""
    dest = hubspot_destination(hubspot, monkeypatch, token=READ_ONLY_TOKEN)
    outcome = (await attempt_delivery(lead("a@example.com"), dest, sender)).outcome
    assert (outcome.reason, outcome.category, outcome.retryable) == (
        "Configuration refused (HubSpot MISSING_SCOPES)", OutcomeCategory.AUTH_ERROR, False
    )  # fmt: skip


async def test_rate_limit_is_a_retryable_soft_reject(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = hubspot_destination(hubspot, monkeypatch)
    attempts = [await attempt_delivery(lead(f"r{i}@example.com"), dest, sender) for i in range(4)]
    limited = attempts[-1].outcome
    assert [a.outcome.kind for a in attempts[:3]] == [OutcomeKind.SUCCESS] * 3
    assert (limited.kind, limited.reason, limited.retryable, limited.category) == (
        OutcomeKind.ERROR,
        "Rate limited",
        True,
        OutcomeCategory.SOFT_REJECT,
    )


async def test_a_lead_without_email_is_skipped_and_not_sent(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = await attempt_delivery(
        Lead("x", {"id": "x", "lead": {}}), hubspot_destination(hubspot, monkeypatch), sender
    )
    assert attempt.outcome.kind is OutcomeKind.SKIP
    assert hubspot.requests == []


def test_default_mapping_can_be_overridden_and_the_token_must_be_a_reference(
    hubspot: HubSpotDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = hubspot_destination(
        hubspot, monkeypatch, mapping={"properties.firstname": "{{upper(first_name)}}"}
    )
    payload = dest.compiled_mapping.apply(lead("a@example.com"))
    assert payload["properties"]["firstname"] == "ADA"
    assert (
        parse_destinations(
            {
                "destinations": [
                    {
                        "id": "h",
                        "integration": "hubspot",
                        "settings": {"access_token": "${env:HUBSPOT_TOKEN}"},
                    }
                ]
            }
        )
        .destinations[0]
        .url
        == "https://api.hubapi.com/crm/objects/2026-03/contacts"  # the current reference
    )
    with pytest.raises(Exception, match="reference"):
        parse_destinations(
            {
                "destinations": [
                    {
                        "id": "h",
                        "integration": "hubspot",
                        "settings": {"access_token": "pat-literal"},
                    }
                ]
            }
        )


async def test_upsert_updates_an_existing_contact_instead_of_refusing_it(
    hubspot: HubSpotDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = hubspot_destination(
        hubspot, monkeypatch, settings={"access_token": "${env:HUBSPOT_TOKEN}", "mode": "upsert"}
    )
    first = (await attempt_delivery(lead("ada@example.com"), dest, sender)).outcome
    second = (await attempt_delivery(lead("ada@example.com"), dest, sender)).outcome
    assert (first.kind, first.reference_id, first.appended) == (
        OutcomeKind.SUCCESS,
        "501",
        {"new": "true"},
    )
    assert (second.kind, second.reference_id, second.appended) == (
        OutcomeKind.SUCCESS,
        "501",
        {"new": "false"},
    )
    assert hubspot.requests[0] == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "ada@example.com",
                "properties": {"email": "ada@example.com", "firstname": "Ada", "lastname": "L"},
            }
        ]
    }


async def test_a_spent_daily_limit_waits_an_hour_and_a_207_is_its_inputs_error(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    double = await HubSpotDouble(daily_limit=1).start()
    try:
        dest = hubspot_destination(
            double, monkeypatch, settings={"access_token": "${env:HUBSPOT_TOKEN}", "mode": "upsert"}
        )
        invalid = (await attempt_delivery(lead("not-an-address"), dest, sender)).outcome
        spent = (await attempt_delivery(lead("b@example.com"), dest, sender)).outcome
    finally:
        await double.stop()
    assert (invalid.kind, invalid.category) == (OutcomeKind.FAILURE, OutcomeCategory.INVALID_DATA)
    assert (spent.reason, spent.retryable, spent.quota_s) == (
        "Quota spent (HubSpot DAILY)",
        True,
        3600,
    )


async def test_a_worker_parks_every_lead_until_a_spent_daily_quota_resets(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """issue #17: a spent quota parks the destination's work until the reset, instead of
    burning retries: one request learns it, the circuit says why, no lead is sent again
    before the reset or dead-lettered, and none loses an attempt."""
    from tests.integration.conftest import collect, decode_with_schema_file, publish

    double = await HubSpotDouble(daily_limit=2).start()
    try:
        start_worker(
            f"""
destinations:
  - id: hubspot
    integration: hubspot
    url: {double.url}
    settings: {{access_token: "${{env:HUBSPOT_TOKEN}}"}}
""",
            env={"HUBSPOT_TOKEN": VALID_TOKEN},
            in_flight=1,  # one request at a time: the third learns the quota is spent
        )
        leads = [
            {"id": f"Q-{n}", "lead": {"email": f"q{n}@example.com", "last_name": "Q"}}
            for n in range(6)
        ]
        for one in leads:  # in order, so the quota is spent by the third
            await publish(kafka, topics.leads, [one])
            await collect(kafka, topics.events, leads.index(one) + 1)
        records = await collect(kafka, topics.events, 6, settle_s=2.0)
        (change,) = await collect(kafka, topics.control, 1)
        outcomes = await collect(kafka, topics.outcomes, 2, settle_s=1.0)
        dead = await collect(kafka, topics.dlq, 0, settle_s=0.5)
    finally:
        await double.stop()
    events = [decode_with_schema_file(r.value, "delivery_event") for r in records]
    events.sort(key=lambda e: e["finished_at"])  # partitions interleave; time does not
    reasons = [e["reason"] for e in events]
    assert reasons[:3] == ["Accepted", "Accepted", "Quota spent (HubSpot DAILY)"]
    assert reasons[3:] == ["System unavailable (circuit open)"] * 3
    assert double.today == 3  # requests received: nothing sent once the quota was known
    circuit = decode_with_schema_file(change.value, "circuit_event")
    assert (circuit["after"], circuit["reason"]) == ("open", "Quota spent (HubSpot DAILY)")
    spent_at = events[2]["finished_at"]
    for event in events[2:]:  # each waits for the reset, an hour on
        wait = (event["next_attempt_at"] - spent_at).total_seconds()
        assert 3590 <= wait <= 3610, event
    assert len(outcomes) == 2 and not dead  # the four wait: no outcome, no dead letter
