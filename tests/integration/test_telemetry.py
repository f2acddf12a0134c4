"""Traces and metrics from a real worker: spans to an OTLP collector on 127.0.0.1, trace ids
on every event and outcome, ``traceparent`` to the recipients that asked for it, and
Prometheus metrics on /metrics whose counts are the events written (issue #14).

Reproduced first: ``opentelemetry-sdk`` was a dependency nothing imported; GET /metrics
answered 404."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.cli.broker import free_port
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.otlp import OtlpCollector
from tests.integration.recipients import Recipient

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
SPAN_KIND_CONSUMER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER = 5, 3, 4  # OTLP's enum
PRIVATE = ("jane.doe@example.com", "5551234567", "Jane", "123-45-6789")


def lead(n: int, behaviour: str = "ok") -> dict[str, Any]:
    return {
        "id": f"T-{n}",
        "lead": {
            "email": PRIVATE[0],
            "phone": PRIVATE[1],
            "first_name": PRIVATE[2],
            "ssn": PRIVATE[3],
            "behaviour": behaviour,
        },
    }


async def scrape(url: str) -> dict[str, list[Any]]:
    """Every sample of the exposition, by sample name."""
    async with aiohttp.ClientSession() as session, session.get(url) as res:
        assert res.status == 200
        assert res.headers["Content-Type"].startswith("text/plain")
        text = await res.text()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_traces_trace_ids_and_metrics_of_a_real_run(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    collector = await OtlpCollector().start()
    traced = await Recipient().start()  # a buyer that traces too: it gets traceparent
    port = free_port()
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email, phone: phone, behaviour: behaviour}}
    retry: {{max_attempts: 2, base_s: 0.2}}
  - id: buyer
    url: {traced.url()}
    send_traceparent: true
    mapping: {{email: email, behaviour: behaviour}}
    retry: {{max_attempts: 1}}
"""
    try:
        start_worker(
            yaml,
            env={
                "COURIER_WEB_PORT": str(port),
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url(),
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
            },
        )
        # Two leads continue an upstream trace; the rest start their own.
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for n in (1, 2):
                traceparent = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"
                await producer.send_and_wait(
                    topics.leads,
                    orjson.dumps(lead(n)),
                    key=f"T-{n}".encode(),
                    headers=[("traceparent", traceparent.encode())],
                )
        finally:
            await producer.stop()
        await publish(
            kafka,
            topics.leads,
            [lead(3), lead(4, "reject"), lead(5, "error"), lead(6), b"{not json"],
        )
        outcomes = await collect(kafka, topics.outcomes, 6)
        # The malformed record, and T-5 that nobody took after its retries ran out
        await collect(kafka, topics.dlq, 2)
        # 6 leads x 2 destinations, and the CRM's retry of T-5 (parked, then due)
        records = await collect(kafka, topics.events, 13, settle_s=1.0)
        # What was written (spans and metrics count these), and each event once by its id:
        # a record handled again after a rebalance (at least once; Tansu re-joins a busy
        # worker's group, docs/brokers.md) writes the same event, same id, again.
        written_events = [decode_with_schema_file(r.value, "delivery_event") for r in records]
        events = list({e["event_id"]: e for e in written_events}.values())
        finals = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]

        # Trace ids: on every event and outcome; the upstream's where it sent one.
        trace_of = {e["lead_id"]: e["trace_id"] for e in events}
        assert all(e["trace_id"] and len(e["trace_id"]) == 32 for e in events + finals)
        # One trace per lead, its retry included (the parked item kept its trace).
        assert len({(e["lead_id"], e["trace_id"]) for e in events}) == len(trace_of)
        assert [
            e["attempt"] for e in events if e["lead_id"] == "T-5" and e["destination_id"] == "crm"
        ] == [1, 2]
        assert trace_of["T-1"] == trace_of["T-2"] == UPSTREAM_TRACE
        assert len({trace_of[f"T-{n}"] for n in (3, 4, 5, 6)}) == 4  # each its own
        assert {o["lead_id"]: o["trace_id"] for o in finals} == trace_of

        # traceparent: to the buyer that asked, in the lead's trace; never to the CRM.
        assert all("traceparent" not in {k.lower() for k in r.headers} for r in recipient.requests)
        sent = {r.json()["behaviour"] + r.headers["traceparent"] for r in traced.requests}
        assert len(sent) == len(traced.requests) >= 6
        for request in traced.requests:
            version, trace_id, _, flags = request.headers["traceparent"].split("-")
            assert version == "00" and int(flags, 16) & 1  # sampled
            assert trace_id in trace_of.values()

        # Spans: a consumer span per record read, a client span per attempt (a child of the
        # lead's), a producer span per record written; no lead value in any attribute.
        async with asyncio.timeout(30):
            while len([s for s in collector.spans if s.kind == SPAN_KIND_CLIENT]) < len(
                written_events
            ):
                await asyncio.sleep(0.1)
        spans = collector.spans
        by_id = {s.span_id: s for s in spans}
        attempts = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
        assert sorted(s.name for s in attempts) == sorted(
            f"deliver {e['destination_id']}" for e in written_events
        )
        for span in attempts:
            parent = by_id[span.parent_span_id]
            assert parent.kind == SPAN_KIND_CONSUMER
            # A lead's first attempts in the span of its record; a retry in its own record's
            # (the routing topic's), in the same trace.
            retry = span.attributes["courier.attempt"] == 2
            read_from = topics.routing if retry else topics.leads
            assert parent.name == f"process {read_from}"
            assert parent.attributes["messaging.destination.name"] == read_from
            assert span.attributes["http.request.method"] == "POST"
            assert span.attributes["server.address"] == "127.0.0.1"
            assert span.attributes["courier.outcome"] in ("success", "failure", "error")
        crm = {
            s.attributes["courier.lead.id"]: s
            for s in attempts
            if s.name == "deliver crm" and s.attributes["courier.attempt"] == 1
        }
        assert crm["T-1"].attributes["http.response.status_code"] == 201
        assert crm["T-4"].attributes["courier.reason"] == "Duplicate lead"
        assert crm["T-5"].status_code == 2  # STATUS_CODE_ERROR
        upstream = [
            s for s in spans if s.kind == SPAN_KIND_CONSUMER and s.trace_id == UPSTREAM_TRACE
        ]
        assert {s.parent_span_id for s in upstream} == {UPSTREAM_SPAN}
        written = Counter(s.name for s in spans if s.kind == SPAN_KIND_PRODUCER)
        assert written[f"send {topics.events}"] == len(written_events)
        assert written[f"send {topics.outcomes}"] == len(finals)
        assert written[f"send {topics.dlq}"] == 2
        shown = repr([s.attributes for s in spans])
        assert not any(value in shown for value in PRIVATE)

        # Metrics: the counts are the records written.
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
        assert total(samples, "courier_deliveries_total") == len(written_events)
        for (destination, outcome), count in Counter(
            (e["destination_id"], e["outcome"]) for e in written_events
        ).items():
            assert (
                total(samples, "courier_deliveries_total", destination=destination, outcome=outcome)
                == count
            ), (destination, outcome)
        assert total(samples, "courier_deliveries_total", reason="Duplicate lead") == 2
        assert total(samples, "courier_leads_total") == len(finals)
        assert total(samples, "courier_leads_total", outcome="delivered") == sum(
            o["outcome"] == "delivered" for o in finals
        )
        assert total(samples, "courier_dead_letters_total", reason="Not JSON") == 1
        assert total(samples, "courier_dead_letters_total", reason="Delivery failed") == 1
        requested = sum(e["http_status"] is not None for e in written_events)
        assert total(samples, "courier_recipient_duration_seconds_count") == requested
        assert total(samples, "courier_overhead_duration_seconds_count") == requested
        # 7, and once more each for a record read again after a rebalance
        redelivered = len(written_events) - len(events)
        read = total(samples, "courier_records_read_total", topic=topics.leads)
        assert 7 <= read <= 7 + redelivered, (read, redelivered)
        assert total(samples, "courier_circuit_state", destination="crm") == 0
        # The garbage collector's time, by generation (what COURIER_GC_YOUNG is tuned by).
        collected = samples["courier_gc_duration_seconds_total"]
        assert {s.labels["generation"] for s in collected} == {"0", "1", "2"}
        assert total(samples, "courier_gc_duration_seconds_total", generation="0") > 0
        assert "courier_consumer_lag" in samples
        # The RocksDB tables' memory, within COURIER_STORE_MEMORY_MB (64 MiB by default)
        store = total(samples, "courier_store_memory_bytes", part="total")
        assert 0 < store <= 64 * 1024 * 1024 * 1.5
        assert 0 < total(samples, "courier_store_memory_bytes", part="memtables") <= store
        assert "courier_retries_parked" in samples
        assert not any(value in repr(samples) for value in PRIVATE)
        assert collector.metric_exports > 0  # and to the collector over OTLP
    finally:
        await traced.stop()
        await collector.stop()


async def test_a_recipient_that_announces_its_endpoints_retirement_is_told_once(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """Deprecation (RFC 9745) and Sunset (RFC 8594) on a recipient's answers: a warning in
    the worker's log once (not once a lead) and two gauges, so an alert fires before the
    endpoint stops answering and every lead fails (Pipedrive's v1, retired on 2026-08-01)."""

    async def retiring(_: Recipient, __: Any) -> web.Response:
        return web.json_response(
            {"id": "R-1"},
            status=201,
            headers={
                "Deprecation": "@1688169599",
                "Sunset": "Wed, 30 Sep 2026 23:59:59 GMT",
                "Link": "<https://developers.buyer.example/v1-retirement?lang=en>; "
                'rel="deprecation"; type="text/html"',
            },
        )

    crm = await Recipient(retiring).start()
    port = free_port()
    try:
        worker = start_worker(
            f"destinations:\n  - id: crm\n    url: {crm.url()}\n    mapping: {{email: email}}\n",
            env={"COURIER_WEB_PORT": str(port)},
        )
        await publish(kafka, topics.leads, [lead(n) for n in range(1, 4)])
        outcomes = [
            decode_with_schema_file(r.value, "lead_outcome")
            for r in await collect(kafka, topics.outcomes, 3)
        ]
        assert {o["outcome"] for o in outcomes} == {"delivered"}  # still sales
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
        assert total(samples, "courier_destination_sunset_seconds", destination="crm") == (
            1790812799
        )
        assert total(samples, "courier_destination_deprecated", destination="crm") == 1
    finally:
        await crm.stop()
    warnings = [line for line in worker.log_path.read_text().splitlines() if "deprecated" in line]
    assert len(warnings) == 1, warnings
    assert (
        "destination crm: the recipient says its endpoint is deprecated since 2023-06-30 23:59 "
        "UTC and stops answering on 2026-09-30 23:59 UTC; see "
        "https://developers.buyer.example/v1-retirement"
    ) in warnings[0]
