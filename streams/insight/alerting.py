"""Alerts: judged from a destination's minute buckets (``stats.py``) and circuit state, as
plain functions. An alert fires once when its condition starts to hold and resolves once
when it stops; in between nothing is said again (``transitions``)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.config.alerts import AlertRules
from streams.insight.stats import DEAD_LETTERS, MINUTE, merged

ALERT_IDS = uuid.UUID("0c6a1e52-3f0b-4a57-9d7e-58a1b2c3d4e5")
DEAD_LETTER_MINUTES = 10


@dataclass(frozen=True, slots=True)
class Condition:
    rule: str
    holds: bool
    value: float
    threshold: float
    message: str


# "Recent" for the rules that fire on any one event (a refused credential, a lead over its
# cap): the current minute's bucket and the one before, so at least the last 60 s. The
# current bucket alone held an event only until its minute ended: one at hh:mm:57 was
# gone before the next check (every 5 s, after the event's hop to the counting agent)
# could see it, and never alerted (test_alerts, seen in CI).
RECENT_MINUTES = 2


def conditions(
    destination: str,
    rules: AlertRules,
    minutes: Mapping[int, Mapping[str, Any] | None],
    now_minute: int,
    circuit: str | None,
    open_hours: bool = True,
) -> list[Condition]:
    """Every enabled rule's condition for one destination now. ``minutes``: its buckets by
    minute start; ``circuit``: its circuit state, if known; ``open_hours``: inside its
    business hours (no-acceptance is judged only then)."""

    def window(size: int) -> dict[str, Any]:
        start = now_minute - (size - 1) * MINUTE
        return merged(b for m, b in minutes.items() if m >= start)

    if destination == DEAD_LETTERS:
        if not rules.dead_letters.enabled:
            return []
        count = window(DEAD_LETTER_MINUTES)["attempts"]
        rate = count / DEAD_LETTER_MINUTES
        limit = rules.dead_letters.per_minute
        return [
            Condition(
                "dead_letters",
                rate > limit,
                rate,
                limit,
                f"{count} dead letters in {DEAD_LETTER_MINUTES} minutes ({rate:.1f}/min, "
                f"over {limit:g}/min)",
            )
        ]
    found: list[Condition] = []
    if rules.error_rate.enabled:
        rule = rules.error_rate
        w = window(rule.minutes)
        sent = w["attempts"] - w["skipped"]
        rate = w["errors"] / sent if sent else 0.0
        holds = sent >= rule.min_attempts and rate > rule.above
        found.append(
            Condition(
                "error_rate",
                holds,
                round(rate, 4),
                rule.above,
                f"{destination}: {rate:.0%} of {sent} attempts in {rule.minutes} min ended in "
                f"an error or timeout (over {rule.above:.0%})",
            )
        )
    if rules.auth_failure.enabled:
        failures = window(RECENT_MINUTES)["auth_errors"]
        found.append(
            Condition(
                "auth_failure",
                failures > 0,
                failures,
                0,
                f"{destination}: {failures} attempt(s) refused our credentials or configuration "
                f"in the last {RECENT_MINUTES} minutes",
            )
        )
    if rules.circuit_open.enabled:
        found.append(
            Condition(
                "circuit_open",
                circuit == "open",
                1.0 if circuit == "open" else 0.0,
                0,
                f"{destination}: circuit {circuit or 'closed'}",
            )
        )
    if rules.cap_reached.enabled:
        capped = window(RECENT_MINUTES)["skips"].get("Cap exceeded", 0)
        found.append(
            Condition(
                "cap_reached",
                capped > 0,
                capped,
                0,
                f"{destination}: cap reached, {capped} lead(s) not sent in the last "
                f"{RECENT_MINUTES} minutes",
            )
        )
    if rules.no_acceptance.enabled:
        rule_na = rules.no_acceptance
        w = window(rule_na.minutes)
        sent = w["attempts"] - w["skipped"]
        holds = open_hours and sent >= rule_na.min_attempts and w["accepted"] == 0
        found.append(
            Condition(
                "no_acceptance",
                holds,
                w["accepted"],
                0,
                f"{destination}: no lead accepted in {rule_na.minutes} min ({sent} attempts)",
            )
        )
    return found


def transitions(
    states: Mapping[str, Mapping[str, Any] | None], found: list[Condition], now: float
) -> list[tuple[Condition, str, float]]:
    """(condition, "firing" or "resolved", since) for each rule whose state changes;
    ``states``: each rule's last state (``{"firing": bool, "since": t}``)."""
    changes = []
    for condition in found:
        state = states.get(condition.rule) or {}
        firing = bool(state.get("firing"))
        if condition.holds and not firing:
            changes.append((condition, "firing", now))
        elif firing and not condition.holds:
            changes.append((condition, "resolved", float(state.get("since", now))))
    return changes


def alert_record(
    destination: str, condition: Condition, state: str, since: float, now: float
) -> dict[str, Any]:
    """The AlertEvent; its id is the episode's (a firing and its resolution share it)."""
    episode = f"{destination}|{condition.rule}|{since:.3f}"
    return {
        "event_id": str(uuid.uuid5(ALERT_IDS, episode)),
        "destination_id": destination,
        "rule": condition.rule,
        "state": state,
        "at": datetime.fromtimestamp(now, UTC),
        "value": float(condition.value),
        "threshold": float(condition.threshold),
        "message": condition.message,
    }


def webhook_text(record: Mapping[str, Any]) -> dict[str, str]:
    """Slack's incoming-webhook shape (Mattermost and Teams workflows take it too)."""
    mark = "🔴" if record["state"] == "firing" else "✅"
    return {"text": f"{mark} Lead Courier {record['rule']} {record['state']}: {record['message']}"}


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``: the receiver checks it and the age."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
