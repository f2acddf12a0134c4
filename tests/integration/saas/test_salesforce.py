"""integrations/salesforce.py against a local Salesforce org double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from streams.config import Destination, parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from streams.stages.oauth import TokenCache
from tests.integration.saas.salesforce import CLIENT_ID, CLIENT_SECRET, LEAD_PATH, SalesforceDouble


@pytest.fixture
async def org() -> AsyncIterator[SalesforceDouble]:
    double = await SalesforceDouble(api_limit=4).start()
    yield double
    await double.stop()


def salesforce(
    org: SalesforceDouble,
    monkeypatch: pytest.MonkeyPatch,
    mapping: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    url: str | None = None,
    **auth: Any,
) -> Destination:
    monkeypatch.setenv("SF_SECRET", CLIENT_SECRET)
    return parse_destinations(
        {
            "destinations": [
                {
                    "id": "sfdc",
                    "integration": "salesforce",
                    "url": url or org.base_url(LEAD_PATH),
                    "auth": {
                        "type": "oauth2",
                        "token_url": org.base_url("/services/oauth2/token"),
                        "client_id": CLIENT_ID,
                        "client_secret": "${env:SF_SECRET}",
                        **auth,
                    },
                    "settings": settings or {},
                    "mapping": (
                        mapping
                        if mapping is not None
                        else {"Company": "{{default(lead.company, 'Individual')}}"}
                    ),
                }
            ]
        }
    ).destinations[0]


def lead(email: str, **fields: Any) -> Lead:
    return Lead(
        email,
        {
            "id": email,
            "source": {"name": "web"},
            "lead": {"email": email, "first_name": "Ada", "last_name": "Lovelace", **fields},
        },
    )


async def test_create_duplicate_invalid_expired_session_and_limit(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, tokens = salesforce(org, monkeypatch), TokenCache()

    created = (await attempt_delivery(lead("ada@example.com"), dest, sender, tokens=tokens)).outcome
    assert (created.kind, created.reference_id) == (OutcomeKind.SUCCESS, "00Q5e0000000001AAA")
    assert org.leads[0] == {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "Company": "Individual",
        "LeadSource": "web",
    }

    duplicate = (
        await attempt_delivery(lead("ada@example.com"), dest, sender, tokens=tokens)
    ).outcome
    assert (duplicate.reason, duplicate.category) == ("Duplicate lead", OutcomeCategory.DUPLICATE)

    org.expire_sessions()  # the core gets a new token once and the lead still goes through
    renewed = (
        await attempt_delivery(lead("grace@example.com"), dest, sender, tokens=tokens)
    ).outcome
    assert renewed.kind is OutcomeKind.SUCCESS and org.token_requests == 2

    invalid = (
        await attempt_delivery(lead("x@example.com", last_name=" "), dest, sender, tokens=tokens)
    ).outcome
    assert invalid.kind is OutcomeKind.SKIP  # validate() refuses before any request

    limited = (await attempt_delivery(lead("y@example.com"), dest, sender, tokens=tokens)).outcome
    over = (await attempt_delivery(lead("z@example.com"), dest, sender, tokens=tokens)).outcome
    assert limited.kind is OutcomeKind.SUCCESS
    assert (over.reason, over.retryable, over.category) == (
        "Quota spent (Salesforce REQUEST_LIMIT_EXCEEDED)",
        True,
        OutcomeCategory.SOFT_REJECT,
    )
    # The org's rolling 24-hour allowance: the destination waits, asking again in an hour.
    assert over.quota_s == 3600


async def test_documented_requirements_and_answers(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default mapping, a lead without a company: Company is required, the fallback goes.
    dest = salesforce(org, monkeypatch, mapping={})
    created = (await attempt_delivery(lead("nocompany@example.com"), dest, sender)).outcome
    assert created.kind is OutcomeKind.SUCCESS, created
    assert org.leads[-1]["Company"] == "[not provided]"

    # A unique field already on another record: a duplicate, not a buyer's reject.
    unique = salesforce(org, monkeypatch, mapping={"External_Id__c": "id"})
    await attempt_delivery(lead("u1@example.com"), unique, sender)
    again = Lead("u1b", {"id": "u1@example.com", "lead": {"last_name": "L", "email": "u2@x.io"}})
    twice = (await attempt_delivery(again, unique, sender)).outcome
    assert (twice.reason, twice.category) == ("Duplicate lead", OutcomeCategory.DUPLICATE)

    # An alerting duplicate rule lets a save through when asked to.
    allowing = salesforce(org, monkeypatch, mapping={}, settings={"allow_duplicates": True})
    saved = (await attempt_delivery(lead("nocompany@example.com"), allowing, sender)).outcome
    assert saved.kind is OutcomeKind.SUCCESS, saved


async def test_client_credentials_go_in_the_body_as_documented(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert salesforce(org, monkeypatch).auth.client_auth == "body"  # type: ignore[union-attr]
    basic = salesforce(org, monkeypatch, client_auth="basic")  # what the org does not take
    refused = (await attempt_delivery(lead("b@example.com"), basic, sender)).outcome
    assert refused.kind is OutcomeKind.ERROR and refused.category is OutcomeCategory.AUTH_ERROR
    assert org.leads == []


async def test_an_org_without_api_access_is_a_configuration_error(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await SalesforceDouble(api_enabled=False).start()
    try:
        outcome = (
            await attempt_delivery(lead("c@example.com"), salesforce(org, monkeypatch), sender)
        ).outcome
    finally:
        await org.stop()
    assert outcome.reason == "Configuration refused (Salesforce API_DISABLED_FOR_ORG)"
    # auth_error: the circuit opens at once; not retried lead by lead.
    assert (outcome.category, outcome.retryable) == (OutcomeCategory.AUTH_ERROR, False)


async def test_a_field_the_lead_object_lacks_or_a_full_org_refuses_the_configuration(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lead would meet them: before, a field the Lead object lacks was each lead's
    "Invalid data", and a full org's refusal each lead's own; the circuit stayed closed."""
    mistyped = salesforce(org, monkeypatch, {"LastName": "lead.last_name", "Zip__c": "lead.zip"})
    outcome = (await attempt_delivery(lead("m@example.com", zip="10001"), mistyped, sender)).outcome
    assert (outcome.reason, outcome.category, outcome.retryable) == (
        "Configuration refused (Salesforce INVALID_FIELD)", OutcomeCategory.AUTH_ERROR, False
    )  # fmt: skip
    org.storage_full = True
    full = await attempt_delivery(lead("n@example.com"), salesforce(org, monkeypatch), sender)
    assert full.outcome.reason == "Configuration refused (Salesforce STORAGE_LIMIT_EXCEEDED)"
    assert org.leads == []


async def test_a_locked_record_is_retried(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNABLE_TO_LOCK_ROW passes (Salesforce's advice: try again): before, a refusal."""
    org.locked = 1
    dest = salesforce(org, monkeypatch)
    locked = (await attempt_delivery(lead("l@example.com"), dest, sender)).outcome
    assert (locked.kind, locked.reason, locked.retryable) == (
        OutcomeKind.ERROR, "Recipient busy (Salesforce UNABLE_TO_LOCK_ROW)", True
    )  # fmt: skip
    again = (await attempt_delivery(lead("l@example.com"), dest, sender)).outcome
    assert again.kind is OutcomeKind.SUCCESS, again


async def test_required_field_errors_name_the_fields(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An override of the default mapping that leaves LastName empty for this lead.
    dest = salesforce(org, monkeypatch, {"LastName": "lead.surname"})
    outcome = (await attempt_delivery(lead("q@example.com"), dest, sender)).outcome
    assert (outcome.reason, outcome.category) == (
        "Invalid data: LastName",
        OutcomeCategory.INVALID_DATA,
    )


def test_salesforce_needs_auth() -> None:
    with pytest.raises(Exception, match="auth: salesforce needs auth of type oauth2"):
        parse_destinations(
            {
                "destinations": [
                    {
                        "id": "s",
                        "integration": "salesforce",
                        "url": "https://x.my.salesforce.com/services/data/v60.0/sobjects/Lead",
                    }
                ]
            }
        )


async def test_the_create_goes_to_the_instance_url_of_the_token_answer(
    org: SalesforceDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue #17: Salesforce says to send REST calls to the ``instance_url`` its token
    answer names; the destination's URL may name the login host instead."""
    # nothing answers on the login host given here: only the URL's path is kept
    dest = salesforce(org, monkeypatch, url=f"http://127.0.0.1:9{LEAD_PATH}")
    attempt = await attempt_delivery(lead("i@example.com"), dest, sender)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    assert attempt.request is not None
    assert attempt.request.url == org.base_url(LEAD_PATH)
