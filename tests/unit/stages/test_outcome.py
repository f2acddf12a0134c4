"""The default reading of an HTTP answer: what billing and routing will act on."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from streams.errors import DeliveryConnectionError, DeliveryTimeout, ResponseTooLarge
from streams.model import HttpResponse, OutcomeKind
from streams.stages.outcome import default_outcome, outcome_for_error


def answer(status: int, body: object = b"") -> HttpResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status, {}, raw)


def test_2xx_is_success_with_reference_price_and_captured_values() -> None:
    outcome = default_outcome(
        answer(201, {"id": "R-9", "price": "12.50", "status": "ok", "nested": {"x": 1}})
    )
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.reason == "Accepted"
    assert outcome.reference_id == "R-9"
    assert outcome.price == Decimal("12.50")
    assert outcome.appended["status"] == "ok"
    assert "nested" not in outcome.appended  # only top-level scalars are captured


def test_2xx_with_an_empty_or_html_body_is_still_success() -> None:
    assert default_outcome(answer(204)).kind is OutcomeKind.SUCCESS
    html = default_outcome(answer(200, b"<html>thanks</html>"))
    assert html.kind is OutcomeKind.SUCCESS
    assert html.reference_id is None


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_errors_are_errors_not_retried(status: int) -> None:
    outcome = default_outcome(answer(status, {"message": "bad key"}))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, False)
    assert outcome.reason == f"Authentication failed (HTTP {status})"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_temporary_statuses_are_retryable_errors(status: int) -> None:
    outcome = default_outcome(answer(status, b"<html>busy</html>"))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, True)
    assert outcome.reason == f"Recipient error (HTTP {status})"
    assert outcome.raw == "<html>busy</html>"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"message": "Duplicate lead"}, "Duplicate lead"),
        ({"error": "Outside service area"}, "Outside service area"),
        ({"reason": "Cap exceeded", "message": "ignored"}, "Cap exceeded"),
        (b"plain text", "Rejected (HTTP 409)"),
        ({"message": "x" * 500}, "x" * 80),
    ],
)
def test_other_4xx_are_failures_with_the_recipients_reason(body: object, reason: str) -> None:
    outcome = default_outcome(answer(409, body))
    assert outcome.kind is OutcomeKind.FAILURE
    assert not outcome.retryable
    assert outcome.reason == reason


def test_raw_text_is_kept_but_bounded() -> None:
    outcome = default_outcome(answer(500, b"e" * 50_000))
    assert outcome.raw is not None
    assert len(outcome.raw) == 1000


@pytest.mark.parametrize(
    ("error", "reason", "retryable"),
    [
        (DeliveryTimeout("read timeout after 10s"), "Timeout", True),
        (DeliveryConnectionError("refused"), "Connection failed", True),
        (ResponseTooLarge("over 1 MiB"), "Response too large", False),
    ],
)
def test_transport_errors_become_error_outcomes(
    error: Exception, reason: str, retryable: bool
) -> None:
    outcome = outcome_for_error(error)  # type: ignore[arg-type]
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR,
        reason,
        retryable,
    )
