"""integrations/five9.py against a local double of Five9's addRecordToList."""

from __future__ import annotations

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


async def test_unknown_list_is_a_fault_and_wrong_password_an_auth_error(
    five9: Five9Double, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = (
        await attempt_delivery(
            lead("2015550123"), dialer(five9, monkeypatch, list_name="Nope"), sender
        )
    ).outcome
    assert (fault.kind, fault.reason, fault.retryable) == (
        OutcomeKind.ERROR,
        'List "Nope" does not exist',
        False,
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
