"""Traces and metrics (OpenTelemetry): what the worker does, never what a lead holds.

Spans and instruments are taken from OpenTelemetry's global providers, so the stages and
handlers use them without being handed anything; ``start`` installs the SDK's providers
once per worker process (before that, and in tests of plain functions, they are no-ops).

- Traces: a span per record a worker handles (``process <topic>``, continuing the W3C
  ``traceparent`` in the record's headers when upstream sent one), a client span per
  delivery attempt, a producer span per record written (whose ``traceparent`` goes in that
  record's headers). Exported over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its
  traces variant) is set, to the console with ``OTEL_TRACES_EXPORTER=console``, else not
  at all; trace ids still reach every event either way.
- Metrics: Prometheus exposition (``/metrics`` on the worker's web port), and OTLP too when
  an endpoint is set.

Attributes are ids, names, numbers and our own reasons: a lead's values never go in a
span or a metric (reasons are scrubbed of them before they get here, see outcome.py).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation

if TYPE_CHECKING:
    from streams.model import Retirement

log = logging.getLogger(__name__)

SERVICE_NAME = "lead-courier"
SCOPE = "lead_courier"
TRACEPARENT = "traceparent"

tracer = trace.get_tracer(SCOPE)
meter = metrics.get_meter(SCOPE)


class Tally:
    """A counter kept as plain integers and read at each collection (an asynchronous
    OpenTelemetry counter): counting is a dict increment on the hot path, where the SDK's
    synchronous counter costs ~20 µs a call (attribute sets hashed under a lock)."""

    def __init__(self, name: str, unit: str, description: str, labels: tuple[str, ...]) -> None:
        self._labels = labels
        self._counts: Counter[tuple[str, ...]] = Counter()
        meter.create_observable_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def add(self, *values: str) -> None:
        """One more, with these label values (in the order of ``labels``)."""
        self._counts[values] += 1

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, dict(zip(self._labels, values, strict=True)))
            for values, count in list(self._counts.items())
        ]


# Names and units by OpenTelemetry's conventions; the Prometheus exporter turns them into
# Prometheus's (courier_deliveries_total, courier_recipient_duration_seconds, ...).
deliveries = Tally(
    "courier.deliveries",
    "{attempt}",
    "Delivery attempts, by destination, outcome, category and reason",
    ("destination", "outcome", "category", "reason"),
)
# A recipient that words each refusal its own way ("Lead 4711 refused") would make a label
# value a lead: past this many reasons a destination's others are counted together.
REASONS_PER_DESTINATION = 100
OTHER_REASONS = "(other reasons)"
_reasons_counted: dict[str, set[str]] = {}


def reason_label(destination_id: str, reason: str) -> str:
    """``reason`` as a metric label: itself, or ``OTHER_REASONS`` once the destination has
    ``REASONS_PER_DESTINATION`` others (events keep every reason as it is)."""
    counted = _reasons_counted.setdefault(destination_id, set())
    if reason in counted:
        return reason
    if len(counted) < REASONS_PER_DESTINATION:
        counted.add(reason)
        return reason
    return OTHER_REASONS


recipient_duration = meter.create_histogram(
    "courier.recipient.duration",
    unit="s",
    description="Time spent waiting on the recipient, per attempt",
)
overhead_duration = meter.create_histogram(
    "courier.overhead.duration",
    unit="s",
    description="Our own time per attempt: mapping, building the request, reading the answer",
)
leads = Tally(
    "courier.leads", "{lead}", "Lead outcomes handed to the producer, by outcome", ("outcome",)
)
feedback = Tally(
    "courier.feedback",
    "{notice}",
    "Recipients' feedback judged, by destination, kind and status (accepted or refused)",
    ("destination", "kind", "status"),
)
dead_letters = Tally(
    "courier.dead_letters", "{record}", "Dead letters written, by reason", ("reason",)
)
records_read = Tally(
    "courier.records.read", "{record}", "Records the worker read, by topic", ("topic",)
)
records_written = Tally(
    "courier.records.written",
    "{record}",
    "Records the worker handed to its producer for its topics (changelogs not included), by topic",
    ("topic",),
)


class CollectorTime:
    """Seconds the garbage collector held the process, by generation (every thread waits
    while it runs): what ``COURIER_GC_YOUNG`` is tuned by. Counted from ``gc.callbacks``
    once ``watch`` is called; read at each collection of the metrics."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0
        meter.create_observable_counter(
            "courier.gc.duration",
            callbacks=[self._observe],
            unit="s",
            description="Time the garbage collector held the worker, by generation",
        )

    def watch(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(seconds, {"generation": str(generation)})
            for generation, seconds in enumerate(self.seconds)
        ]


collector_time = CollectorTime()

# The vendors' allowances as their limit headers last said, by destination id.
quota_left: dict[str, tuple[int, int | None]] = {}


def _quota(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(left, {"destination": d}) for d, (left, _limit) in quota_left.items()]


def _quota_limit(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(limit, {"destination": d})
        for d, (_left, limit) in quota_left.items()
        if limit is not None
    ]


meter.create_observable_gauge(
    "courier.vendor.quota.remaining",
    callbacks=[_quota],
    unit="{request}",
    description="Requests left in the vendor's allowance, as its limit headers last said",
)
meter.create_observable_gauge(
    "courier.vendor.quota.limit",
    callbacks=[_quota_limit],
    unit="{request}",
    description="The vendor's allowance, as its limit headers last said",
)

# What the recipients said of their endpoints' retirement (Deprecation, Sunset), by
# destination id: the latest answer's.
retiring: dict[str, Retirement] = {}


def note_retirement(destination_id: str, said: Retirement) -> bool:
    """Keeps what an answer said; True when it is news for this destination (first said,
    or changed), for one warning rather than one a lead."""
    news = retiring.get(destination_id) != said
    retiring[destination_id] = said
    return news


def _deprecated(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(1, {"destination": d}) for d, said in retiring.items() if said.deprecated]


def _sunset(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(said.sunset_at, {"destination": d})
        for d, said in retiring.items()
        if said.sunset_at is not None
    ]


meter.create_observable_gauge(
    "courier.destination.deprecated",
    callbacks=[_deprecated],
    unit="1",
    description="1 for a destination whose recipient says its endpoint is deprecated "
    "(Deprecation header, RFC 9745)",
)
meter.create_observable_gauge(
    "courier.destination.sunset",
    callbacks=[_sunset],
    unit="s",
    description="When the recipient says the destination's endpoint stops answering, in "
    "Unix seconds (Sunset header, RFC 8594)",
)

_started = False
# Producer spans are made only when spans are exported: unread, each cost a lead ~3 % of the
# worker's CPU (a span, its context and a propagation, two or three records a lead). The
# record still carries its trace (``producing``).
_producer_spans = False
# Attempt spans, likewise, only when spans are recorded: unrecorded, an attempt's span would
# carry nothing its lead's span does not (the trace, for events, parked work and the
# traceparent a ``send_traceparent`` recipient gets), at ~2 % of a lead's CPU.
_attempt_spans = True
_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)


def start(environ: Mapping[str, str] | None = None) -> bool:
    """Installs the SDK's tracer and meter providers, once per process. False when
    ``OTEL_SDK_DISABLED`` is true (everything stays a no-op)."""
    global _started, _producer_spans, _attempt_spans
    env = os.environ if environ is None else environ
    if _started:
        return True
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # OTEL_RESOURCE_ATTRIBUTES is read by Resource.create; OTEL_SERVICE_NAME names us.
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    otlp = _otlp_wanted(env)
    readers: list[MetricReader] = [PrometheusMetricReader()]
    if otlp and env.get("OTEL_METRICS_EXPORTER", "otlp") != "none":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    exemplar_filter = None  # the SDK's: OTEL_METRICS_EXEMPLAR_FILTER, else trace-based
    if len(readers) == 1 and not env.get("OTEL_METRICS_EXEMPLAR_FILTER"):
        # Prometheus's text exposition carries no exemplars: none to look for on each record.
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter

        exemplar_filter = AlwaysOffExemplarFilter()
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=readers, exemplar_filter=exemplar_filter)
    )

    exporter_name = env.get("OTEL_TRACES_EXPORTER", "otlp" if otlp else "none")
    exporting = exporter_name == "console" or (exporter_name == "otlp" and otlp)
    sampler = None  # the SDK's: OTEL_TRACES_SAMPLER, else parent-based always-on
    if not exporting and not env.get("OTEL_TRACES_SAMPLER"):
        # Nothing reads recorded spans: make them non-recording (~11 µs instead of ~50-80
        # each, four a lead). They still get ids, so events still carry trace ids.
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        sampler = ALWAYS_OFF
        _attempt_spans = False
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter_name == "otlp" and otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter_name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    collector_time.watch()
    _producer_spans = exporting
    _started = True
    log.info(
        "telemetry: traces %s, metrics on /metrics%s",
        f"to {exporter_name}" if exporter_name != "none" else "not exported",
        " and OTLP" if len(readers) > 1 else "",
    )
    return True


def _otlp_wanted(env: Mapping[str, str]) -> bool:
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def prometheus_text() -> tuple[bytes, str]:
    """The Prometheus exposition of every metric: (body, content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# ── context in record headers and requests ───────────────────────────────────
def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> Context | None:
    """The trace context a record's ``traceparent`` header carries, if any."""
    carrier = {}
    for name, value in headers or ():
        if name.lower() in (TRACEPARENT, "tracestate"):
            try:
                carrier[name.lower()] = value.decode("ascii")
            except (UnicodeDecodeError, AttributeError):
                return None
    if TRACEPARENT not in carrier:
        return None
    context = propagate.extract(carrier)
    # An unreadable one continues nothing: the current span (or a new trace) it is.
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def current_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span; empty outside any."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits (what tracing tools search by), if any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# ── what the worker counts ───────────────────────────────────────────────────
def gauge(
    name: str,
    unit: str,
    description: str,
    read: Callable[[], Iterable[tuple[float, dict[str, Any]]]],
) -> None:
    """An observable gauge: ``read()`` gives (value, attributes) pairs at each collection."""

    def observe(_: CallbackOptions) -> Iterable[Observation]:
        try:
            return [Observation(value, attributes) for value, attributes in read()]
        except Exception:  # a gauge must never break a scrape
            log.exception("metric %s could not be read", name)
            return []

    meter.create_observable_gauge(name, callbacks=[observe], unit=unit, description=description)


# ── spans of the worker's records ────────────────────────────────────────────
def consuming(topic: str, partition: int, offset: int, headers: Any) -> Any:
    """The span of handling one record (current while it lasts): a child of the trace in
    its ``traceparent`` header, else a new trace."""
    records_read.add(topic)
    return tracer.start_as_current_span(
        f"process {topic}",
        context=context_from_headers(headers),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
        },
    )


def producing(
    topic: str, headers: list[tuple[str, bytes]] | None
) -> tuple[Any | None, list[tuple[str, bytes]]]:
    """A producer span for one record to ``topic`` (a child of the trace the record's own
    ``traceparent`` names, else of the current span), and the record's headers with that
    span's ``traceparent``. End it with ``produced``. When spans are not exported, no span
    (None): the record keeps a readable ``traceparent`` of its own, else gets the current
    span's, so it names the same trace either way."""
    records_written.add(topic)
    own = context_from_headers(headers)
    span = None
    carrier: dict[str, str]
    if not _producer_spans:
        if own is not None:
            return None, list(headers or ())
        carrier = current_headers()
    else:
        span = tracer.start_span(
            f"send {topic}",
            context=own,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
            },
        )
        carrier = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
    added = [(name, value.encode("ascii")) for name, value in carrier.items()]
    kept = [(n, v) for n, v in headers or () if n.lower() not in carrier]
    return span, kept + added


def produced(span: Any, confirmation: Any) -> None:
    """Ends a producer span when the broker has confirmed (or refused) its record."""
    if confirmation.cancelled():
        span.set_status(trace.StatusCode.ERROR, "cancelled")
    elif confirmation.exception() is not None:
        span.set_status(trace.StatusCode.ERROR, type(confirmation.exception()).__name__)
    span.end()


def attempting(destination_id: str, lead_id: str, number: int) -> Any:
    """The client span of one delivery attempt (current while it lasts); ``attempted``
    describes how it went. A span that records nothing when spans are not recorded."""
    if not _attempt_spans:
        return _NO_SPAN
    return tracer.start_as_current_span(
        f"deliver {destination_id}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "courier.destination.id": destination_id,
            "courier.lead.id": lead_id,
            "courier.attempt": number,
        },
    )


def attempted(
    span: Any,
    *,
    method: str | None,
    url: str | None,
    status: int | None,
    outcome: str,
    category: str,
    reason: str,
    failed: bool,
) -> None:
    """``url``: as events show it (credentials masked, lead-filled parts as configured):
    only its host and port are kept."""
    if not span.is_recording():  # spans not exported: nothing would keep what is set here
        return
    attributes: dict[str, Any] = {
        "courier.outcome": outcome,
        "courier.category": category,
        "courier.reason": reason,
    }
    if method is not None:
        attributes["http.request.method"] = method
    if url:
        parts = urlsplit(url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    if status is not None:
        attributes["http.response.status_code"] = status
    span.set_attributes(attributes)
    if failed:
        span.set_attribute("error.type", category)
        span.set_status(trace.StatusCode.ERROR, reason)
