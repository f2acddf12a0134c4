"""Alert rules judged from minute buckets: each fires once and resolves once."""

from __future__ import annotations

from typing import Any

from streams.config.alerts import AlertRules
from streams.insight.alerting import (
    alert_record,
    conditions,
    signature,
    transitions,
    webhook_text,
)
from streams.insight.stats import DEAD_LETTERS, add_dead_letter, add_event

NOW = 1_800_000_000 - 1_800_000_000 % 60


def bucket(**counts: int) -> dict[str, Any]:
    b: dict[str, Any] | None = None
    for _ in range(counts.get("ok", 0)):
        b = add_event(
            b,
            {
                "outcome": "success",
                "category": "accepted",
                "reason": "Accepted",
                "http_status": 201,
                "recipient_ms": 5,
            },
        )
    for _ in range(counts.get("errors", 0)):
        b = add_event(
            b,
            {
                "outcome": "error",
                "category": "recipient_error",
                "reason": "HTTP 500",
                "http_status": 500,
                "recipient_ms": 5,
            },
        )
    for _ in range(counts.get("auth", 0)):
        b = add_event(
            b,
            {
                "outcome": "error",
                "category": "auth_error",
                "reason": "Authentication failed",
                "http_status": 401,
                "recipient_ms": 5,
            },
        )
    for _ in range(counts.get("capped", 0)):
        b = add_event(
            b,
            {
                "outcome": "skip",
                "category": "not_sent",
                "reason": "Cap exceeded",
                "http_status": None,
                "recipient_ms": 0,
            },
        )
    return b or {}


def by_rule(found: list[Any]) -> dict[str, Any]:
    return {c.rule: c for c in found}


def test_each_rule_against_its_window() -> None:
    rules = AlertRules.model_validate(
        {"error_rate": {"above": 0.5, "minutes": 5, "min_attempts": 10}}
    )
    minutes = {NOW - 60 * n: bucket(errors=3, ok=1) for n in range(5)}  # 15 errors in 20
    minutes[NOW] = bucket(errors=3, ok=1, auth=1, capped=2)
    found = by_rule(conditions("crm", rules, minutes, NOW, "open"))
    assert found["error_rate"].holds and found["error_rate"].value == round(16 / 21, 4)
    assert found["auth_failure"].holds and found["cap_reached"].holds
    assert found["circuit_open"].holds
    assert not found["no_acceptance"].holds
    quiet = by_rule(conditions("crm", rules, {NOW: bucket(ok=30)}, NOW, "closed"))
    assert not any(c.holds for c in quiet.values())


def test_a_refusal_or_a_capped_lead_late_in_its_minute_still_alerts_in_the_next() -> None:
    """At least the last 60 s: an event at hh:mm:57 is judged after hh:mm+1:00 (the checks
    come every 5 s, after the event's hop to the counting agent); the minute before that
    is past."""
    rules = AlertRules()
    previous = {NOW - 60: bucket(auth=1, capped=1)}
    late = by_rule(conditions("crm", rules, previous, NOW, None))
    assert late["auth_failure"].holds and late["cap_reached"].holds
    assert "in the last 2 minutes" in late["auth_failure"].message
    older = {NOW - 120: bucket(auth=1, capped=1)}
    gone = by_rule(conditions("crm", rules, older, NOW, None))
    assert not gone["auth_failure"].holds and not gone["cap_reached"].holds


def test_no_acceptance_counts_only_in_business_hours() -> None:
    rules = AlertRules.model_validate({"no_acceptance": {"minutes": 10, "min_attempts": 5}})
    minutes = {NOW: bucket(errors=6)}
    assert by_rule(conditions("crm", rules, minutes, NOW, None))["no_acceptance"].holds
    closed = conditions("crm", rules, minutes, NOW, None, open_hours=False)
    assert not by_rule(closed)["no_acceptance"].holds


def test_dead_letters_over_their_rate() -> None:
    rules = AlertRules.model_validate({"dead_letters": {"per_minute": 1}})
    dead: dict[str, Any] | None = None
    for _ in range(11):
        dead = add_dead_letter(dead, "Not JSON")
    (found,) = conditions(DEAD_LETTERS, rules, {NOW: dead}, NOW, None)
    assert found.holds and found.value == 1.1


def test_an_alert_fires_once_and_resolves_once_with_one_id() -> None:
    rules = AlertRules()
    firing = [c for c in conditions("crm", rules, {}, NOW, "open") if c.rule == "circuit_open"]
    (change,) = transitions({}, firing, 100.0)
    assert change[1:] == ("firing", 100.0)
    assert transitions({"circuit_open": {"firing": True, "since": 100.0}}, firing, 105.0) == []
    cleared = [c for c in conditions("crm", rules, {}, NOW, "closed") if c.rule == "circuit_open"]
    (resolved,) = transitions({"circuit_open": {"firing": True, "since": 100.0}}, cleared, 130.0)
    assert resolved[1:] == ("resolved", 100.0)
    fired = alert_record("crm", change[0], "firing", 100.0, 100.0)
    ended = alert_record("crm", resolved[0], "resolved", 100.0, 130.0)
    assert fired["event_id"] == ended["event_id"]
    assert webhook_text(ended)["text"].startswith("✅ Lead Courier circuit_open resolved")


def test_the_webhook_signature_is_hmac_sha256_of_time_and_body() -> None:
    import hashlib
    import hmac

    header = signature("s3cret", b'{"text":"x"}', 1700000000)
    expected = hmac.new(b"s3cret", b'1700000000.{"text":"x"}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
