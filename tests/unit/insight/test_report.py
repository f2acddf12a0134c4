"""``courier report``'s sums, rates and percentiles, without Kafka."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from streams.insight.report import parse_period, render, summarize


def event(lead: str, outcome: str, dest: str = "crm", **extra: Any) -> dict[str, Any]:
    return {
        "destination_id": dest,
        "lead_id": lead,
        "outcome": outcome,
        "category": extra.pop("category", "accepted" if outcome == "success" else "hard_reject"),
        "reason": extra.pop("reason", "Accepted" if outcome == "success" else "Duplicate lead"),
        "http_status": extra.pop("http_status", 201),
        "recipient_ms": extra.pop("recipient_ms", 10.0),
        "price": extra.pop("price", None),
    }


def test_per_destination_sums_rates_and_percentiles() -> None:
    events = [
        *(
            event(f"L-{n}", "success", price=Decimal("2.5000"), recipient_ms=float(n))
            for n in range(1, 21)
        ),
        event("L-21", "failure"),
        event("L-22", "failure"),
        event("L-23", "failure", reason="Cap exceeded"),
        event("L-24", "error", category="timeout", reason="Timeout", http_status=None),
        event("L-24", "error", category="recipient_error", reason="HTTP 500", http_status=500),
        event("L-1", "skip", dest="buyer", http_status=None, reason="Destination disabled"),
    ]
    buyer, crm = summarize(events)
    assert (buyer.destination, buyer.skipped, buyer.latency_p50_ms) == ("buyer", 1, None)
    assert (crm.leads, crm.attempts, crm.accepted, crm.rejected) == (24, 25, 20, 3)
    assert (crm.errors, crm.timeouts) == (2, 1)
    assert crm.revenue == Decimal("50.0000")
    assert crm.acceptance_rate == round(20 / 24, 4)
    assert crm.top_rejections == [("Duplicate lead", 2), ("Cap exceeded", 1)]
    assert crm.latency_p50_ms == 10.0  # 1..20 ms and four 10s
    assert crm.latency_p95_ms == 19.0  # nearest rank: the 23rd of 24


def test_an_event_written_again_counts_once() -> None:
    sale = {**event("L-1", "success", price=Decimal("2.5000")), "event_id": "e-1"}
    retried = {**event("L-2", "error", http_status=500), "event_id": "e-2"}
    again = {**event("L-2", "error", http_status=500), "event_id": "e-3"}  # another attempt
    (crm,) = summarize([sale, retried, sale, again, retried])  # two written twice
    assert (crm.attempts, crm.accepted, crm.errors) == (3, 1, 2)
    assert crm.revenue == Decimal("2.5000")


def test_the_three_formats() -> None:
    reports = summarize([event("L-1", "success", price=Decimal("1.25"))])
    table = render(reports, "table").splitlines()
    assert table[0].startswith("destination  leads  attempts  accepted  acceptance")
    assert table[2].startswith("crm") and "100.0%" in table[2]
    rows = list(csv.reader(io.StringIO(render(reports, "csv"))))
    assert rows[1][:4] == ["crm", "1", "1", "1"] and rows[1][9] == "1.25"
    (as_json,) = orjson.loads(render(reports, "json"))
    assert as_json["revenue"] == "1.25" and as_json["acceptance_rate"] == 1.0
    assert render([], "table") == "no delivery events in this period"


def test_periods() -> None:
    assert parse_period("24h") == timedelta(hours=24)
    assert parse_period("90m") == timedelta(minutes=90)
    assert parse_period("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match="'yesterday' is not a period"):
        parse_period("yesterday")


def test_per_source_over_every_destination() -> None:
    events = [
        {**event("L-1", "success", price=Decimal("3")), "source": "google"},
        {**event("L-1", "success", dest="buyer"), "source": "google"},
        {**event("L-2", "failure"), "source": "partner-7"},
        event("L-3", "success"),  # written before events named their source
        {**event("L-4", "bid", dest="buyer"), "source": "google", "phase": "ping"},
    ]
    none, google, partner = summarize(events, by="source")
    assert (google.destination, google.leads, google.attempts, google.accepted) == (
        "google", 1, 2, 2
    )  # fmt: skip
    assert google.revenue == Decimal(3) and (partner.rejected, none.destination) == (
        1,
        "(no source)",
    )
    table = render([google], "table", by="source").splitlines()
    assert table[0].startswith("source  leads")
    (as_json,) = orjson.loads(render([google], "json", by="source"))
    assert as_json["source"] == "google" and "destination" not in as_json


def notice(lead: str, kind: str, status: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": extra.pop("event_id", f"f-{lead}-{kind}"),
        "destination_id": extra.pop("dest", "crm"),
        "lead_id": lead,
        "kind": kind,
        "status": status,
        "credit": extra.pop("credit", None),
    }


def test_returns_credit_the_revenue_and_conversions_are_counted() -> None:
    events = [
        {**event("L-1", "success", price=Decimal("20")), "source": "google"},
        {**event("L-2", "success", price=Decimal("15")), "source": "partner-7"},
    ]
    feedback = [
        notice("L-1", "returned", credit=Decimal("20")),
        notice("L-1", "returned", credit=Decimal("20")),  # the same notice, sent twice
        notice("L-2", "returned", "refused", event_id="f-late"),  # outside the window
        notice("L-2", "converted"),
        notice("L-9", "returned", credit=Decimal("12.5"), dest="buyer"),  # sold before
    ]
    buyer, crm = summarize(events, feedback=feedback)
    assert (crm.revenue, crm.returned, crm.credits, crm.net_revenue) == (
        Decimal(35), 1, Decimal(20), Decimal(15)
    )  # fmt: skip
    assert crm.converted == 1
    # A return of a sale made before the period: its credit, no sale in it.
    assert (buyer.leads, buyer.attempts, buyer.returned, buyer.net_revenue) == (
        0, 0, 1, Decimal("-12.5")
    )  # fmt: skip
    table = render([crm], "table").splitlines()
    assert "revenue  returned  net revenue  converted" in table[0]
    assert "35.00    1         15.00        1" in table[2]
    (as_json,) = orjson.loads(render([crm], "json"))
    assert (as_json["returned"], as_json["credits"], as_json["net_revenue"]) == (1, "20", "15")
    # By source: under the source of the lead's events in the period.
    (none, google, partner) = summarize(events, by="source", feedback=feedback)
    assert (google.returned, google.net_revenue, partner.converted) == (1, Decimal(0), 1)
    assert none.returned == 1  # L-9: no event of it in the period


def test_an_auction_s_pings_bids_and_average_bid_per_buyer() -> None:
    def ping(lead: str, dest: str, bid: str | None) -> dict[str, Any]:
        outcome = "bid" if bid is not None else "no_bid"
        price = None if bid is None else Decimal(bid)
        return {**event(lead, outcome, dest=dest, price=price), "phase": "ping"}

    events = [
        ping("L-1", "a", "20"), ping("L-1", "b", "25.50"),
        ping("L-2", "a", None), ping("L-2", "b", "30"),
        {**event("L-1", "success", dest="b", price=Decimal("25.50")), "phase": "post"},
        {**event("L-2", "success", dest="b", price=Decimal("30")), "phase": "post"},
    ]  # fmt: skip
    a, b = summarize(events)
    assert (a.pings, a.bids, a.average_bid, a.attempts, a.leads) == (2, 1, Decimal("20.00"), 0, 0)
    assert (b.pings, b.bids, b.average_bid, b.accepted) == (2, 2, Decimal("27.75"), 2)
    table = render([a, b], "table").splitlines()
    assert "pings  bids  avg bid" in table[0]
    assert table[2].split()[-5:-2] == ["2", "1", "20.00"]
    (as_json, _) = orjson.loads(render([a, b], "json"))
    assert (as_json["pings"], as_json["bids"], as_json["average_bid"]) == (2, 1, "20.00")
    # Without any auction in the period, the table leaves those columns out.
    assert "pings" not in render(summarize([event("L-3", "success")]), "table")
    assert "pings" in render(summarize([event("L-3", "success")]), "csv")
