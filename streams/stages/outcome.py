"""HTTP response (or a failed exchange) → Outcome, by the defaults every integration starts from.

2xx success; 408, 429 and 5xx retryable errors; 401/403 an authentication error; other 4xx a
failure whose reason is the recipient's own message. Integrations refine this in ``response()``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from streams.errors import DeliveryError
from streams.model import HttpResponse, Outcome

RAW_LIMIT = 1000  # characters of the recipient's text kept beside the reason
REASON_LIMIT = 80
_REASON_KEYS = ("reason", "message", "error", "error_message", "detail", "msg")
_REFERENCE_KEYS = ("reference_id", "id", "lead_id", "leadId", "record_id")
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def default_outcome(res: HttpResponse) -> Outcome:
    body = res.json()
    raw = res.text[:RAW_LIMIT] or None
    if 200 <= res.status < 300:
        return Outcome.success(
            reference_id=_reference_id(body),
            price=_price(body),
            appended=_captured(body),
            raw=raw,
        )
    if res.status in (401, 403):
        return Outcome.error(f"Authentication failed (HTTP {res.status})", retryable=False, raw=raw)
    if res.status in RETRYABLE_STATUSES or res.status >= 500:
        return Outcome.error(f"Recipient error (HTTP {res.status})", retryable=True, raw=raw)
    if 400 <= res.status < 500:
        return Outcome.failure(_reason(body) or f"Rejected (HTTP {res.status})", raw=raw)
    return Outcome.error(f"Unexpected HTTP status {res.status}", retryable=False, raw=raw)


def outcome_for_error(exc: DeliveryError) -> Outcome:
    return Outcome.error(exc.reason, retryable=exc.retryable, raw=str(exc)[:RAW_LIMIT] or None)


def _reason(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in _REASON_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:REASON_LIMIT]
    return None


def _reference_id(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in _REFERENCE_KEYS:
            value = body.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
    return None


def _price(body: Any) -> Decimal | None:
    if not isinstance(body, dict):
        return None
    value = body.get("price")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() else None


def _captured(body: Any) -> dict[str, str]:
    """Top-level scalar values of a JSON answer; they become ``appended.<destination>.*``."""
    if not isinstance(body, dict):
        return {}
    return {
        key: str(value)
        for key, value in body.items()
        if isinstance(value, str | int | float | bool) and len(key) <= 64
    }
