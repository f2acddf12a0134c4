"""The dashboard's sums, rates and percentiles: buckets that add up, without Kafka."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from streams.insight.stats import (
    MAX_REASONS,
    add_dead_letter,
    add_event,
    add_feedback,
    day_reads,
    feedback_fact,
    merged,
    minute_of,
    percentile,
    summary,
)


def event(outcome: str, ms: float = 40.0, **extra: Any) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "category": extra.pop("category", "accepted"),
        "reason": extra.pop("reason", "Accepted"),
        "http_status": extra.pop("http_status", 201),
        "recipient_ms": ms,
        "price": extra.pop("price", None),
    }


def test_buckets_add_up_whatever_way_they_are_split() -> None:
    events = [
        *(event("success", ms=30.0, price="2.5000") for _ in range(8)),
        event("failure", reason="Duplicate lead", category="duplicate", http_status=400),
        event("failure", reason="Duplicate lead", category="duplicate", http_status=400),
        event("failure", reason="Cap exceeded", category="hard_reject", http_status=400),
        event("error", ms=3000.0, reason="Timeout", category="timeout", http_status=None),
        event("error", ms=900.0, reason="HTTP 500", category="recipient_error", http_status=500),
        event("skip", reason="Outside business hours", http_status=None),
    ]
    whole: dict[str, Any] | None = None
    for e in events:
        whole = add_event(whole, e)
    first: dict[str, Any] | None = None
    second: dict[str, Any] | None = None
    for n, e in enumerate(events):
        if n % 2:
            first = add_event(first, e)
        else:
            second = add_event(second, e)
    assert merged([first, second, None]) == merged([whole])
    shown = summary(merged([whole]))
    assert (shown["attempts"], shown["accepted"], shown["rejected"]) == (14, 8, 3)
    assert (shown["errors"], shown["timeouts"], shown["skipped"]) == (2, 1, 1)
    assert shown["acceptance_rate"] == round(8 / 13, 4)  # of the 13 sent
    assert shown["revenue"] == "20.0000"
    assert shown["top_reasons"] == [("Duplicate lead", 2), ("Cap exceeded", 1)]
    # 12 latencies: eight ≤ 50 ms, two 400s ≤ 50 too, one 900 ms (≤ 1000): p50 in 50, p95 in 1000
    assert (shown["latency_p50_ms"], shown["latency_p95_ms"]) == (50.0, 1000.0)


def test_percentiles_are_the_upper_edge_of_their_bucket() -> None:
    histogram = [0] * 13
    histogram[0] = 95  # ≤ 5 ms
    histogram[7] = 5  # ≤ 1000 ms
    assert percentile(histogram, 0.50) == 5.0
    assert percentile(histogram, 0.95) == 5.0
    assert percentile(histogram, 0.96) == 1000.0
    assert percentile([0] * 13, 0.5) is None


def test_reasons_stay_bounded_and_dead_letters_count_by_reason() -> None:
    bucket: dict[str, Any] | None = None
    for n in range(MAX_REASONS + 5):
        bucket = add_event(bucket, event("failure", reason=f"reason {n}", http_status=400))
    assert bucket is not None and len(bucket["reasons"]) == MAX_REASONS + 1
    assert bucket["reasons"]["(other reasons)"] == 5
    dead = add_dead_letter(add_dead_letter(None, "Not JSON"), "Not JSON")
    assert dead["reasons"] == {"Not JSON": 2}


def test_minutes() -> None:
    assert minute_of(125.9) == 120


@pytest.mark.parametrize(
    "now", [0, 3600 * 500, 3600 * 500 + 60, 3600 * 500 + 59 * 60, 1_800_000_000 // 60 * 60]
)
def test_a_day_is_read_from_hours_and_the_cut_hours_minutes_each_minute_once(now: int) -> None:
    reads = day_reads(now)
    covered = Counter(reads.minutes)
    for hour in reads.hours:
        covered.update(range(hour, hour + 3600, 60))
    day = range(now - 1439 * 60, now + 60, 60)
    assert covered == Counter(day)  # every minute of the window, once, and none outside
    assert len(reads.minutes) + len(reads.hours) <= 143  # not 1,440 reads


def test_returns_credit_the_revenue_and_conversions_are_counted() -> None:
    def notice(kind: str, status: str = "accepted", credit: str | None = None) -> dict[str, Any]:
        at = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
        credited = None if credit is None else Decimal(credit)
        return {"destination_id": "buyer", "kind": kind, "status": status,
                "credit": credited, "received_at": at}  # fmt: skip

    sold = add_event(
        add_event(None, event("success", price="20.0000")), event("success", price="15")
    )
    facts = [
        feedback_fact(n)
        for n in (
            notice("returned", credit="20.0000"),
            notice("returned", "refused"),  # refused: counts for nothing
            notice("converted"),
            notice("contacted"),  # not shown
        )
    ]
    assert facts[1] is None and facts[3] is None
    returned, converted = facts[0], facts[2]
    assert returned is not None and converted is not None
    assert returned["at"] == datetime(2026, 12, 6, 9, 30, tzinfo=UTC).timestamp()
    later = add_feedback(add_feedback(None, returned), converted)  # another minute's bucket
    shown = summary(merged([sold, later]))
    assert (shown["revenue"], shown["returned"], shown["credits"]) == ("35.0000", 1, "20.0000")
    assert (shown["net_revenue"], shown["converted"]) == ("15.0000", 1)
    assert shown["attempts"] == 2  # a notice is not an attempt
