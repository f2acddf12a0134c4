"""integrations/five9.py against a local double of Five9's addRecordToList."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streams.config import Destination, parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.saas.five9 import LIST, PASSWORD, USER, Five9Double


@pytest.fixture
async def five9() -> AsyncIterator[Five9Double]:
    double = await Five9Double().start()
    yield double
    await double.stop()


def dialer(
    double: Five9Double, monkeypatch: pytest.MonkeyPatch, password: str = PASSWORD, **settings: Any
) -> Destination:
    monkeypatch.setenv("FIVE9_PASSWORD", password)
    return parse_destinations(
        {
            "destinations": [
                {
                    "id": "dialer",
                    "integration": "five9",
                    "url": double.base_url("/wsadmin/v13/AdminWebService"),
                    "settings": {
                        "username": USER,
                        "password": "${env:FIVE9_PASSWORD}",
                        "list_name": LIST,
                        **settings,
                    },
                }
            ]
        }
    ).destinations[0]


def lead(phone: str, **fields: Any) -> Lead:
    return Lead(
        phone,
        {
            "id": phone,
            "lead": {"phone_1": phone, "first_name": "Ada", "last_name": "L & Co", **fields},
        },
    )


async def test_added_then_duplicate_then_invalid(
    five9: Five9Double, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = dialer(five9, monkeypatch)
    added = await attempt_delivery(lead("2015550123"), dest, sender)
    assert added.outcome.kind is OutcomeKind.SUCCESS
    assert added.outcome.appended == {"crmRecordsInserted": "1", "crmRecordsUpdated": "0"}
    assert five9.records == [{"number1": "2015550123", "first_name": "Ada", "last_name": "L & Co"}]
    assert (
        five9.settings[0]["crmAddMode"] == "ADD_NEW"
        and five9.settings[0]["listAddMode"] == "ADD_FIRST"
    )
    assert added.request is not None and added.request.headers["Authorization"] == "Basic ****"

    again = (await attempt_delivery(lead("2015550123"), dest, sender)).outcome
    assert (again.reason, again.category) == ("Duplicate lead", OutcomeCategory.DUPLICATE)

    invalid = (await attempt_delivery(lead("12"), dest, sender)).outcome
    assert (invalid.reason, invalid.category) == (
        "Invalid data: number1: Invalid phone number",
        OutcomeCategory.INVALID_DATA,
    )


async def test_a_control_character_in_a_field_does_not_break_the_envelope(
    five9: Five9Double, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NUL or an ESC pasted into a form's field made the SOAP body ill-formed: Five9's
    server faulted on it, and the lead was retried into the same fault."""
    dest = dialer(five9, monkeypatch)
    added = await attempt_delivery(lead("2015550124", first_name="Ada\x00\x1b"), dest, sender)
    assert added.outcome.kind is OutcomeKind.SUCCESS, added.outcome
    assert five9.records[-1]["first_name"] == "Ada"


async def test_unknown_list_is_a_fault_and_wrong_password_an_auth_error(
    five9: Five9Double, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = (
        await attempt_delivery(
            lead("2015550123"), dialer(five9, monkeypatch, list_name="Nope"), sender
        )
    ).outcome
    # Every lead would get it: the configuration's error, and the circuit opens at once.
    assert (fault.kind, fault.reason, fault.retryable, fault.category) == (
        OutcomeKind.ERROR,
        'Configuration refused (Five9: List "Nope" does not exist)',
        False,
        OutcomeCategory.AUTH_ERROR,
    )
    refused = (
        await attempt_delivery(
            lead("2015550124"), dialer(five9, monkeypatch, password="wrong"), sender
        )
    ).outcome
    assert refused.category is OutcomeCategory.AUTH_ERROR


async def test_a_lead_without_phone_is_skipped(
    five9: Five9Double, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = (
        await attempt_delivery(
            Lead("x", {"id": "x", "lead": {}}), dialer(five9, monkeypatch), sender
        )
    ).outcome
    assert outcome.kind is OutcomeKind.SKIP


async def test_one_login_one_request_at_a_time_transient_faults_retried_updates_reported(
    five9: Five9Double, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = dialer(five9, monkeypatch)
    assert (dest.limits.concurrency, round(dest.limits.per_second or 0, 2)) == (1, 2.67)
    leads = [lead(f"20155501{n:02d}") for n in range(6)]
    attempts = await asyncio.gather(*(attempt_delivery(x, dest, sender) for x in leads))
    assert {a.outcome.kind for a in attempts} == {OutcomeKind.SUCCESS}
    assert five9.most_in_flight == 1  # the sender never overlapped the login's requests

    five9.transient = 1
    resubmit = (await attempt_delivery(lead("2015550190"), dest, sender)).outcome
    assert (resubmit.reason, resubmit.retryable) == ("Recipient error (Five9 ServerFault)", True)

    five9.known_contacts.add("2015550191")
    updated = (await attempt_delivery(lead("2015550191"), dest, sender)).outcome
    assert (updated.reason, updated.category) == (
        "Duplicate lead (contact updated)",
        OutcomeCategory.DUPLICATE,
    )
