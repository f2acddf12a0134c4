"""``courier report``: per destination (or per lead source), what the delivery events of a
period add up to, and what recipients gave back in it (returns credited, conversions).
Plain functions over decoded events; the command reads the events and feedback topics for
the period."""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

TOP_REASONS = 3
_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_period(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d``, ``2w`` → a timedelta; ValueError naming the text."""
    match = _PERIOD.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a period like 30m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


@dataclass
class DestinationReport:
    destination: str
    attempts: int = 0
    leads: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    revenue: Decimal = Decimal(0)
    returned: int = 0  # accepted returns in the period (of sales in it or before)
    credits: Decimal = Decimal(0)  # what those returns credit back
    converted: int = 0
    pings: int = 0  # an auction's pings (not attempts: none is a delivery), bids among them
    bids: int = 0
    bid_total: Decimal = Decimal(0)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    top_rejections: list[tuple[str, int]] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        return None if not self.leads else round(self.accepted / self.leads, 4)

    @property
    def net_revenue(self) -> Decimal:
        return self.revenue - self.credits

    @property
    def average_bid(self) -> Decimal | None:
        return None if not self.bids else (self.bid_total / self.bids).quantize(Decimal("0.01"))


NO_SOURCE = "(no source)"


def summarize(
    events: Iterable[Mapping[str, Any]],
    by: str = "destination",
    feedback: Iterable[Mapping[str, Any]] = (),
) -> list[DestinationReport]:
    """One report per destination, in id order; ``by="source"``: one per lead source
    (``source.name``), over every destination (a lead two destinations accepted counts
    twice in ``accepted``). ``feedback``: the period's judged notices (LeadFeedback):
    accepted returns and their credits, conversions; by source, a notice counts under the
    source of its lead's events in the period (else no source)."""
    events = list(events)
    reports: dict[str, DestinationReport] = {}
    leads: dict[str, set[str]] = {}
    latencies: dict[str, list[float]] = {}
    rejections: dict[str, Counter[str]] = {}
    seen: set[str] = set()
    for event in events:
        # At least once: a worker may write an event again (after a restart, or a record
        # handled again), always with the same id. Each attempt counts once.
        event_id = event.get("event_id")
        if event_id is not None:
            if event_id in seen:
                continue
            seen.add(event_id)
        destination = (
            event["destination_id"] if by == "destination" else event.get("source") or NO_SOURCE
        )
        report = reports.setdefault(destination, DestinationReport(destination))
        if event.get("phase") == "ping":  # an auction's ping is not a delivery (its post is)
            report.pings += 1
            if event["outcome"] == "bid" and event.get("price") is not None:
                report.bids += 1
                report.bid_total += Decimal(event["price"])
            continue
        report.attempts += 1
        leads.setdefault(destination, set()).add(event["lead_id"])
        outcome = event["outcome"]
        if outcome == "success":
            report.accepted += 1
            if event.get("price") is not None:
                report.revenue += Decimal(event["price"])
        elif outcome == "failure":
            report.rejected += 1
            rejections.setdefault(destination, Counter())[event["reason"]] += 1
        elif outcome == "error":
            report.errors += 1
            report.timeouts += event.get("category") == "timeout"
        else:
            report.skipped += 1
        if event.get("http_status") is not None:
            latencies.setdefault(destination, []).append(float(event["recipient_ms"]))
    _add_feedback(reports, feedback, by, {e["lead_id"]: e.get("source") for e in events})
    for destination, report in reports.items():
        report.leads = len(leads.get(destination, ()))
        report.top_rejections = rejections.get(destination, Counter()).most_common(TOP_REASONS)
        times = sorted(latencies.get(destination, []))
        if times:
            report.latency_p50_ms = round(statistics.median(times), 1)
            report.latency_p95_ms = round(
                times[math.ceil(len(times) * 0.95) - 1], 1
            )  # nearest rank
    return [reports[d] for d in sorted(reports)]


def _add_feedback(
    reports: dict[str, DestinationReport],
    feedback: Iterable[Mapping[str, Any]],
    by: str,
    source_of: Mapping[str, str | None],
) -> None:
    seen: set[str] = set()
    for notice in feedback:
        # The same notice sent twice has the same id; a second return is refused anyway.
        if notice["status"] != "accepted" or notice["event_id"] in seen:
            continue
        seen.add(notice["event_id"])
        key = (
            notice["destination_id"]
            if by == "destination"
            else source_of.get(notice["lead_id"] or "") or NO_SOURCE
        )
        report = reports.setdefault(key, DestinationReport(key))
        if notice["kind"] == "returned":
            report.returned += 1
            report.credits += Decimal(notice["credit"] or 0)
        elif notice["kind"] == "converted":
            report.converted += 1


COLUMNS = (
    "destination",
    "leads",
    "attempts",
    "accepted",
    "acceptance",
    "rejected",
    "errors",
    "timeouts",
    "skipped",
    "revenue",
    "returned",
    "net revenue",
    "converted",
    "pings",
    "bids",
    "avg bid",
    "p50 ms",
    "p95 ms",
    "top rejections",
)


AUCTION_COLUMNS = ("pings", "bids", "avg bid")


def _cells(report: DestinationReport) -> list[str]:
    rate = report.acceptance_rate
    return [
        report.destination,
        str(report.leads),
        str(report.attempts),
        str(report.accepted),
        "-" if rate is None else f"{rate:.1%}",
        str(report.rejected),
        str(report.errors),
        str(report.timeouts),
        str(report.skipped),
        f"{report.revenue:.2f}",
        str(report.returned),
        f"{report.net_revenue:.2f}",
        str(report.converted),
        str(report.pings),
        str(report.bids),
        "-" if report.average_bid is None else f"{report.average_bid:.2f}",
        "-" if report.latency_p50_ms is None else f"{report.latency_p50_ms:.0f}",
        "-" if report.latency_p95_ms is None else f"{report.latency_p95_ms:.0f}",
        "; ".join(f"{reason} ({n})" for reason, n in report.top_rejections),
    ]


def render(reports: list[DestinationReport], form: str, by: str = "destination") -> str:
    """``table``, ``csv`` or ``json``; ``by``: what each row is (destination or source)."""
    if form == "json":
        rows_json = []
        for r in reports:
            row = {
                **asdict(r),
                "revenue": str(r.revenue),
                "credits": str(r.credits),
                "net_revenue": str(r.net_revenue),
                "bid_total": str(r.bid_total),
                "average_bid": None if r.average_bid is None else str(r.average_bid),
                "acceptance_rate": r.acceptance_rate,
            }
            row[by] = row.pop("destination")
            rows_json.append(row)
        return orjson.dumps(rows_json, option=orjson.OPT_INDENT_2).decode()
    rows = [[by, *COLUMNS[1:]], *(_cells(r) for r in reports)]
    if form == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        return out.getvalue().rstrip("\n")
    if not reports:
        return "no delivery events in this period"
    if not any(r.pings for r in reports):  # no auction in the period: no auction columns
        kept = [i for i, name in enumerate(COLUMNS) if name not in AUCTION_COLUMNS]
        rows = [[row[i] for i in kept] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
