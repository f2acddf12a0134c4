"""integrations/mailchimp.py against a local double of Mailchimp's list-members API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from integrations.mailchimp import subscriber_hash
from streams.config import Destination, parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.saas.mailchimp import API_KEY, LIST_ID, MailchimpDouble


@pytest.fixture
async def mailchimp() -> AsyncIterator[MailchimpDouble]:
    double = await MailchimpDouble(max_requests=6).start()
    yield double
    await double.stop()


def mailchimp_destination(
    double: MailchimpDouble, monkeypatch: pytest.MonkeyPatch, key: str = API_KEY, **settings: Any
) -> Destination:
    monkeypatch.setenv("MAILCHIMP_API_KEY", key)
    return parse_destinations(
        {
            "destinations": [
                {
                    "id": "newsletter",
                    "integration": "mailchimp",
                    "url": double.base_url("/3.0"),
                    "settings": {
                        "api_key": "${env:MAILCHIMP_API_KEY}",
                        "list_id": LIST_ID,
                        **settings,
                    },
                }
            ]
        }
    ).destinations[0]


def lead(email: str) -> Lead:
    return Lead(
        email, {"id": email, "lead": {"email": email, "first_name": "Ada", "last_name": "L"}}
    )


async def test_upsert_puts_to_the_subscriber_hash_and_twice_is_fine(
    mailchimp: MailchimpDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = mailchimp_destination(mailchimp, monkeypatch)
    first = await attempt_delivery(lead("Ada@Example.com"), dest, sender)
    again = await attempt_delivery(lead("Ada@Example.com"), dest, sender)
    assert [first.outcome.kind, again.outcome.kind] == [OutcomeKind.SUCCESS] * 2
    assert first.outcome.reference_id == subscriber_hash("ada@example.com")
    assert mailchimp.methods == ["PUT", "PUT"]
    assert mailchimp.bodies[0] == {
        "status_if_new": "subscribed",
        "email_address": "Ada@Example.com",
        "merge_fields": {"FNAME": "Ada", "LNAME": "L"},
    }
    assert first.request is not None and first.request.headers["Authorization"] == "Basic ****"


async def test_create_mode_reports_member_exists_as_a_duplicate(
    mailchimp: MailchimpDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = mailchimp_destination(mailchimp, monkeypatch, mode="create")
    assert (
        await attempt_delivery(lead("a@example.com"), dest, sender)
    ).outcome.kind is OutcomeKind.SUCCESS
    again = (await attempt_delivery(lead("a@example.com"), dest, sender)).outcome
    assert (again.kind, again.reason, again.category) == (
        OutcomeKind.FAILURE,
        "Duplicate lead",
        OutcomeCategory.DUPLICATE,
    )
    assert again.raw is not None and "already a list member" in again.raw


async def test_invalid_address_wrong_key_and_rate_limit(
    mailchimp: MailchimpDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    invalid = (
        await attempt_delivery(
            lead("not-an-address"), mailchimp_destination(mailchimp, monkeypatch), sender
        )
    ).outcome
    assert (invalid.kind, invalid.category) == (OutcomeKind.FAILURE, OutcomeCategory.INVALID_DATA)

    wrong = mailchimp_destination(mailchimp, monkeypatch, key="ffff-us6")
    refused = (await attempt_delivery(lead("b@example.com"), wrong, sender)).outcome
    assert (refused.reason, refused.category, refused.retryable) == (
        "Authentication failed (API key)",
        OutcomeCategory.AUTH_ERROR,
        False,
    )

    dest = mailchimp_destination(mailchimp, monkeypatch)
    outcomes = [
        (await attempt_delivery(lead(f"c{n}@example.com"), dest, sender)).outcome for n in range(5)
    ]
    assert (outcomes[-1].reason, outcomes[-1].retryable, outcomes[-1].category) == (
        "Rate limited",
        True,
        OutcomeCategory.SOFT_REJECT,
    )


@pytest.mark.parametrize(
    ("kept_out", "reason"),
    [("unsubscribed", "Contact unsubscribed"), ("cleaned", "Contact bounced (cleaned)")],
)
async def test_an_upsert_of_a_member_who_unsubscribed_or_bounced_is_not_a_sale(
    mailchimp: MailchimpDouble,
    sender: HttpSender,
    monkeypatch: pytest.MonkeyPatch,
    kept_out: str,
    reason: str,
) -> None:
    """Mailchimp answers 200 and leaves the member as it was: before, a sale, for a contact
    who is not on the list."""
    mailchimp.kept_out("gone@example.com", kept_out)
    dest = mailchimp_destination(mailchimp, monkeypatch)
    outcome = (await attempt_delivery(lead("gone@example.com"), dest, sender)).outcome
    assert (outcome.kind, outcome.reason, outcome.category) == (
        OutcomeKind.FAILURE, reason, OutcomeCategory.HARD_REJECT
    )  # fmt: skip
    assert mailchimp.members[subscriber_hash("gone@example.com")]["status"] == kept_out


async def test_asking_to_subscribe_a_member_in_compliance_state_is_refused(
    mailchimp: MailchimpDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailchimp.kept_out("gone@example.com")
    monkeypatch.setenv("MAILCHIMP_API_KEY", API_KEY)
    [dest] = parse_destinations(
        {"destinations": [{
            "id": "newsletter", "integration": "mailchimp", "url": mailchimp.base_url("/3.0"),
            "settings": {"api_key": "${env:MAILCHIMP_API_KEY}", "list_id": LIST_ID},
            "mapping": {"email_address": "lead.email", "status": {"value": "subscribed"}},
        }]}
    ).destinations  # fmt: skip
    outcome = (await attempt_delivery(lead("gone@example.com"), dest, sender)).outcome
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.FAILURE, "Contact in compliance state", False
    )  # fmt: skip
    assert outcome.raw is not None and "compliance state" in outcome.raw


async def test_an_opt_out_synced_as_unsubscribed_is_a_sale(
    mailchimp: MailchimpDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailchimp.kept_out("gone@example.com")
    dest = mailchimp_destination(mailchimp, monkeypatch, status="unsubscribed")
    outcome = (await attempt_delivery(lead("gone@example.com"), dest, sender)).outcome
    assert outcome.kind is OutcomeKind.SUCCESS, outcome


def test_the_key_must_name_its_data_center_and_sets_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILCHIMP_API_KEY", API_KEY)
    (dest,) = parse_destinations(
        {
            "destinations": [
                {
                    "id": "m",
                    "integration": "mailchimp",
                    "settings": {"api_key": "${env:MAILCHIMP_API_KEY}", "list_id": LIST_ID},
                }
            ]
        }
    ).destinations
    from integrations.mailchimp import request
    from streams.model import Target

    target = Target(dest.method, dest.url)
    built = request({"email_address": "a@example.com"}, dest.integration_settings, target)
    assert built.url.startswith("https://us6.api.mailchimp.com/3.0/lists/a1b2c3d4e5/members/")
    monkeypatch.setenv("MAILCHIMP_API_KEY", "nodatacenter")
    with pytest.raises(Exception, match="data center"):
        parse_destinations(
            {
                "destinations": [
                    {
                        "id": "m",
                        "integration": "mailchimp",
                        "settings": {"api_key": "${env:MAILCHIMP_API_KEY}", "list_id": LIST_ID},
                    }
                ]
            }
        )


async def test_a_wrong_list_is_a_configuration_error_not_a_lead_reject(
    mailchimp: MailchimpDouble, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = mailchimp_destination(mailchimp, monkeypatch, list_id="nosuchlist")
    outcome = (await attempt_delivery(lead("w@example.com"), dest, sender)).outcome
    assert outcome.reason == "Configuration refused (Mailchimp 404 Resource Not Found)"
    assert (outcome.category, outcome.retryable) == (OutcomeCategory.AUTH_ERROR, False)


def test_the_subscriber_hash_is_of_the_trimmed_lowercased_address() -> None:
    # mailchimp.com/developer/marketing/docs/methods-parameters: "the MD5 hash of the
    # lowercase version of the list member's email address".
    assert subscriber_hash(" Ada@Example.com ") == subscriber_hash("ada@example.com")
