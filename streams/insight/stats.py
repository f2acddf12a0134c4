"""What the dashboard shows, as plain functions over small mergeable buckets.

A bucket holds one destination's delivery events of one minute: counts by outcome, the
top reasons for rejections, revenue, the returns (and their credits) and conversions
judged in that minute, and the recipient's latency as a histogram on fixed
edges, so buckets add up (a minute, an hour, a day; one worker's partitions and
another's) and percentiles come from the sum without keeping every latency."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MINUTE = 60
WINDOWS = {"minute": 1, "hour": 60, "day": 1440}  # in minutes
# Recipient latency buckets (upper edges, ms); the last one is open.
LATENCY_EDGES_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
MAX_REASONS = 20  # kept per bucket: a recipient inventing reasons stays bounded
TOP_REASONS = 5
DEAD_LETTERS = "__dead_letters__"  # the key under which dead letters are counted


def minute_of(epoch_s: float) -> int:
    return int(epoch_s // MINUTE) * MINUTE


HOUR = 3600


def hour_of(epoch_s: float) -> int:
    return int(epoch_s // HOUR * HOUR)


@dataclass(frozen=True, slots=True)
class DayReads:
    """The buckets that make up the last day up to minute ``now``, each minute counted
    once: whole hours from hourly buckets, the hours cut by the window's ends from minute
    buckets. About 140 reads a destination where minute buckets alone take 1,440."""

    minutes: list[int]  # minute starts: the partial first hour, the current hour
    hours: list[int]  # hour starts: every hour wholly inside the window


def day_reads(now: int) -> DayReads:
    start = now - (WINDOWS["day"] - 1) * MINUTE
    first_whole = -(-start // HOUR) * HOUR  # the first hour that starts inside the window
    current = hour_of(now)
    minutes = [*range(start, first_whole, MINUTE), *range(current, now + MINUTE, MINUTE)]
    return DayReads(minutes, list(range(first_whole, current, HOUR)))


def empty() -> dict[str, Any]:
    return {
        "attempts": 0,
        "accepted": 0,
        "rejected": 0,
        "errors": 0,
        "timeouts": 0,
        "skipped": 0,
        "revenue": "0",
        "reasons": {},
        "latency": [0] * (len(LATENCY_EDGES_MS) + 1),
        "auth_errors": 0,
        "skips": {},  # why leads were not sent: "Cap exceeded", "Outside business hours"…
        "pings": 0,  # an auction's pings (not deliveries: counted apart)
        "bids": 0,
        "returned": 0,  # returns accepted (judged in this minute), and what they credit
        "credits": "0",
        "converted": 0,
    }


def add_event(bucket: Mapping[str, Any] | None, event: Mapping[str, Any]) -> dict[str, Any]:
    """``bucket`` with one delivery event more (the fields ``fact`` keeps)."""
    new = _copy(bucket)
    outcome = event["outcome"]
    if event.get("phase") == "ping":
        new["pings"] = new.get("pings", 0) + 1
        new["bids"] = new.get("bids", 0) + (outcome == "bid")
        return new
    new["attempts"] += 1
    if outcome == "success":
        new["accepted"] += 1
        if event.get("price") is not None:
            new["revenue"] = str(Decimal(new["revenue"]) + Decimal(event["price"]))
    elif outcome == "failure":
        new["rejected"] += 1
        _count_reason(new["reasons"], event["reason"])
    elif outcome == "error":
        new["errors"] += 1
        new["timeouts"] += event.get("category") == "timeout"
        new["auth_errors"] += event.get("category") == "auth_error"
    else:
        new["skipped"] += 1
        _count_reason(new["skips"], event["reason"])
    if event.get("http_status") is not None:
        new["latency"][_latency_slot(float(event["recipient_ms"]))] += 1
    return new


def add_feedback(bucket: Mapping[str, Any] | None, facts: Mapping[str, Any]) -> dict[str, Any]:
    """``bucket`` with one accepted notice more (``feedback_fact``): a return and its
    credit, or a conversion."""
    new = _copy(bucket)
    if facts["feedback"] == "returned":
        new["returned"] += 1
        new["credits"] = str(Decimal(new["credits"]) + Decimal(facts["credit"] or 0))
    elif facts["feedback"] == "converted":
        new["converted"] += 1
    return new


def feedback_fact(notice: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the stats need of a judged notice (LeadFeedback): None when it counts for
    nothing (refused, or a kind the page does not show)."""
    if notice["status"] != "accepted" or notice["kind"] not in ("returned", "converted"):
        return None
    credit = notice.get("credit")
    return {
        "kind": "feedback",
        "destination": notice["destination_id"],
        "at": notice["received_at"].timestamp(),
        "feedback": notice["kind"],
        "credit": None if credit is None else str(credit),
    }


def add_dead_letter(bucket: Mapping[str, Any] | None, reason: str) -> dict[str, Any]:
    new = _copy(bucket)
    new["attempts"] += 1
    _count_reason(new["reasons"], reason)
    return new


def fact(event: Mapping[str, Any]) -> dict[str, Any]:
    """What the stats need of a delivery event (no lead id, no lead value)."""
    price = event.get("price")
    return {
        "destination": event["destination_id"],
        "at": event["finished_at"].timestamp(),
        "outcome": event["outcome"],
        "category": event["category"],
        "reason": event["reason"],
        "http_status": event["http_status"],
        "recipient_ms": event["recipient_ms"],
        "price": None if price is None else str(price),
        "phase": event.get("phase", "delivery"),
    }


def merged(buckets: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    total = empty()
    revenue = credits = Decimal(0)
    for bucket in buckets:
        if not bucket:
            continue
        for name in ("attempts", "accepted", "rejected", "errors", "timeouts", "skipped"):
            total[name] += bucket[name]
        revenue += Decimal(bucket["revenue"])
        credits += Decimal(bucket.get("credits", 0))
        for name in ("auth_errors", "pings", "bids", "returned", "converted"):
            total[name] += bucket.get(name, 0)  # absent in older buckets
        for name in ("reasons", "skips"):
            for reason, n in bucket.get(name, {}).items():
                total[name][reason] = total[name].get(reason, 0) + n
        total["latency"] = [a + b for a, b in zip(total["latency"], bucket["latency"], strict=True)]
    total["revenue"] = str(revenue)
    total["credits"] = str(credits)
    return total


def summary(bucket: Mapping[str, Any]) -> dict[str, Any]:
    """A bucket (usually merged over a window) as the page shows it."""
    attempts, accepted = bucket["attempts"], bucket["accepted"]
    sent = attempts - bucket["skipped"]
    reasons = sorted(bucket["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "attempts": attempts,
        "accepted": accepted,
        "rejected": bucket["rejected"],
        "errors": bucket["errors"],
        "timeouts": bucket["timeouts"],
        "skipped": bucket["skipped"],
        "acceptance_rate": round(accepted / sent, 4) if sent else None,
        "error_rate": round(bucket["errors"] / sent, 4) if sent else None,
        "revenue": bucket["revenue"],
        "returned": bucket.get("returned", 0),
        "credits": bucket.get("credits", "0"),
        "net_revenue": str(Decimal(bucket["revenue"]) - Decimal(bucket.get("credits", 0))),
        "converted": bucket.get("converted", 0),
        "latency_p50_ms": percentile(bucket["latency"], 0.50),
        "latency_p95_ms": percentile(bucket["latency"], 0.95),
        "top_reasons": reasons[:TOP_REASONS],
        "pings": bucket.get("pings", 0),
        "bids": bucket.get("bids", 0),
    }


def percentile(histogram: list[int], q: float) -> float | None:
    """The upper edge of the bucket holding the q-th value (nearest rank): an upper bound,
    within one bucket of the truth; None without values."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for slot, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return float(LATENCY_EDGES_MS[slot]) if slot < len(LATENCY_EDGES_MS) else None
    return None  # pragma: no cover - seen reaches total


def _latency_slot(ms: float) -> int:
    for slot, edge in enumerate(LATENCY_EDGES_MS):
        if ms <= edge:
            return slot
    return len(LATENCY_EDGES_MS)


def _count_reason(reasons: dict[str, int], reason: str) -> None:
    if reason in reasons or len(reasons) < MAX_REASONS:
        reasons[reason] = reasons.get(reason, 0) + 1
    else:
        reasons["(other reasons)"] = reasons.get("(other reasons)", 0) + 1


def _copy(bucket: Mapping[str, Any] | None) -> dict[str, Any]:
    if not bucket:
        return empty()
    return {
        **empty(),
        **bucket,
        "reasons": dict(bucket["reasons"]),
        "skips": dict(bucket.get("skips", {})),
        "latency": list(bucket["latency"]),
    }
