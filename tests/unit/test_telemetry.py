"""The trace context in record headers and work items (no worker, no exporter needed)."""

from __future__ import annotations

import gc
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from streams import telemetry
from streams.control.messages import WorkItem
from streams.model import Lead

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
tracer = TracerProvider().get_tracer("test")


def test_a_records_traceparent_is_the_context_it_continues() -> None:
    context = telemetry.context_from_headers([("traceparent", TRACEPARENT.encode())])
    assert context is not None
    span = trace.get_current_span(context).get_span_context()
    assert format(span.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(span.span_id, "016x") == "00f067aa0ba902b7"


def test_no_or_unreadable_headers_start_a_new_trace() -> None:
    assert telemetry.context_from_headers(None) is None
    assert telemetry.context_from_headers([("other", b"x")]) is None
    assert telemetry.context_from_headers([("traceparent", b"\xff\xfe")]) is None
    context = telemetry.context_from_headers([("traceparent", b"00-zz-not-a-trace")])
    assert context is None or not trace.get_current_span(context).get_span_context().is_valid


def test_a_written_record_gets_its_span_and_keeps_its_own_headers() -> None:
    with tracer.start_as_current_span("lead") as lead:
        _, headers = telemetry.producing(
            "events", [("courier.dlq.reason", b"x"), ("traceparent", b"stale")]
        )
    names = [name for name, _ in headers]
    assert names.count("traceparent") == 1 and "courier.dlq.reason" in names
    # An unreadable traceparent of its own is replaced by one in the current trace.
    written = dict(headers)["traceparent"].decode()
    assert written.split("-")[1] == format(lead.get_span_context().trace_id, "032x")


def test_unexported_no_producer_span_is_made_and_the_record_names_its_trace() -> None:
    # Spans not exported (the worker's default): no producer span, same trace in headers.
    assert not telemetry._producer_spans
    own = [("traceparent", TRACEPARENT.encode()), ("courier.dlq.reason", b"x")]
    span, headers = telemetry.producing("work", own)
    assert span is None and headers == own  # a parked retry keeps the trace it began in
    with tracer.start_as_current_span("lead") as lead:
        span, headers = telemetry.producing("events", None)
    assert span is None
    expected = format(lead.get_span_context().trace_id, "032x")
    assert dict(headers)["traceparent"].decode().split("-")[1] == expected


def test_outside_any_span_there_is_no_trace_id() -> None:
    assert telemetry.current_trace_id() is None
    assert telemetry.current_headers() == {}
    with tracer.start_as_current_span("lead") as span:
        assert telemetry.current_trace_id() == format(span.get_span_context().trace_id, "032x")


def test_a_parked_work_item_keeps_its_trace_and_drops_a_bad_one() -> None:
    item = WorkItem(Lead("L-1", {"id": "L-1"}), "crm", "0", 2, False, TRACEPARENT)
    again = WorkItem.from_json(item.to_json())
    assert again.traceparent == TRACEPARENT
    assert again.headers == [("traceparent", TRACEPARENT.encode())]
    untraced = WorkItem(Lead("L-1", {"id": "L-1"}), "crm", "0", 2, False)
    assert b"traceparent" not in untraced.to_json() and untraced.headers is None
    hostile = item.to_json().replace(TRACEPARENT.encode(), "é\\u0000".encode())
    assert WorkItem.from_json(hostile).traceparent is None


def test_the_collectors_time_is_counted_by_generation() -> None:
    counted = telemetry.CollectorTime()
    counted.watch()
    counted.watch()  # once: a second watch adds no second count
    try:
        assert gc.callbacks.count(counted._on_collection) == 1
        gc.collect()
        assert counted.seconds[2] > 0
    finally:
        gc.callbacks.remove(counted._on_collection)


def test_unrecorded_an_attempt_stays_in_its_leads_span(monkeypatch: Any) -> None:
    # Spans not recorded (start() without an exporter or a sampler): no span of its own.
    monkeypatch.setattr(telemetry, "_attempt_spans", False)
    with tracer.start_as_current_span("lead") as lead:
        with telemetry.attempting("crm", "L-1", 1) as span:
            assert not span.is_recording()
            assert trace.get_current_span() is lead  # its events name the lead's trace
            telemetry.attempted(
                span, method="POST", url="https://crm.example/leads", status=200,
                outcome="success", category="accepted", reason="", failed=False,
            )  # fmt: skip
        assert trace.get_current_span() is lead
    # Recorded, an attempt is a child span in the lead's trace.
    monkeypatch.setattr(telemetry, "_attempt_spans", True)
    monkeypatch.setattr(telemetry, "tracer", tracer)
    with (
        tracer.start_as_current_span("lead") as lead,
        telemetry.attempting("crm", "L-1", 1) as span,
    ):
        assert span is not lead and span.is_recording()
        assert span.get_span_context().trace_id == lead.get_span_context().trace_id


def test_a_destinations_reasons_past_a_hundred_are_counted_together() -> None:
    """A recipient that words each refusal its own way would make a metric label a lead."""
    labels = [telemetry.reason_label("wordy_buyer", f"Lead {n} refused") for n in range(150)]
    assert labels[:100] == [f"Lead {n} refused" for n in range(100)]
    assert set(labels[100:]) == {telemetry.OTHER_REASONS}
    assert telemetry.reason_label("wordy_buyer", "Lead 7 refused") == "Lead 7 refused"
    assert telemetry.reason_label("other_buyer", "Lead 120 refused") == "Lead 120 refused"
