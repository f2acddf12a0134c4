"""Log lines as JSON (``COURIER_LOG_FORMAT=json``), each naming the lead, the destination and
the trace it belongs to, so a log search finds everything about one lead.

The lead id and destination come from context variables set where a lead is taken in and
an attempt is made (each record is handled in its own task, so they never mix); the
trace and span ids from OpenTelemetry's current span. Messages are scrubbed of
credentials before they get here (secrets.scrub_log_records), and nothing here adds a
lead's values: ids only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

_lead: ContextVar[str | None] = ContextVar("log_lead_id", default=None)
_destination: ContextVar[str | None] = ContextVar("log_destination", default=None)


def about_lead(lead_id: str) -> None:
    """From here on in this task (and the tasks it starts), log lines name this lead."""
    _lead.set(lead_id)


@contextmanager
def about_destination(destination_id: str) -> Iterator[None]:
    """Log lines inside name this destination."""
    token = _destination.set(destination_id)
    try:
        yield
    finally:
        _destination.reset(token)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and lead_id, destination,
    trace_id, span_id when known; the traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        lead_id, destination = _lead.get(), _destination.get()
        if lead_id is not None:
            line["lead_id"] = lead_id
        if destination is not None:
            line["destination"] = destination
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line).decode()


def json_line(level: str, message: str) -> str:
    """A line in the same shape, for what the command line says itself."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    return orjson.dumps(
        {"ts": ts, "level": level, "logger": "courier", "message": message}
    ).decode()
