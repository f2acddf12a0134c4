"""Each ready module reads its vendor's documented answers as the vendor means them:
table-driven, pure functions, no network (STYLE.md: an integration is three functions)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from integrations import REGISTRY
from streams.model import HttpRequest, HttpResponse, OutcomeCategory, OutcomeKind, Target

SF_DAILY = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
FIVE9_NS = 'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"'


def five9_fault(name: str, text: str) -> bytes:
    return (
        f"<env:Envelope {FIVE9_NS}><env:Body><env:Fault><faultcode>env:Server</faultcode>"
        f'<faultstring>{text}</faultstring><detail><ns2:{name} xmlns:ns2="http://service.'
        f'admin.ws.five9.com/"/></detail></env:Fault></env:Body></env:Envelope>'
    ).encode()


def five9_result(**counts: int) -> bytes:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in counts.items())
    return (
        f"<env:Envelope {FIVE9_NS}><env:Body><ns2:addRecordToListResponse "
        f'xmlns:ns2="http://service.admin.ws.five9.com/"><return>{fields}</return>'
        "</ns2:addRecordToListResponse></env:Body></env:Envelope>"
    ).encode()


# module, HTTP status, body, (kind, category, reason or None, retryable)
ANSWERS: list[tuple[str, int, Any, tuple[OutcomeKind, OutcomeCategory, str | None, bool]]] = [
    # Salesforce REST API, "Status Codes and Error Responses"
    (
        "salesforce",
        201,
        {"id": "00Q1", "success": True, "errors": []},
        (OutcomeKind.SUCCESS, OutcomeCategory.ACCEPTED, "Accepted", False),
    ),
    (
        "salesforce",
        400,
        [{"message": "duplicate value found", "errorCode": "DUPLICATE_VALUE", "fields": []}],
        (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE, "Duplicate lead", False),
    ),
    (
        "salesforce",
        400,
        [{"message": "Use one?", "errorCode": "DUPLICATES_DETECTED", "fields": []}],
        (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE, "Duplicate lead", False),
    ),
    (
        "salesforce",
        400,
        [{"message": "missing", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Company"]}],
        (OutcomeKind.FAILURE, OutcomeCategory.INVALID_DATA, "Invalid data: Company", False),
    ),
    (
        "salesforce",
        403,
        SF_DAILY,
        (
            OutcomeKind.ERROR,
            OutcomeCategory.SOFT_REJECT,
            "Quota spent (Salesforce REQUEST_LIMIT_EXCEEDED)",
            True,
        ),
    ),
    (
        "salesforce",
        403,
        [{"message": "API is not enabled", "errorCode": "API_DISABLED_FOR_ORG"}],
        (OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, None, False),
    ),
    # HubSpot CRM API: 409 conflict, 429 policies, 207 multi-status
    (
        "hubspot",
        409,
        {
            "status": "error",
            "message": "Contact already exists. Existing ID: 12",
            "category": "CONFLICT",
        },
        (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE, "Duplicate lead", False),
    ),
    (
        "hubspot",
        429,
        {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"},
        (OutcomeKind.ERROR, OutcomeCategory.SOFT_REJECT, "Rate limited", True),
    ),
    (
        "hubspot",
        207,
        {
            "status": "COMPLETE",
            "results": [],
            "numErrors": 1,
            "errors": [{"category": "VALIDATION_ERROR"}],
        },
        (OutcomeKind.FAILURE, OutcomeCategory.INVALID_DATA, "Invalid data", False),
    ),
    # Mailchimp: problem+json
    (
        "mailchimp",
        400,
        {"title": "Member Exists", "status": 400, "detail": "already a list member"},
        (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE, "Duplicate lead", False),
    ),
    (
        "mailchimp",
        404,
        {"title": "Resource Not Found", "status": 404},
        (OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, None, False),
    ),
    # Pipedrive: {"success": false, "error": ...}
    (
        "pipedrive",
        402,
        {"success": False, "error": "Payment required"},
        (OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, None, False),
    ),
    (
        "pipedrive",
        201,
        {"success": True, "data": {"id": 7}},
        (OutcomeKind.SUCCESS, OutcomeCategory.ACCEPTED, "Accepted", False),
    ),
    # Five9 Configuration Web Services: listImportResult and named faults
    (
        "five9",
        200,
        five9_result(listRecordsInserted=1, crmRecordsInserted=1),
        (OutcomeKind.SUCCESS, OutcomeCategory.ACCEPTED, "Accepted", False),
    ),
    (
        "five9",
        200,
        five9_result(listRecordsInserted=0, crmRecordsUpdated=1),
        (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE, "Duplicate lead (contact updated)", False),
    ),
    (
        "five9",
        500,
        five9_fault("ServiceUnavailableFault", "Resubmit the request"),
        (OutcomeKind.ERROR, OutcomeCategory.RECIPIENT_ERROR, None, True),
    ),
    # Standard Webhooks: 410 Gone means the endpoint was removed
    (
        "webhook",
        410,
        b"",
        (OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, None, False),
    ),
]


@pytest.mark.parametrize(("module", "status", "body", "expected"), ANSWERS)
def test_a_documented_answer_reads_as_the_vendor_means_it(
    module: str, status: int, body: Any, expected: tuple[Any, ...]
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    request = HttpRequest("POST", "https://recipient.example/x", {}, b"{}")
    outcome = REGISTRY[module].response(request, HttpResponse(status, {}, raw))
    kind, category, reason, retryable = expected
    assert (outcome.kind, outcome.category, outcome.retryable) == (kind, category, retryable)
    if reason is not None:
        assert outcome.reason == reason


@pytest.mark.parametrize(
    ("module", "status", "headers", "body", "reason", "at_least_s", "at_most_s"),
    [
        (
            "salesforce",
            403,
            {},
            SF_DAILY,
            "Quota spent (Salesforce REQUEST_LIMIT_EXCEEDED)",
            3600,
            3600,
        ),
        (
            "hubspot",
            429,
            {},
            {"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"},
            "Quota spent (HubSpot DAILY)",
            3600,
            3600,
        ),
        # Pipedrive's daily POST/PUT budget, spent: until midnight UTC.
        (
            "pipedrive",
            429,
            {"x-daily-requests-left": "0"},
            {"success": False, "error": "Request over limit"},
            "Quota spent (Pipedrive daily budget)",
            0,
            86400,
        ),
    ],
)
def test_a_spent_quota_closes_the_destination_until_it_resets(
    module: str,
    status: int,
    headers: dict[str, str],
    body: Any,
    reason: str,
    at_least_s: float,
    at_most_s: float,
) -> None:
    request = HttpRequest("POST", "https://recipient.example/x", {}, b"{}")
    answer = HttpResponse(status, headers, orjson.dumps(body))
    outcome = REGISTRY[module].response(request, answer)
    assert (outcome.kind, outcome.category, outcome.reason) == (
        OutcomeKind.ERROR,
        OutcomeCategory.SOFT_REJECT,
        reason,
    )
    assert outcome.quota_s is not None and at_least_s <= outcome.quota_s <= at_most_s


def test_pipedrive_rate_limit_within_the_day_is_only_a_rate_limit() -> None:
    request = HttpRequest("POST", "https://recipient.example/x", {}, b"{}")
    answer = HttpResponse(429, {"x-daily-requests-left": "812"}, b'{"success": false}')
    outcome = REGISTRY["pipedrive"].response(request, answer)
    assert (outcome.reason, outcome.quota_s) == ("Rate limited", None)


def test_pipedrive_looks_a_person_up_by_email_before_creating_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PD_TOKEN", "t")
    module = REGISTRY["pipedrive"]
    settings = module.Config(api_token="${env:PD_TOKEN}", object="person")
    target = Target("POST", "https://acme.pipedrive.com", "key")
    search = module.lookup({"name": "Ada", "email": "ada@example.com"}, settings, target)
    assert search.method == "GET" and search.headers == {"x-api-token": "t"}
    assert search.url == (
        "https://acme.pipedrive.com/api/v2/persons/search"
        "?term=ada%40example.com&fields=email&exact_match=true&limit=1"
    )
    assert module.lookup({"name": "Ada"}, settings, target) is None  # no e-mail: create
    lead_settings = module.Config(api_token="${env:PD_TOKEN}", object="lead")
    assert module.lookup({"email": "a@b.c"}, lead_settings, target) is None
    # Documented answer: data.items[].item
    hit = orjson.dumps(
        {"success": True, "data": {"items": [{"result_score": 1, "item": {"id": 7}}]}}
    )
    existing = module.found(search, HttpResponse(200, {}, hit))
    assert (existing.kind, existing.reason, existing.reference_id) == (
        OutcomeKind.SUCCESS,
        "Existing person",
        "7",
    )
    none = orjson.dumps({"success": True, "data": {"items": []}})
    assert module.found(search, HttpResponse(200, {}, none)) is None
    refused = module.found(search, HttpResponse(401, {}, b'{"success": false}'))
    assert refused is not None and refused.category is OutcomeCategory.AUTH_ERROR


@pytest.mark.parametrize(
    ("module", "headers", "expected"),
    [
        ("salesforce", {"Sforce-Limit-Info": "api-usage=18/5000"}, (4982, 5000)),
        (
            "hubspot",
            {
                "X-HubSpot-RateLimit-Daily": "250000",
                "X-HubSpot-RateLimit-Daily-Remaining": "249990",
            },
            (249990, 250000),
        ),
        ("pipedrive", {"x-daily-requests-left": "9999"}, (9999, None)),
        ("salesforce", {}, None),
    ],
)
def test_limit_headers_say_what_is_left_of_the_allowance(
    module: str, headers: dict[str, str], expected: Any
) -> None:
    answer = HttpResponse(201, headers, b"{}")
    assert REGISTRY[module].quota_left(answer) == expected


def test_what_is_left_becomes_a_metric_per_destination() -> None:
    from datetime import UTC, datetime

    from streams import telemetry
    from streams.model import Outcome
    from streams.stages.attempt import Attempt

    now = datetime.now(UTC)
    outcome = replace(Outcome.success(reference_id="1"), quota_left=(12, 100))
    attempt = Attempt("L-1", "sfdc", "salesforce", 1, now, now, 1.0, 1.0, 201, outcome, None)
    from tests.unit.test_handlers import handlers  # the unit tests' Handlers

    handlers().event(attempt, None, 1)
    assert telemetry.quota_left["sfdc"] == (12, 100)
